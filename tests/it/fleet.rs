//! Replicas sharing state through a real `redis-server` (Debian's, started
//! here on a free loopback port): two gateway processes, one Redis. Without
//! redis-server the tests say so and pass, under `CI=true` they fail.

use crate::support::process::{sigterm, spawn_gateway, Proc};
use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SOAP: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body><acct:Post xmlns:acct="urn:acct"><amount>100</amount></acct:Post></soap:Body></soap:Envelope>"#;

/// A redis-server on `port`, stopped when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
    /// How it listens: plain on `port`, or `--tls-port` and its files.
    listen: Vec<String>,
}

impl Redis {
    fn start() -> Option<Redis> {
        Redis::start_with(|port| vec!["--port".into(), port.to_string()])
    }

    /// A redis-server whose listening arguments `listen` gives for its port.
    fn start_with(listen: impl Fn(u16) -> Vec<String>) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").is_err(),
                "CI needs redis-server (.ci/run installs Debian's redis-server)"
            );
            eprintln!("skipped: no redis-server (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis {
            port,
            child: None,
            listen: listen(port),
        };
        r.up();
        Some(r)
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Keys matching `pattern`, each with its time to live in ms (-1: none).
    fn keys(&self, pattern: &str) -> Vec<(String, i64)> {
        let cli = |args: &[&str]| {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "redis-cli {args:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        cli(&["--scan", "--pattern", pattern])
            .lines()
            .map(|k| (k.to_owned(), cli(&["PTTL", k]).trim().parse().unwrap()))
            .collect()
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

async fn body_echo() -> std::net::SocketAddr {
    upstream(|req: http::Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let b = req.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(full(b))
    })
    .await
}

/// A verifying route on every replica, its state in `redis`.
async fn replica_config(pki: &Pki, redis: &Redis, state: &str) -> std::path::PathBuf {
    replica_config_at(pki, &format!("url = \"{}\"\n{state}", redis.url())).await
}

/// As `replica_config`, `[state]` saying where Redis is in `state`.
async fn replica_config_at(pki: &Pki, state: &str) -> std::path::PathBuf {
    let up = body_echo().await;
    let toml = format!(
        "[state]\nbackend = \"redis\"\nkey_prefix = \"it{}:\"\n{state}\n{}",
        rand_suffix(),
        config(
            pki,
            "required",
            &format!(
                "{}[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\nusernames = [{{ user = \"etl\", password_file = \"pw\" }}]\n\n{}\n[upstream.up]\nurl = \"http://{up}\"\n",
                route("ledger", "/soap/", ""),
                route(
                    "bulk",
                    "/bulk/",
                    "rate_limit = { key = \"client\", per_minute = 5, burst = 5 }"
                ),
            ),
        )
    );
    pki.write("pw", "etl-password\n");
    pki.write(&format!("replica-{}.toml", rand_suffix()), &toml)
}

/// `SOAP` signed now by `who`, with a digest UsernameToken (so a Nonce).
fn signed_with_nonce(who: &sealgate::pki::Issued) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use sealgate::wssec::sign::{sign, SignOptions, SigningKey, UsernameToken};
    let der =
        rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(who.key_pem.as_bytes()).unwrap();
    let key = SigningKey::from_pkcs8_der(der.secret_pkcs8_der()).unwrap();
    let mut o = SignOptions::new(std::time::SystemTime::now());
    o.username_token = Some(UsernameToken {
        username: "etl".into(),
        password: sealgate::wssec::tokens::Secret::new(b"etl-password".to_vec()),
        digest: true,
    });
    sign(SOAP.as_bytes(), &key, &who.der, &o).unwrap()
}

/// Messages `gw` refused as replays.
async fn replays(gw: &Proc) -> f64 {
    metric_value(
        &admin_get(gw.admin, "/metrics").await.1,
        "sealgate_wssec_verifications_total{direction=\"request\",reason=\"wssec_replay\",result=\"failed\",route=\"ledger\"}",
    )
}

