//! The TLS front door: who gets through, and that every refusal has its own
//! reason in /metrics.

use crate::support::*;
use sealgate::pki::{Ca, KeyAlg, Leaf, Usage};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway(pki: &Pki, extra_tls: &str) -> (TestGateway, std::net::SocketAddr) {
    let up = header_echo_upstream().await;
    let toml = config(
        pki,
        "required",
        &format!(
            "{extra_tls}\n[[route]]\nname = \"all\"\nlistener = \"edge\"\nupstream = \"up\"\n\n[upstream.up]\nurl = \"http://{up}\"\n"
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    (gw, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_clients_pass() {
    let pki = Pki::new();
    let (gw, addr) = gateway(&pki, "").await;
    for alg in [KeyAlg::Rsa2048, KeyAlg::EcdsaP256] {
        let client = pki.client("etl-prod", "ETL", alg);
        let r = send(
            addr,
            client_tls(&pki.ca.cert_pem, Some(&client), &[]),
            get("/x"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{alg:?}: {}", r.body);
        let xfcc = r.json()["x-forwarded-client-cert"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(xfcc.contains("CN=etl-prod"), "{xfcc}");
    }
    gw.wait_metric(
        "sealgate_tls_handshakes_total{listener=\"edge\",reason=\"ok\",result=\"ok\"}",
        "2",
    )
    .await;
}

/// Connects with the given client config and reads until the gateway closes,
/// so a refusal that arrives after the client's side of the handshake is seen too.
async fn assert_refused(
    gw: &TestGateway,
    addr: std::net::SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    reason: &str,
) {
    let needle = refused_handshakes(reason);
    let count = |m: String| {
        m.lines()
            .find(|l| l.starts_with(&needle))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = count(gw.metrics().await);
    assert!(!attempt(addr, cfg).await, "{reason}: handshake should fail");
    // Each refusal adds exactly one to its own reason.
    gw.wait_metric(&needle, &(before + 1).to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_client_certificate_has_its_own_reason() {
    let pki = Pki::new();
    let mut revoked = Leaf::new("revoked-client", Usage::Client);
    revoked.serial = 4242;
    let revoked = pki.issue(&revoked);
    let crl = pki.write("ca.crl", &pki.ca.crl(&[4242]).unwrap().pem);
    let (gw, addr) = gateway(&pki, &format!("crls = [{crl:?}]")).await;
    let ca = pki.ca.cert_pem.clone();

    // No certificate at all.
    assert_refused(&gw, addr, client_tls(&ca, None, &[]), "no_client_cert").await;

    // A certificate from a CA the gateway does not trust.
    let other = Ca::new("Some Other CA", "elsewhere", 30).unwrap();
    let stranger = other.issue(&Leaf::new("stranger", Usage::Client)).unwrap();
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&stranger), &[]),
        "unknown_issuer",
    )
    .await;

    // An impostor CA with exactly the trusted CA's name signs a client certificate.
    let impostor = Ca::new("Test Client CA", "sealgate tests", 30).unwrap();
    let forged = impostor.issue(&Leaf::new("forged", Usage::Client)).unwrap();
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&forged), &[]),
        "bad_signature",
    )
    .await;

    // A self-signed client certificate carrying the trusted CA's own name.
    let selfsigned = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Test Client CA");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "sealgate tests");
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.self_signed(&key).unwrap();
        sealgate::pki::Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial: 0,
        }
    };
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&selfsigned), &[]),
        "bad_signature",
    )
    .await;
    // A CA certificate (with its key) presented as a client certificate.
    let other_ca = Ca::new("Another CA", "sealgate tests", 30).unwrap();
    let as_client = sealgate::pki::Issued {
        cert_pem: other_ca.cert_pem.clone(),
        key_pem: other_ca.key_pem.clone(),
        der: Vec::new(),
        key_der: Vec::new(),
        serial: 0,
    };
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&as_client), &[]),
        "bad_certificate",
    )
    .await;

    let mut expired = Leaf::new("expired", Usage::Client);
    expired.from_days = -30;
    expired.to_days = -1;
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&pki.issue(&expired)), &[]),
        "expired",
    )
    .await;

    let mut future = Leaf::new("future", Usage::Client);
    future.from_days = 2;
    future.to_days = 30;
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&pki.issue(&future)), &[]),
        "not_yet_valid",
    )
    .await;

    assert_refused(&gw, addr, client_tls(&ca, Some(&revoked), &[]), "revoked").await;

    let server_only = pki.issue(&Leaf::new("server-only", Usage::ServerOnlyAsClient));
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&server_only), &[]),
        "bad_eku",
    )
    .await;

    // Still open to a good client after all that.
    let good = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    assert!(attempt(addr, client_tls(&ca, Some(&good), &[])).await);
}

