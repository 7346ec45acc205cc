//! The `sealgate` binary as an operator runs it: `check` on good and broken
//! configs, `pki init`, memory while streaming a gigabyte, and SIGTERM drain.

use crate::support::process::{sigterm, spawn_gateway, BIN};
use crate::support::*;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sealgate::pki::{Leaf, Usage};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn check(file: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn good_config(pki: &Pki) -> String {
    config(
        pki,
        "required",
        "[[route]]\nname = \"apex\"\nlistener = \"edge\"\nupstream = \"salesforce\"\n\n[upstream.salesforce]\nurl = \"http://127.0.0.1:9\"\n",
    )
}

#[test]
fn check_accepts_the_quickstart_and_reports_certificates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = check(&root.join("policies/quickstart.toml"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("listeners:") && out.contains("etl on 127.0.0.1:8443"),
        "{out}"
    );
    assert!(
        out.contains("CN=localhost") && out.contains("expires in"),
        "{out}"
    );
}

#[test]
fn every_shipped_policy_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        let (code, out, err) = check(&path);
        assert_eq!(code, 0, "{name}:\n{out}{err}");
        seen += 1;
    }
    assert!(
        seen >= 2,
        "policies/ should ship the quickstart and the scenarios"
    );
}

#[test]
fn check_names_the_toml_path_and_the_fix_for_each_broken_config() {
    let pki = Pki::new();
    let good = good_config(&pki);
    let f = pki.path("t.toml");
    std::fs::write(&f, &good).unwrap();
    assert_eq!(check(&f).0, 0, "{:?}", check(&f));

    let wrong_key = pki.ca.issue(&Leaf::new("other", Usage::Server)).unwrap();
    pki.write("other.key", &wrong_key.key_pem);
    let mut expired = Leaf::new("localhost", Usage::Server);
    expired.from_days = -10;
    expired.to_days = -2;
    let expired = pki.issue(&expired);
    pki.write("expired.crt", &expired.cert_pem);
    let server_crt = format!("{:?}", pki.path("server.crt"));
    let server_key = format!("{:?}", pki.path("server.key"));

    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("upstream = \"salesforce\"", "upstream = \"salesfroce\""),
            "route[0].upstream: no upstream named \"salesfroce\" (known: salesforce)",
        ),
        (
            good.replace(
                "client_auth = \"required\"",
                "client_auth = \"required\"\nclient_cert = \"x\"",
            ),
            "listener[0].tls.client_cert: unknown field `client_cert`",
        ),
        (
            good.replace(&server_crt, "\"missing.crt\""),
            "listener[0].tls.cert: cannot read",
        ),
        (
            good.replace(&server_key, &format!("{:?}", pki.path("other.key"))),
            "listener[0].tls.key: ",
        ),
        (
            good.replace(&server_crt, &format!("{:?}", pki.path("expired.crt"))),
            "expired",
        ),
        (
            good.replace(
                "listener = \"edge\"\nupstream",
                "listener = \"egde\"\nupstream",
            ),
            "route[0].listener: no listener named \"egde\" (known: edge)",
        ),
        (
            good.replace(
                "url = \"http://127.0.0.1:9\"",
                "url = \"http://127.0.0.1:9\"\nconnect_timeout = \"soon\"",
            ),
            "upstream.salesforce.connect_timeout: invalid duration",
        ),
        (
            good.replace(
                "upstream = \"salesforce\"\n",
                "upstream = \"salesforce\"\nallow = [{ fingerprint_sha256 = \"AB:CD\" }]\n",
            ),
            "route[0].allow[0]: fingerprint_sha256",
        ),
        (
            good.replace("listen = \"127.0.0.1:0\"\n[listener.tls]", "listen = \"127.0.0.1:0\"\nallow_ips = [\"10.0.0.0/8\", \"10.0.0.300/8\"]\n[listener.tls]"),
            "listener[0].allow_ips[1]: \"10.0.0.300/8\" is not a CIDR",
        ),
        (
            good.replace("listen = \"127.0.0.1:0\"\n[listener.tls]", "listen = \"127.0.0.1:0\"\nallow_ips_files = [\"ranges.txt\"]\n[listener.tls]"),
            "ranges.txt:3: \"192.168.1.1/33\" is not a CIDR",
        ),
        (
            good.replace("upstream = \"salesforce\"\n", "upstream = \"salesforce\"\nrate_limit = { key = \"client\", per_second = 5, per_minute = 60 }\n"),
            "route[0].rate_limit: set exactly one of per_second or per_minute",
        ),
        (
            good.replace("upstream = \"salesforce\"\n", "upstream = \"salesforce\"\nrate_limit = { key = \"tenant\", per_second = 5 }\n"),
            "route[0].rate_limit",
        ),
        (
            format!("{good}\n[route.wssec.request]\nmode = \"verify\"\n"),
            "route[0].wssec.request.trust: mode = \"verify\" needs trust",
        ),
        (
            format!("{good}\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nrequire_signed = [\"Body\", \"Timestamp\", \"wsa:To\"]\n"),
            "route[0].wssec.request.require_signed[2]: \"wsa:To\" is not Body, Timestamp or a header block",
        ),
        (
            format!("{good}\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nusernames = [{{ user = \"etl\", password_env = \"SEALGATE_TEST_UNSET_VAR\" }}]\n"),
            "route[0].wssec.request.usernames[0]: environment variable SEALGATE_TEST_UNSET_VAR",
        ),
        (
            format!("{good}\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nrequire_signed = [\"Timestamp\"]\n"),
            "route[0].wssec.request.require_signed: a verifying stage must require the Body to be signed",
        ),
        (
            format!("{good}\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nidentity_map = {{ \"CN=a\" = \"CN=b\" }}\n"),
            "route[0].wssec.request.identity_map: identity_map is only used with bind_identity = \"map\"",
        ),
        (
            format!("{good}\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nmatch = 1\n"),
            "route[0].wssec.request.match: unknown field",
        ),
        (
            good.replace("name = \"apex\"\nlistener = \"edge\"\nupstream = \"salesforce\"\n", "name = \"apex\"\nlistener = \"edge\"\nupstream = \"salesforce\"\nmatch = { path_prefix = \"/services/\", soap_action = \"urn:post\" }\n[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\n\n[[route]]\nname = \"rest\"\nlistener = \"edge\"\nupstream = \"salesforce\"\n"),
            "route[1]: route \"rest\" does not verify WS-Security but can receive requests for \"/services/\"",
        ),
    ];
    let cases = cases.into_iter().chain([
        (
            good.replace("[server]\n", "[server]\nidentity_header = \"x-request-id\"\n"),
            "server.request_id_header: \"x-request-id\" is also the identity header",
        ),
        (
            good.replace("[server]\n", "[server]\nidentity_header = \"X_Forwarded_For\"\n"),
            "server.identity_header: \"X_Forwarded_For\" is a header the gateway routes on, strips or sets itself",
        ),
        (
            good.replace("upstream = \"salesforce\"\n", "upstream = \"salesforce\"\nmatch = { path_prefix = \"/api/../admin/\" }\n"),
            "route[0].match.path_prefix: \"/api/../admin/\" is not a normalised path",
        ),
        (
            good.replace("listen = \"127.0.0.1:0\"\n[listener.tls]", "listen = \"127.0.0.1:0\"\nmax_connections = 0\n[listener.tls]"),
            "listener[0].max_connections: 0 would refuse every connection",
        ),
    ]);
    pki.write("ranges.txt", "# office\n10.0.0.0/8\n192.168.1.1/33\n");
    for (toml, expect) in cases {
        std::fs::write(&f, &toml).unwrap();
        let (code, out, err) = check(&f);
        assert_eq!(code, 1, "expected exit 1 for {expect:?}\n{out}{err}");
        assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
    }
    // A missing config file is an I/O error: exit 2.
    assert_eq!(check(&pki.path("nope.toml")).0, 2);
}

