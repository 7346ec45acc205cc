//! WS-Security verification on a route, through real sockets: the upstream
//! gets the verified message without its Security header; forged, replayed
//! and mismatched messages get SOAP faults with WS-Security fault codes.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use sealgate::pki::{Issued, Leaf, Usage};
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

const SOAP11: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body><acct:Post xmlns:acct="urn:acct"><amount>100</amount></acct:Post></soap:Body></soap:Envelope>"#;
const SOAP12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header/><env:Body><acct:Post xmlns:acct="urn:acct"><amount>7</amount></acct:Post></env:Body></env:Envelope>"#;

fn soap_post(body: Vec<u8>, soap12: bool) -> Request<Full<Bytes>> {
    let ct = if soap12 {
        "application/soap+xml; charset=utf-8"
    } else {
        "text/xml; charset=utf-8"
    };
    Request::post("/services/Soap/class/Ledger")
        .header("host", "localhost")
        .header("content-type", ct)
        .header("soapaction", "\"\"")
        .header("content-length", body.len().to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// An upstream that answers with the body it received.
async fn body_echo() -> std::net::SocketAddr {
    upstream(|req: Request<Incoming>| async move {
        use http_body_util::BodyExt;
        let declared = req
            .headers()
            .get("content-length")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let b = req.into_body().collect().await.unwrap().to_bytes();
        let mut r = http::Response::new(full(b.clone()));
        r.headers_mut()
            .insert("x-upstream-content-length", declared.parse().unwrap());
        r
    })
    .await
}

/// The "ledger" route verifying requests (with `route_extra` and `wssec`
/// in its tables), then `more`, in front of a body echo.
async fn ledger_config(pki: &Pki, route_extra: &str, wssec: &str, more: &str) -> String {
    let up = body_echo().await;
    config(
        pki,
        "required",
        &format!(
            "[[route]]\nname = \"ledger\"\nlistener = \"edge\"\nupstream = \"up\"\n{route_extra}\nmatch = {{ path_prefix = \"/services/Soap/\" }}\n[route.wssec.request]\nmode = \"verify\"\ntrust = {:?}\n{wssec}\n\n{more}[upstream.up]\nurl = \"http://{up}\"\n",
            pki.path("ca.crt")
        ),
    )
}

async fn gateway(pki: &Pki, wssec: &str) -> (TestGateway, std::net::SocketAddr) {
    let toml = ledger_config(pki, "", wssec, "").await;
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    (gw, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_message_reaches_the_upstream_without_its_security_header() {
    let pki = Pki::new();
    let (gw, addr) = gateway(&pki, "").await;
    let msg = signed(SOAP11, &signer(&pki, "accounting-signer"));
    let r = send(addr, pki.etl_client(&[]), soap_post(msg.clone(), false))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("wsse:Security"), "{}", r.body);
    assert!(r.body.contains("<amount>100</amount>"));
    // Everything but the Security header is byte-for-byte what the client sent.
    let text = String::from_utf8(msg).unwrap();
    let (start, end) = (
        text.find("<wsse:Security").unwrap(),
        text.find("</wsse:Security>").unwrap(),
    );
    let expected = format!(
        "{}{}",
        &text[..start],
        &text[end + "</wsse:Security>".len()..]
    );
    assert_eq!(r.body, expected);
    assert_eq!(
        r.headers["x-upstream-content-length"],
        expected.len().to_string().as_str()
    );
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"ok\",result=\"ok\",route=\"ledger\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_messages_get_wss_faults_with_the_request_id() {
    let pki = Pki::new();
    let (gw, addr) = gateway(&pki, "").await;
    let client = pki.etl_client(&[]);
    let msg = signed(SOAP11, &signer(&pki, "accounting-signer"));

    let forged = String::from_utf8(msg.clone())
        .unwrap()
        .replace(">100<", ">900<");
    let r = send(addr, client.clone(), soap_post(forged.into_bytes(), false))
        .await
        .unwrap();
    assert_eq!(r.status, 500, "SOAP 1.1 faults travel as HTTP 500");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    assert!(
        r.body.contains("<faultcode>wsse:FailedCheck</faultcode>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\""));
    assert!(r.body.contains(r.headers["x-request-id"].to_str().unwrap()));
    // The detailed reason goes to metrics and logs, not to the caller.
    assert!(!r.body.contains("digest_mismatch"), "{}", r.body);
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_digest_mismatch\",result=\"failed\",route=\"ledger\"}",
        "1",
    )
    .await;
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"wssec_digest_mismatch\",route=\"ledger\",stage=\"wssec\"}",
        "1",
    )
    .await;

    assert_eq!(
        send(addr, client.clone(), soap_post(msg.clone(), false))
            .await
            .unwrap()
            .status,
        200
    );
    let replay = send(addr, client.clone(), soap_post(msg, false))
        .await
        .unwrap();
    assert_eq!(replay.status, 500);
    assert!(
        replay
            .body
            .contains("<faultcode>wsse:InvalidSecurity</faultcode>"),
        "{}",
        replay.body
    );
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_replay\",result=\"failed\",route=\"ledger\"}",
        "1",
    )
    .await;

    // Unsigned: no Security header at all.
    let r = send(
        addr,
        client.clone(),
        soap_post(SOAP11.as_bytes().to_vec(), false),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500);

    // A signer from another CA.
    let other = Pki::new();
    let stranger = signed(SOAP11, &signer(&other, "stranger"));
    let r = send(addr, client, soap_post(stranger, false))
        .await
        .unwrap();
    assert!(
        r.body
            .contains("<faultcode>wsse:FailedAuthentication</faultcode>"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap12_faults_are_400_with_the_wss_code_as_subcode() {
    let pki = Pki::new();
    let (_gw, addr) = gateway(&pki, "").await;
    let msg = String::from_utf8(signed(SOAP12, &signer(&pki, "accounting-signer"))).unwrap();
    let ok = send(
        addr,
        pki.etl_client(&[]),
        soap_post(msg.clone().into_bytes(), true),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let forged = msg.replace("<amount>7<", "<amount>70<");
    let r = send(
        addr,
        pki.etl_client(&[]),
        soap_post(forged.into_bytes(), true),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/soap+xml"));
    assert!(r.body.contains("<env:Value>env:Sender</env:Value><env:Subcode><env:Value>wsse:FailedCheck</env:Value></env:Subcode>"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_buffer_has_its_own_ceiling() {
    let pki = Pki::new();
    let big = SOAP11.replace("<amount>100</amount>", &"<amount>100</amount>".repeat(800));
    // Streaming off (the default): above the buffer, 413.
    let (_gw, addr) = gateway(&pki, "max_body = \"8KiB\"").await;
    let msg = signed(&big, &signer(&pki, "accounting-signer"));
    assert!(msg.len() > 8192);
    let r = send(addr, pki.etl_client(&[]), soap_post(msg, false))
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    assert!(
        r.body.contains("<sg:reason>body_too_large</sg:reason>"),
        "{}",
        r.body
    );
    // With streaming on, the same message streams past the buffer and verifies.
    let (_gw, addr) = gateway(&pki, "max_body = \"8KiB\"\nmax_streamed_body = \"1MiB\"").await;
    let msg = signed(&big, &signer(&pki, "accounting-signer"));
    let r = send(addr, pki.etl_client(&[]), soap_post(msg, false))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.matches("<amount>100</amount>").count(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_bound_to_the_tls_client_by_subject_or_map() {
    let pki = Pki::new();
    // The ETL client's certificate subject, in RFC 4514 order, is O=Acme,OU=ETL,CN=etl-prod.
    let (_gw, addr) = gateway(
        &pki,
        "bind_identity = \"map\"\nidentity_map = { \"O=Acme, OU=ETL, CN=etl-prod\" = \"O=Acme, CN=etl-signer\" }",
    )
    .await;
    let good = signed(SOAP11, &signer(&pki, "etl-signer"));
    let r = send(addr, pki.etl_client(&[]), soap_post(good, false))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let wrong = signed(SOAP11, &signer(&pki, "someone-else"));
    let r = send(addr, pki.etl_client(&[]), soap_post(wrong, false))
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(
        r.body
            .contains("<faultcode>wsse:FailedAuthentication</faultcode>"),
        "{}",
        r.body
    );
}

/// A gateway with several verifying routes on one listener, each to its own upstream.
async fn multi(
    pki: &Pki,
    routes: &[(&str, &str, &str, &str)],
) -> (TestGateway, std::net::SocketAddr) {
    let mut toml = String::new();
    for (name, prefix, upstream_url, extra) in routes {
        toml.push_str(&format!(
            "[[route]]\nname = \"{name}\"\nlistener = \"edge\"\nupstream = \"{name}\"\nmatch = {{ path_prefix = \"{prefix}\" }}\n[route.wssec.request]\nmode = \"verify\"\ntrust = {:?}\n{extra}\n\n[upstream.{name}]\nurl = \"{upstream_url}\"\nconnect_timeout = \"1s\"\n\n",
            pki.path("ca.crt")
        ));
    }
    let gw = TestGateway::start(pki.dir.path(), &config(pki, "required", &toml)).await;
    let addr = gw.addr("edge");
    (gw, addr)
}

fn post_to(path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_seen_once_across_routes_unless_it_was_never_delivered() {
    let pki = Pki::new();
    let up = format!("http://{}", body_echo().await);
    let down = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", s.local_addr().unwrap())
    };
    let (_gw, addr) = multi(
        &pki,
        &[
            ("a", "/a/", &up, ""),
            ("b", "/b/", &up, ""),
            ("down", "/down/", &down, ""),
        ],
    )
    .await;
    let c = pki.etl_client(&[]);
    let msg = signed(SOAP11, &signer(&pki, "accounting-signer"));
    // Not delivered (upstream down): the sender may retry elsewhere.
    assert_eq!(
        send(addr, c.clone(), post_to("/down/x", msg.clone()))
            .await
            .unwrap()
            .status,
        502
    );
    assert_eq!(
        send(addr, c.clone(), post_to("/a/x", msg.clone()))
            .await
            .unwrap()
            .status,
        200
    );
    // Delivered once: a replay through another route is still a replay.
    let r = send(addr, c, post_to("/b/x", msg)).await.unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_ecdsa_signature_over_the_same_signed_info_is_a_replay() {
    use base64::Engine;
    use sealgate::wssec::c14n::{canonicalize_element, Method};
    let pki = Pki::new();
    let (_gw, addr) = gateway(&pki, "").await;
    let who = signer(&pki, "accounting-signer"); // ECDSA P-256 (the pki default)
    let msg = String::from_utf8(signed(SOAP11, &who)).unwrap();
    assert_eq!(
        send(
            addr,
            pki.etl_client(&[]),
            soap_post(msg.clone().into_bytes(), false)
        )
        .await
        .unwrap()
        .status,
        200
    );
    // Sign the very same canonical SignedInfo again: ECDSA gives a new, valid value.
    let mut si = Vec::new();
    canonicalize_element(
        msg.as_bytes(),
        &Default::default(),
        &Method::exclusive(),
        |e| e.local_name() == "SignedInfo",
        &mut si,
    )
    .unwrap();
    use rustls::pki_types::pem::PemObject;
    let pk = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(who.key_pem.as_bytes()).unwrap();
    let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pk.secret_pkcs8_der(),
    )
    .unwrap();
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), &si)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (start, end) = (
        msg.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len(),
        msg.find("</ds:SignatureValue>").unwrap(),
    );
    assert_ne!(&msg[start..end], b64.encode(sig.as_ref()));
    let again = format!(
        "{}{}{}",
        &msg[..start],
        b64.encode(sig.as_ref()),
        &msg[end..]
    );
    let r = send(
        addr,
        pki.etl_client(&[]),
        soap_post(again.into_bytes(), false),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    _gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_replay\",result=\"failed\",route=\"ledger\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_ambiguous_actions_and_slow_bodies_are_refused() {
    let pki = Pki::new();
    let (_gw, addr) = gateway(&pki, "read_timeout = \"500ms\"").await;
    let c = pki.etl_client(&[]);
    let msg = signed(SOAP11, &signer(&pki, "accounting-signer"));
    let mut gz = soap_post(msg.clone(), false);
    gz.headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    assert_eq!(send(addr, c.clone(), gz).await.unwrap().status, 415);
    let mut latin = soap_post(msg.clone(), false);
    latin.headers_mut().insert(
        "content-type",
        "text/xml; charset=iso-8859-1".parse().unwrap(),
    );
    assert_eq!(send(addr, c.clone(), latin).await.unwrap().status, 415);
    let mut two = soap_post(msg.clone(), false);
    two.headers_mut()
        .append("soapaction", "\"urn:other\"".parse().unwrap());
    let r = send(addr, c.clone(), two).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("ambiguous_soap_action"), "{}", r.body);

    // A body that never finishes arriving.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tls_connect(addr, c).await.unwrap();
    s.write_all(b"POST /services/Soap/x HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/xml\r\ncontent-length: 5000\r\n\r\n<soap:Envelope")
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_the_header_and_binding_by_subject() {
    let pki = Pki::new();
    let (_gw, addr) = gateway(
        &pki,
        "forward_security_header = true\nbind_identity = \"subject\"",
    )
    .await;
    // The signer shares the ETL client's subject (O=Acme,OU=ETL,CN=etl-prod).
    let mut same = Leaf::new("etl-prod", Usage::Signer);
    same.ou = Some("ETL".into());
    same.o = Some("Acme".into());
    let msg = signed(SOAP11, &pki.issue(&same));
    let r = send(addr, pki.etl_client(&[]), soap_post(msg.clone(), false))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body.as_bytes(),
        &msg[..],
        "forwarded byte for byte, header included"
    );
    let other = signed(SOAP11, &signer(&pki, "someone-else"));
    let r = send(addr, pki.etl_client(&[]), soap_post(other, false))
        .await
        .unwrap();
    assert!(r.body.contains("wsse:FailedAuthentication"), "{}", r.body);
}

/// A captured, validly signed message with a big, busy Body swapped in: the
/// signature verifies, then the Body must be digested — far above the size
/// worked inline, and enough work (about 1 s in a debug build) for other
/// clients to come and go while it runs. With how long that work takes here.
fn heavy_message(pki: &Pki, who: &Issued) -> (Vec<u8>, std::time::Duration) {
    let small = String::from_utf8(signed(SOAP11, who)).unwrap();
    let attrs: String = (0..24).map(|j| format!(" a{j}=\"v{j}\"")).collect();
    let busy: String = (0..50_000)
        .map(|i| format!("<l{attrs}><m>{i}</m></l>"))
        .collect();
    let heavy = small
        .replacen("<amount>100</amount>", &busy, 1)
        .into_bytes();
    assert!(heavy.len() < 16 << 20);
    assert!(heavy.len() > sealgate::runtime::wssec_stage::INLINE_MAX);
    let mut trust = sealgate::wssec::tokens::TrustStore::new();
    trust.add_anchors_pem(pki.ca.cert_pem.as_bytes()).unwrap();
    let policy = sealgate::wssec::verify::Policy::new(trust);
    let t0 = std::time::Instant::now();
    let e = sealgate::wssec::verify::verify(
        &heavy,
        &policy,
        SystemTime::now(),
        &sealgate::wssec::replay::NoReplayCache,
    )
    .unwrap_err();
    let work = t0.elapsed();
    assert_eq!(e.reason(), "wssec_digest_mismatch");
    assert!(
        work > std::time::Duration::from_millis(400),
        "only {work:?} of work"
    );
    (heavy, work)
}

/// Sends `msg` as a SOAP 1.1 POST to the ledger route, not waiting for the answer.
async fn write_soap<S: AsyncWriteExt + Unpin>(s: &mut S, msg: &[u8]) {
    s.write_all(
        format!(
            "POST /services/Soap/class/Ledger HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"\"\r\nContent-Length: {}\r\n\r\n",
            msg.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(msg).await.unwrap();
    s.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_is_worked_off_the_event_loops_so_every_worker_answers_meanwhile() {
    let pki = Pki::new();
    let who = signer(&pki, "etl-signer");
    let toml = ledger_config(&pki, "", "", &route("plain", "/plain/", "")).await;
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    let (heavy, work) = heavy_message(&pki, &who);
    let cfg = pki.etl_client(&[]);
    let mut a = tls_connect(addr, cfg.clone()).await.unwrap();
    write_soap(&mut a, &heavy).await;
    tokio::time::sleep(work / 10).await;
    // Connections kept open after their answer, twice as many as there are
    // workers: dealt to the least loaded, one of them must share A's worker.
    // Each is served while A's message is still worked.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut kept = Vec::new();
    for i in 0..2 * workers {
        let t = std::time::Instant::now();
        let mut s = tls_connect(addr, cfg.clone()).await.unwrap();
        s.write_all(b"GET /plain/ping HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut s).await;
        assert!(r.starts_with(b"HTTP/1.1 200"), "{r:?}");
        assert!(
            t.elapsed() < work / 4,
            "connection {i} waited {:?} beside {work:?} of work",
            t.elapsed()
        );
        kept.push(s);
    }
    // A small message is worked on its event loop, and verifies.
    let r = send(addr, cfg.clone(), soap_post(signed(SOAP11, &who), false))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // And A's answer is the fault for its tampered Body.
    let answer = String::from_utf8_lossy(&read_response(&mut a).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer.contains("<faultcode>wsse:FailedCheck</faultcode>"),
        "{answer}"
    );
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_digest_mismatch\",result=\"failed\",route=\"ledger\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_slot_stays_taken_until_the_work_ends_even_when_the_client_leaves() {
    let pki = Pki::new();
    let who = signer(&pki, "etl-signer");
    let toml = ledger_config(&pki, "queue_timeout = \"200ms\"", "max_concurrent = 1", "").await;
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    let (heavy, work) = heavy_message(&pki, &who);
    let cfg = pki.etl_client(&[]);
    // Client A sends it and leaves as soon as it is sent.
    let mut a = tls_connect(addr, cfg.clone()).await.unwrap();
    write_soap(&mut a, &heavy).await;
    tokio::time::sleep(work / 3).await;
    drop(a);
    // B arrives while A's verification still runs: with the slot taken by
    // work nobody waits for, B is turned away rather than a second one started.
    let r = send(addr, cfg.clone(), soap_post(signed(SOAP11, &who), false))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("route_busy"), "{}", r.body);
    // Once A's work ends the slot is free again.
    let t = std::time::Instant::now();
    loop {
        let r = send(addr, cfg.clone(), soap_post(signed(SOAP11, &who), false))
            .await
            .unwrap();
        if r.status == 200 {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(gw);
}