/// A ClientHello offering only TLS 1.1 (no supported_versions extension).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    let suites: [u16; 3] = [0xc013, 0xc014, 0x002f];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls11_only_client_is_refused_as_protocol_version() {
    let pki = Pki::new();
    let (gw, addr) = gateway(&pki, "").await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    // Either a fatal alert record (type 21) or a closed connection; never a ServerHello.
    assert!(n == 0 || buf[0] == 21, "unexpected reply {:?}", &buf[..n]);
    gw.wait_metric(
        "sealgate_tls_handshakes_total{listener=\"edge\",reason=\"protocol_version\",result=\"refused\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_only_listener_refuses_tls12_client() {
    let pki = Pki::new();
    let (gw, addr) = gateway(&pki, "min_version = \"1.3\"").await;
    let good = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    let mut cfg = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            r.add(
                rustls::pki_types::CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes())
                    .unwrap(),
            )
            .unwrap();
            r
        })
        .with_no_client_auth();
    cfg.alpn_protocols.clear();
    assert_refused(&gw, addr, std::sync::Arc::new(cfg), "protocol_version").await;
    assert!(attempt(addr, client_tls(&pki.ca.cert_pem, Some(&good), &[])).await);
}

/// The real `openssl s_client` completes a mutual-TLS handshake and gets a 200,
/// and without a certificate it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_handshake() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        println!("SKIPPED: openssl binary not found on PATH");
        return;
    }
    let pki = Pki::new();
    let (gw, addr) = gateway(&pki, "").await;
    let client = pki.client("etl-prod", "ETL", KeyAlg::Rsa2048);
    let cert = pki.write("c.crt", &client.cert_pem);
    let key = pki.write("c.key", &client.key_pem);
    let ca_file = pki.path("ca.crt");
    let run = move |with_cert: bool| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-quiet",
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(&ca_file);
        if with_cert {
            cmd.arg("-cert").arg(&cert).arg("-key").arg(&key);
        }
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /via-openssl HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run(true), run(false)))
        .await
        .unwrap();
    let ok = String::from_utf8_lossy(&out.0.stdout);
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "stdout: {ok}\nstderr: {}",
        String::from_utf8_lossy(&out.0.stderr)
    );
    assert!(ok.contains("/via-openssl"));
    assert!(!String::from_utf8_lossy(&out.1.stdout).contains("HTTP/1.1 200"));
    gw.wait_metric("sealgate_tls_handshakes_total{listener=\"edge\",reason=\"no_client_cert\",result=\"refused\"}", "1")
        .await;
}

