//! Logs as an operator reads them: JSON lines or plain text, audit events
//! in a file of their own, and no line longer than the bound.

use crate::support::process::{sigterm, spawn_gateway, BIN};
use crate::support::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn echo_toml(pki: &Pki, log: &str) -> String {
    let up = header_echo_upstream().await;
    format!(
        "[log]\n{log}\n{}",
        config(
            pki,
            "required",
            &format!(
                "{}\n[upstream.up]\nurl = \"http://{up}\"\n",
                route("all", "/", "")
            ),
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_also_go_to_their_own_file() {
    let pki = Pki::new();
    let audit = pki.path("audit.log");
    let file = pki.write(
        "gw.toml",
        &echo_toml(&pki, &format!("audit_file = {audit:?}")).await,
    );
    let mut gw = spawn_gateway(&file);
    assert_eq!(
        send(gw.edge, pki.etl_client(&[]), get("/x"))
            .await
            .unwrap()
            .status,
        200
    );
    let (status, _) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200);
    // On stdout too.
    gw.wait_event(
        "config_reload",
        &[("trigger", "admin")],
        Duration::from_secs(10),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.contains("config_reload") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "config_reload" && v["trigger"] == "admin"),
        "{lines}"
    );
    assert!(
        events.iter().all(|v| v["target"] == "sealgate::audit"),
        "only audit events: {lines}"
    );
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_is_longer_than_the_bound() {
    let pki = Pki::new();
    let file = pki.write("gw.toml", &echo_toml(&pki, "max_line = \"1KiB\"").await);
    let mut gw = spawn_gateway(&file);
    let long = format!("/{}", "a".repeat(4000));
    assert_eq!(
        send(gw.edge, pki.etl_client(&[]), get(&long))
            .await
            .unwrap()
            .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let l = gw
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no access line");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(l.len() <= 1024, "{} bytes: {l}", l.len());
        if v["message"] == "request" {
            break (l, v);
        }
    };
    let (raw, v) = line;
    assert!(v["truncated"].as_u64().unwrap() > 4000, "{raw}");
    assert!(v["path"].as_str().unwrap().ends_with('…'), "{raw}");
    assert_eq!(v["status"], 200, "the short fields stay: {raw}");
    sigterm(gw.child.id());
    assert!(gw.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_on_request() {
    let pki = Pki::new();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (edge, admin) = (free(), free());
    let toml = echo_toml(&pki, "")
        .await
        .replacen("127.0.0.1:0", &admin.to_string(), 1)
        .replacen("127.0.0.1:0", &edge.to_string(), 1);
    let file = pki.write("gw.toml", &toml);
    let mut child = Command::new(BIN)
        .args(["run", "--log-format", "text", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let wait_for = |needle: &str| loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {needle:?} line"));
        assert!(
            serde_json::from_str::<serde_json::Value>(&l).is_err(),
            "a JSON line: {l}"
        );
        if l.contains(needle) {
            return l;
        }
    };
    let l = wait_for("listening");
    assert!(l.contains(" INFO ") && l.contains("sealgate:"), "{l}");
    assert_eq!(
        send(edge, pki.etl_client(&[]), get("/plain"))
            .await
            .unwrap()
            .status,
        200
    );
    let l = wait_for("request");
    assert!(
        l.contains("path=\"/plain\"") || l.contains("path=/plain"),
        "{l}"
    );
    sigterm(child.id());
    assert!(child.wait().unwrap().success());
}
