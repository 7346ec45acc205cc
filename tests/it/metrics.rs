//! The metrics contract, scraped over HTTP: every refusal a route can
//! produce is a series from the start, durations resolve sub-millisecond
//! overhead, body sizes are histograms per route, and the build and the
//! process describe themselves. `promtool check metrics` agrees with the
//! naming when it is installed (under CI it must be).

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

async fn gateway(pki: &Pki) -> TestGateway {
    let up = header_echo_upstream().await;
    let crl = pki.write("ca.crl", &pki.ca.crl(&[]).unwrap().pem);
    let toml = config(
        pki,
        "required",
        &format!(
            "{}{}{}[route.wssec.request]\nmode = \"verify\"\ntrust = {:?}\n\n[upstream.up]\nurl = \"http://{up}\"\n",
            route("plain", "/plain/", ""),
            route(
                "guarded",
                "/guarded/",
                "allow = [{ cn = \"etl-prod\" }]\nrate_limit = { key = \"client\", per_second = 1, burst = 1 }"
            ),
            route("ledger", "/soap/", ""),
            pki.path("ca.crt"),
        ),
    )
    .replace(
        "client_auth = \"required\"\n",
        &format!("client_auth = \"required\"\ncrls = [{crl:?}]\n"),
    );
    TestGateway::start(pki.dir.path(), &toml).await
}

fn has(m: &str, line_start: &str) -> bool {
    m.lines().any(|l| l.starts_with(line_start))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_a_route_can_produce_is_a_series_before_the_first() {
    let pki = Pki::new();
    let gw = gateway(&pki).await;
    let m = gw.metrics().await;
    let rej = |route: &str, stage: &str, reason: &str| {
        format!("sealgate_rejections_total{{reason=\"{reason}\",route=\"{route}\",stage=\"{stage}\"}} 0")
    };
    for (route, stage, reason) in [
        ("guarded", "rate", "rate_limited"),
        ("guarded", "identity", "identity_not_allowed"),
        ("guarded", "upstream", "upstream_unreachable"),
        ("plain", "size", "body_too_large"),
        ("plain", "transfer", "client_stalled"),
        ("ledger", "wssec", "wssec_no_security_header"),
        ("ledger", "wssec", "wssec_replay"),
        ("ledger", "wssec", "wssec_digest_mismatch"),
    ] {
        assert!(
            m.lines().any(|l| l == rej(route, stage, reason)),
            "{route} {reason}:\n{m}"
        );
    }
    // What a route is not configured for is not there.
    for (route, reason) in [
        ("plain", "rate_limited"),
        ("plain", "identity_not_allowed"),
        ("plain", "wssec_replay"),
    ] {
        assert!(
            !m.contains(&format!("reason=\"{reason}\",route=\"{route}\"")),
            "{route} cannot produce {reason}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        m.contains(&format!("sealgate_build_info{{version=\"{version}\"}} 1")),
        "{m}"
    );
    for p in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(has(&m, p), "no {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_resolve_microseconds_and_body_sizes_are_histograms() {
    let pki = Pki::new();
    let gw = gateway(&pki).await;
    let addr = gw.addr("edge");
    let client = pki.etl_client(&[]);
    for size in [100usize, 5000, 300_000] {
        let req = Request::post("/plain/upload")
            .header("host", "localhost")
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .unwrap();
        assert_eq!(send(addr, client.clone(), req).await.unwrap().status, 200);
    }
    let m = gw
        .wait_metric("sealgate_request_body_bytes_count{route=\"plain\"}", "3")
        .await;
    assert_eq!(
        metric_value(&m, "sealgate_request_body_bytes_sum{route=\"plain\"}"),
        305_100.0
    );
    assert_eq!(
        metric_value(
            &m,
            "sealgate_request_body_bytes_bucket{route=\"plain\",le=\"256\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            "sealgate_request_body_bytes_bucket{route=\"plain\",le=\"16384\"}"
        ),
        2.0
    );
    assert!(metric_value(&m, "sealgate_response_body_bytes_sum{route=\"plain\"}") > 0.0);
    assert!(
        has(
            &m,
            "sealgate_request_duration_seconds_bucket{route=\"plain\",le=\"0.00005\"}"
        ),
        "{m}"
    );
    assert!(
        has(
            &m,
            "sealgate_upstream_duration_seconds_bucket{upstream=\"up\",le=\"0.00005\"}"
        ),
        "{m}"
    );
    promtool_check(&m);
}

/// Runs promtool with `args` (and `stdin`): whether it succeeded, and what it
/// said on stdout and stderr. `None` (and a SKIPPED line) when promtool is
/// not installed, which under CI is a failure.
fn promtool(args: &[&str], stdin: Option<&str>) -> Option<(bool, String, String)> {
    use std::io::Write;
    use std::process::Stdio;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var("CI").is_err(), "promtool is missing under CI");
        eprintln!("SKIPPED promtool {args:?}: promtool not installed (Debian: prometheus)");
        return None;
    };
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `promtool check metrics` on a scrape: names, units and help text.
fn promtool_check(scrape: &str) {
    if let Some((ok, out, err)) = promtool(&["check", "metrics"], Some(scrape)) {
        let said = format!("{out}{err}");
        assert!(
            ok && said.trim().is_empty(),
            "promtool check metrics:\n{said}"
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/alerts.yaml");
    if let Some((ok, out, err)) = promtool(&["check", "rules", rules], None) {
        assert!(ok && out.contains("SUCCESS"), "{out}{err}");
    }
}

#[test]
fn the_alert_rules_fire_on_the_series_sealgate_writes() {
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/alerts.test.yaml");
    if let Some((ok, out, err)) = promtool(&["test", "rules", tests], None) {
        assert!(ok, "{out}{err}");
    }
}

/// The Grafana dashboard is valid JSON, every query names only metrics a
/// running gateway exports, and each parses as PromQL (as a recording rule
/// under `promtool check rules`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_what_the_gateway_exports() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/grafana-dashboard.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 10);
    let pki = Pki::new();
    let gw = gateway(&pki).await;
    let m = gw.metrics().await;
    let families: std::collections::HashSet<&str> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for e in &exprs {
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("sealgate_"))
        {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(families.contains(family), "{e}: no metric {family}");
        }
    }
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: dashboard:q{i}\n        expr: {}\n",
                serde_json::to_string(e).unwrap()
            )
        })
        .collect();
    let file = pki.write(
        "dashboard-rules.yaml",
        &format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    );
    let file = file.display().to_string();
    if let Some((ok, out, err)) = promtool(&["check", "rules", &file], None) {
        assert!(ok, "{out}{err}");
    }
}
