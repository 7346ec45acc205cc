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
}

pub fn spawn_gateway(config_file: &Path) -> Proc {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config_file)
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
    }
    Proc {
        child,
        edge: edge.unwrap(),
        admin: admin.unwrap(),
        lines: rx,
    }
}

pub fn sigterm(pid: u32) {
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
}
