//! WS-Security added and checked by the gateway, through real sockets:
//! `[route.wssec.request] mode = "sign"` signs what callers send (each key
//! reference, a UsernameToken alone), `[route.wssec.response]` verifies or
//! signs the upstream's answers — an answer that fails becomes a 502 fault
//! and none of its bytes reach the caller — and `check` refuses signing
//! settings that could not work.

use crate::support::wssec::{assert_only_additions, policy, refused, text, verify_now};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sealgate::config::Config;
use sealgate::pki::{Ca, Issued, KeyAlg, Leaf, Usage};
use sealgate::runtime::Runtime;
use sealgate::telemetry::metrics::Metrics;
use sealgate::wssec::sign::{sign, SignOptions, SigningKey};
use sealgate::wssec::tokens::{KeySource, MapPasswordStore, Secret, TrustStore};
use sealgate::wssec::verify::Policy;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

const ORDER: &str = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">\n <soapenv:Body>\n  <o:post xmlns:o=\"urn:example:ledger\"><o:amount>100.00</o:amount><o:memo>Grüße</o:memo></o:post>\n </soapenv:Body>\n</soapenv:Envelope>\n";
const ANSWER: &str = "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><o:postResponse xmlns:o=\"urn:example:ledger\"><o:status>BOOKED-UPSTREAM</o:status></o:postResponse></soapenv:Body></soapenv:Envelope>";

fn signer_leaf(ca: &Ca, cn: &str, alg: KeyAlg) -> Issued {
    let mut l = Leaf::new(cn, Usage::Signer);
    l.o = Some("Acme".into());
    l.alg = alg;
    ca.issue(&l).unwrap()
}

/// Writes a key readable by its owner only, as an operator would.
fn write_key(pki: &Pki, name: &str, pem: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = pki.write(name, pem);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    Request::post("/ledger/post")
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"urn:post\"")
        .header("content-length", body.len().to_string())
        .body(Full::new(body))
        .unwrap()
}

/// An upstream that keeps what it received and answers `answer(received)`.
async fn recording_upstream(
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let answer = Arc::new(answer);
    let addr = upstream(move |req: Request<Incoming>| {
        let keep = keep.clone();
        let answer = answer.clone();
        async move {
            let b = req.into_body().collect().await.unwrap().to_bytes().to_vec();
            let out = answer(&b);
            keep.lock().unwrap().push(b);
            let mut r = http::Response::new(full(out));
            r.headers_mut()
                .insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
            r
        }
    })
    .await;
    (addr, seen)
}

async fn gateway(pki: &Pki, up: std::net::SocketAddr, wssec: &str) -> TestGateway {
    let toml = config(
        pki,
        "required",
        &format!(
            "{}\n{wssec}\n[upstream.up]\nurl = \"http://{up}\"\n",
            route("ledger", "/ledger/", "")
        ),
    );
    TestGateway::start(pki.dir.path(), &toml).await
}

