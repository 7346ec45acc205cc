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
}

impl Redis {
    fn start() -> Option<Redis> {
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
        let mut r = Redis { port, child: None };
        r.up();
        Some(r)
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
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
    let up = body_echo().await;
    let toml = format!(
        "[state]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"it{}:\"\n{state}\n{}",
        redis.url(),
        rand_suffix(),
        config(
            pki,
            "required",
            &format!(
                "{}[route.wssec.request]\nmode = \"verify\"\ntrust = \"ca.crt\"\n\n{}\n[upstream.up]\nurl = \"http://{up}\"\n",
                route("ledger", "/soap/", ""),
                route(
                    "bulk",
                    "/bulk/",
                    "rate_limit = { key = \"client\", per_minute = 5, burst = 5 }"
                ),
            ),
        )
    );
    pki.write(&format!("replica-{}.toml", rand_suffix()), &toml)
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

    let msg = signed(SOAP, &who);
    let r = send(a.edge, client.clone(), post(msg.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(b.edge, client.clone(), post(msg)).await.unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.body.contains("wsse:"), "a WS-Security fault: {}", r.body);

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
    let msg = signed(SOAP, &who);
    let r = send(lenient.edge, client.clone(), post(msg.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(lenient.edge, client.clone(), post(msg)).await.unwrap();
    assert_eq!(r.status, 500, "{}", r.body);
    let (_, m) = admin_get(lenient.admin, "/metrics").await;
    assert!(
        metric_value(
            &m,
            "sealgate_state_operations_total{kind=\"replay\",result=\"fallback\"}"
        ) >= 2.0,
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
    stop(strict);
    stop(lenient);
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
    // 5 a minute: the next token is 12 s away.
    assert!(
        waits
            .iter()
            .all(|w| (1..=12).contains(&w.parse::<u32>().unwrap())),
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
