//! `sealgate demo`, as a newcomer runs it: every case comes out as
//! expected, and `--serve` hands out curl commands that work.

use crate::support::process::BIN;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_every_case_as_expected() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("10 of 10 cases came out as expected."),
        "{text}"
    );
    for (case, counted) in [
        (
            "trusted client",
            "sealgate_requests_total{route=\"api\",status_class=\"2xx\"} +1",
        ),
        ("unknown CA", "reason=\"unknown_issuer\"} +1"),
        ("expired client", "reason=\"expired\"} +1"),
        ("revoked client", "reason=\"revoked\"} +1"),
        (
            "identity not allowed",
            "reason=\"identity_not_allowed\"} +1",
        ),
        ("rate limit", "reason=\"rate_limited\"} +1"),
        ("unsigned SOAP", "reason=\"wssec_no_security_header\"} +1"),
        ("signed SOAP", "reason=\"ok\"} +1"),
        (
            "signature wrapping",
            "reason=\"wssec_reference_not_allowed\"} +1",
        ),
        ("replay", "reason=\"wssec_replay\"} +1"),
    ] {
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.trim_start().starts_with(|c: char| c.is_ascii_digit())
                    && l.contains(&format!(" {case}"))
            })
            .unwrap_or_else(|| panic!("no {case} row:\n{text}"));
        assert!(lines[at].contains(". ok "), "{}", lines[at]);
        let counted_line = lines[at + 1];
        assert!(counted_line.contains(counted), "{case}: {counted_line}");
    }
    assert!(
        text.contains("429 Too Many Requests, Retry-After: "),
        "{text}"
    );
    assert!(
        text.contains("forwarded without the Security header"),
        "{text}"
    );
}

#[test]
fn the_served_demo_answers_the_curl_commands_it_prints() {
    let mut child = Command::new(BIN)
        .args(["demo", "--serve"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut curls = Vec::new();
    let mut dir = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        assert!(Instant::now() < deadline, "the demo did not get to serving");
        if let Some(rest) = line.split("The files are in ").nth(1) {
            dir = rest.split(' ').next().map(str::to_owned);
        }
        if let Some(c) = line.trim().strip_prefix("curl ") {
            curls.push(c.to_owned());
        }
        if line.contains("JSON log follows") {
            break;
        }
    }
    let dir = dir.expect("no directory printed");
    let first = curls.first().expect("no curl command printed");
    let args: Vec<&str> = first.split_whitespace().collect();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "curl {first}");
    let revoked: Vec<&str> = curls[1]
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(&revoked)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "000",
        "a revoked client got an answer"
    );

    crate::support::process::sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    drop(lines);
}
