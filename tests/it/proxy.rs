//! The request path through real sockets: identity rules, header hygiene,
//! streaming, limits, timeouts, faults, HTTP/2 and the graceful drain.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sealgate::pki::{KeyAlg, Leaf, Usage};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with one "edge" listener requiring client certificates.
async fn start(pki: &Pki, rest: &str) -> (TestGateway, SocketAddr) {
    let gw = TestGateway::start(pki.dir.path(), &config(pki, "required", rest)).await;
    let addr = gw.addr("edge");
    (gw, addr)
}

fn upstream_cfg(addr: SocketAddr, extra: &str) -> String {
    format!("[upstream.up]\nurl = \"http://{addr}\"\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_allowed_and_denied_per_route() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "{}{}{}",
            route(
                "etl",
                "/etl/",
                "allow = [{ cn = \"etl-prod\", ou = \"ETL\" }, { cn = \"backup-job\" }]"
            ),
            route("finance", "/finance/", "allow = [{ ou = \"Finance\" }]"),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let etl = pki.etl_client(&[]);
    let fin = client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client("ledger", "Finance", KeyAlg::EcdsaP256)),
        &[],
    );

    assert_eq!(
        send(addr, etl.clone(), get("/etl/run"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send(addr, fin.clone(), get("/finance/post"))
            .await
            .unwrap()
            .status,
        200
    );
    let denied = send(addr, etl.clone(), get("/finance/post")).await.unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.headers["content-type"], "application/problem+json");
    let j = denied.json();
    assert_eq!(j["reason"], "identity_not_allowed");
    assert_eq!(
        j["request_id"],
        denied.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(send(addr, fin, get("/etl/run")).await.unwrap().status, 403);
    let nothing = send(addr, etl, get("/nowhere")).await.unwrap();
    assert_eq!(nothing.status, 404);
    assert_eq!(nothing.json()["reason"], "no_route");
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"identity_not_allowed\",route=\"finance\",stage=\"identity\"}",
        "1",
    )
    .await;
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"no_route\",route=\"none\",stage=\"route\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_listener_lets_anonymous_callers_reach_only_anonymous_routes() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let toml = config(
        &pki,
        "optional",
        &format!(
            "{}{}{}",
            route("public", "/public/", "allow_anonymous = true"),
            route("private", "/private/", ""),
            upstream_cfg(up, "")
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    let anon = client_tls(&pki.ca.cert_pem, None, &[]);
    let known = pki.etl_client(&[]);

    // An anonymous caller may not claim an identity by header.
    let req = Request::get("/public/x")
        .header("host", "localhost")
        .header("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(addr, anon.clone(), req).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.json().get("x-forwarded-client-cert").is_none(),
        "{}",
        r.body
    );
    let r = send(addr, anon, get("/private/x")).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["reason"], "no_client_identity");
    assert_eq!(
        send(addr, known, get("/private/x")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_hygiene_spoofed_identity_hop_by_hop_and_request_id() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!("{}{}", route("all", "/", ""), upstream_cfg(up, "")),
    )
    .await;
    let client = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);
    let cfg = client_tls(&pki.ca.cert_pem, Some(&client), &[]);

    let req = Request::get("/svc?q=1")
        .header("host", "gw.example:8443")
        .header("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")
        .header("X-Forwarded-Client-Cert", "second copy")
        .header("x-forwarded-for", "10.9.9.9")
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "must not pass")
        .header("x-request-id", "etl-batch-42")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(addr, cfg.clone(), req).await.unwrap();
    assert_eq!(r.status, 200);
    let j = r.json();
    let xfcc = j["x-forwarded-client-cert"].as_str().unwrap();
    assert!(
        xfcc.contains("Subject=\"O=Acme,OU=ETL,CN=etl-prod\""),
        "{xfcc}"
    );
    assert!(
        !xfcc.contains("admin") && !xfcc.contains("second copy"),
        "{xfcc}"
    );
    let expected_hash = sealgate::fingerprint::Fingerprint::of(&client.der).hex();
    assert!(xfcc.starts_with(&format!("Hash={expected_hash}")), "{xfcc}");
    assert_eq!(j["x-forwarded-for"], "127.0.0.1");
    assert_eq!(j["x-forwarded-proto"], "https");
    assert_eq!(j["x-forwarded-host"], "gw.example:8443");
    assert_eq!(j["host"], up.to_string());
    assert_eq!(j["__path"], "/svc?q=1");
    assert!(j.get("x-hop-secret").is_none());
    assert_eq!(j["x-request-id"], "etl-batch-42");
    assert_eq!(r.headers["x-request-id"], "etl-batch-42");

    // A malformed request id is replaced by a generated one, echoed back.
    let req = Request::get("/svc")
        .header("host", "localhost")
        .header("x-request-id", "bad id with spaces")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(addr, cfg, req).await.unwrap();
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r.json()["x-request-id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_upload_and_download_over_http1_and_http2() {
    const SIZE: u64 = 96 << 20;
    let pki = Pki::new();
    let up = upstream(|req: Request<Incoming>| async move {
        if req.uri().path() == "/download" {
            http::Response::new(Pattern::new(SIZE).boxed())
        } else {
            let n = count_body(req.into_body()).await;
            http::Response::new(full(n.to_string()))
        }
    })
    .await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}",
            route("all", "/", "max_body = \"1GiB\""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let client = pki.client("etl-prod", "ETL", KeyAlg::EcdsaP256);

    let up_req = Request::post("/upload")
        .header("host", "localhost")
        .body(Pattern::new(SIZE))
        .unwrap();
    let r = send(
        addr,
        client_tls(&pki.ca.cert_pem, Some(&client), &[]),
        up_req,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, SIZE.to_string());

    // Download over HTTP/2, counting without holding the body.
    let tls = tls_connect(addr, client_tls(&pki.ca.cert_pem, Some(&client), &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut s, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/download")
        .body(full(Bytes::new()))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count_body(resp.into_body()).await, SIZE);
    // And an upload on the same HTTP/2 connection.
    let req = Request::post("https://localhost/upload")
        .body(Pattern::new(SIZE / 4).boxed())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, (SIZE / 4).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_early_from_content_length_and_mid_stream_when_chunked() {
    let pki = Pki::new();
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let up = upstream(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let n = count_body(req.into_body()).await;
            http::Response::new(full(n.to_string()))
        }
    })
    .await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "{}{}",
            route("small", "/", "max_body = \"1MiB\""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);

    // Declared too large: refused before the upstream is contacted.
    let req = Request::post("/x")
        .header("host", "localhost")
        .header("content-length", (2u64 << 20).to_string())
        .body(Full::new(Bytes::from(vec![0u8; 2 << 20])))
        .unwrap();
    let r = send(addr, cfg.clone(), req).await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["reason"], "body_too_large");
    assert_eq!(reached.load(Ordering::SeqCst), 0);

    // Chunked, no length: cut off once the ceiling is crossed.
    let req = Request::post("/x")
        .header("host", "localhost")
        .body(Pattern::new(8 << 20))
        .unwrap();
    let r = send(addr, cfg.clone(), req).await.unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"body_too_large\",route=\"small\",stage=\"size\"}",
        "2",
    )
    .await;
    // Under the limit still passes.
    let req = Request::post("/x")
        .header("host", "localhost")
        .body(Pattern::new(512 << 10))
        .unwrap();
    assert_eq!(
        send(addr, cfg, req).await.unwrap().body,
        (512u64 << 10).to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_promptly_and_slow_upstream_is_504() {
    let pki = Pki::new();
    let closed = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let slow = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        http::Response::new(full("late"))
    })
    .await;
    let (gw, addr) = start(&pki, &format!(
            "{}{}[upstream.down]\nurl = \"http://{closed}\"\nconnect_timeout = \"2s\"\n\n[upstream.slow]\nurl = \"http://{slow}\"\nrequest_timeout = \"400ms\"\n",
            "[[route]]\nname = \"down\"\nlistener = \"edge\"\nupstream = \"down\"\nmatch = { path_prefix = \"/down\" }\n",
            "[[route]]\nname = \"slow\"\nlistener = \"edge\"\nupstream = \"slow\"\nsoap = true\nmatch = { path_prefix = \"/slow\" }\n",
        )).await;
    let cfg = pki.etl_client(&[]);

    let t = Instant::now();
    let r = send(addr, cfg.clone(), get("/down")).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["reason"], "upstream_unreachable");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let req = Request::post("/slow")
        .header("host", "localhost")
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"<e/>")))
        .unwrap();
    let r = send(addr, cfg, req).await.unwrap();
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // SOAP 1.2 request, SOAP 1.2 fault.
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/soap+xml"));
    assert!(
        r.body.contains("http://www.w3.org/2003/05/soap-envelope"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<env:Value>env:Receiver</env:Value>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<sg:reason>upstream_timeout</sg:reason>"),
        "{}",
        r.body
    );
    assert!(r.body.contains(r.headers["x-request-id"].to_str().unwrap()));
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"upstream_timeout\",route=\"slow\",stage=\"upstream\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap11_fault_on_soap_route() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}",
            route(
                "soap",
                "/services/Soap/",
                "soap = true\nallow = [{ ou = \"Finance\" }]"
            ),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    let req = Request::post("/services/Soap/u/60.0")
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(Full::new(Bytes::from_static(b"<e/>")))
        .unwrap();
    let r = send(addr, cfg, req).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    assert!(r.body.contains("http://schemas.xmlsoap.org/soap/envelope/"));
    assert!(
        r.body.contains("<faultcode>soap:Client</faultcode>"),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains("<sg:reason>identity_not_allowed</sg:reason>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_concurrency_ceiling_then_503_and_slots_come_back_after_cancellation() {
    let pki = Pki::new();
    let up = upstream(|req: Request<Incoming>| async move {
        let ms: u64 = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        http::Response::new(full("done"))
    })
    .await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "{}{}",
            route("all", "/", ""),
            upstream_cfg(up, "max_concurrent = 2\nqueue_timeout = \"300ms\"")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);

    // Two long calls hold both slots; a third waits 300ms and is told to retry.
    let a = tokio::spawn(send(addr, cfg.clone(), get("/?1500")));
    let b = tokio::spawn(send(addr, cfg.clone(), get("/?1500")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let c = send(addr, cfg.clone(), get("/?0")).await.unwrap();
    assert_eq!(c.status, 503);
    assert_eq!(c.headers["retry-after"], "1");
    assert_eq!(c.json()["reason"], "upstream_busy");
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(a.await.unwrap().unwrap().status, 200);
    assert_eq!(b.await.unwrap().unwrap().status, 200);

    // Cancel two calls mid-flight: the client goes away while the upstream is still working.
    for _ in 0..2 {
        let cfg = cfg.clone();
        // The upstream would take a minute; the slot must come back as soon as the client leaves.
        let h = tokio::spawn(async move { send(addr, cfg, get("/?60000")).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.abort();
    }
    gw.wait_metric_within(
        "sealgate_upstream_in_flight{upstream=\"up\"}",
        "0",
        Duration::from_secs(1),
    )
    .await;
    // Both slots are free again: two concurrent calls pass without waiting.
    let x = tokio::spawn(send(addr, cfg.clone(), get("/?200")));
    let y = tokio::spawn(send(addr, cfg.clone(), get("/?200")));
    assert_eq!(x.await.unwrap().unwrap().status, 200);
    assert_eq!(y.await.unwrap().unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_client_is_disconnected() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nheader_read_timeout = \"1s\"\n{}{}",
            route("all", "/", ""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);

    // Slowloris: headers trickle in a byte at a time and never finish.
    let mut s = tls_connect(addr, cfg.clone()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        if s.write_all(b"X").await.is_err() || s.flush().await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        closed,
        "slowloris connection still open after {:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "cut off only after {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_timeout_counts_from_a_heads_first_byte_not_from_the_last_response() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nheader_read_timeout = \"500ms\"\nidle_timeout = \"10s\"\n{}{}",
            route("all", "/", ""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let mut s = tls_connect(addr, pki.etl_client(&[])).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with(b"HTTP/1.1 200"));
    // Idle three header timeouts, well within the idle timeout: an ETL
    // tool's pooled connection is still there for its next call.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.starts_with(b"HTTP/1.1 200"));

    // The next head begun and never finished is cut at the header timeout.
    s.write_all(b"GET / HTTP/1.1\r\nHost: local").await.unwrap();
    closed_at_header_timeout(&mut s, "a half-sent head").await;

    // A new connection that never sends a head is closed at the header
    // timeout too, not at the idle timeout.
    let mut s = tls_connect(addr, pki.etl_client(&[])).await.unwrap();
    closed_at_header_timeout(&mut s, "a silent new connection").await;
}

/// The gateway closes `s` about 500 ms (the test's header timeout) from now.
async fn closed_at_header_timeout<S: AsyncReadExt + Unpin>(s: &mut S, what: &str) {
    let t = Instant::now();
    let mut buf = [0u8; 256];
    let end = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(0)) | Ok(Err(_))),
        "{what} was not cut: {end:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400) && t.elapsed() < Duration::from_secs(3),
        "{what} was cut after {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_and_http2_connections_close_after_idle_timeout() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    // The header-read timeout is long, so only the idle timeout can close these.
    let (_gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nheader_read_timeout = \"30s\"\nidle_timeout = \"700ms\"\n{}{}",
            route("all", "/", ""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let mut s = tls_connect(addr, pki.etl_client(&[])).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let t = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "idle HTTP/1.1 connection was not closed");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        t.elapsed()
    );

    // HTTP/2: the connection task ends when the gateway sends GOAWAY and closes.
    let tls = tls_connect(addr, pki.etl_client(&[b"h2"])).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let r = h2
        .send_request(
            Request::get("https://localhost/")
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .is_ok(),
        "idle HTTP/2 connection was not closed"
    );
    assert!(t.elapsed() >= Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_lets_in_flight_request_finish() {
    let pki = Pki::new();
    let up = upstream(|_req: Request<Incoming>| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        http::Response::new(full("finished"))
    })
    .await;
    let (gw, addr) = start(
        &pki,
        &format!("{}{}", route("all", "/", ""), upstream_cfg(up, "")),
    )
    .await;
    let admin = gw.gw.admin_addr;
    let cfg = pki.etl_client(&[]);
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);

    let in_flight = tokio::spawn(send(addr, cfg.clone(), get("/work")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let drained = tokio::spawn(gw.gw.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No new connections once draining.
    assert!(send(addr, cfg, get("/new")).await.is_err());
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "finished");
    assert_eq!(
        drained.await.unwrap(),
        sealgate::proxy::server::Drained::Clean,
        "drain did not complete within the grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_dropped_without_shutdown_closes_its_connections_and_listeners() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let toml = config(
        &pki,
        "required",
        &format!("{}{}", route("all", "/", ""), upstream_cfg(up, "")),
    );
    let dir = pki.dir.path().to_path_buf();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The gateway lives on a runtime of its own, as it does in `main`; its
    // connections are served on its worker threads, not on that runtime.
    let host = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let gw = TestGateway::start(&dir, &toml).await;
            addr_tx.send(gw.addr("edge")).unwrap();
            let _ = stop_rx.await;
        });
    });
    let addr = addr_rx.await.unwrap();
    let mut tls = tls_connect(addr, pki.etl_client(&[])).await.unwrap();
    tls.write_all(b"GET /one HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut tls).await;
    assert!(first.starts_with(b"HTTP/1.1 200"), "{first:?}");

    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || host.join().unwrap())
        .await
        .unwrap();
    // The kept-alive connection ends with the gateway, and nothing listens.
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("the connection outlived its gateway");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_over_mutual_tls_with_the_gateways_own_certificate() {
    let pki = Pki::new();
    let gw_client = pki.issue(&Leaf::new("sealgate-gw", Usage::Client));
    pki.write("gw-client.crt", &gw_client.cert_pem);
    pki.write("gw-client.key", &gw_client.key_pem);

    // The upstream demands a client certificate from the test CA and reports whose it got.
    let server_cfg = {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let mut c = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(pki.server.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(c)
    };
    let sock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = sock.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = sock.accept().await else {
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                let who = sealgate::tls::identity::PeerIdentity::from_der(&der)
                    .unwrap()
                    .cn[0]
                    .clone();
                let svc = hyper::service::service_fn(move |_r: Request<Incoming>| {
                    let who = who.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(full(format!(
                            "upstream saw {who}"
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let (_gw, addr) = start(&pki, &format!(
            "{}[upstream.up]\nurl = \"https://localhost:{}\"\nca = {:?}\nclient_cert = \"gw-client.crt\"\nclient_key = \"gw-client.key\"\n",
            route("all", "/", ""),
            up.port(),
            pki.path("ca.crt")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    for _ in 0..3 {
        let r = send(addr, cfg.clone(), get("/x")).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "upstream saw sealgate-gw");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_get_431() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nmax_header_bytes = \"8KiB\"\nmax_headers = 20\n{}{}",
            route("all", "/", ""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);

    let big = Request::get("/")
        .header("host", "localhost")
        .header("x-big", "a".repeat(16 * 1024))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(addr, cfg.clone(), big).await.unwrap().status, 431);

    let mut many = Request::get("/").header("host", "localhost");
    for i in 0..40 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let r = send(
        addr,
        cfg.clone(),
        many.body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 431);

    // HTTP/2 goes through the same count limit in the pipeline.
    let tls = tls_connect(addr, pki.etl_client(&[b"h2"])).await.unwrap();
    let (mut s, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut many = Request::get("https://localhost/");
    for i in 0..40 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let resp = s
        .send_request(many.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let ok = s
        .send_request(
            Request::get("https://localhost/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_never_accepts_the_connection_is_504_after_connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so
    // connecting hangs the way it does to a firewalled host.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let blackhole = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(c)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(blackhole),
        )
        .await
        {
            fillers.push(c);
        } else {
            break;
        }
    }
    let pki = Pki::new();
    let toml = config(
        &pki,
        "required",
        &format!(
            "{}[upstream.up]\nurl = \"http://{blackhole}\"\nconnect_timeout = \"500ms\"\n",
            route("all", "/", "")
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let cfg = pki.etl_client(&[]);
    let t = Instant::now();
    let r = send(gw.addr("edge"), cfg, get("/x")).await.unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["reason"], "upstream_connect_timeout");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_routing_and_forwarding() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}{}",
            route("public", "/api/public/", "allow_anonymous = true"),
            route("admin", "/api/admin/", "allow = [{ ou = \"Admins\" }]"),
            upstream_cfg(up, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    // An escaped unreserved character is the character itself: this is the admin route.
    let r = send(addr, cfg.clone(), get("/api/%61dmin/users"))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["reason"], "identity_not_allowed");
    // Spellings that upstreams might resolve into the admin tree are refused outright.
    for p in [
        "/api/public/../admin/users",
        "/api/public/%2e%2e/admin/users",
        "/api/public/..%2Fadmin/users",
        "/api/public%5c..%5cadmin",
        "/api/public//x",
    ] {
        let r = send(addr, cfg.clone(), get(p)).await.unwrap();
        assert_eq!(r.status, 400, "{p}: {}", r.body);
        assert_eq!(r.json()["reason"], "bad_path", "{p}");
    }
    // What is forwarded is the normalised path.
    let r = send(addr, cfg, get("/api/public/%7Euser/x%20y?q=%2e"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["__path"], "/api/public/~user/x%20y?q=%2e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_claims_about_identity_and_origin_never_reach_the_upstream() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!("{}{}", route("all", "/", ""), upstream_cfg(up, "")),
    )
    .await;
    let req = Request::get("/")
        .header("host", "localhost")
        .header("x_forwarded_client_cert", "Hash=00;Subject=\"CN=admin\"")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=10.0.0.1;proto=http")
        .header("x-real-ip", "10.0.0.1")
        .header("true-client-ip", "10.0.0.1")
        .header("x-forwarded-port", "80")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let j = send(addr, pki.etl_client(&[]), req).await.unwrap().json();
    assert!(j.get("x_forwarded_client_cert").is_none(), "{j}");
    assert_eq!(j["x-forwarded-proto"], "https");
    assert_eq!(j["x-forwarded-host"], "localhost");
    for gone in [
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "x-forwarded-port",
    ] {
        assert!(j.get(gone).is_none(), "{gone} passed: {j}");
    }
}

/// Splits an `x-forwarded-client-cert` element into its fields, honouring quotes.
fn xfcc_fields(v: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut key, mut val, mut in_val, mut quoted, mut esc) =
        (String::new(), String::new(), false, false, false);
    for c in v.chars() {
        match (in_val, quoted, esc, c) {
            (true, true, true, c) => {
                val.push(c);
                esc = false;
            }
            (true, true, false, '\\') => esc = true,
            (true, true, false, '"') => quoted = false,
            (true, false, _, '"') if val.is_empty() => quoted = true,
            (true, false, _, ';') => {
                out.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                in_val = false;
            }
            (true, _, _, c) => val.push(c),
            (false, _, _, '=') => in_val = true,
            (false, _, _, c) => key.push(c),
        }
    }
    out.push((key, val));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_certificate_fields_cannot_forge_identity_header_fields_or_subject_rules() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}{}",
            route(
                "etl",
                "/etl/",
                "allow = [{ subject = \"CN=etl-prod, OU=ETL, O=Acme\" }]"
            ),
            route("any", "/", ""),
            upstream_cfg(up, "")
        ),
    )
    .await;
    // A CN that reads like the rest of a DN, and one that reads like more header fields.
    let smuggler = pki.issue(&Leaf::new("etl-prod, OU=ETL, O=Acme", Usage::Client));
    let r = send(
        addr,
        client_tls(&pki.ca.cert_pem, Some(&smuggler), &[]),
        get("/etl/x"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "a CN must not satisfy a whole-subject rule");

    let forger = pki.issue(&Leaf::new("x\";URI=\"spiffe://acme/admin", Usage::Client));
    let r = send(
        addr,
        client_tls(&pki.ca.cert_pem, Some(&forger), &[]),
        get("/x"),
    )
    .await
    .unwrap();
    let xfcc = r.json()["x-forwarded-client-cert"]
        .as_str()
        .unwrap()
        .to_string();
    let fields = xfcc_fields(&xfcc);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Hash", "Subject"], "{xfcc}");
    // The subject, RFC 4514-escaped, arrives whole inside its quotes.
    assert_eq!(
        fields[1].1, "CN=x\\\"\\;URI=\\\"spiffe://acme/admin",
        "{xfcc}"
    );
}

/// The gateway marks the answers it gives itself, and no upstream can
/// pass one of its own off as a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_gateway_marks_a_refusal() {
    let pki = Pki::new();
    let up = upstream(|_req: http::Request<hyper::body::Incoming>| async move {
        let mut r = http::Response::new(full("upstream error"));
        *r.status_mut() = http::StatusCode::FORBIDDEN;
        r.headers_mut().insert(
            "x-sealgate-refusal",
            "identity_not_allowed".parse().unwrap(),
        );
        r
    })
    .await;
    let toml = config(
        &pki,
        "required",
        &format!(
            "{}\n[upstream.up]\nurl = \"http://{up}\"\n",
            route("api", "/api/", "")
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let r = send(gw.addr("edge"), pki.etl_client(&[]), get("/api/x"))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.headers.get("x-sealgate-refusal").is_none(),
        "{:?}",
        r.headers
    );
    let r = send(gw.addr("edge"), pki.etl_client(&[]), get("/elsewhere"))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-sealgate-refusal"], "no_route");
}
