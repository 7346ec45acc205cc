//! The container image as an operator deploys it: built from
//! docker/Dockerfile on a base made with debootstrap (docker/base-image.sh;
//! no registry is reachable) from the binary these tests run, then started
//! with its config and certificates mounted read-only on the host network.
//! Needs a Docker engine: `.ci/run` starts one; elsewhere without one the
//! tests say so and pass, under `CI=true` they fail.

use crate::support::process::BIN;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BASE: &str = "sealgate-base:bookworm";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Debian's docker client where installed (it matches Debian's engine).
fn docker_bin() -> &'static str {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new(docker_bin())
        .args(args)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Whether an engine answers and the base image is there.
fn engine() -> bool {
    let up = Command::new(docker_bin())
        .args(["image", "inspect", BASE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs a Docker engine with {BASE} (.ci/run starts dockerd and runs docker/base-image.sh)"
        );
        eprintln!("skipped: no Docker engine with {BASE} (see docker/base-image.sh)");
    }
    up
}

/// The image, built once per test run from the binary under test.
fn image() -> &'static str {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "sealgate:it".to_owned();
        let ctx = tempfile::tempdir().unwrap();
        let bin = ctx.path().join("sealgate");
        if std::fs::hard_link(BIN, &bin).is_err() {
            std::fs::copy(BIN, &bin).unwrap();
        }
        let dockerfile = repo().join("docker/Dockerfile");
        docker_ok(&[
            "build",
            "--network",
            "host",
            "-f",
            dockerfile.to_str().unwrap(),
            "--build-arg",
            "BUILD=host",
            "--build-arg",
            &format!("BASE={BASE}"),
            "--build-arg",
            "HOST_BINARY=sealgate",
            "--label",
            "sealgate-test=1",
            "-t",
            &tag,
            ctx.path().to_str().unwrap(),
        ]);
        // The image of an earlier run, now untagged.
        let _ = docker(&["image", "prune", "-f", "--filter", "label=sealgate-test=1"]);
        tag
    })
}

/// A container removed when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

impl Container {
    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.0])
    }
    fn logs(&self) -> String {
        let o = docker(&["logs", &self.0]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `toml` and the test PKI in a directory as the container sees it: paths
/// relative to the config, everything owned by the image's uid 10001 (the
/// key stays 0600), mounted read-only at /etc/sealgate.
fn run_container(pki: &Pki, toml: &str) -> Container {
    let dir = pki.dir.path();
    let toml = toml.replace(&format!("{}/", dir.display()), "");
    pki.write("sealgate.toml", &toml);
    for e in std::fs::read_dir(dir).unwrap() {
        std::os::unix::fs::chown(e.unwrap().path(), Some(10001), Some(10001)).unwrap();
    }
    std::os::unix::fs::chown(dir, Some(10001), Some(10001)).unwrap();
    let name = format!("sealgate-it-{}", rand_suffix());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        // The image's own HEALTHCHECK command, asked more often than its default.
        "--health-interval",
        "1s",
        "--health-start-period",
        "1s",
        "-v",
        &format!("{}:/etc/sealgate:ro", dir.display()),
        image(),
    ]);
    Container(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_mutual_tls_as_non_root_reports_health_and_drains_on_stop() {
    if !engine() {
        return;
    }
    let pki = Pki::new();
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        http::Response::new(full("from upstream"))
    })
    .await;
    let (edge, admin) = (free_port(), free_port());
    let toml = config(
        &pki,
        "required",
        &format!(
            "{}\n[upstream.up]\nurl = \"http://{up}\"\n",
            route("all", "/", "")
        ),
    )
    .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin}"), 1)
    .replacen("127.0.0.1:0", &format!("127.0.0.1:{edge}"), 1);
    let c = run_container(&pki, &toml);
    let edge: std::net::SocketAddr = ([127, 0, 0, 1], edge).into();
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], admin).into();

    // Healthy, by the image's HEALTHCHECK.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = c.inspect("{{.State.Health.Status}}");
        if health == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline && health != "unhealthy",
            "{health}: {}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);

    // Mutual TLS through it; a client without a certificate is refused.
    let r = send(edge, pki.etl_client(&[]), get("/x")).await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "from upstream"));
    assert!(
        send(edge, client_tls(&pki.ca.cert_pem, None, &[]), get("/x"))
            .await
            .is_err()
    );

    // Not root: every uid of PID 1 is the image's 10001.
    let pid = c.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace().skip(1).all(|u| u == "10001"),
        "{uids}"
    );
    // The mount is read-only to it.
    let o = docker(&["exec", &c.0, "sh", "-c", "echo x > /etc/sealgate/written"]);
    assert!(!o.status.success());

    // docker stop: the request in flight is answered, and the exit is clean.
    let slow = tokio::spawn(send(edge, pki.etl_client(&[]), get("/slow")));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = Instant::now();
    docker_ok(&["stop", "-t", "20", &c.0]);
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "in flight at SIGTERM");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "drained, not killed"
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
    let logs = c.logs();
    assert!(logs.contains("\"path\":\"/slow\""), "{logs}");
    assert!(
        logs.contains("shutting down") && logs.contains("drained"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_stops_the_container_at_start_saying_why() {
    if !engine() {
        return;
    }
    let pki = Pki::new();
    let c = run_container(&pki, "[admin]\nlisten = \"127.0.0.1:0\"\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.inspect("{{.State.Running}}") == "true" {
        assert!(Instant::now() < deadline, "{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "1", "{}", c.logs());
    assert!(c.logs().contains("no listener defined"), "{}", c.logs());
}

#[test]
fn the_compose_file_is_valid() {
    let Ok(o) = Command::new("docker-compose")
        .args(["-f", "docker/compose.yaml", "config", "-q"])
        .current_dir(repo())
        .output()
    else {
        assert!(std::env::var("CI").is_err(), "CI needs docker-compose");
        eprintln!("skipped: no docker-compose");
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