#[test]
fn check_lists_every_problem_of_a_listener_each_once() {
    let pki = Pki::new();
    let wrong_key = pki.ca.issue(&Leaf::new("other", Usage::Server)).unwrap();
    pki.write("other.key", &wrong_key.key_pem);
    let toml = good_config(&pki)
        .replace(
            &format!("{:?}", pki.path("server.key")),
            &format!("{:?}", pki.path("other.key")),
        )
        .replace(
            "client_auth = \"required\"",
            "client_auth = \"required\"\ncrls = [\"missing.crl\"]",
        )
        .replace(
            "listen = \"127.0.0.1:0\"\n[listener.tls]",
            "listen = \"127.0.0.1:0\"\nallow_ips = [\"10.0.0.300/8\"]\n[listener.tls]",
        );
    let f = pki.write("many.toml", &toml);
    let (code, _, err) = check(&f);
    assert_eq!(code, 1, "{err}");
    // A key that does not match hides neither the missing CRL nor the bad CIDR.
    for expect in [
        "listener[0].tls.key: ",
        "listener[0].tls.crls[0]: cannot read",
        "listener[0].allow_ips[0]: \"10.0.0.300/8\" is not a CIDR",
    ] {
        assert_eq!(err.matches(expect).count(), 1, "{expect:?} once in:\n{err}");
    }
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn pki_init_writes_a_usable_pki_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["pki", "init"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in sealgate::pki::INIT_FILES {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let again = Command::new(BIN)
        .args(["pki", "init"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    // RSA-2048 for the CA, gateway and client, as openssl reads them.
    let rsa = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["pki", "init", "--key-alg", "rsa2048"])
        .arg(rsa.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.crt", "gateway.crt", "client.crt"] {
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(rsa.path().join(f))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("Public-Key: (2048 bit)") && text.contains("rsaEncryption"),
            "{f}: {text}"
        );
    }
    let verify = Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(rsa.path().join("ca.crt"))
        .arg("-CRLfile")
        .arg(rsa.path().join("ca.crl"))
        .arg(rsa.path().join("client.crt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_each_way_streams_in_under_64_mib_of_gateway_memory() {
    const GIB: u64 = 1 << 30;
    let pki = Pki::new();
    let up = upstream(|req: Request<Incoming>| async move {
        if req.uri().path() == "/download" {
            http::Response::new(Pattern::new(GIB).boxed())
        } else {
            http::Response::new(full(count_body(req.into_body()).await.to_string()))
        }
    })
    .await;
    let toml = config(
        &pki,
        "required",
        &format!("[[route]]\nname = \"bulk\"\nlistener = \"edge\"\nupstream = \"up\"\nmax_body = \"2GiB\"\n\n[upstream.up]\nurl = \"http://{up}\"\nrequest_timeout = \"300s\"\n"),
    );
    let file = pki.write("bulk.toml", &toml);
    let mut gw = spawn_gateway(&file);
    let cfg = pki.etl_client(&[]);

    let t = Instant::now();
    let req = Request::post("/upload")
        .header("host", "localhost")
        .body(Pattern::new(GIB))
        .unwrap();
    let r = send(gw.edge, cfg.clone(), req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, GIB.to_string());
    let upload = t.elapsed();

    let t = Instant::now();
    let tls = tls_connect(gw.edge, cfg).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = s.send_request(get("/download")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count_body(resp.into_body()).await, GIB);
    let download = t.elapsed();

    let peak = peak_rss_kib(gw.child.id());
    println!(
        "1 GiB upload {upload:?}, 1 GiB download {download:?}, gateway peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        peak < 64 * 1024,
        "gateway peak RSS {peak} KiB is over 64 MiB"
    );
    let (_, metrics) = admin_get(gw.admin, "/metrics").await;
    assert!(
        metrics.contains(
            "sealgate_requests_total{outcome=\"ok\",route=\"bulk\",status_class=\"2xx\"} 2"
        ),
        "{metrics}"
    );
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let pki = Pki::new();
    let up = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        http::Response::new(full("finished after SIGTERM"))
    })
    .await;
    let toml = config(
        &pki,
        "required",
        &format!("[[route]]\nname = \"slow\"\nlistener = \"edge\"\nupstream = \"up\"\n\n[upstream.up]\nurl = \"http://{up}\"\n"),
    );
    let file = pki.write("drain.toml", &toml);
    let mut gw = spawn_gateway(&file);
    let cfg = pki.etl_client(&[]);
    let edge = gw.edge;
    let in_flight = tokio::spawn(send(edge, cfg.clone(), get("/batch")));
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(gw.child.id());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        admin_get(gw.admin, "/readyz").await.0,
        503,
        "not ready while draining"
    );
    assert!(
        send(edge, cfg, get("/late")).await.is_err(),
        "new connections refused while draining"
    );
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "finished after SIGTERM");
    let status = tokio::task::spawn_blocking(move || gw.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_drain_cut_short_exits_non_zero() {
    let pki = Pki::new();
    let up = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        http::Response::new(full("too late"))
    })
    .await;
    let toml = config(
        &pki,
        "required",
        &format!("[[route]]\nname = \"slow\"\nlistener = \"edge\"\nupstream = \"up\"\n\n[upstream.up]\nurl = \"http://{up}\"\nrequest_timeout = \"30s\"\n"),
    )
    .replace("grace_period = \"5s\"", "grace_period = \"1s\"");
    let file = pki.write("hup.toml", &toml);
    let mut gw = spawn_gateway(&file);
    let pid = gw.child.id();
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    // SIGHUP reloads (nothing changed here) and the gateway keeps serving.
    let line = gw.wait_event(
        "config_reload",
        &[("trigger", "SIGHUP")],
        Duration::from_secs(10),
    );
    assert_eq!(line["result"], "ok", "{line}");
    assert_eq!(line["changed"], false, "{line}");
    assert_eq!(admin_get(gw.admin, "/healthz").await.0, 200);
    let in_flight = tokio::spawn(send(gw.edge, pki.etl_client(&[]), get("/stuck")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(pid);
    let status = tokio::task::spawn_blocking(move || gw.child.wait().unwrap())
        .await
        .unwrap();
    // The grace period ran out with the request still in flight.
    assert_eq!(status.code(), Some(3));
    assert!(in_flight.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshake_is_one_json_line_naming_the_certificate_and_the_fault() {
    let pki = Pki::new();
    let toml = good_config(&pki);
    let file = pki.write("log.toml", &toml);
    let mut gw = spawn_gateway(&file);
    let mut expired = Leaf::new("old-etl-client", Usage::Client);
    expired.from_days = -60;
    expired.to_days = -3;
    let expired = pki.issue(&expired);
    let cfg = client_tls(&pki.ca.cert_pem, Some(&expired), &[]);
    let _ = send(gw.edge, cfg, get("/")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let l = gw
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no refusal logged");
        if l.contains("TLS handshake refused") {
            break l;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["reason"], "expired", "{line}");
    assert_eq!(v["fault"], "client_certificate", "{line}");
    assert_eq!(v["listener"], "edge");
    assert!(v["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        v["subject"].as_str().unwrap().contains("CN=old-etl-client"),
        "{line}"
    );
    assert!(
        v["issuer"].as_str().unwrap().contains("CN=Test Client CA"),
        "{line}"
    );
    assert_eq!(
        v["fingerprint_sha256"],
        sealgate::fingerprint::Fingerprint::of(&expired.der).to_string()
    );
    let serial = sealgate::hex::upper(
        &sealgate::tls::identity::trim_serial(&expired.serial.to_be_bytes()),
        ":",
    );
    assert!(
        serial.ends_with(v["serial"].as_str().unwrap()),
        "{serial} vs {line}"
    );
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

/// The README's first two steps, as a newcomer runs them: the quickstart config
/// with the committed example certificates, and the README's curl command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quickstart_answers_the_readme_curl_command() {
    if Command::new("curl").arg("--version").output().is_err() {
        println!("SKIPPED: curl binary not found on PATH");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // Same file, ports moved off the fixed ones so the test cannot clash.
    let (edge, admin, echo) = (free(), free(), free());
    let text = std::fs::read_to_string(root.join("policies/quickstart.toml"))
        .unwrap()
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{edge}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:9080", &format!("127.0.0.1:{echo}"));
    let file = root
        .join("policies")
        .join(format!(".quickstart-test-{edge}.toml"));
    std::fs::write(&file, text).unwrap();
    let mut gw = spawn_gateway(&file);
    let _ = std::fs::remove_file(&file);
    // Serving the example PKI does not go unnoticed.
    let example: Vec<_> = gw
        .startup
        .iter()
        .filter(|v| v["event"] == "example_certificate")
        .map(|v| v["role"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        example.contains(&"listener".to_owned()) && example.contains(&"client_ca".to_owned()),
        "{:?}",
        gw.startup
    );
    let curl = move |args: &[&str]| {
        Command::new("curl")
            .current_dir(root)
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap()
    };
    let url = format!("https://localhost:{}/hello", gw.edge.port());
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            curl(&[
                "--cert",
                "certs-example/client.crt",
                "--key",
                "certs-example/client.key",
                "--cacert",
                "certs-example/ca.crt",
                &url,
            ])
        }
    })
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/hello");
    assert!(v["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap()
        .contains("CN=etl-client"));
    // Without a client certificate the handshake is refused, and /metrics says why.
    let refused =
        tokio::task::spawn_blocking(move || curl(&["--cacert", "certs-example/ca.crt", &url]))
            .await
            .unwrap();
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("\"path\""));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = admin_get(gw.admin, "/metrics").await;
        if m.contains("sealgate_tls_handshakes_total{listener=\"etl\",reason=\"no_client_cert\",result=\"refused\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[test]
fn wssec_cli_signs_verifies_explains_and_canonicalizes() {
    let pki = Pki::new();
    let mut l = Leaf::new("cli-signer", Usage::Signer);
    l.o = Some("Acme".into());
    let signer = pki.issue(&l);
    let key = pki.write("signer.key", &signer.key_pem);
    let cert = pki.write("signer.crt", &signer.cert_pem);
    let msg = pki.write(
        "m.xml",
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x:Pay xmlns:x="urn:x">10</x:Pay></soap:Body></soap:Envelope>"#,
    );
    let out = pki.path("signed.xml");
    let run = |args: &[&std::ffi::OsStr]| Command::new(BIN).args(args).output().unwrap();
    let s = run(&[
        "wssec".as_ref(),
        "sign".as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--cert".as_ref(),
        cert.as_os_str(),
        msg.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let ca = pki.path("ca.crt");
    let v = run(&[
        "wssec".as_ref(),
        "verify".as_ref(),
        "--trust".as_ref(),
        ca.as_os_str(),
        out.as_os_str(),
    ]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(String::from_utf8_lossy(&v.stderr).contains("CN=cli-signer"));

    let forged = pki.write(
        "forged.xml",
        &std::fs::read_to_string(&out)
            .unwrap()
            .replace(">10<", ">99<"),
    );
    let e = run(&[
        "wssec".as_ref(),
        "verify".as_ref(),
        "--explain".as_ref(),
        "--trust".as_ref(),
        ca.as_os_str(),
        forged.as_os_str(),
    ]);
    assert_eq!(e.status.code(), Some(1));
    let report = String::from_utf8_lossy(&e.stdout);
    assert!(
        report.contains("part=Body") && report.contains("MISMATCH"),
        "{report}"
    );
    assert!(
        report.contains("<x:Pay xmlns:x=\"urn:x\">99</x:Pay>"),
        "canonical bytes shown: {report}"
    );
    assert!(String::from_utf8_lossy(&e.stderr).contains("wssec_digest_mismatch (wsse:FailedCheck)"));

    let c = run(&[
        "wssec".as_ref(),
        "c14n".as_ref(),
        "--exclusive".as_ref(),
        "--element".as_ref(),
        "Body".as_ref(),
        msg.as_os_str(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&c.stdout),
        r#"<soap:Body xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><x:Pay xmlns:x="urn:x">10</x:Pay></soap:Body>"#
    );
    let missing = run(&[
        "wssec".as_ref(),
        "verify".as_ref(),
        "--trust".as_ref(),
        "/no/such.crt".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
}
