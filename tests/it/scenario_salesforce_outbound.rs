//! policies/salesforce-outbound-to-accounting.toml, run as shipped by the
//! sealgate binary: a Salesforce Outbound Message comes in over mutual TLS
//! from an allowed address with the org's pinned self-signed certificate, is
//! signed and forwarded to an accounting service that verifies it with
//! libxmlsec1 (python-zeep, tests/interop/accounting_service.py) and answers a
//! signed Ack, which the gateway verifies before the caller gets it. Only the
//! values every deployment sets differ from the committed file: addresses,
//! the upstream URL and the org certificate's fingerprint (this run's PKI).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::support::interop::{self, script, PYTHON};
use crate::support::process::{sigterm, spawn_gateway};
use crate::support::wssec::SALESFORCE_OUTBOUND;
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use sealgate::fingerprint::Fingerprint;
use sealgate::pki::{self, KeyAlg, Leaf, Usage};

const POLICY: &str = "policies/salesforce-outbound-to-accounting.toml";
const IP_RANGES: &str = "policies/salesforce-ip-ranges.json";

fn notification(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .header("content-length", SALESFORCE_OUTBOUND.len().to_string())
        .body(Full::new(Bytes::from_static(
            SALESFORCE_OUTBOUND.as_bytes(),
        )))
        .unwrap()
}

fn rsa(cn: &str, usage: Usage) -> Leaf {
    let mut l = Leaf::new(cn, usage);
    l.o = Some("Acme".into());
    l.alg = KeyAlg::Rsa2048;
    l
}