fn sign_stage(pki: &Pki, who: &Issued, extra: &str) -> String {
    let key = write_key(pki, &format!("signer-{}.key", rand_suffix()), &who.key_pem);
    let cert = pki.write(&format!("signer-{}.crt", rand_suffix()), &who.cert_pem);
    format!("[route.wssec.request]\nmode = \"sign\"\nkey = {key:?}\ncert = {cert:?}\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_signed_for_the_upstream_with_each_key_reference() {
    let pki = Pki::new();
    for (alg, key_ref, source) in [
        (KeyAlg::Rsa2048, "bst", KeySource::BinarySecurityToken),
        (KeyAlg::EcdsaP256, "issuer_serial", KeySource::IssuerSerial),
        (KeyAlg::Rsa3072, "ski", KeySource::SubjectKeyIdentifier),
        (KeyAlg::EcdsaP256, "thumbprint", KeySource::ThumbprintSha1),
    ] {
        let who = signer_leaf(&pki.ca, "gateway-signer", alg);
        let (up, seen) = recording_upstream(|b| b.to_vec()).await;
        let extra = format!("key_reference = \"{key_ref}\"\nttl = \"2m\"");
        let gw = gateway(&pki, up, &sign_stage(&pki, &who, &extra)).await;
        let r = send(gw.addr("edge"), pki.etl_client(&[]), post(ORDER))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{key_ref}: {}", r.body);
        let got = seen.lock().unwrap().pop().unwrap();
        // What the upstream received verifies, by the configured key, and is
        // the caller's message plus the Security header and Body Id only.
        let v = verify_now(&got, &policy(&pki.ca, &[&who]), SystemTime::now())
            .unwrap_or_else(|e| panic!("{key_ref}: {e}\n{}", text(&got)));
        let s = v.signer.unwrap();
        assert_eq!(s.key_source, source, "{key_ref}");
        assert_eq!(s.der, who.der);
        let ts = v.timestamp.unwrap();
        assert_eq!(
            ts.expires.duration_since(ts.created).unwrap().as_secs(),
            120
        );
        assert_only_additions(ORDER, &got, key_ref);
        assert_eq!(
            r.body.as_bytes(),
            &got[..],
            "the echo is the signed message"
        );
        gw.wait_metric(
            "sealgate_wssec_signatures_total{direction=\"request\",reason=\"ok\",result=\"ok\",route=\"ledger\"}",
            "1",
        )
        .await;
        let m = gw.metrics().await;
        assert!(
            m.contains("sealgate_certificate_not_after_timestamp_seconds{name=\"ledger\",role=\"signer\",subject=\"O=Acme,CN=gateway-signer\"}"),
            "the signing certificate's expiry is exported:\n{m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_signed_gets_a_fault_and_is_not_forwarded() {
    let pki = Pki::new();
    let who = signer_leaf(&pki.ca, "gateway-signer", KeyAlg::EcdsaP256);
    let (up, seen) = recording_upstream(|b| b.to_vec()).await;
    let gw = gateway(&pki, up, &sign_stage(&pki, &who, "")).await;
    let addr = gw.addr("edge");
    // Already secured: a caller's signed message is not signed over again.
    let mut o = SignOptions::new(SystemTime::now());
    o.ttl = std::time::Duration::from_secs(60);
    let key = SigningKey::from_pem(who.key_pem.as_bytes()).unwrap();
    let signed = sign(ORDER.as_bytes(), &key, &who.der, &o).unwrap();
    for (body, reason) in [
        (signed, "wssec_already_secured"),
        (b"<not-soap/>".to_vec(), "wssec_bad_envelope"),
        (
            ORDER
                .replace("<o:amount>", "<!-- hidden --><o:amount>")
                .into_bytes(),
            "wssec_comment_in_signed_part",
        ),
    ] {
        let r = send(addr, pki.etl_client(&[]), post(body)).await.unwrap();
        assert_eq!(r.status, 500, "{reason}: {}", r.body);
        assert!(
            r.body.contains("soapenv:Fault") || r.body.contains(":Fault"),
            "{}",
            r.body
        );
        gw.wait_metric(
            &format!("sealgate_wssec_signatures_total{{direction=\"request\",reason=\"{reason}\",result=\"failed\",route=\"ledger\"}}"),
            "1",
        )
        .await;
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_token_alone_from_a_file_or_the_environment() {
    let pki = Pki::new();
    let secret = write_key(&pki, "erp.password", "Wörkday-pä55\n");
    std::env::set_var("SEALGATE_TEST_ERP_PASSWORD", "env-pä55");
    for (source, digest, password) in [
        (format!("password_file = {secret:?}"), false, "Wörkday-pä55"),
        (
            "password_env = \"SEALGATE_TEST_ERP_PASSWORD\"".to_owned(),
            true,
            "env-pä55",
        ),
    ] {
        let (up, seen) = recording_upstream(|b| b.to_vec()).await;
        let stage = format!(
            "[route.wssec.request]\nmode = \"sign\"\n[route.wssec.request.username_token]\nuser = \"erp-batch\"\n{source}\ndigest = {digest}\n"
        );
        let gw = gateway(&pki, up, &stage).await;
        let r = send(gw.addr("edge"), pki.etl_client(&[]), post(ORDER))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let got = seen.lock().unwrap().pop().unwrap();
        let t = text(&got);
        assert!(
            t.contains("<wsse:Username>erp-batch</wsse:Username>"),
            "{t}"
        );
        assert_eq!(t.contains(password), !digest, "{t}");
        let mut p = Policy::new(TrustStore::new());
        p.require_signed.clear();
        p.require_username_token = true;
        let mut store = MapPasswordStore::new();
        store.insert("erp-batch", Secret::new(password));
        p.passwords = Some(Arc::new(store));
        let v = verify_now(&got, &p, SystemTime::now()).unwrap();
        assert_eq!(v.username.as_deref(), Some("erp-batch"));
    }
}

fn signed_answer(who: &Issued, body: &str) -> Vec<u8> {
    let key = SigningKey::from_pem(who.key_pem.as_bytes()).unwrap();
    sign(
        body.as_bytes(),
        &key,
        &who.der,
        &SignOptions::new(SystemTime::now()),
    )
    .unwrap()
}

/// The upstream answers each request as the caller asks in `x-answer`.
async fn answering_upstream(good: Issued, stranger: Issued) -> std::net::SocketAddr {
    let big = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><x>{}BOOKED-UPSTREAM</x></soapenv:Body></soapenv:Envelope>",
        "a".repeat(70_000)
    );
    let good = Arc::new(good);
    let stranger = Arc::new(stranger);
    upstream(move |req: Request<Incoming>| {
        let (good, stranger, big) = (good.clone(), stranger.clone(), big.clone());
        async move {
            let how = req.headers()["x-answer"].to_str().unwrap().to_owned();
            let enc = req.headers().get("accept-encoding").cloned();
            let out = match how.as_str() {
                "signed" => signed_answer(&good, ANSWER),
                "tampered" => String::from_utf8(signed_answer(&good, ANSWER))
                    .unwrap()
                    .replace("BOOKED-UPSTREAM", "REFUSED-UPSTREAM")
                    .into_bytes(),
                "unsigned" => ANSWER.as_bytes().to_vec(),
                "stranger" => signed_answer(&stranger, ANSWER),
                "html" => b"<html>BOOKED-UPSTREAM 503 from a load balancer</html>".to_vec(),
                "big" => big.into_bytes(),
                _ => unreachable!(),
            };
            let mut r = http::Response::new(full(out));
            r.headers_mut()
                .insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
            if let Some(e) = enc {
                r.headers_mut().insert("x-seen-accept-encoding", e);
            }
            r
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_fail_verification_become_502_faults_and_never_reach_the_caller() {
    let pki = Pki::new();
    let good = signer_leaf(&pki.ca, "ledger-service", KeyAlg::EcdsaP256);
    let other_ca = Ca::new("Someone Else", "Elsewhere", 30).unwrap();
    let stranger = signer_leaf(&other_ca, "ledger-service", KeyAlg::EcdsaP256);
    let up = answering_upstream(good, stranger).await;
    let stage = format!(
        "[route.wssec.response]\nmode = \"verify\"\ntrust = {:?}\nmax_body = \"64KiB\"\n",
        pki.path("ca.crt")
    );
    let gw = gateway(&pki, up, &stage).await;
    let addr = gw.addr("edge");
    let ask = |how: &str| {
        let mut r = post(ORDER);
        r.headers_mut().insert("x-answer", how.parse().unwrap());
        r
    };
    let r = send(addr, pki.etl_client(&[]), ask("signed"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("BOOKED-UPSTREAM"), "{}", r.body);
    assert!(
        !r.body.contains("wsse:Security"),
        "the verified header is removed: {}",
        r.body
    );
    assert_eq!(r.headers["x-seen-accept-encoding"], "identity");
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"response\",reason=\"ok\",result=\"ok\",route=\"ledger\"}",
        "1",
    )
    .await;

    let mut refusals = std::collections::HashMap::new();
    for (how, reason, verdict) in [
        (
            "tampered",
            "wssec_response_refused",
            Some("wssec_digest_mismatch"),
        ),
        (
            "unsigned",
            "wssec_response_refused",
            Some("wssec_no_security_header"),
        ),
        (
            "stranger",
            "wssec_response_refused",
            Some("wssec_untrusted_signer"),
        ),
        ("html", "wssec_response_refused", Some("wssec_bad_envelope")),
        ("big", "upstream_response_too_large", None),
    ] {
        let r = send(addr, pki.etl_client(&[]), ask(how)).await.unwrap();
        assert_eq!(r.status, 502, "{how}: {}", r.body);
        assert!(
            !r.body.contains("UPSTREAM"),
            "{how}: upstream bytes reached the caller: {}",
            r.body
        );
        assert!(r.body.contains("Fault"), "{how}: {}", r.body);
        let n = refusals.entry(reason).or_insert(0);
        *n += 1;
        let stage = if reason.starts_with("wssec") {
            "wssec"
        } else {
            "upstream"
        };
        gw.wait_metric(
            &format!("sealgate_rejections_total{{reason=\"{reason}\",route=\"ledger\",stage=\"{stage}\"}}"),
            &n.to_string(),
        )
        .await;
        if let Some(v) = verdict {
            gw.wait_metric(
                &format!("sealgate_wssec_verifications_total{{direction=\"response\",reason=\"{v}\",result=\"failed\",route=\"ledger\"}}"),
                "1",
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_signed_for_a_caller_that_wants_them_signed() {
    let pki = Pki::new();
    let who = signer_leaf(&pki.ca, "gateway-answers", KeyAlg::Rsa2048);
    let (up, _) = recording_upstream(|_| ANSWER.as_bytes().to_vec()).await;
    let key = write_key(&pki, "answers.key", &who.key_pem);
    let cert = pki.write("answers.crt", &who.cert_pem);
    let stage =
        format!("[route.wssec.response]\nmode = \"sign\"\nkey = {key:?}\ncert = {cert:?}\n");
    let gw = gateway(&pki, up, &stage).await;
    let r = send(gw.addr("edge"), pki.etl_client(&[]), post(ORDER))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v = verify_now(r.body.as_bytes(), &policy(&pki.ca, &[]), SystemTime::now()).unwrap();
    assert_eq!(v.signer.unwrap().der, who.der);
    assert_only_additions(ANSWER, r.body.as_bytes(), "signed answer");
    assert_eq!(
        r.headers
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some(r.body.len().to_string())
    );
    gw.wait_metric(
        "sealgate_wssec_signatures_total{direction=\"response\",reason=\"ok\",result=\"ok\",route=\"ledger\"}",
        "1",
    )
    .await;
    // A tampered copy of what the caller got is refused: the signature holds.
    let tampered = r.body.replace("BOOKED-UPSTREAM", "BOOKED-ELSEWHERE");
    refused(
        tampered.as_bytes(),
        &policy(&pki.ca, &[]),
        SystemTime::now(),
        "wssec_digest_mismatch",
    );
}

/// Compiles a config in this process: its problems, or its warnings.
fn compile(pki: &Pki, wssec: &str) -> Result<Vec<String>, Vec<String>> {
    let toml = config(
        pki,
        "required",
        &format!(
            "{}\n{wssec}\n[upstream.up]\nurl = \"http://127.0.0.1:9\"\n",
            route("ledger", "/ledger/", "")
        ),
    );
    let file = pki.write(&format!("c-{}.toml", rand_suffix()), &toml);
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    match Runtime::compile(&config, Arc::new(Metrics::new())) {
        Ok(rt) => Ok(rt.warnings.iter().map(|w| w.to_string()).collect()),
        Err(p) => Err(p.iter().map(|p| p.to_string()).collect()),
    }
}

#[track_caller]
fn problem(pki: &Pki, wssec: &str, expected: &str) {
    match compile(pki, wssec) {
        Ok(_) => panic!("accepted, expected {expected:?}:\n{wssec}"),
        Err(p) => assert!(
            p.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {p:#?}"
        ),
    }
}

#[test]
fn check_refuses_signing_settings_that_could_not_work() {
    let pki = Pki::new();
    let good = signer_leaf(&pki.ca, "gateway-signer", KeyAlg::EcdsaP256);
    let other = signer_leaf(&pki.ca, "someone-else", KeyAlg::EcdsaP256);
    let key = write_key(&pki, "good.key", &good.key_pem);
    let cert = pki.write("good.crt", &good.cert_pem);
    let other_cert = pki.write("other.crt", &other.cert_pem);
    let stage = |k: &std::path::Path, c: &std::path::Path, extra: &str| {
        format!("[route.wssec.request]\nmode = \"sign\"\nkey = {k:?}\ncert = {c:?}\n{extra}")
    };
    assert_eq!(compile(&pki, &stage(&key, &cert, "")), Ok(vec![]));
    problem(
        &pki,
        &stage(&key, &other_cert, ""),
        "route[0].wssec.request.key: the key is not the one of the certificate O=Acme,CN=someone-else",
    );
    let mut expired = Leaf::new("expired-signer", Usage::Signer);
    (expired.from_days, expired.to_days) = (-30, -1);
    let expired = pki.issue(&expired);
    let ek = write_key(&pki, "expired.key", &expired.key_pem);
    let ec = pki.write("expired.crt", &expired.cert_pem);
    problem(&pki, &stage(&ek, &ec, ""), "route[0].wssec.request.cert");
    let mut tls_only = Leaf::new("tls-only", Usage::EncryptionOnly);
    tls_only.alg = KeyAlg::EcdsaP256;
    let tls_only = pki.issue(&tls_only);
    let tk = write_key(&pki, "tls.key", &tls_only.key_pem);
    let tc = pki.write("tls.crt", &tls_only.cert_pem);
    problem(&pki, &stage(&tk, &tc, ""), "without digitalSignature");
    for (extra, expected) in [
        (
            "ttl = \"0s\"",
            "route[0].wssec.request.ttl: a Timestamp lifetime must be above zero",
        ),
        ("ttl = \"25h\"", "at most 1day"),
        (
            "trust = \"ca.crt\"",
            "route[0].wssec.request.trust: trust is a setting of mode = \"verify\"",
        ),
        (
            "max_ttl = \"1h\"",
            "max_ttl is a setting of mode = \"verify\"",
        ),
        (
            "sign_headers = [\"wsa:To\"]",
            "route[0].wssec.request.sign_headers[0]",
        ),
    ] {
        problem(&pki, &stage(&key, &cert, extra), expected);
    }
    problem(
        &pki,
        "[route.wssec.request]\nmode = \"sign\"\n",
        "mode = \"sign\" needs key and cert",
    );
    problem(
        &pki,
        &format!("[route.wssec.request]\nmode = \"sign\"\nkey = {key:?}\n"),
        "a signing key needs its certificate",
    );
    problem(
        &pki,
        &format!("[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nkey = {key:?}\n"),
        "key is a setting of mode = \"sign\"",
    );
    problem(
        &pki,
        &format!(
            "[route.wssec.response]\nmode = \"verify\"\ntrust = {:?}\nbind_identity = \"subject\"\n",
            pki.path("ca.crt")
        ),
        "route[0].wssec.response.bind_identity",
    );
    let bad_pem = pki.write(
        "bad.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    problem(
        &pki,
        &stage(&bad_pem, &cert, ""),
        "route[0].wssec.request.key",
    );
}

#[test]
fn a_key_others_can_read_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let good = signer_leaf(&pki.ca, "gateway-signer", KeyAlg::EcdsaP256);
    let cert = pki.write("good.crt", &good.cert_pem);
    let key = pki.write("open.key", &good.key_pem);
    for (mode, who) in [(0o644, "everyone"), (0o640, "its group")] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let w = compile(
            &pki,
            &format!("[route.wssec.request]\nmode = \"sign\"\nkey = {key:?}\ncert = {cert:?}\n"),
        )
        .unwrap();
        assert!(
            w.iter()
                .any(|w| w.starts_with("route[0].wssec.request.key: ")
                    && w.contains(&format!("readable by {who}"))
                    && w.contains("chmod 600")),
            "{w:?}"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let w = compile(
        &pki,
        &format!("[route.wssec.request]\nmode = \"sign\"\nkey = {key:?}\ncert = {cert:?}\n"),
    )
    .unwrap();
    assert!(w.iter().all(|w| !w.contains("open.key")), "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charset_or_encoding_said_another_way_or_twice_is_refused_before_signing() {
    let pki = Pki::new();
    let who = signer_leaf(&pki.ca, "gateway-signer", KeyAlg::EcdsaP256);
    let (up, seen) = recording_upstream(|b| b.to_vec()).await;
    let gw = gateway(&pki, up, &sign_stage(&pki, &who, "")).await;
    let with = |headers: &[(&str, &str)]| {
        let mut r = post(ORDER);
        r.headers_mut().remove("content-type");
        for (k, v) in headers {
            r.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    };
    let xml = ("content-type", "text/xml");
    for (what, headers) in [
        (
            "Charset=UTF-7",
            vec![("content-type", "text/xml; Charset=UTF-7")],
        ),
        (
            "charset = utf-16",
            vec![("content-type", "text/xml; charset = utf-16")],
        ),
        (
            "two content types",
            vec![
                ("content-type", "text/xml; charset=utf-8"),
                ("content-type", "text/xml; charset=utf-7"),
            ],
        ),
        (
            "identity then gzip",
            vec![
                xml,
                ("content-encoding", "identity"),
                ("content-encoding", "gzip"),
            ],
        ),
        (
            "identity, gzip",
            vec![xml, ("content-encoding", "identity, gzip")],
        ),
    ] {
        let r = send(gw.addr("edge"), pki.etl_client(&[]), with(&headers))
            .await
            .unwrap();
        assert_eq!(r.status, 415, "{what}: {}", r.body);
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was forwarded");
    for (what, headers) in [
        (
            "Charset = \"UTF-8\"",
            vec![("content-type", "text/xml; Charset = \"UTF-8\"")],
        ),
        (
            "no charset, identity",
            vec![xml, ("content-encoding", "identity")],
        ),
    ] {
        let r = send(gw.addr("edge"), pki.etl_client(&[]), with(&headers))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{what}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_about_the_old_bytes_go_when_a_stage_rewrites_the_body() {
    let pki = Pki::new();
    let who = signer_leaf(&pki.ca, "gateway-signer", KeyAlg::EcdsaP256);
    let seen_headers = Arc::new(Mutex::new(Vec::new()));
    let keep = seen_headers.clone();
    let up = upstream(move |req: Request<Incoming>| {
        let keep = keep.clone();
        async move {
            keep.lock().unwrap().push(req.headers().clone());
            let mut r = http::Response::new(full(ANSWER));
            let h = r.headers_mut();
            h.insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
            h.insert("etag", "\"answer-v1\"".parse().unwrap());
            h.insert("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==".parse().unwrap());
            h.insert("repr-digest", "sha-256=:AAAA:".parse().unwrap());
            r
        }
    })
    .await;
    let key = write_key(&pki, "answers.key", &who.key_pem);
    let cert = pki.write("answers.crt", &who.cert_pem);
    let stages = format!(
        "{}[route.wssec.response]\nmode = \"sign\"\nkey = {key:?}\ncert = {cert:?}\n",
        sign_stage(&pki, &who, "")
    );
    let gw = gateway(&pki, up, &stages).await;
    let mut req = post(ORDER);
    for (k, v) in [
        ("content-md5", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("digest", "sha-256=AAAA"),
        ("content-digest", "sha-256=:AAAA:"),
    ] {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    let r = send(gw.addr("edge"), pki.etl_client(&[]), req)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for h in ["etag", "content-md5", "repr-digest"] {
        assert!(r.headers.get(h).is_none(), "{h} reached the caller");
    }
    let up_headers = seen_headers.lock().unwrap().pop().unwrap();
    for h in ["content-md5", "digest", "content-digest"] {
        assert!(up_headers.get(h).is_none(), "{h} reached the upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_on_a_verifying_route_is_cut_at_the_routes_deadline() {
    let pki = Pki::new();
    let up = upstream(|_req: Request<Incoming>| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            for _ in 0..100 {
                if tx
                    .send(Ok(hyper::body::Frame::data(Bytes::from_static(b" "))))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        });
        let mut r = http::Response::new(body.boxed());
        r.headers_mut()
            .insert("content-type", "text/xml; charset=utf-8".parse().unwrap());
        r
    })
    .await;
    let toml = config(
        &pki,
        "required",
        &format!(
            "{}[route.wssec.response]\nmode = \"verify\"\ntrust = {:?}\n\n[upstream.up]\nurl = \"http://{up}\"\n",
            route("ledger", "/ledger/", "max_duration = \"1s\""),
            pki.path("ca.crt")
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let start = std::time::Instant::now();
    let r = send(gw.addr("edge"), pki.etl_client(&[]), post(ORDER))
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"max_duration\",route=\"ledger\",stage=\"transfer\"}",
        "1",
    )
    .await;
}

#[test]
fn pinned_only_verification_refuses_settings_that_need_a_chain() {
    let pki = Pki::new();
    let s = signer_leaf(&pki.ca, "ledger-service", KeyAlg::EcdsaP256);
    let cert = pki.write("pinned.crt", &s.cert_pem);
    let crl = pki.write("ca.crl", &pki.ca.crl(&[]).unwrap().pem);
    let base = format!("[route.wssec.response]\nmode = \"verify\"\nsigners = [{{ cert = {cert:?}, pinned = true }}");
    assert!(compile(&pki, &format!("{base}]\n")).is_ok());
    problem(
        &pki,
        &format!("{base}, {{ cert = {cert:?} }}]\n"),
        "route[0].wssec.response.signers: a signer that is not pinned must chain to trust",
    );
    problem(
        &pki,
        &format!("{base}]\ncrls = [{crl:?}]\n"),
        "route[0].wssec.response.crls: CRLs are checked for signers that chain to trust",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_removes_the_security_header_without_judging_it() {
    let pki = Pki::new();
    let who = signer_leaf(&pki.ca, "etl-signer", KeyAlg::EcdsaP256);
    let key = SigningKey::from_pem(who.key_pem.as_bytes()).unwrap();
    let signed = sign(
        ORDER.as_bytes(),
        &key,
        &who.der,
        &SignOptions::new(SystemTime::now()),
    )
    .unwrap();
    // Tampered after signing: strip does not look at the signature.
    let tampered = text(&signed).replace("100.00", "999.00");
    let (up, seen) = recording_upstream(|b| b.to_vec()).await;
    let gw = gateway(&pki, up, "[route.wssec.request]\nmode = \"strip\"\n").await;
    let r = send(gw.addr("edge"), pki.etl_client(&[]), post(tampered.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let got = String::from_utf8(seen.lock().unwrap().pop().unwrap()).unwrap();
    assert!(!got.contains("Security"), "{got}");
    assert!(got.contains("<o:amount>999.00</o:amount>"), "{got}");
    let start = tampered.find("<wsse:Security").unwrap();
    let end = tampered.find("</wsse:Security>").unwrap() + "</wsse:Security>".len();
    assert_eq!(got, format!("{}{}", &tampered[..start], &tampered[end..]));
    // A message without one passes as it is; one that is no envelope does not.
    send(gw.addr("edge"), pki.etl_client(&[]), post(ORDER))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().pop().unwrap(), ORDER.as_bytes());
    let r = send(
        gw.addr("edge"),
        pki.etl_client(&[]),
        post("<html>not soap</html>"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("Fault"), "{}", r.body);
    assert!(seen.lock().unwrap().is_empty());
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"wssec_bad_envelope\",route=\"ledger\",stage=\"wssec\"}",
        "1",
    )
    .await;
    let m = gw.metrics().await;
    for family in ["verifications", "signatures"] {
        let ok = format!("sealgate_wssec_{family}_total{{direction=\"request\",reason=\"ok\",result=\"ok\",route=\"ledger\"}}");
        assert_eq!(metric_value(&m, &ok), 0.0, "{m}");
    }
    // Only the header for this receiver: another actor's stays.
    let other = ORDER.replace(
        " <soapenv:Body>",
        " <soapenv:Header><wsse:Security xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\" soapenv:actor=\"urn:example:ledger\"><wsse:UsernameToken><wsse:Username>hop</wsse:Username></wsse:UsernameToken></wsse:Security></soapenv:Header>\n <soapenv:Body>",
    );
    send(gw.addr("edge"), pki.etl_client(&[]), post(other.clone()))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().pop().unwrap(), other.as_bytes());
}

#[test]
fn strip_takes_only_its_own_settings() {
    let pki = Pki::new();
    assert!(compile(&pki, "[route.wssec.request]\nmode = \"strip\"\nactor = \"urn:example:gw\"\nmax_body = \"1MiB\"\n").is_ok());
    problem(
        &pki,
        &format!("[route.wssec.request]\nmode = \"strip\"\ntrust = {:?}\n", pki.path("ca.crt")),
        "route[0].wssec.request.trust: trust is a setting of mode = \"verify\", and this stage is mode = \"strip\"",
    );
    problem(
        &pki,
        "[route.wssec.response]\nmode = \"strip\"\nttl = \"1m\"\n",
        "route[0].wssec.response.ttl: ttl is a setting of mode = \"sign\"",
    );
}
