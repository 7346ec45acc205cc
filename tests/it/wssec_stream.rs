//! Verified and signed requests too large to hold, through real sockets:
//! above the stage's `max_body` the message is verified (or signed) as it
//! arrives while it is spooled encrypted, then forwarded byte for byte
//! (minus its Security header, or with the one the gateway wrote); one that
//! fails has nothing forwarded, and the spool is gone on every path.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::Full;
use hyper::body::Incoming;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MARKER: &str = "ACME-PLAINTEXT-LEDGER-LINE";

/// A SOAP message of about `mib` MiB: many lines, and one text node of
/// 3 MiB (longer than any window, so it is cut inside text).
fn large_message(mib: usize) -> String {
    let line = format!("<acct:line n=\"1\">{MARKER} 0123456789 &amp; caf\u{e9}</acct:line>\r\n");
    let lines = line.repeat((mib << 20) / line.len());
    let blob = "QUJD".repeat((3 << 20) / 4);
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body><acct:Post xmlns:acct="urn:acct"><acct:blob>{blob}</acct:blob>{lines}<amount>100</amount></acct:Post></soap:Body></soap:Envelope>"#
    )
}

/// What the upstream must get: the message without its Security header.
fn without_security(msg: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(msg).unwrap();
    let start = text.find("<wsse:Security").unwrap();
    let end = text.find("</wsse:Security>").unwrap() + "</wsse:Security>".len();
    [&msg[..start], &msg[end..]].concat()
}

/// Each body received, with its declared Content-Length.
type Received = Arc<std::sync::Mutex<Vec<(Vec<u8>, String)>>>;

struct Upstream {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    bodies: Received,
}

/// Keeps what it received (and its declared length); answers its size.
async fn recording_upstream() -> Upstream {
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, b) = (requests.clone(), bodies.clone());
    let addr = upstream(move |req: Request<Incoming>| {
        let (r, b) = (r.clone(), b.clone());
        async move {
            use http_body_util::BodyExt;
            r.fetch_add(1, Ordering::SeqCst);
            let declared = req
                .headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = body.len();
            b.lock().unwrap().push((body.to_vec(), declared));
            http::Response::new(full(format!("{n}")))
        }
    })
    .await;
    Upstream {
        addr,
        requests,
        bodies,
    }
}

async fn gateway(pki: &Pki, up: &Upstream, spool: &Path, max_total: &str) -> TestGateway {
    let verify = format!("mode = \"verify\"\ntrust = {:?}", pki.path("ca.crt"));
    gateway_with(pki, up.addr, spool, max_total, &verify, "").await
}

/// A route whose request stage is `stage` (its mode and keys), streaming
/// above 1 MiB.
async fn gateway_with(
    pki: &Pki,
    up: std::net::SocketAddr,
    spool: &Path,
    max_total: &str,
    stage: &str,
    upstream: &str,
) -> TestGateway {
    let toml = config(
        pki,
        "required",
        &format!(
            "[[route]]\nname = \"ledger\"\nlistener = \"edge\"\nupstream = \"up\"\nmatch = {{ path_prefix = \"/services/Soap/\" }}\n[route.wssec.request]\n{stage}\nmax_body = \"1 MiB\"\nmax_streamed_body = \"1 GiB\"\n\n[upstream.up]\nurl = \"http://{up}\"\n{upstream}\n\n[spool]\ndir = {:?}\nmax_total = \"{max_total}\"\n",
            spool,
        ),
    );
    TestGateway::start(pki.dir.path(), &toml).await
}

fn post<B>(body: B, length: Option<usize>) -> Request<B> {
    let mut r = Request::post("/services/Soap/class/Ledger")
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"");
    if let Some(n) = length {
        r = r.header("content-length", n.to_string());
    }
    r.body(body).unwrap()
}