fn post(body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::post("/soap/ledger")
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Waits until `gw`'s metrics say the store answers.
async fn connected(gw: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = admin_get(gw.admin, "/metrics").await;
        if m.contains("sealgate_state_backend_up 1") {
            return;
        }
        assert!(Instant::now() < deadline, "never connected:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(mut gw: Proc) {
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_accepted_by_one_replica_is_a_replay_on_the_other() {
    let Some(redis) = Redis::start() else { return };
    let pki = Pki::new();
    let file = replica_config(&pki, &redis, "").await;
    let (a, b) = (spawn_gateway(&file), spawn_gateway(&file));
    connected(&a).await;
    connected(&b).await;
    let who = signer(&pki, "accounting-signer");
    let client = pki.etl_client(&[]);

    // Signed, with a UsernameToken nonce: both recorded in one round trip,
    // each expiring with the message's freshness.
    let msg = signed_with_nonce(&who);
    let before = metric_value(
        &admin_get(a.admin, "/metrics").await.1,
        "sealgate_state_operations_total{kind=\"replay\",result=\"ok\"}",
    );
    let r = send(a.edge, client.clone(), post(msg.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let after = metric_value(
        &admin_get(a.admin, "/metrics").await.1,
        "sealgate_state_operations_total{kind=\"replay\",result=\"ok\"}",
    );
    assert_eq!(after - before, 1.0, "one round trip for both entries");
    let keys = redis.keys("*replay:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    // The Timestamp lives 5 minutes; kept that long plus the clock skew.
    assert!(
        keys.iter().all(|(_, ttl)| (60_000..=900_000).contains(ttl)),
        "{keys:?}"
    );
    let r = send(b.edge, client.clone(), post(msg)).await.unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("wsse:"), "a WS-Security fault: {}", r.body);
    assert_eq!(replays(&b).await, 1.0);

    // One message, 20 submissions at once across both: exactly one passes.
    let msg = signed(SOAP, &who);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let to = if i % 2 == 0 { a.edge } else { b.edge };
            tokio::spawn(send(to, client.clone(), post(msg.clone())))
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        match r.status.as_u16() {
            200 => accepted += 1,
            500 => {}
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(replays(&a).await + replays(&b).await, 20.0);
    let (_, m) = admin_get(b.admin, "/metrics").await;
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"replay\",result=\"ok\"}"
        ) >= 10.0,
        "{m}"
    );
    stop(a);
    stop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_replay_fails_closed_or_falls_back_and_recovers() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let pki = Pki::new();
    let closed = replica_config(&pki, &redis, "").await;
    let local = replica_config(&pki, &redis, "[state.on_failure]\nreplay = \"local\"\n").await;
    let (strict, lenient) = (spawn_gateway(&closed), spawn_gateway(&local));
    connected(&strict).await;
    connected(&lenient).await;
    let who = signer(&pki, "accounting-signer");
    let client = pki.etl_client(&[]);

    redis.down();
    // fail_closed: 503, never a hang (the deadline is 50 ms).
    let started = Instant::now();
    let r = send(strict.edge, client.clone(), post(signed(SOAP, &who)))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let ev = strict.wait_event("state_backend_unavailable", &[], Duration::from_secs(10));
    assert_eq!(ev["url"], redis.url());
    let (_, m) = admin_get(strict.admin, "/metrics").await;
    assert!(m.contains("sealgate_state_backend_up 0"), "{m}");
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"replay\",result=\"fail_closed\"}"
        ) >= 1.0,
        "{m}"
    );
    // local: this replica's own cache decides, and still refuses a replay.
    let during = signed(SOAP, &who);
    let r = send(lenient.edge, client.clone(), post(during.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(lenient.edge, client.clone(), post(during.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    let (_, m) = admin_get(lenient.admin, "/metrics").await;
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"replay\",result=\"fallback\"}"
        ) >= 1.0,
        "{m}"
    );

    // Redis back: the strict replica accepts again, and says so once.
    redis.up();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = send(strict.edge, client.clone(), post(signed(SOAP, &who)))
            .await
            .unwrap();
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    strict.wait_event("state_backend_recovered", &[], Duration::from_secs(10));
    // What the lenient replica accepted on its own stays a replay there.
    connected(&lenient).await;
    let r = send(lenient.edge, client.clone(), post(during))
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    stop(strict);
    stop(lenient);
}

/// A Redis that stops answering without closing its connections (a
/// partition, a paused process): the first request waits one deadline, the
/// next ones not at all, and the replica recovers once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_costs_one_deadline() {
    let Some(redis) = Redis::start() else { return };
    let pki = Pki::new();
    let file = replica_config(&pki, &redis, "timeout = \"100ms\"").await;
    let gw = spawn_gateway(&file);
    connected(&gw).await;
    let who = signer(&pki, "accounting-signer");
    let client = pki.etl_client(&[]);
    let timed = async |want: u16| {
        let started = Instant::now();
        let r = send(gw.edge, client.clone(), post(signed(SOAP, &who)))
            .await
            .unwrap();
        assert_eq!(r.status, want, "{}", r.body);
        started.elapsed()
    };
    let normal = timed(200).await.max(timed(200).await);

    redis.signal("STOP");
    let first = timed(503).await;
    let deadline = Duration::from_millis(100);
    let slack = Duration::from_millis(400);
    assert!(first >= deadline, "waited the deadline: {first:?}");
    assert!(
        first < normal + deadline + slack,
        "{first:?} against {normal:?}"
    );
    for _ in 0..3 {
        let next = timed(503).await;
        assert!(next < normal + slack, "{next:?} against {normal:?}");
    }
    let (_, m) = admin_get(gw.admin, "/metrics").await;
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"replay\",result=\"timeout\"}"
        ) >= 1.0,
        "{m}"
    );

    redis.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = send(gw.edge, client.clone(), post(signed(SOAP, &who)))
            .await
            .unwrap();
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(gw);
}

/// A per-client limit of 5 a minute admits 5 across both replicas, not 10;
/// with `on_failure.rate = "fail_closed"` a replica without Redis refuses
/// with 503, with the default each replica's own buckets decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_client_limit_holds_across_replicas() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let pki = Pki::new();
    let file = replica_config(&pki, &redis, "[state.on_failure]\nrate = \"fail_closed\"\n").await;
    let local = replica_config(&pki, &redis, "").await;
    let (a, b, c) = (
        spawn_gateway(&file),
        spawn_gateway(&file),
        spawn_gateway(&local),
    );
    for gw in [&a, &b, &c] {
        connected(gw).await;
    }
    let client = pki.etl_client(&[]);
    let mut passed = 0;
    let mut waits = Vec::new();
    for i in 0..10 {
        let to = if i % 2 == 0 { a.edge } else { b.edge };
        let r = send(to, client.clone(), get("/bulk/x")).await.unwrap();
        match r.status.as_u16() {
            200 => passed += 1,
            429 => waits.push(r.headers["retry-after"].to_str().unwrap().to_owned()),
            s => panic!("{s}: {}", r.body),
        }
    }
    assert_eq!(passed, 5, "admitted across both replicas");
    // One bucket, gone once it is full again (5 a minute: within a minute).
    let keys = redis.keys("*rate:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!((1..=60_000).contains(&keys[0].1), "{keys:?}");
    // 5 a minute: the next token is 12 s away.
    assert!(
        waits
            .iter()
            .all(|w| (11..=12).contains(&w.parse::<u32>().unwrap())),
        "{waits:?}"
    );

    redis.down();
    let started = Instant::now();
    let r = send(a.edge, client.clone(), get("/bulk/x")).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["x-sealgate-refusal"], "rate_store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The default: this replica's own buckets (a fresh client's 5).
    let other = client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client("etl-other", "ETL", sealgate::pki::KeyAlg::EcdsaP256)),
        &[],
    );
    let r = send(c.edge, other, get("/bulk/x")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, m) = admin_get(c.admin, "/metrics").await;
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"rate\",result=\"fallback\"}"
        ) >= 1.0,
        "{m}"
    );
    stop(a);
    stop(b);
    stop(c);
}

