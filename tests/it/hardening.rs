//! Regression tests for the holes an independent review found in the proxy,
//! each through real sockets and real TLS: stalled bodies that pinned
//! upstream slots, paths and headers that slipped past routing and hygiene,
//! timeouts that measured the wrong thing, shutdown, and CRLs on the chain.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sealgate::pki::{Issued, Leaf, Usage};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(pki: &Pki, rest: &str) -> (TestGateway, SocketAddr) {
    let gw = TestGateway::start(pki.dir.path(), &config(pki, "required", rest)).await;
    let addr = gw.addr("edge");
    (gw, addr)
}

fn up(addr: SocketAddr, extra: &str) -> String {
    format!("[upstream.up]\nurl = \"http://{addr}\"\n{extra}\n")
}

/// An upstream answering every request with `size` bytes, as fast as it is read.
async fn big_upstream(size: u64) -> SocketAddr {
    upstream(move |_req: Request<Incoming>| async move {
        http::Response::new(Pattern::new(size).boxed())
    })
    .await
}

fn data(b: &'static [u8]) -> Result<http_body::Frame<Bytes>, BoxError> {
    Ok(http_body::Frame::data(Bytes::from_static(b)))
}

/// An upstream that sends its headers and one chunk, then nothing for `quiet`,
/// then one more chunk and the end.
async fn pausing_upstream(quiet: Duration) -> SocketAddr {
    upstream(move |_req: Request<Incoming>| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let _ = tx.send(data(b"first;")).await;
            tokio::time::sleep(quiet).await;
            let _ = tx.send(data(b"second")).await;
        });
        http::Response::new(body.boxed())
    })
    .await
}