fn spool_dir(pki: &Pki) -> PathBuf {
    pki.dir.path().join("spool")
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_signed_message_streams_through_and_arrives_byte_identical() {
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let gw = gateway(&pki, &up, &dir, "1 GiB").await;
    let addr = gw.addr("edge");
    let msg = signed(&large_message(10), &signer(&pki, "accounting-signer"));
    let expected = without_security(&msg);

    // Declared up front: streamed from the first byte.
    let r = send(
        addr,
        pki.etl_client(&[]),
        post(Full::new(Bytes::from(msg.clone())), Some(msg.len())),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, expected.len().to_string());

    // Chunked, no length: buffered up to max_body, then streamed. (A fresh
    // signature: the first is now a replay.)
    let msg2 = signed(&large_message(10), &signer(&pki, "accounting-signer"));
    let expected2 = without_security(&msg2);
    let (tx, body) = channel_body();
    let feed = {
        let msg2 = msg2.clone();
        tokio::spawn(async move {
            for piece in msg2.chunks(100_003) {
                let frame = Frame::data(Bytes::copy_from_slice(piece));
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        })
    };
    let r = send(addr, pki.etl_client(&[]), post(body, None))
        .await
        .unwrap();
    feed.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    let got = up.bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert!(got[0].0 == expected, "the first message arrived altered");
    assert_eq!(got[0].1, expected.len().to_string(), "Content-Length");
    assert!(got[1].0 == expected2, "the chunked message arrived altered");
    assert_eq!(got[1].1, expected2.len().to_string());
    gw.wait_metric(
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"ok\",result=\"ok\",route=\"ledger\"}",
        "2",
    )
    .await;
    wait_for("the spool emptied", || spool_files(&dir).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_is_signed_as_it_streams_and_verifies_at_the_upstream() {
    use sealgate::wssec::verify::verify;
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let who = signer(&pki, "gateway-signer");
    let key = pki.write("signer.key", &who.key_pem);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cert = pki.write("signer.crt", &who.cert_pem);
    let stage = format!("mode = \"sign\"\nkey = {key:?}\ncert = {cert:?}");
    let gw = gateway_with(&pki, up.addr, &dir, "1 GiB", &stage, "").await;
    let addr = gw.addr("edge");
    // Its last element names a prefix in a value, bound where the canonical
    // form leaves it out: signed in a second pass over the spool.
    let msg = large_message(10).replace(
        "<amount>",
        r#"<amount xmlns:v="urn:v" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="v:Money">"#,
    );
    let n = msg.len();
    let r = send(
        addr,
        pki.etl_client(&[]),
        post(Full::new(Bytes::from(msg.clone())), Some(n)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // Past max_body with a body that breaks at its end: refused, nothing sent.
    let broken = msg.replace("</soap:Envelope>", "</soap:Envelop>");
    let r = send(
        addr,
        pki.etl_client(&[]),
        post(Full::new(Bytes::from(broken.clone())), Some(broken.len())),
    )
    .await
    .unwrap();
    assert!(
        r.status.as_u16() >= 400,
        "a broken message was signed: {}",
        r.status
    );

    let got = up.bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "only the whole message went upstream");
    let (body, declared) = &got[0];
    assert_eq!(declared, &body.len().to_string(), "Content-Length");
    let p = crate::support::wssec::policy(&pki.ca, &[&who]);
    let now = std::time::SystemTime::now();
    let v = verify(body, &p, now, &sealgate::wssec::replay::NoReplayCache)
        .unwrap_or_else(|e| panic!("the upstream got a message that does not verify: {e}"));
    assert_eq!(v.signer.unwrap().der, who.der);
    let signed_text = String::from_utf8_lossy(&body[..4096.min(body.len())]).into_owned();
    assert!(
        signed_text.contains("PrefixList=\"soap v\""),
        "{signed_text}"
    );
    // The streaming verifier agrees, and the Body's content is the caller's.
    crate::support::wssec::streamed(body, &p, now, 65_521, 1 << 16).unwrap();
    let content = |m: &[u8]| {
        let t = std::str::from_utf8(m).unwrap();
        let from = t.find("<soap:Body").unwrap();
        let from = from + t[from..].find('>').unwrap();
        t[from..].to_owned()
    };
    assert!(
        content(body) == content(msg.as_bytes()),
        "the Body arrived altered"
    );
    gw.wait_metric(
        "sealgate_wssec_signatures_total{direction=\"request\",reason=\"ok\",result=\"ok\",route=\"ledger\"}",
        "1",
    )
    .await;
    wait_for("the spool emptied", || spool_files(&dir).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstreams_time_to_answer_counts_from_the_end_of_the_replay() {
    // An upstream that takes its time reading the start (longer than its
    // request_timeout), then the rest at once, and answers at once: the
    // timeout is for the answer after the whole body, not for the upload
    // from the spool.
    let addr = upstream(|req: Request<Incoming>| async move {
        use http_body_util::BodyExt;
        let mut body = req.into_body();
        let (mut n, mut frames) = (0, 0);
        while let Some(f) = body.frame().await {
            n += f.unwrap().into_data().map_or(0, |d| d.len());
            frames += 1;
            // Slow at first (1.5 s in all), then at full speed.
            if frames <= 25 {
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
        http::Response::new(full(format!("{n}")))
    })
    .await;
    let pki = Pki::new();
    let dir = spool_dir(&pki);
    let verify = format!("mode = \"verify\"\ntrust = {:?}", pki.path("ca.crt"));
    let gw = gateway_with(
        &pki,
        addr,
        &dir,
        "1 GiB",
        &verify,
        "request_timeout = \"1s\"",
    )
    .await;
    let msg = signed(&large_message(10), &signer(&pki, "accounting-signer"));
    let n = msg.len();
    let t0 = std::time::Instant::now();
    let r = send(
        gw.addr("edge"),
        pki.etl_client(&[]),
        post(Full::new(Bytes::from(msg.clone())), Some(n)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, without_security(&msg).len().to_string());
    assert!(
        t0.elapsed() > Duration::from_secs(1),
        "the upstream read too fast to show anything: {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_chunked_upload_has_the_stream_read_timeout_not_the_read_timeout() {
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let stage = format!(
        "mode = \"verify\"\ntrust = {:?}\nread_timeout = \"1s\"",
        pki.path("ca.crt")
    );
    let gw = gateway_with(&pki, up.addr, &dir, "1 GiB", &stage, "").await;
    let msg = signed(&large_message(0), &signer(&pki, "accounting-signer"));
    let (tx, body) = channel_body();
    let feed = {
        let msg = msg.clone();
        // Its first MiB (max_body) arrives after more than read_timeout.
        tokio::spawn(async move {
            for piece in msg.chunks(128 << 10) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let frame = Frame::data(Bytes::copy_from_slice(piece));
                if tx.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        })
    };
    let r = send(gw.addr("edge"), pki.etl_client(&[]), post(body, None))
        .await
        .unwrap();
    feed.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(up.bodies.lock().unwrap()[0].0 == without_security(&msg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_tampered_in_its_last_byte_has_nothing_forwarded() {
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let gw = gateway(&pki, &up, &dir, "1 GiB").await;
    let addr = gw.addr("edge");
    let msg = signed(&large_message(6), &signer(&pki, "accounting-signer"));
    // The last character of content before the Body closes.
    let at = msg.windows(9).rposition(|w| w == b"</amount>").unwrap() - 1;
    let mut tampered = msg.clone();
    tampered[at] = b'1' + (tampered[at] - b'0' + 1) % 9;
    for (m, status) in [
        (tampered, 500),
        (forge_signature_value(&msg), 500),
        (msg, 200),
    ] {
        let n = m.len();
        let r = send(
            addr,
            pki.etl_client(&[]),
            post(Full::new(Bytes::from(m)), Some(n)),
        )
        .await
        .unwrap();
        assert_eq!(r.status, status, "{}", r.body);
        if status == 500 {
            assert!(r.body.contains("wsse:FailedCheck"), "{}", r.body);
            assert_eq!(
                up.requests.load(Ordering::SeqCst),
                0,
                "a byte reached the upstream"
            );
        }
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
    for reason in ["wssec_digest_mismatch", "wssec_bad_signature"] {
        gw.wait_metric(
            &format!("sealgate_wssec_verifications_total{{direction=\"request\",reason=\"{reason}\",result=\"failed\",route=\"ledger\"}}"),
            "1",
        )
        .await;
    }
    wait_for("the spool emptied", || spool_files(&dir).is_empty()).await;
}

/// `msg` with the first character of its SignatureValue changed: a
/// well-formed value that does not verify.
fn forge_signature_value(msg: &[u8]) -> Vec<u8> {
    let open = b"SignatureValue>";
    let at = msg.windows(open.len()).position(|w| w == open).unwrap() + open.len();
    let mut forged = msg.to_vec();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    forged
}

#[test]
fn a_forged_signature_value_is_known_at_the_body_before_it_is_digested() {
    use sealgate::wssec::replay::NoReplayCache;
    use sealgate::wssec::stream::StreamVerifier;
    let pki = Pki::new();
    let who = signer(&pki, "accounting-signer");
    let p = crate::support::wssec::policy(&pki.ca, &[&who]);
    let msg = signed(&large_message(2), &who);
    let body = msg.windows(10).position(|w| w == b"<soap:Body").unwrap();
    let now = std::time::SystemTime::now();
    for (m, forged) in [(forge_signature_value(&msg), true), (msg, false)] {
        let mut v = StreamVerifier::new(&p);
        v.feed(&m[..body]).unwrap();
        assert!(!v.will_refuse(), "judged before the Body arrived");
        // The SignatureValue is checked once the Body's start tag is read,
        // before any of its content is canonicalized.
        v.feed(&m[body..body + 4096]).unwrap();
        assert_eq!(v.will_refuse(), forged, "forged {forged}");
        v.feed(&m[body + 4096..]).unwrap();
        assert_eq!(v.will_refuse(), forged, "forged {forged}");
        match v.finish(now, &NoReplayCache, &|_| Ok(())) {
            Err(e) if forged => assert_eq!(e.reason().as_str(), "wssec_bad_signature"),
            Ok(_) if !forged => {}
            other => panic!("forged {forged}: {:?}", other.map(|_| ())),
        }
    }
}

type Upload = (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    tokio::task::JoinHandle<Result<Reply, String>>,
);

/// Sends the first `part` bytes of `msg` (declaring all of it); returns the
/// sender and the request in flight.
async fn send_part(addr: std::net::SocketAddr, pki: &Pki, msg: &[u8], part: usize) -> Upload {
    let (tx, body) = channel_body();
    let client = pki.etl_client(&[]);
    let req = post(body, Some(msg.len()));
    let sent = tokio::spawn(async move { send(addr, client, req).await });
    for piece in msg[..part].chunks(65_536) {
        tx.send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
            .await
            .unwrap();
    }
    (tx, sent)
}

/// [`send_part`], then waits until the spool file holds most of the part.
async fn upload_part(
    addr: std::net::SocketAddr,
    pki: &Pki,
    dir: &Path,
    msg: &[u8],
    part: usize,
) -> Upload {
    let (tx, sent) = send_part(addr, pki, msg, part).await;
    wait_for("the spool file filled", || {
        spool_files(dir)
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() as usize > part / 2))
    })
    .await;
    (tx, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_holds_no_plaintext_and_is_removed_when_the_client_goes_or_the_gateway_stops() {
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let gw = gateway(&pki, &up, &dir, "1 GiB").await;
    let addr = gw.addr("edge");
    let msg = signed(&large_message(8), &signer(&pki, "accounting-signer"));

    let (tx, sent) = upload_part(addr, &pki, &dir, &msg, 6 << 20).await;
    let files = spool_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let sealed = std::fs::read(&files[0]).unwrap();
    let plain_marker = MARKER.as_bytes();
    assert!(
        !sealed
            .windows(plain_marker.len())
            .any(|w| w == plain_marker),
        "the spool holds the message in clear"
    );
    assert!(!sealed.windows(8).any(|w| w == b"QUJDQUJD"));
    // The client goes away mid-message.
    drop(tx);
    let _ = sent.await;
    wait_for("the spool emptied after the client left", || {
        spool_files(&dir).is_empty()
    })
    .await;

    // The gateway stops mid-message.
    let (tx, sent) = upload_part(addr, &pki, &dir, &msg, 4 << 20).await;
    assert_eq!(spool_files(&dir).len(), 1);
    let TestGateway { gw, .. } = gw;
    let stopping = tokio::spawn(gw.shutdown());
    drop(tx);
    let _ = sent.await;
    let _ = stopping.await;
    wait_for("the spool emptied at shutdown", || {
        spool_files(&dir).is_empty()
    })
    .await;
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_message_is_read_to_its_end_but_not_spooled() {
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let gw = gateway(&pki, &up, &dir, "1 GiB").await;
    let addr = gw.addr("edge");
    let msg = forge_signature_value(&signed(
        &large_message(8),
        &signer(&pki, "accounting-signer"),
    ));
    // 6 MiB sent: the stream's back-pressure has the gateway read most of
    // it, which a spooling gateway would have written out (as
    // `upload_part` waits for on an unforged message).
    let (tx, sent) = send_part(addr, &pki, &msg, 6 << 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for f in spool_files(&dir) {
        let len = std::fs::metadata(&f).map_or(0, |m| m.len());
        assert!(len < 1 << 20, "a forged message spooled {len} bytes");
    }
    for piece in msg[6 << 20..].chunks(65_536) {
        tx.send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
            .await
            .unwrap();
    }
    drop(tx);
    let r = sent.await.unwrap().unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("wsse:FailedCheck"), "{}", r.body);
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
    wait_for("the spool emptied", || spool_files(&dir).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_fit_the_spool_gets_503_with_retry_after() {
    let pki = Pki::new();
    let up = recording_upstream().await;
    let dir = spool_dir(&pki);
    let gw = gateway(&pki, &up, &dir, "4 MiB").await;
    let addr = gw.addr("edge");
    let msg = signed(&large_message(6), &signer(&pki, "accounting-signer"));
    let n = msg.len();
    let r = send(
        addr,
        pki.etl_client(&[]),
        post(Full::new(Bytes::from(msg)), Some(n)),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"spool_full\",route=\"ledger\",stage=\"wssec\"}",
        "1",
    )
    .await;
    assert!(spool_files(&dir).is_empty());
}

#[test]
fn check_refuses_streaming_settings_that_could_not_work() {
    use sealgate::config::Config;
    use sealgate::runtime::Runtime;
    use sealgate::telemetry::metrics::Metrics;
    let pki = Pki::new();
    let compile = |stage: &str, direction: &str| -> Vec<String> {
        let toml = config(
            &pki,
            "required",
            &format!(
                "{}\n[route.wssec.{direction}]\nmode = \"verify\"\ntrust = {:?}\n{stage}\n[upstream.up]\nurl = \"http://127.0.0.1:9\"\n",
                route("ledger", "/ledger/", ""),
                pki.path("ca.crt")
            ),
        );
        let file = pki.write(&format!("c-{}.toml", rand_suffix()), &toml);
        let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
        match Runtime::compile(&config, Arc::new(Metrics::new())) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    };
    let has = |p: Vec<String>, what: &str| {
        assert!(p.iter().any(|p| p.contains(what)), "{what:?} not in {p:#?}")
    };
    has(
        compile(
            "max_body = \"2 MiB\"\nmax_streamed_body = \"1 MiB\"",
            "request",
        ),
        "max_streamed_body",
    );
    has(
        compile("max_streamed_body = \"1 GiB\"", "response"),
        "an answer, or a message stripped, is held whole",
    );
    has(
        compile("stream_read_timeout = \"0s\"", "request"),
        "stream_read_timeout",
    );
    assert_eq!(
        compile("max_streamed_body = 0", "request"),
        Vec::<String>::new()
    );
    assert_eq!(
        compile("max_streamed_body = \"1 GiB\"", "request"),
        Vec::<String>::new()
    );
}
