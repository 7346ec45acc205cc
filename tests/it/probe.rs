//! `sealgate probe` against a running gateway: everything its configuration
//! demands is reported enforced; against a deliberately weakened gateway
//! (a route without verification, a listener with optional client
//! certificates) the gaps are reported NOT ENFORCED and the exit code says so.

use crate::support::process::BIN;
use crate::support::*;
use std::process::Command;

/// The deployed configuration: a required listener, a route only
/// `CN=etl-reporting` may use, a verifying SOAP route, and a REST route the
/// probe's `CN=etl-prod` may use (unless `rest_allow` says otherwise).
fn intended(pki: &Pki, up: std::net::SocketAddr, client_auth: &str, verify: bool) -> String {
    intended_with(pki, up, client_auth, verify, "")
}

fn intended_with(
    pki: &Pki,
    up: std::net::SocketAddr,
    client_auth: &str,
    verify: bool,
    rest_allow: &str,
) -> String {
    let wssec = if verify {
        format!(
            "[route.wssec.request]\nmode = \"verify\"\ntrust = {:?}\n",
            pki.path("ca.crt")
        )
    } else {
        String::new()
    };
    config(
        pki,
        client_auth,
        &format!(
            "{}{}{}{wssec}\n[upstream.up]\nurl = \"http://{up}\"\n",
            route("rest", "/rest/", rest_allow),
            route(
                "reports",
                "/reports/",
                "allow = [{ cn = \"etl-reporting\" }]"
            ),
            route("ledger", "/soap/ledger", ""),
        ),
    )
}

struct Probe {
    code: Option<i32>,
    out: String,
    report: serde_json::Value,
}

/// Runs the probe binary off the async workers (the gateway is in this process).
async fn probe(pki: Pki, config: std::path::PathBuf, addr: std::net::SocketAddr) -> Probe {
    tokio::task::spawn_blocking(move || probe_blocking(&pki, &config, addr))
        .await
        .unwrap()
}

fn probe_blocking(pki: &Pki, config: &std::path::Path, addr: std::net::SocketAddr) -> Probe {
    let client = pki.client("etl-prod", "ETL", sealgate::pki::KeyAlg::EcdsaP256);
    pki.write("probe.crt", &client.cert_pem);
    pki.write("probe.key", &client.key_pem);
    let s = signer(pki, "etl-signer");
    pki.write("signer.crt", &s.cert_pem);
    pki.write("signer.key", &s.key_pem);
    let json = pki.path("probe.json");
    let out = Command::new(BIN)
        .args(["probe", "--config"])
        .arg(config)
        .args(["--target", &format!("https://localhost:{}", addr.port())])
        .arg("--cert")
        .arg(pki.path("probe.crt"))
        .arg("--key")
        .arg(pki.path("probe.key"))
        .arg("--signer-key")
        .arg(pki.path("signer.key"))
        .arg("--signer-cert")
        .arg(pki.path("signer.crt"))
        .args([
            "--allow-forward",
            "ledger",
            "--allow-forward",
            "rest",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Probe {
        code: out.status.code(),
        report: serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}\n{text}")),
        out: text,
    }
}

fn result_of<'a>(p: &'a Probe, check: &str) -> &'a str {
    p.report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .and_then(|c| c["result"].as_str())
        .unwrap_or_else(|| panic!("no {check:?} in\n{}", p.out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_enforces_its_config_passes_the_probe() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let toml = intended(&pki, up, "required", true);
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let p = probe(pki, gw.config.clone(), gw.addr("edge")).await;
    assert_eq!(p.code, Some(0), "{}", p.out);
    assert!(
        !p.out.lines().any(|l| l.starts_with("NOT ENFORCED")),
        "{}",
        p.out
    );
    for (check, want) in [
        ("handshake without a client certificate", "enforced"),
        (
            "handshake with a certificate from an unknown CA",
            "enforced",
        ),
        ("identity not allowed on the route", "enforced"),
        ("unsigned message refused", "enforced"),
        ("message signed by an untrusted key refused", "enforced"),
        ("tampered message refused", "enforced"),
        ("signed message accepted", "passed"),
        ("replayed message refused", "enforced"),
        ("handshake with the given certificate", "passed"),
        ("request with the given identity passes", "passed"),
    ] {
        assert_eq!(result_of(&p, check), want, "{check}\n{}", p.out);
    }
    assert_eq!(p.report["not_enforced"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weakened_gateway_is_reported_not_enforced() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    // What runs: optional client certificates, the ledger not verified, and
    // the REST route closed to the identity that should use it.
    let weakened = intended_with(&pki, up, "optional", false, "allow = [{ cn = \"nobody\" }]");
    let gw = TestGateway::start(pki.dir.path(), &weakened).await;
    // What was meant.
    let meant = pki.write("meant.toml", &intended(&pki, up, "required", true));
    let p = probe(pki, meant, gw.addr("edge")).await;
    assert_eq!(p.code, Some(1), "{}", p.out);
    assert!(
        p.out.lines().any(|l| l.starts_with("NOT ENFORCED")),
        "{}",
        p.out
    );
    assert_eq!(
        result_of(&p, "handshake without a client certificate"),
        "not_enforced"
    );
    assert_eq!(result_of(&p, "unsigned message refused"), "not_enforced");
    assert_eq!(result_of(&p, "tampered message refused"), "not_enforced");
    // What the weakened gateway still does is still reported enforced.
    assert_eq!(
        result_of(&p, "identity not allowed on the route"),
        "enforced"
    );
    assert!(p.report["not_enforced"].as_u64().unwrap() >= 3);
    // What must pass and did not fails the gate too, saying why.
    assert_eq!(
        result_of(&p, "request with the given identity passes"),
        "failed"
    );
    assert!(p.out.contains("identity_not_allowed"), "{}", p.out);
}

/// A gateway serving another certificate than the configuration names (a
/// rotation not reloaded, a load balancer in between) is not taken for one
/// that refuses: the probe could not tell, and fails the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_serving_another_certificate_fails_the_probe() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let gw = TestGateway::start(pki.dir.path(), &intended(&pki, up, "required", true)).await;
    let mut other = sealgate::pki::Leaf::new("localhost", sealgate::pki::Usage::Server);
    other.dns = vec!["localhost".into()];
    let other = pki.issue(&other);
    pki.write("other.crt", &other.cert_pem);
    pki.write("other.key", &other.key_pem);
    let meant = intended(&pki, up, "required", true)
        .replace(
            &format!("{:?}", pki.path("server.crt")),
            &format!("{:?}", pki.path("other.crt")),
        )
        .replace(
            &format!("{:?}", pki.path("server.key")),
            &format!("{:?}", pki.path("other.key")),
        );
    let meant = pki.write("meant.toml", &meant);
    let p = probe(pki, meant, gw.addr("edge")).await;
    assert_eq!(p.code, Some(1), "{}", p.out);
    assert_eq!(
        result_of(&p, "handshake without a client certificate"),
        "unknown",
        "{}",
        p.out
    );
    assert!(
        !p.out.lines().any(|l| l.starts_with("enforced")),
        "{}",
        p.out
    );
}
