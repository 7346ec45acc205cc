//! Per-request admission cost, each against a peer in the same run:
//! - allowlist lookup in 10,000 CIDRs: sealgate's merged-range binary search
//!   vs a linear scan of `ipnet::IpNet::contains` (what a naive list check does);
//! - the same lookup as the list grows (10, 1,000, 100,000 CIDRs);
//! - a keyed rate-limit check over 10,000 clients: sealgate's bounded store vs
//!   governor's default keyed store (DashMap, unbounded).
//!
//!   cargo bench --bench admission

// Benchmarks and their fixtures may panic on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use ipnet::IpNet;
use sealgate::admission::ip::IpSet;
use sealgate::admission::rate::{Key, Rate, RateLimit};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

/// `n` distinct /24s and /28s spread over the IPv4 space.
fn cidrs(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            let base = i.wrapping_mul(2_654_435_761) & 0xffff_ff00;
            let prefix = if i % 2 == 0 { 24 } else { 28 };
            IpNet::new(IpAddr::V4(Ipv4Addr::from(base)), prefix)
                .expect("prefix")
                .trunc()
        })
        .collect()
}

fn probes(nets: &[IpNet]) -> Vec<IpAddr> {
    // Half inside a listed network, half (almost surely) outside.
    (0..1024u32)
        .map(|i| match nets[(i as usize * 7) % nets.len()].network() {
            IpAddr::V4(v4) if i % 2 == 0 => IpAddr::V4(Ipv4Addr::from(u32::from(v4) + 1)),
            _ => IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(40_503) ^ 0x5a5a_5a5a)),
        })
        .collect()
}

fn allowlist(c: &mut Criterion) {
    let nets = cidrs(10_000);
    let set = IpSet::from_nets(&nets);
    let ips = probes(&nets);
    let mut g = c.benchmark_group("allowlist_10k_cidrs");
    g.bench_function("sealgate_ipset", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ips.len();
            set.contains(black_box(ips[i]))
        })
    });
    g.bench_function("peer_linear_ipnet_scan", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ips.len();
            let ip = black_box(ips[i]);
            nets.iter().any(|n| n.contains(&ip))
        })
    });
    g.finish();
}

/// How the lookup grows with the allowlist: a binary search over merged
/// ranges, so logarithmic in the list's size.
fn allowlist_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("allowlist_growth");
    for n in [10u32, 1_000, 100_000] {
        let nets = cidrs(n);
        let set = IpSet::from_nets(&nets);
        let ips = probes(&nets);
        g.bench_function(criterion::BenchmarkId::from_parameter(n), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % ips.len();
                set.contains(black_box(ips[i]))
            })
        });
    }
    g.finish();
}

fn rate(c: &mut Criterion) {
    const CLIENTS: u32 = 10_000;
    let ours = RateLimit::new(
        &Rate {
            per_second: Some(1_000_000.0),
            per_minute: None,
            burst: Some(1_000_000),
        },
        100_000,
    )
    .expect("limit");
    let quota = governor::Quota::per_second(std::num::NonZeroU32::new(1_000_000).expect("n"))
        .allow_burst(std::num::NonZeroU32::new(1_000_000).expect("n"));
    let peer: governor::DefaultKeyedRateLimiter<Key> = governor::RateLimiter::keyed(quota);
    let keys: Vec<Key> = (0..CLIENTS)
        .map(|i| Key::ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
        .collect();
    let mut g = c.benchmark_group("rate_check_10k_clients");
    g.bench_function("sealgate_bounded_store", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            ours.check(black_box(&keys[i])).is_ok()
        })
    });
    g.bench_function("peer_governor_dashmap", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % keys.len();
            peer.check_key(black_box(&keys[i])).is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, allowlist, allowlist_growth, rate);
criterion_main!(benches);