/// A certificate like the one Salesforce's Certificate and Key Management
/// makes (self-signed, CA:TRUE, no key usage), valid between the two days.
fn org_cert(cn: &str, from_days: i64, to_days: i64) -> sealgate::pki::Issued {
    let mut l = Leaf::new(cn, Usage::Client);
    l.o = Some("Acme Salesforce Org".into());
    l.alg = KeyAlg::Rsa2048;
    l.from_days = from_days;
    l.to_days = to_days;
    sealgate::pki::self_signed(&l).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_client_certificates_are_trusted_as_themselves() {
    let pki = Pki::new();
    let org = org_cert("acme-org", -1, 365);
    let stale = org_cert("acme-org-old", -30, -1);
    let stranger = org_cert("acme-org", -1, 365);
    let fp = |c: &sealgate::pki::Issued| sealgate::fingerprint::Fingerprint::of(&c.der).to_string();
    // An expired certificate file is refused by check; a fingerprint cannot be.
    let (gw, addr) = gateway(
        &pki,
        &format!(
            "pinned_clients = [{{ fingerprint_sha256 = {:?} }}, {{ fingerprint_sha256 = {:?} }}]",
            fp(&org),
            fp(&stale)
        ),
    )
    .await;
    let ca = pki.ca.cert_pem.clone();
    // Pinned by fingerprint: through, its identity the certificate's own.
    let r = send(addr, client_tls(&ca, Some(&org), &[]), get("/x"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let xfcc = r.json()["x-forwarded-client-cert"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(xfcc.contains("CN=acme-org"), "{xfcc}");
    // Same name, another key: not the pinned certificate.
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&stranger), &[]),
        "bad_certificate",
    )
    .await;
    // A pin does not outlive its certificate.
    assert_refused(&gw, addr, client_tls(&ca, Some(&stale), &[]), "expired").await;
    // The client CA still issues as before.
    let etl = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    assert!(attempt(addr, client_tls(&ca, Some(&etl), &[])).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_may_trust_pinned_clients_only() {
    let pki = Pki::new();
    let org = org_cert("acme-org", -1, 365);
    let org_file = pki.write("org.crt", &org.cert_pem);
    let up = header_echo_upstream().await;
    let toml = config(
        &pki,
        "required",
        &format!(
            "pinned_clients = [{{ cert = {org_file:?} }}]\n[[route]]\nname = \"all\"\nlistener = \"edge\"\nupstream = \"up\"\n\n[upstream.up]\nurl = \"http://{up}\"\n"
        ),
    )
    .replace(&format!("client_ca = {:?}\n", pki.path("ca.crt")), "");
    assert!(!toml.contains("client_ca"), "{toml}");
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    let ca = pki.ca.cert_pem.clone();
    assert!(attempt(addr, client_tls(&ca, Some(&org), &[])).await);
    let etl = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    assert_refused(
        &gw,
        addr,
        client_tls(&ca, Some(&etl), &[]),
        "unknown_issuer",
    )
    .await;
    assert_refused(&gw, addr, client_tls(&ca, None, &[]), "no_client_cert").await;
}

#[test]
fn pinned_clients_settings_that_could_not_work_are_refused() {
    use sealgate::config::Config;
    let pki = Pki::new();
    let org = pki.write("org.crt", &org_cert("acme-org", -1, 365).cert_pem);
    let compile = |tls: &str, client_auth: &str| -> Vec<String> {
        let toml = config(
            &pki,
            client_auth,
            &format!("{tls}\n[[route]]\nname = \"all\"\nlistener = \"edge\"\nupstream = \"up\"\nallow_anonymous = true\n\n[upstream.up]\nurl = \"http://127.0.0.1:9\"\n"),
        );
        let file = pki.write(&format!("c-{}.toml", rand_suffix()), &toml);
        let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
        match sealgate::runtime::Runtime::compile(
            &config,
            std::sync::Arc::new(sealgate::telemetry::metrics::Metrics::new()),
        ) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    };
    let has = |p: &[String], want: &str| {
        assert!(
            p.iter().any(|p| p.contains(want)),
            "want {want:?} in {p:#?}"
        );
    };
    assert!(compile(
        &format!("pinned_clients = [{{ cert = {org:?} }}]"),
        "required"
    )
    .is_empty());
    has(
        &compile(&format!("pinned_clients = [{{ cert = {org:?} }}]"), "off"),
        "listener[0].tls.pinned_clients: pinned_clients is set but client_auth = \"off\"",
    );
    has(
        &compile(
            "pinned_clients = [{ fingerprint_sha256 = \"AB:CD\" }]",
            "required",
        ),
        "listener[0].tls.pinned_clients[0].fingerprint_sha256:",
    );
    has(
        &compile(
            &format!("pinned_clients = [{{ cert = {org:?}, fingerprint_sha256 = \"AB\" }}]"),
            "required",
        ),
        "listener[0].tls.pinned_clients[0]: a pinned client is",
    );
    let stale = pki.write("stale.crt", &org_cert("acme-org-old", -30, -1).cert_pem);
    has(
        &compile(
            &format!("pinned_clients = [{{ cert = {stale:?} }}]"),
            "required",
        ),
        "expired 1 day(s) ago",
    );
    has(
        &compile("pinned_clients = [{ cert = \"/no/such.crt\" }]", "required"),
        "listener[0].tls.pinned_clients[0].cert: cannot read /no/such.crt",
    );
}