/// Replicas blocking together: `[server.blocking]` with `extra`, an open
/// route and one for Finance only.
async fn blocking_config(pki: &Pki, redis: &Redis, extra: &str) -> std::path::PathBuf {
    let up = body_echo().await;
    let toml = format!(
        "[state]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"it{}:\"\n{}",
        redis.url(),
        rand_suffix(),
        config(
            pki,
            "required",
            &format!(
                "{}{}[upstream.up]\nurl = \"http://{up}\"\n\n[server.blocking]\n{extra}\n",
                route("open", "/open", ""),
                route("finance", "/finance", "allow = [{ ou = \"Finance\" }]"),
            ),
        )
    );
    pki.write(&format!("blocking-{}.toml", rand_suffix()), &toml)
}

fn expired_client(pki: &Pki) -> std::sync::Arc<rustls::ClientConfig> {
    let mut leaf = sealgate::pki::Leaf::new("stale", sealgate::pki::Usage::Client);
    leaf.from_days = -9;
    leaf.to_days = -1;
    client_tls(&pki.ca.cert_pem, Some(&pki.issue(&leaf)), &[])
}

/// `n` handshakes with an expired certificate to `gw`, each refused.
async fn fail_handshakes(gw: &Proc, pki: &Pki, n: usize) {
    let expired = expired_client(pki);
    for _ in 0..n {
        let started = Instant::now();
        assert!(send(gw.edge, expired.clone(), get("/open")).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// Waits until `gw` has imposed `n` address blocks: the failure that
/// completes one is recorded just after the client saw its handshake fail.
async fn imposed_blocks(gw: &Proc, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = admin_get(gw.admin, "/metrics").await;
        if metric_value(&m, "sealgate_blocks_total{kind=\"ip\"}") == n {
            return;
        }
        assert!(Instant::now() < deadline, "want {n} blocks:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `gw` until a valid client gets `want` (`None`: refused at accept).
async fn until_admits(gw: &Proc, pki: &Pki, want: Option<u16>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = send(gw.edge, pki.etl_client(&[]), get("/open"))
            .await
            .ok()
            .map(|r| r.status.as_u16());
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "want {want:?}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An address that fails on replica A is refused at accept by replica B, and
/// on B's connections already open; both list the block. Without Redis each
/// replica blocks on its own; with Redis back they share again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_blocked_on_one_replica_is_refused_by_the_other() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let pki = Pki::new();
    let file = blocking_config(
        &pki,
        &redis,
        "max_failures = 3\nwindow = \"30s\"\nduration = \"3s\"",
    )
    .await;
    let (a, b) = (spawn_gateway(&file), spawn_gateway(&file));
    connected(&a).await;
    connected(&b).await;
    // A keep-alive connection to B, open before the block.
    let tls = tls_connect(b.edge, pki.etl_client(&[])).await.unwrap();
    let (mut open, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let ask = async |open: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
                     path: &str| {
        open.ready().await.unwrap();
        let r = open.send_request(get(path)).await.unwrap();
        let refusal = r.headers().get("x-sealgate-refusal").cloned();
        http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap();
        refusal
    };
    assert_eq!(ask(&mut open, "/open").await, None);

    fail_handshakes(&a, &pki, 3).await;
    imposed_blocks(&a, 1.0).await;
    let blocked_at = Instant::now();
    // B refuses a valid client from that address at accept ...
    assert!(send(b.edge, pki.etl_client(&[]), get("/open"))
        .await
        .is_err());
    let (_, m) = admin_get(b.admin, "/metrics").await;
    assert_eq!(
        metric_value(
            &m,
            "sealgate_connections_total{listener=\"edge\",reason=\"blocked\",result=\"refused\"}"
        ),
        1.0,
        "{m}"
    );
    // ... and on the connection that was already open: a request that would
    // fail authorization is `blocked`, and counts against nobody ...
    assert_eq!(ask(&mut open, "/finance").await.unwrap(), "blocked");
    assert_eq!(ask(&mut open, "/open").await.unwrap(), "blocked");
    for gw in [&a, &b] {
        let (_, body) = admin_get(gw.admin, "/blocked").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["shared"], true, "{body}");
        assert_eq!(v["blocked"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(v["blocked"][0]["client"], "127.0.0.1", "{body}");
        assert_eq!(
            v["blocked"][0]["reasons"],
            serde_json::json!(["expired", "expired", "expired"]),
            "{body}"
        );
    }
    assert!(
        blocked_at.elapsed() < Duration::from_secs(3),
        "the test was too slow to see the block"
    );
    // The block expires with its duration; the failures went with it.
    let keys = redis.keys("*block:ip:*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!((1..=3000).contains(&keys[0].1), "{keys:?}");
    assert!(redis.keys("*failures:*").is_empty());
    // Logged once, by the replica that imposed it.
    let imposed = |gw: &Proc| {
        gw.lines_within(Duration::from_millis(300))
            .iter()
            .filter(|v| v["message"] == "client blocked after repeated authentication failures")
            .count()
    };
    assert_eq!((imposed(&a), imposed(&b)), (1, 0));

    // The block lifts on both.
    until_admits(&a, &pki, Some(200), Duration::from_secs(10)).await;
    until_admits(&b, &pki, Some(200), Duration::from_secs(10)).await;

    // Without Redis: A blocks on its own, B (which never heard) admits.
    redis.down();
    fail_handshakes(&a, &pki, 3).await;
    imposed_blocks(&a, 2.0).await;
    assert!(send(a.edge, pki.etl_client(&[]), get("/open"))
        .await
        .is_err());
    let started = Instant::now();
    let r = send(b.edge, pki.etl_client(&[]), get("/open"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(2));
    let (_, m) = admin_get(a.admin, "/metrics").await;
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"block\",result=\"fallback\"}"
        ) >= 3.0,
        "{m}"
    );
    let (_, body) = admin_get(a.admin, "/blocked").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blocked"][0]["client"], "127.0.0.1", "{body}");
    assert!(v["store_error"].is_string(), "{body}");

    // Redis back: a block imposed on B reaches A again.
    redis.up();
    until_admits(&a, &pki, Some(200), Duration::from_secs(10)).await;
    connected(&b).await;
    fail_handshakes(&b, &pki, 3).await;
    imposed_blocks(&b, 1.0).await;
    assert!(send(a.edge, pki.etl_client(&[]), get("/open"))
        .await
        .is_err());
    stop(a);
    stop(b);
}

/// A certificate denied twice on A is closed after the handshake on B, while
/// its address (on `never_block`) and other clients are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_blocked_on_one_replica_is_closed_by_the_other() {
    let Some(redis) = Redis::start() else { return };
    let pki = Pki::new();
    let file = blocking_config(
        &pki,
        &redis,
        "max_failures = 2\nwindow = \"30s\"\nduration = \"60s\"\nnever_block = [\"127.0.0.1/32\"]",
    )
    .await;
    let (a, b) = (spawn_gateway(&file), spawn_gateway(&file));
    connected(&a).await;
    connected(&b).await;
    let intruder = pki.etl_client(&[]);
    for _ in 0..2 {
        let r = send(a.edge, intruder.clone(), get("/finance"))
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.headers["x-sealgate-refusal"], "identity_not_allowed");
    }
    assert!(send(b.edge, intruder, get("/open")).await.is_err());
    let finance = client_tls(
        &pki.ca.cert_pem,
        Some(&pki.client("ledger", "Finance", sealgate::pki::KeyAlg::EcdsaP256)),
        &[],
    );
    let r = send(b.edge, finance, get("/finance")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, body) = admin_get(b.admin, "/blocked").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blocked"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(v["blocked"][0]["kind"], "identity", "{body}");
    assert_eq!(
        v["blocked"][0]["reasons"],
        serde_json::json!(["identity_not_allowed", "identity_not_allowed"]),
        "{body}"
    );
    stop(a);
    stop(b);
}

/// A reload moves the state from this process to Redis and back: limits
/// counted in Redis once it is named, and in this process again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_may_change_the_backend() {
    let Some(redis) = Redis::start() else { return };
    let pki = Pki::new();
    let up = body_echo().await;
    let toml = |state: &str| {
        format!(
            "{state}\n{}",
            config(
                &pki,
                "required",
                &format!(
                    "{}[upstream.up]\nurl = \"http://{up}\"\n",
                    route(
                        "bulk",
                        "/bulk/",
                        "rate_limit = { key = \"client\", per_minute = 5, burst = 5 }"
                    )
                ),
            )
        )
    };
    let shared = format!("[state]\nbackend = \"redis\"\nurl = \"{}\"\n", redis.url());
    let file = pki.write("moving.toml", &toml(""));
    let gw = crate::support::process::spawn_gateway_with(&file, &["--no-watch"]);
    let client = pki.etl_client(&[]);
    let statuses = async |n: usize| {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                send(gw.edge, client.clone(), get("/bulk/x"))
                    .await
                    .unwrap()
                    .status
                    .as_u16(),
            );
        }
        v
    };
    let rate_ops = async || {
        metric_value(
            &admin_get(gw.admin, "/metrics").await.1,
            "sealgate_state_operations_total{kind=\"rate\",result=\"ok\"}",
        )
    };
    assert_eq!(statuses(2).await, [200, 200]);
    assert!(redis.keys("*").is_empty());

    pki.write("moving.toml", &toml(&shared));
    let (status, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
    connected(&gw).await;
    // A fresh bucket in Redis: 5, not the 3 this process had left.
    assert_eq!(statuses(6).await, [200, 200, 200, 200, 200, 429]);
    assert_eq!(redis.keys("*rate:*").len(), 1);
    let ops = rate_ops().await;
    assert_eq!(ops, 6.0);

    pki.write("moving.toml", &toml(""));
    let (status, body) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{body}");
    // This process's bucket again (3 left), and Redis is not asked.
    assert_eq!(statuses(4).await, [200, 200, 200, 429]);
    assert_eq!(rate_ops().await, ops);
    stop(gw);
}

/// `rediss://` with the CA of Redis's certificate, a client certificate
/// Redis requires, and a password from a file: replay shared over TLS. With
/// the wrong password the store never answers, and replay fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_over_tls_with_a_client_certificate_and_a_password() {
    let pki = Pki::new();
    let redis_client = pki.client(
        "sealgate-state",
        "Gateways",
        sealgate::pki::KeyAlg::EcdsaP256,
    );
    pki.write("state.crt", &redis_client.cert_pem);
    pki.write("state.key", &redis_client.key_pem);
    pki.write("state-password", "s3cret-for-redis\n");
    pki.write("wrong-password", "not-it\n");
    let files = [
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
    ];
    let Some(redis) = Redis::start_with(|port| {
        let mut v: Vec<String> = ["--port", "0", "--tls-port", &port.to_string()]
            .map(String::from)
            .into();
        for (flag, f) in ["--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"]
            .iter()
            .zip(&files)
        {
            v.push((*flag).into());
            v.push(f.display().to_string());
        }
        v.extend(
            [
                "--tls-auth-clients",
                "yes",
                "--requirepass",
                "s3cret-for-redis",
            ]
            .map(String::from),
        );
        v
    }) else {
        return;
    };
    let tls = |password: &str| {
        format!(
            "url = \"rediss://localhost:{}/0\"\nca = \"ca.crt\"\ncert = \"state.crt\"\nkey = \"state.key\"\npassword_file = \"{password}\"",
            redis.port
        )
    };
    let good = replica_config_at(&pki, &tls("state-password")).await;
    let bad = replica_config_at(&pki, &tls("wrong-password")).await;
    let (a, b, wrong) = (
        spawn_gateway(&good),
        spawn_gateway(&good),
        spawn_gateway(&bad),
    );
    connected(&a).await;
    connected(&b).await;
    let who = signer(&pki, "accounting-signer");
    let client = pki.etl_client(&[]);
    let msg = signed(SOAP, &who);
    let r = send(a.edge, client.clone(), post(msg.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(b.edge, client.clone(), post(msg)).await.unwrap();
    assert_eq!(r.status, 500, "a replay over TLS too: {}", r.body);
    let r = send(wrong.edge, client.clone(), post(signed(SOAP, &who)))
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    wrong.wait_event("state_backend_unavailable", &[], Duration::from_secs(10));
    // Neither password in any log line, metric or listing.
    for gw in [&a, &b, &wrong] {
        let mut seen = gw.log_text(Duration::from_millis(300));
        seen.push_str(&admin_get(gw.admin, "/metrics").await.1);
        seen.push_str(&admin_get(gw.admin, "/blocked").await.1);
        assert!(seen.contains("state_backend"), "the log was read");
        for secret in ["s3cret-for-redis", "not-it"] {
            assert!(!seen.contains(secret), "{secret} in {seen}");
        }
    }
    for gw in [a, b, wrong] {
        stop(gw);
    }
}

/// `[state]` mistakes are named by `check`, each with its key.
#[test]
fn state_settings_are_checked() {
    let pki = Pki::new();
    let base = config(
        &pki,
        "required",
        "[[route]]\nname = \"r\"\nlistener = \"edge\"\nupstream = \"up\"\n[upstream.up]\nurl = \"http://127.0.0.1:9\"\n",
    );
    for (state, says) in [
        ("url = \"redis://h:6379\"", "state.url: applies to backend = \"redis\" only"),
        ("backend = \"redis\"", "state.url: backend = \"redis\" needs url"),
        ("backend = \"redis\"\nurl = \"http://h\"", "is not a redis:// or rediss:// URL"),
        (
            "backend = \"redis\"\nurl = \"http://u:hunter2@h\"",
            "is not a redis:// or rediss:// URL",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://:hunter2@h:6379/0\"",
            "the URL carries a password: move it to password_file or password_env",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://h:6379/0\"\ntimeout = \"10s\"",
            "state.timeout: between 1ms and 5s",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://h:6379/0\"\nca = \"ca.crt\"",
            "state.ca: applies to rediss:// URLs only",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://h:6379/0\"\npassword_env = \"SEALGATE_TEST_UNSET_VAR\"",
            "environment variable SEALGATE_TEST_UNSET_VAR (the Redis password) is not set",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://h:6379/0\"\n[state.on_failure]\nreplay = \"open\"",
            "unknown variant `open`",
        ),
    ] {
        let file = pki.write("state.toml", &format!("[state]\n{state}\n{base}"));
        let out = std::process::Command::new(crate::support::process::BIN)
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{state}: {text}");
        assert!(text.contains(says), "{state}: want {says:?} in {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