fn write_private(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// The committed policy with this run's deployment values; every other line
/// is the file's own.
fn deployed(upstream_port: u16, org_fingerprint: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(POLICY)).unwrap();
    let committed_fp = text
        .split("fingerprint_sha256 = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let mut out = text.clone();
    for (from, to) in [
        ("\"127.0.0.1:9901\"", "\"127.0.0.1:0\"".to_owned()),
        ("\"0.0.0.0:8443\"", "\"127.0.0.1:0\"".to_owned()),
        (
            "\"https://accounting.example.internal:9443\"",
            format!("\"https://localhost:{upstream_port}\""),
        ),
        (committed_fp.as_str(), org_fingerprint.to_owned()),
    ] {
        assert_eq!(text.matches(from).count(), 1, "{from} in {POLICY}");
        out = out.replace(from, &to);
    }
    let changed = text
        .lines()
        .zip(out.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 4, "only the deployment values differ");
    out
}

/// The accounting service, and the verdict lines it prints.
struct Accounting {
    child: std::process::Child,
    port: u16,
    lines: Receiver<String>,
}

impl Accounting {
    fn start(dir: &Path) -> Accounting {
        let f = |n: &str| dir.join(n);
        let mut child = Command::new(PYTHON)
            .arg(script("accounting_service.py"))
            .args([
                f("accounting.crt"),
                f("accounting.key"),
                f("gateway-signer.crt"),
                f("signer.key"),
                f("signer.crt"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("accounting service did not start");
        let port = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{first}"));
        Accounting { child, port, lines }
    }

    fn verdict(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("no verdict from the accounting service")
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_outbound_message_signed_for_accounting_and_its_ack_verified() {
    if interop::python().is_none() {
        return;
    }
    let pki = Pki::new();
    let root = pki.dir.path();
    let certs = root.join("certs-example");
    let policies = root.join("policies");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    let gateway_signer = pki.issue(&rsa("sealgate-gateway-signer", Usage::Signer));
    let accounting_signer = pki.issue(&rsa("accounting-signer", Usage::Signer));
    let org = pki::self_signed(&rsa("acme-salesforce-org", Usage::Client)).unwrap();
    for (name, pem) in [
        ("ca.crt", &pki.ca.cert_pem),
        ("gateway.crt", &pki.server.cert_pem),
        ("accounting.crt", &pki.server.cert_pem),
        ("gateway-signer.crt", &gateway_signer.cert_pem),
        ("signer.crt", &accounting_signer.cert_pem),
    ] {
        std::fs::write(certs.join(name), pem).unwrap();
    }
    for (name, pem) in [
        ("gateway.key", &pki.server.key_pem),
        ("accounting.key", &pki.server.key_pem),
        ("gateway-signer.key", &gateway_signer.key_pem),
        ("signer.key", &accounting_signer.key_pem),
    ] {
        write_private(&certs.join(name), pem);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        repo.join(IP_RANGES),
        policies.join("salesforce-ip-ranges.json"),
    )
    .unwrap();

    let accounting = Accounting::start(&certs);
    let policy = policies.join("salesforce-outbound-to-accounting.toml");
    std::fs::write(
        &policy,
        deployed(accounting.port, &Fingerprint::of(&org.der).to_string()),
    )
    .unwrap();
    let check = Command::new(crate::support::process::BIN)
        .args(["check", "--config"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut gw = spawn_gateway(&policy);
    let salesforce = client_tls(&pki.ca.cert_pem, Some(&org), &[]);

    // The notification reaches the service signed; the service verified it
    // with libxmlsec1 and its signed Ack comes back verified.
    let r = send(
        gw.edge,
        salesforce.clone(),
        notification("/salesforce/outbound/accounts"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("<Ack>true</Ack>"), "{}", r.body);
    assert!(r.body.contains("notificationsResponse"), "{}", r.body);
    assert_eq!(
        accounting.verdict(),
        "VERIFIED /salesforce/outbound/accounts 04l5g00000BcDeFAAV"
    );

    // An answer changed after signing, or not signed at all, never reaches
    // Salesforce as an Ack: a 502 fault, so Salesforce retries later.
    for (path, reason) in [
        (
            "/salesforce/outbound/tamper-answer",
            "wssec_digest_mismatch",
        ),
        (
            "/salesforce/outbound/unsigned-answer",
            "wssec_no_security_header",
        ),
    ] {
        let r = send(gw.edge, salesforce.clone(), notification(path))
            .await
            .unwrap();
        assert_eq!(r.status, 502, "{path}: {}", r.body);
        assert!(r.body.contains("Fault"), "{path}: {}", r.body);
        assert!(!r.body.contains("<Ack>"), "{path}: {}", r.body);
        assert!(accounting
            .verdict()
            .starts_with(&format!("VERIFIED {path} ")));
        let (_, m) = admin_get(gw.admin, "/metrics").await;
        assert!(
            m.contains(&format!("sealgate_wssec_verifications_total{{direction=\"response\",reason=\"{reason}\",result=\"failed\",route=\"outbound-to-accounting\"}} 1")),
            "{m}"
        );
    }
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert!(
        m.contains("sealgate_wssec_signatures_total{direction=\"request\",reason=\"ok\",result=\"ok\",route=\"outbound-to-accounting\"} 3"),
        "{m}"
    );

    // The service is no rubber stamp: the same message unsigned is refused.
    let direct = tls_connect(
        format!("127.0.0.1:{}", accounting.port).parse().unwrap(),
        client_tls(&pki.ca.cert_pem, None, &[]),
    )
    .await
    .unwrap();
    let r = send_over(direct, notification("/salesforce/outbound/accounts"))
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(accounting
        .verdict()
        .starts_with("REJECTED /salesforce/outbound/accounts: "));

    // Only the pinned org certificate opens the door: not another self-signed
    // certificate with the org's name, nor one from a CA the gateway knows.
    let impostor = pki::self_signed(&rsa("acme-salesforce-org", Usage::Client)).unwrap();
    let etl = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    for who in [&impostor, &etl] {
        let r = send(
            gw.edge,
            client_tls(&pki.ca.cert_pem, Some(who), &[]),
            notification("/salesforce/outbound/accounts"),
        )
        .await;
        assert!(r.is_err(), "{r:?}");
    }
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());

    // Addresses outside the IP ranges file are turned away at accept.
    std::fs::write(
        policies.join("salesforce-ip-ranges.json"),
        "{\"prefixes\": [{\"ip_prefix\": [\"192.0.2.0/24\"]}]}",
    )
    .unwrap();
    let mut gw = spawn_gateway(&policy);
    let r = send(
        gw.edge,
        salesforce,
        notification("/salesforce/outbound/accounts"),
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert!(m.contains("reason=\"ip_not_allowed\""), "{m}");
    assert!(
        accounting.lines.try_recv().is_err(),
        "nothing reached the service"
    );
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}