/// Sends a GET over HTTP/1.1, reads `n` bytes of the response and then stops
/// reading (the connection stays open, its window full). Returns the stream.
async fn read_a_little_then_stall(
    addr: SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    path: &str,
    n: usize,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut s = tls_connect(addr, cfg).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; n];
    while got < n {
        let k = s.read(&mut buf[got..]).await.unwrap();
        assert!(k > 0, "closed before {n} bytes");
        got += k;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_free_their_upstream_slots() {
    let pki = Pki::new();
    let big = big_upstream(20 << 20).await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nbody_idle_timeout = \"1s\"\n{}{}",
            route("big", "/", ""),
            up(big, "max_concurrent = 2\nqueue_timeout = \"200ms\"")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    // Two clients take both slots and stop reading after 100 bytes.
    let a = read_a_little_then_stall(addr, cfg.clone(), "/a", 100).await;
    let b = read_a_little_then_stall(addr, cfg.clone(), "/b", 100).await;
    let r = send(addr, cfg.clone(), get("/c")).await.unwrap();
    assert_eq!(r.status, 503, "both slots should be taken");
    // Within the idle timeout (and a watchdog tick) the stalled exchanges end.
    let t = Instant::now();
    loop {
        let r = send(addr, cfg.clone(), get("/d")).await.unwrap();
        if r.status == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"client_stalled\",route=\"big\",stage=\"transfer\"}",
        "2",
    )
    .await;
    gw.wait_metric("sealgate_upstream_in_flight{upstream=\"up\"}", "0")
        .await;
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_never_opens_its_window_frees_the_slot() {
    let pki = Pki::new();
    let big = big_upstream(20 << 20).await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nbody_idle_timeout = \"1s\"\n{}{}",
            route("big", "/", ""),
            up(big, "max_concurrent = 1\nqueue_timeout = \"200ms\"")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[b"h2"]);
    let mut h2 = h2_connect(addr, cfg.clone(), 65_535).await;
    let resp = h2
        .send_request(
            Request::get("https://localhost/x")
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The body is never read: no WINDOW_UPDATE ever goes out.
    let held = resp;
    let t = Instant::now();
    loop {
        let r = send(addr, pki.etl_client(&[]), get("/y")).await.unwrap();
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(t.elapsed() < Duration::from_secs(5), "slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"client_stalled\",route=\"big\",stage=\"transfer\"}",
        "1",
    )
    .await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_after_its_headers_is_cut_unless_the_route_allows_idling() {
    let pki = Pki::new();
    let pausing = pausing_upstream(Duration::from_millis(2500)).await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nbody_idle_timeout = \"1s\"\n{}{}{}",
            route("strict", "/strict", ""),
            // A long-lived stream (a Pub/Sub subscription) may sit idle longer.
            route("stream", "/stream", "body_idle_timeout = \"10s\""),
            up(pausing, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    let t = Instant::now();
    let r = send(addr, cfg.clone(), get("/strict")).await;
    // Headers and the first chunk arrived; then the body was cut.
    let err = r.expect_err("the stalled body must not complete");
    assert!(
        t.elapsed() < Duration::from_millis(2400),
        "{:?}",
        t.elapsed()
    );
    assert!(!err.is_empty());
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"upstream_stalled\",route=\"strict\",stage=\"upstream\"}",
        "1",
    )
    .await;
    let r = send(addr, cfg, get("/stream")).await.unwrap();
    assert_eq!(r.body, "first;second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_bounds_the_whole_exchange() {
    let pki = Pki::new();
    // A byte every 200 ms: never idle, never done.
    let trickle = upstream(|_req: Request<Incoming>| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if tx.send(data(b".")).await.is_err() {
                    break;
                }
            }
        });
        http::Response::new(body.boxed())
    })
    .await;
    let (gw, addr) = start(
        &pki,
        &format!(
            "{}{}",
            route("bounded", "/", "max_duration = \"1s\""),
            up(trickle, "")
        ),
    )
    .await;
    let t = Instant::now();
    let r = send(addr, pki.etl_client(&[]), get("/")).await;
    assert!(r.is_err(), "the exchange must be cut");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"max_duration\",route=\"bounded\",stage=\"transfer\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_double_encoding_cannot_climb_out_of_a_route() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}{}",
            route("public", "/public/", "allow_anonymous = false"),
            route("admin", "/admin/", "allow = [{ cn = \"nobody\" }]"),
            up(echo, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    for path in [
        "/public/..;/admin/x",
        "/public/.;/admin/x",
        "/public/%2e%2e;x/admin/x",
        "/public/%252e%252e/admin/x",
        "/public/..%252fadmin/x",
    ] {
        let r = send(addr, cfg.clone(), get(path)).await.unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["reason"], "bad_path", "{path}");
    }
    // Routes match what a parameter-stripping server would serve: the admin
    // route's rules apply to `/admin;x/...`.
    let r = send(addr, cfg.clone(), get("/admin;jsessionid=1/x"))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(addr, cfg, get("/public/a;v=1/b")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["__path"], "/public/a;v=1/b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_named_headers_go_and_routing_headers_cannot_be_named() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let (_gw, addr) = start(&pki, &format!("{}{}", route("all", "/", ""), up(echo, ""))).await;
    let cfg = pki.etl_client(&[]);
    let req = Request::get("/x")
        .header("host", "localhost")
        .header("connection", "X-Test, keep-alive")
        .header("x-test", "1")
        .header("x-kept", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(addr, cfg.clone(), req).await.unwrap();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert!(j.get("x-test").is_none(), "{j}");
    assert_eq!(j["x-kept"], "1");
    for named in [
        "SOAPAction",
        "content-type",
        "Host",
        "x-forwarded-client-cert",
        "X-Request-ID",
    ] {
        let req = Request::post("/x")
            .header("host", "localhost")
            .header("connection", named)
            .header("soapaction", "\"urn:a\"")
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from_static(b"<e/>")))
            .unwrap();
        let r = send(addr, cfg.clone(), req).await.unwrap();
        assert_eq!(r.status, 400, "Connection: {named}");
        // A SOAP request gets a SOAP fault, with the reason in its detail.
        assert!(
            r.body
                .contains("<sg:reason>connection_names_routing_header</sg:reason>"),
            "{}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_twins_renamed_identity_headers_and_request_trailers_are_scrubbed() {
    let pki = Pki::new();
    // An HTTP/2 upstream over TLS, so request trailers reach it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let tls_up = tls_upstream(&pki, move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let mut names: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
            let collected = req.into_body().collect().await.unwrap();
            if let Some(t) = collected.trailers() {
                names.extend(t.keys().map(|k| format!("trailer:{k}")));
            }
            log.lock().unwrap().extend(names);
            http::Response::new(full("ok"))
        }
    })
    .await;
    let cfg = config(
        &pki,
        "required",
        &format!(
            "{}{}",
            route("all", "/", ""),
            tls_upstream_cfg(&pki, "up", tls_up, "")
        ),
    )
    .replace(
        "[server]\n",
        "[server]\nidentity_header = \"x-client-identity\"\n",
    );
    let gw = TestGateway::start(pki.dir.path(), &cfg).await;
    let addr = gw.addr("edge");
    let mut h2 = h2_connect(addr, pki.etl_client(&[b"h2"]), 1 << 20).await;
    let mut trailers = http::HeaderMap::new();
    for (k, v) in [
        ("x-client-identity", "forged"),
        ("x-forwarded-client-cert", "forged"),
        ("x-forwarded-for", "10.9.9.9"),
        // Credentials, which have no place in trailers.
        ("authorization", "Bearer forged"),
        ("x-sfdc-session", "forged"),
        ("accesstoken", "forged"),
        ("x-keep-trailer", "1"),
    ] {
        trailers.insert(http::HeaderName::from_static(k), v.parse().unwrap());
    }
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let _ = tx.send(data(b"payload")).await;
        let _ = tx.send(Ok(http_body::Frame::trailers(trailers))).await;
    });
    let req = Request::post("https://localhost/x")
        .header("x_forwarded_for", "10.1.1.1")
        .header("x_client_identity", "forged")
        .header("x-forwarded-client-cert", "Hash=forged")
        .header("x_forwarded_client_cert", "Hash=forged")
        .header("true_client_ip", "10.2.2.2")
        .body(body.boxed())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let names = seen.lock().unwrap().clone();
    for gone in [
        "x_forwarded_for",
        "x_client_identity",
        "x-forwarded-client-cert",
        "x_forwarded_client_cert",
        "true_client_ip",
        "trailer:x-client-identity",
        "trailer:x-forwarded-client-cert",
        "trailer:x-forwarded-for",
        "trailer:authorization",
        "trailer:x-sfdc-session",
        "trailer:accesstoken",
    ] {
        assert!(
            !names.iter().any(|n| n == gone),
            "{gone} reached the upstream: {names:?}"
        );
    }
    // The gateway's own identity header is there, once, and the harmless trailer passed.
    assert_eq!(
        names.iter().filter(|n| *n == "x-client-identity").count(),
        1,
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "trailer:x-keep-trailer"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_target_host_wins_and_disagreeing_hosts_are_refused() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}{}",
            "[[route]]\nname = \"other\"\nlistener = \"edge\"\nupstream = \"up\"\nmatch = { host = \"other.example\" }\nallow = [{ cn = \"nobody\" }]\n",
            route("all", "/", ""),
            up(echo, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    let raw = |req: &'static str| {
        let cfg = cfg.clone();
        async move {
            let mut s = tls_connect(addr, cfg).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    // Absolute form and a Host that disagrees: refused.
    let r =
        raw("GET http://other.example/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("host_mismatch"), "{r}");
    // Absolute form alone names the host routing uses.
    let r = raw(
        "GET http://other.example/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    // Two Host headers: refused.
    let r = raw(
        "GET /x HTTP/1.1\r\nHost: localhost\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // HTTP/2: :authority against a Host header.
    let mut h2 = h2_connect(addr, pki.etl_client(&[b"h2"]), 1 << 20).await;
    let resp = h2
        .send_request(
            Request::get("https://localhost/x")
                .header("host", "other.example")
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = h2
        .send_request(
            Request::get("https://other.example/x")
                .body(full(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, ":authority routes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_prefixes_are_normalised_and_listeners_cap_connections() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let cfg = config(
        &pki,
        "required",
        &format!(
            "{}{}",
            route("api", "/api/%61dmin/", "allow = [{ cn = \"nobody\" }]"),
            up(echo, "")
        ),
    )
    .replace(
        "listen = \"127.0.0.1:0\"\n[listener.tls]",
        "listen = \"127.0.0.1:0\"\nmax_connections = 2\n[listener.tls]",
    );
    let gw = TestGateway::start(pki.dir.path(), &cfg).await;
    let addr = gw.addr("edge");
    let client = pki.etl_client(&[]);
    // `%61` is `a`: the prefix is `/api/admin/`, and its rule applies.
    let r = send(addr, client.clone(), get("/api/admin/x"))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // That connection ends on its worker soon after the client closes it;
    // until then it still counts toward the cap.
    gw.wait_metric("sealgate_open_connections{listener=\"edge\"}", "0")
        .await;
    let a = tls_connect(addr, client.clone()).await.unwrap();
    let b = tls_connect(addr, client.clone()).await.unwrap();
    gw.wait_metric("sealgate_open_connections{listener=\"edge\"}", "2")
        .await;
    // A third is closed at accept, before any TLS.
    assert!(tls_connect(addr, client.clone()).await.is_err());
    gw.wait_metric(
        "sealgate_connections_total{listener=\"edge\",reason=\"too_many_connections\",result=\"refused\"}",
        "1",
    )
    .await;
    drop((a, b));
    gw.wait_metric("sealgate_open_connections{listener=\"edge\"}", "0")
        .await;
    assert_eq!(send(addr, client, get("/x")).await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_timeout_covers_the_upstream_tls_handshake() {
    let pki = Pki::new();
    // Accepts TCP and never answers the TLS ClientHello.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}[upstream.up]\nurl = \"https://localhost:{}\"\nca = {:?}\nconnect_timeout = \"500ms\"\nrequest_timeout = \"20s\"\n",
            route("all", "/", ""),
            mute_addr.port(),
            pki.path("ca.crt")
        ),
    )
    .await;
    let t = Instant::now();
    let r = send(addr, pki.etl_client(&[]), get("/")).await.unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["reason"], "upstream_connect_timeout");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_timeout_starts_when_the_body_has_been_sent() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "[server.limits]\nbody_idle_timeout = \"1s\"\n{}{}",
            route("all", "/", ""),
            up(echo, "request_timeout = \"700ms\"")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    // An upload that takes 2.4 s but never pauses 1 s: allowed.
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx.send(data(b"chunk")).await;
        }
    });
    let req = Request::post("/up")
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let r = send(addr, cfg.clone(), req).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["__body_bytes"], 40);
    // An upload that stops: 408 client_stalled after the idle timeout.
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let _ = tx.send(data(b"start")).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(tx);
    });
    let t = Instant::now();
    let req = Request::post("/up")
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let r = send(addr, cfg, req).await.unwrap();
    assert_eq!(r.status, 408, "{}", r.body);
    assert_eq!(r.json()["reason"], "client_stalled");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_from_headers_send_no_100_continue_and_read_no_body() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let (_gw, addr) = start(
        &pki,
        &format!(
            "{}{}{}",
            route("denied", "/denied", "allow = [{ cn = \"nobody\" }]"),
            route("all", "/", ""),
            up(echo, "")
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    let mut s = tls_connect(addr, cfg.clone()).await.unwrap();
    s.write_all(
        b"POST /denied HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(!head.contains("100 Continue"), "{head}");
    // An allowed route still gets its 100 Continue, then the body.
    let mut s = tls_connect(addr, cfg).await.unwrap();
    s.write_all(
        b"POST /ok HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    s.write_all(b"body").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("200 OK"), "{rest}");
    assert!(rest.contains("\"__body_bytes\":4"), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_off_a_drain_delay_before_the_listeners_close() {
    let pki = Pki::new();
    let echo = header_echo_upstream().await;
    let cfg = config(
        &pki,
        "required",
        &format!("{}{}", route("all", "/", ""), up(echo, "")),
    )
    .replace(
        "grace_period = \"5s\"",
        "grace_period = \"5s\"\ndrain_delay = \"1s\"",
    );
    let gw = TestGateway::start(pki.dir.path(), &cfg).await;
    let addr = gw.addr("edge");
    let admin = gw.gw.admin_addr;
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    let cfg = pki.etl_client(&[]);
    let t = Instant::now();
    let drained = tokio::spawn(gw.gw.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Not ready, yet still serving new connections during the delay.
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    assert_eq!(
        send(addr, cfg.clone(), get("/x")).await.unwrap().status,
        200
    );
    assert_eq!(
        drained.await.unwrap(),
        sealgate::proxy::server::Drained::Clean
    );
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(send(addr, cfg, get("/x")).await.is_err());
}

/// A CA chain: root -> intermediate -> client, the client presenting the
/// intermediate; the root's CRL may revoke the intermediate.
fn chain_pki(pki: &Pki, revoke_intermediate: bool) -> (Issued, String, String) {
    let inter = pki
        .ca
        .intermediate("Test Issuing CA", "sealgate tests", 30)
        .unwrap();
    // Its CRL is verified against it when loaded.
    pki.write("inter.crt", &inter.cert_pem);
    let mut leaf = Leaf::new("etl-prod", Usage::Client);
    leaf.ou = Some("ETL".into());
    let client = inter.issue(&leaf).unwrap();
    let chained = Issued {
        cert_pem: format!("{}{}", client.cert_pem, inter.cert_pem),
        key_pem: client.key_pem.clone(),
        der: client.der.clone(),
        key_der: client.key_der.clone(),
        serial: client.serial,
    };
    let revoked: Vec<u64> = if revoke_intermediate {
        vec![inter.serial]
    } else {
        vec![]
    };
    let root_crl = pki.ca.crl(&revoked).unwrap().pem;
    let inter_crl = inter.crl(&[]).unwrap().pem;
    (chained, root_crl, inter_crl)
}

/// A gateway whose listener checks `crls` with `crl_check` (none: the default).
async fn crl_gateway(pki: &Pki, crls: (&str, &str), check: Option<&str>) -> TestGateway {
    let echo = header_echo_upstream().await;
    let root_crl = pki.write("root.crl", crls.0);
    let inter_crl = pki.write("inter.crl", crls.1);
    let check = check
        .map(|c| format!("crl_check = \"{c}\"\n"))
        .unwrap_or_default();
    let cfg = config(
        pki,
        "required",
        &format!("{}{}", route("all", "/", ""), up(echo, "")),
    )
    .replace(
        "client_auth = \"required\"\n",
        &format!(
            "client_auth = \"required\"\ncrls = [{root_crl:?}, {inter_crl:?}]\nclient_intermediates = [{:?}]\n{check}",
            pki.path("inter.crt")
        ),
    );
    TestGateway::start(pki.dir.path(), &cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_intermediate_is_refused_unless_only_leaves_are_checked() {
    for (check, expect_ok) in [(Some("chain"), false), (None, false), (Some("leaf"), true)] {
        let pki = Pki::new();
        let (client, root_crl, inter_crl) = chain_pki(&pki, true);
        let gw = crl_gateway(&pki, (&root_crl, &inter_crl), check).await;
        let tls = client_tls(&pki.ca.cert_pem, Some(&client), &[]);
        let r = send(gw.addr("edge"), tls, get("/x")).await;
        if expect_ok {
            assert_eq!(r.unwrap().status, 200, "crl_check = {check:?}");
        } else {
            assert!(
                r.is_err(),
                "crl_check = {check:?}: a revoked intermediate was accepted"
            );
            gw.wait_metric(
                "sealgate_tls_handshakes_total{listener=\"edge\",reason=\"revoked\",result=\"refused\"}",
                "1",
            )
            .await;
        }
    }
    // Without a revocation the chain passes in chain mode too.
    let pki = Pki::new();
    let (client, root_crl, inter_crl) = chain_pki(&pki, false);
    let gw = crl_gateway(&pki, (&root_crl, &inter_crl), None).await;
    let tls = client_tls(&pki.ca.cert_pem, Some(&client), &[]);
    assert_eq!(
        send(gw.addr("edge"), tls, get("/x")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_head_over_http2_gets_headers_and_no_body() {
    let pki = Pki::new();
    let up = header_echo_upstream().await;
    let cfg = config(
        &pki,
        "required",
        &format!(
            "{}[upstream.up]\nurl = \"http://{up}\"\n",
            route("api", "/api/", "")
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &cfg).await;
    let mut h2 = h2_connect(gw.addr("edge"), pki.etl_client(&[b"h2"]), 1 << 20).await;
    for _ in 0..2 {
        // A body on a HEAD answer would be a stream error for the client.
        let req = Request::head("https://localhost/elsewhere")
            .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 404);
        assert!(resp.headers().contains_key("x-request-id"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "{body:?}");
    }
    // The connection is still good for a GET.
    let req = Request::get("https://localhost/api/x")
        .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
}
