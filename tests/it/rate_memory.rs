//! A keyed rate limit under a flood of distinct keys keeps bounded memory.
//! The flood runs in a child process of its own, so the resident memory it
//! measures is its own.

use sealgate::admission::rate::{Key, Rate, RateLimit};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn one_million_distinct_keys_stay_under_the_bound() {
    let out = crate::support::isolated("rate_memory::flood_in_own_process");
    let line = out
        .lines()
        .find(|l| l.contains(" keys: "))
        .unwrap_or_default();
    assert!(!line.is_empty(), "{out}");
    println!("{line}");
}

#[test]
#[ignore = "run alone in a child process by one_million_distinct_keys_stay_under_the_bound"]
fn flood_in_own_process() {
    if !crate::support::is_isolated() {
        return;
    }
    const KEYS: u32 = 1_000_000;
    const MAX_KEYS: usize = 100_000;
    // The stated bound: 100,000 buckets of 32-byte slots, with table slack.
    const BOUND_BYTES: usize = 8 << 20;
    let limit = RateLimit::new(
        &Rate {
            per_second: Some(10.0),
            per_minute: None,
            burst: Some(20),
        },
        MAX_KEYS,
    )
    .unwrap();
    let before = rss_kib();
    for i in 0..KEYS {
        // Distinct IPv4 clients, as a spoofing-free flood from many addresses would be.
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        assert!(limit.check(&Key::ip(ip.into())).is_ok());
    }
    let held = limit.store().approx_bytes();
    let grown_kib = rss_kib().saturating_sub(before);
    println!(
        "{KEYS} keys: {} remembered, tables {} KiB, process grew {} KiB",
        limit.store().len(),
        held / 1024,
        grown_kib
    );
    assert!(
        limit.store().len() <= MAX_KEYS + 16,
        "{}",
        limit.store().len()
    );
    assert!(held < BOUND_BYTES, "limiter tables hold {held} bytes");
    assert!(
        grown_kib < 2 * (BOUND_BYTES as u64) / 1024,
        "process grew {grown_kib} KiB"
    );
    // The most recent clients are still limited correctly: burst 20, then refused.
    let recent = Key::ip(std::net::Ipv4Addr::from(0x0a00_0000 + KEYS - 1).into());
    let passed = (0..25).filter(|_| limit.check(&recent).is_ok()).count();
    assert_eq!(
        passed, 19,
        "one token was spent in the flood, 19 left of the burst"
    );
}
