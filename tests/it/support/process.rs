//! The `sealgate` binary run as a process, as an operator starts it.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sealgate");

/// A gateway process and the addresses it logged.
pub struct Proc {
    pub child: Child,
    pub edge: SocketAddr,
    pub admin: SocketAddr,
    /// Log lines after start-up; the reader thread keeps the pipe drained.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// The lines up to the announced addresses, as JSON.
    pub startup: Vec<serde_json::Value>,
}

pub fn spawn_gateway(config_file: &Path) -> Proc {
    spawn_gateway_with(config_file, &[])
}

/// As `spawn_gateway`, with more arguments to `run` (`--no-watch`).
pub fn spawn_gateway_with(config_file: &Path, args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config_file)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let (mut edge, mut admin) = (None, None);
    let mut startup = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while edge.is_none() || admin.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("gateway did not start");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(a) = v["addr"].as_str() {
            edge = a.parse().ok();
        }
        if let Some(a) = v["admin"].as_str() {
            admin = a.parse().ok();
        }
        startup.push(v);
    }
    Proc {
        child,
        edge: edge.unwrap(),
        admin: admin.unwrap(),
        lines: rx,
        startup,
    }
}

pub fn sigterm(pid: u32) {
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// A test that fails leaves no gateway running behind it.
impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    /// The next log line whose JSON has `event` = `event` (and every other
    /// field in `with`), within `limit`; lines before it are passed over.
    pub fn wait_event(
        &self,
        event: &str,
        with: &[(&str, &str)],
        limit: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event} {with:?} event within {limit:?}"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["event"] == event && with.iter().all(|(k, want)| v[*k] == *want) {
                return v;
            }
        }
    }

    /// The whole log as text (lines after start-up as written, JSON or
    /// not), waiting `limit` for more: what a scan for secrets reads.
    pub fn log_text(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut out: String = self.startup.iter().map(|v| format!("{v}\n")).collect();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Every log line since start-up, waiting `limit` for more.
    pub fn lines_within(&self, limit: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        let mut out = self.startup.clone();
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(serde_json::from_str(&line).unwrap_or_default());
        }
        out
    }
}
