//! Admission control through real sockets: allowlists at accept and per route
//! (IPv4, IPv6, files), PROXY protocol v1/v2, rate limits with Retry-After,
//! handshake rate, route concurrency with cancellation, automatic blocking.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use sealgate::pki::{KeyAlg, Leaf, Usage};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn listener(pki: &Pki, name: &str, listen: &str, extra: &str) -> String {
    format!(
        "[[listener]]\nname = \"{name}\"\nlisten = \"{listen}\"\n{extra}\n[listener.tls]\n{}\n",
        pki.listener_tls("required")
    )
}

fn route(name: &str, listener: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\nlistener = \"{listener}\"\nupstream = \"up\"\nmatch = {{ path_prefix = \"{prefix}\" }}\n{extra}\n"
    )
}

async fn gateway(pki: &Pki, body: &str) -> TestGateway {
    let up = header_echo_upstream().await;
    TestGateway::start(
        pki.dir.path(),
        &format!("{ADMIN}\n{body}\n[upstream.up]\nurl = \"http://{up}\"\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_allowlist_refuses_at_accept_without_a_handshake() {
    let pki = Pki::new();
    pki.write(
        "office.txt",
        "# office ranges\n127.0.0.0/8   # loopback for the test\n",
    );
    let gw = gateway(
        &pki,
        &format!(
            "{}{}{}{}",
            listener(
                &pki,
                "closed",
                "127.0.0.1:0",
                "allow_ips = [\"10.0.0.0/8\", \"2001:db8::/32\"]"
            ),
            listener(
                &pki,
                "open",
                "127.0.0.1:0",
                "allow_ips_files = [\"office.txt\"]"
            ),
            route("c", "closed", "/", ""),
            route("o", "open", "/", ""),
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    assert!(send(gw.addr("closed"), cfg.clone(), get("/"))
        .await
        .is_err());
    let m = gw
        .wait_metric(
            "sealgate_connections_total{listener=\"closed\",reason=\"ip_not_allowed\",result=\"refused\"}",
            "1",
        )
        .await;
    // Refused before TLS: no handshake was attempted at all.
    assert!(
        m.lines()
            .filter(|l| l.starts_with("sealgate_tls_handshakes_total{listener=\"closed\""))
            .all(|l| l.ends_with(" 0")),
        "{m}"
    );
    assert_eq!(
        send(gw.addr("open"), cfg, get("/")).await.unwrap().status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_and_route_allowlists() {
    let pki = Pki::new();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let gw = gateway(
        &pki,
        &format!(
            "{}{}{}{}{}",
            listener(&pki, "v6", "[::1]:0", "allow_ips = [\"::1/128\"]"),
            listener(
                &pki,
                "v6-closed",
                "[::1]:0",
                "allow_ips = [\"2001:db8::/32\"]"
            ),
            route("mine", "v6", "/mine", "allow_ips = [\"::1\"]"),
            route("theirs", "v6", "/theirs", "allow_ips = [\"10.0.0.0/8\"]"),
            route("c", "v6-closed", "/", ""),
        ),
    )
    .await;
    let cfg = pki.etl_client(&[]);
    let v6 = gw.addr("v6");
    assert!(v6.is_ipv6());
    let r = send(v6, cfg.clone(), get("/mine")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["x-forwarded-for"], "::1");
    let r = send(v6, cfg.clone(), get("/theirs")).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["reason"], "ip_not_allowed");
    assert!(send(gw.addr("v6-closed"), cfg, get("/")).await.is_err());
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"ip_not_allowed\",route=\"theirs\",stage=\"ip\"}",
        "1",
    )
    .await;
    gw.wait_metric(
        "sealgate_connections_total{listener=\"v6-closed\",reason=\"ip_not_allowed\",result=\"refused\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_listener_sees_ipv4_clients_as_ipv4() {
    let pki = Pki::new();
    if std::net::TcpListener::bind("[::]:0").is_err() {
        println!("SKIPPED: cannot bind a dual-stack socket here");
        return;
    }
    let gw = gateway(
        &pki,
        &format!(
            "{}{}",
            listener(&pki, "dual", "[::]:0", "allow_ips = [\"127.0.0.0/8\"]"),
            route("r", "dual", "/", "allow_ips = [\"127.0.0.1/32\"]"),
        ),
    )
    .await;
    let port = gw.addr("dual").port();
    let r = send(
        SocketAddr::from(([127, 0, 0, 1], port)),
        pki.etl_client(&[]),
        get("/"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["x-forwarded-for"], "127.0.0.1");
}

/// Connects, writes `header` raw, then speaks TLS and sends one request.
async fn via_proxy(
    addr: SocketAddr,
    header: &[u8],
    pki: &Pki,
    path: &str,
) -> Result<Reply, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.write_all(header).await.map_err(|e| e.to_string())?;
    let tls = tls_on(tcp, pki.etl_client(&[]))
        .await
        .map_err(|e| e.to_string())?;
    let req = Request::get(path)
        .header("host", "localhost")
        .header("x-forwarded-for", "10.66.66.66")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send_over(tls, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_from_trusted_peers_give_the_real_client() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "{}{}{}{}",
            listener(&pki, "lb", "127.0.0.1:0", "proxy_protocol = { trusted = [\"127.0.0.1/32\"] }\nallow_ips = [\"203.0.113.0/24\", \"2001:db8::/32\"]"),
            listener(&pki, "lb-optional", "127.0.0.1:0", "proxy_protocol = { trusted = [\"127.0.0.1/32\"], optional = true }"),
            route("lb", "lb", "/", "allow_ips = [\"203.0.113.7\", \"2001:db8::/32\"]"),
            route("opt", "lb-optional", "/", ""),
        ),
    )
    .await;
    let lb = gw.addr("lb");

    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n";
    let r = via_proxy(lb, v1, &pki, "/v1").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The address from PROXY protocol, never the client's X-Forwarded-For.
    assert_eq!(r.json()["x-forwarded-for"], "203.0.113.7");

    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "[2001:db8::7]:40000".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:443".parse::<SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    let r = via_proxy(lb, &v2, &pki, "/v2").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["x-forwarded-for"], "2001:db8::7");

    // A PROXY header naming an address outside the listener's allowlist is refused at accept.
    let outsider = b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 443\r\n";
    assert!(via_proxy(lb, outsider, &pki, "/").await.is_err());
    gw.wait_metric(
        "sealgate_connections_total{listener=\"lb\",reason=\"ip_not_allowed\",result=\"refused\"}",
        "1",
    )
    .await;

    // A trusted peer without a header: refused unless the listener says optional.
    assert!(send(lb, pki.etl_client(&[]), get("/")).await.is_err());
    gw.wait_metric(
        "sealgate_connections_total{listener=\"lb\",reason=\"proxy_missing\",result=\"refused\"}",
        "1",
    )
    .await;
    let r = send(gw.addr("lb-optional"), pki.etl_client(&[]), get("/"))
        .await
        .unwrap();
    assert_eq!(r.json()["x-forwarded-for"], "127.0.0.1");
    let r = via_proxy(gw.addr("lb-optional"), v1, &pki, "/")
        .await
        .unwrap();
    assert_eq!(r.json()["x-forwarded-for"], "203.0.113.7");

    // A malformed header from a trusted peer.
    assert!(
        via_proxy(lb, b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n", &pki, "/")
            .await
            .is_err()
    );
    gw.wait_metric(
        "sealgate_connections_total{listener=\"lb\",reason=\"proxy_invalid\",result=\"refused\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_from_an_untrusted_peer_is_refused() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "{}{}",
            listener(
                &pki,
                "lb",
                "127.0.0.1:0",
                "proxy_protocol = { trusted = [\"10.0.0.0/8\"] }"
            ),
            route("r", "lb", "/", ""),
        ),
    )
    .await;
    let lb = gw.addr("lb");
    let forged = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n";
    assert!(via_proxy(lb, forged, &pki, "/").await.is_err());
    gw.wait_metric(
        "sealgate_connections_total{listener=\"lb\",reason=\"proxy_untrusted\",result=\"refused\"}",
        "1",
    )
    .await;
    // The same untrusted peer without a header is served, as itself.
    let r = send(lb, pki.etl_client(&[]), get("/")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_client_global_and_retry_after() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "{}{}{}{}",
            listener(&pki, "edge", "127.0.0.1:0", ""),
            route("per-client", "edge", "/client", "rate_limit = { key = \"client\", per_second = 1, burst = 2 }"),
            route(
                "soap",
                "edge",
                "/soap",
                "soap = true\nrate_limit = [{ key = \"ip\", per_minute = 6, burst = 1 }, { key = \"global\", per_second = 100, burst = 100 }]"
            ),
            route("other", "edge", "/other", "rate_limit = { key = \"global\", per_second = 100, burst = 100 }"),
        ),
    )
    .await;
    let addr = gw.addr("edge");
    let alice = pki.etl_client(&[]);
    let bob = client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client("bob", "ETL", KeyAlg::EcdsaP256)),
        &[],
    );

    assert_eq!(
        send(addr, alice.clone(), get("/client"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send(addr, alice.clone(), get("/client"))
            .await
            .unwrap()
            .status,
        200
    );
    let limited = send(addr, alice.clone(), get("/client")).await.unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["reason"], "rate_limited");
    assert_eq!(limited.headers["retry-after"], "1");
    // Another client certificate has its own bucket.
    assert_eq!(send(addr, bob, get("/client")).await.unwrap().status, 200);

    // 6 per minute: one token every 10 s; after the burst the wait is about 10 s.
    let soap = |body: &'static str| {
        Request::post("/soap")
            .header("host", "localhost")
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"urn:x\"")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    assert_eq!(
        send(addr, alice.clone(), soap("<e/>"))
            .await
            .unwrap()
            .status,
        200
    );
    let r = send(addr, alice.clone(), soap("<e/>")).await.unwrap();
    assert_eq!(r.status, 429);
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((9..=10).contains(&secs), "Retry-After {secs}");
    assert!(
        r.body.contains("<faultcode>soap:Client</faultcode>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<sg:reason>rate_limited</sg:reason>"));
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"rate_limited\",route=\"soap\",stage=\"rate\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_is_one_bucket_across_routes() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "{}{}{}",
            listener(&pki, "edge", "127.0.0.1:0", ""),
            route(
                "a",
                "edge",
                "/a",
                "rate_limit = { key = \"global\", per_minute = 1, burst = 2 }"
            ),
            route(
                "b",
                "edge",
                "/b",
                "rate_limit = { key = \"global\", per_minute = 1, burst = 2 }"
            ),
        ),
    )
    .await;
    let addr = gw.addr("edge");
    let c = pki.etl_client(&[]);
    assert_eq!(send(addr, c.clone(), get("/a")).await.unwrap().status, 200);
    assert_eq!(send(addr, c.clone(), get("/b")).await.unwrap().status, 200);
    assert_eq!(send(addr, c.clone(), get("/a")).await.unwrap().status, 429);
    assert_eq!(send(addr, c, get("/b")).await.unwrap().status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_rate_per_ip_is_checked_before_the_handshake() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "{}{}",
            listener(
                &pki,
                "edge",
                "127.0.0.1:0",
                "handshake_rate = { per_minute = 1, burst = 2 }"
            ),
            route("r", "edge", "/", ""),
        ),
    )
    .await;
    let addr = gw.addr("edge");
    for _ in 0..2 {
        assert_eq!(
            send(addr, pki.etl_client(&[]), get("/"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert!(send(addr, pki.etl_client(&[]), get("/")).await.is_err());
    let m = gw
        .wait_metric(
            "sealgate_connections_total{listener=\"edge\",reason=\"handshake_rate\",result=\"refused\"}",
            "1",
        )
        .await;
    assert!(
        m.contains(
            "sealgate_tls_handshakes_total{listener=\"edge\",reason=\"ok\",result=\"ok\"} 2"
        ),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_concurrency_limit_and_slots_released_on_cancellation() {
    let pki = Pki::new();
    let slow = upstream(|req: Request<Incoming>| async move {
        let ms: u64 = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        http::Response::new(full("done"))
    })
    .await;
    let toml = format!(
        "{ADMIN}\n{}{}\n[upstream.up]\nurl = \"http://{slow}\"\n",
        listener(&pki, "edge", "127.0.0.1:0", ""),
        route(
            "one-at-a-time",
            "edge",
            "/",
            "max_concurrent = 1\nqueue_timeout = \"200ms\""
        ),
    );
    let gw = TestGateway::start(pki.dir.path(), &toml).await;
    let addr = gw.addr("edge");
    let cfg = pki.etl_client(&[]);

    let first = tokio::spawn(send(addr, cfg.clone(), get("/?800")));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let busy = send(addr, cfg.clone(), get("/?0")).await.unwrap();
    assert_eq!(busy.status, 503);
    assert_eq!(busy.json()["reason"], "route_busy");
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(first.await.unwrap().unwrap().status, 200);

    // Callers that disconnect mid-flight, and one that gives up while queued.
    for _ in 0..3 {
        let c = cfg.clone();
        let h = tokio::spawn(async move { send(addr, c, get("/?60000")).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.abort();
    }
    gw.wait_metric_within(
        "sealgate_route_in_flight{route=\"one-at-a-time\"}",
        "0",
        Duration::from_secs(1),
    )
    .await;
    // Each cancelled call still left its one access record, counted as cancelled.
    gw.wait_metric(
        "sealgate_requests_total{outcome=\"cancelled\",route=\"one-at-a-time\",status_class=\"4xx\"}",
        "3",
    )
    .await;
    let t = Instant::now();
    assert_eq!(send(addr, cfg, get("/?0")).await.unwrap().status, 200);
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_auth_failures_block_the_ip_until_the_block_lifts() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "[server.blocking]\nmax_failures = 3\nwindow = \"30s\"\nduration = \"1500ms\"\n\n{}{}",
            listener(&pki, "edge", "127.0.0.1:0", ""),
            route("r", "edge", "/", ""),
        ),
    )
    .await;
    let addr = gw.addr("edge");
    let mut expired = Leaf::new("stale", Usage::Client);
    expired.from_days = -9;
    expired.to_days = -1;
    let expired = client_tls(&pki.ca.cert_pem, Some(&pki.issue(&expired)), &[]);
    for n in 1..=3 {
        assert!(send(addr, expired.clone(), get("/")).await.is_err());
        gw.wait_metric(
            "sealgate_tls_handshakes_total{listener=\"edge\",reason=\"expired\",result=\"refused\"}",
            &n.to_string(),
        )
        .await;
    }
    // Now even a valid client from that address is refused at accept.
    assert!(send(addr, pki.etl_client(&[]), get("/")).await.is_err());
    gw.wait_metric(
        "sealgate_connections_total{listener=\"edge\",reason=\"blocked\",result=\"refused\"}",
        "1",
    )
    .await;
    gw.wait_metric("sealgate_blocked_clients", "1").await;
    let (status, body) = admin_get(gw.gw.admin_addr, "/blocked").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blocked"][0]["client"], "127.0.0.1", "{body}");
    assert_eq!(
        v["blocked"][0]["reasons"],
        serde_json::json!(["expired", "expired", "expired"])
    );

    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        send(addr, pki.etl_client(&[]), get("/"))
            .await
            .unwrap()
            .status,
        200
    );
    gw.wait_metric("sealgate_blocked_clients", "0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_denials_block_the_identity_and_never_block_addresses_are_spared() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "[server.blocking]\nmax_failures = 2\nwindow = \"30s\"\nduration = \"60s\"\nnever_block = [\"127.0.0.1/32\"]\n\n{}{}",
            listener(&pki, "edge", "127.0.0.1:0", ""),
            route("finance", "edge", "/", "allow = [{ ou = \"Finance\" }]"),
        ),
    )
    .await;
    let addr = gw.addr("edge");
    let intruder = pki.etl_client(&[]);
    for _ in 0..2 {
        assert_eq!(
            send(addr, intruder.clone(), get("/")).await.unwrap().status,
            403
        );
    }
    // The identity is blocked (its connections are closed after the handshake) ...
    assert!(send(addr, intruder, get("/")).await.is_err());
    let (_, body) = admin_get(gw.gw.admin_addr, "/blocked").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blocked"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(v["blocked"][0]["kind"], "identity");
    // ... but 127.0.0.1 is on never_block, so a finance client still gets in.
    let finance = client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client("ledger", "Finance", KeyAlg::EcdsaP256)),
        &[],
    );
    assert_eq!(send(addr, finance, get("/")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_applies_to_connections_already_open() {
    let pki = Pki::new();
    let gw =
        gateway(
            &pki,
            &format!(
            "[server.blocking]\nmax_failures = 2\nwindow = \"30s\"\nduration = \"60s\"\n\n{}{}{}",
            listener(&pki, "edge", "127.0.0.1:0", ""),
            route("open", "edge", "/open", ""),
            route("finance", "edge", "/finance", "allow = [{ ou = \"Finance\" }]"),
        ),
        )
        .await;
    // One keep-alive connection: probes until blocked, then even allowed paths are refused on it.
    let tls = tls_connect(gw.addr("edge"), pki.etl_client(&[]))
        .await
        .unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    for path in ["/open", "/finance", "/finance", "/open"] {
        s.ready().await.unwrap();
        let r = s.send_request(get(path)).await.unwrap();
        statuses.push(r.status().as_u16());
        // Read the whole response so the connection can carry the next request.
        http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap();
    }
    assert_eq!(statuses, [200, 403, 403, 403]);
    gw.wait_metric(
        "sealgate_rejections_total{reason=\"blocked\",route=\"open\",stage=\"ip\"}",
        "1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_local_and_a_stalled_header() {
    let pki = Pki::new();
    let gw = gateway(
        &pki,
        &format!(
            "{}{}",
            listener(
                &pki,
                "lb",
                "127.0.0.1:0",
                "proxy_protocol = { trusted = [\"127.0.0.1/32\"], timeout = \"500ms\" }"
            ),
            route("r", "lb", "/", ""),
        ),
    )
    .await;
    let lb = gw.addr("lb");
    // LOCAL (the balancer's own health check): no client address, the peer is the client.
    let local = ppp::v2::Builder::new(
        ppp::v2::Version::Two | ppp::v2::Command::Local,
        ppp::v2::AddressFamily::Unspecified | ppp::v2::Protocol::Unspecified,
    )
    .build()
    .unwrap();
    let r = via_proxy(lb, &local, &pki, "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["x-forwarded-for"], "127.0.0.1");
    // Half a header, then nothing: cut off after the timeout, not held open.
    let mut tcp = TcpStream::connect(lb).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.").await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .unwrap()
    .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    gw.wait_metric(
        "sealgate_connections_total{listener=\"lb\",reason=\"proxy_timeout\",result=\"refused\"}",
        "1",
    )
    .await;
}
