//! Verification of a ~5 KB and a ~1 MB signed SOAP 1.1 message (RSA-SHA256,
//! BinarySecurityToken, Body + Timestamp signed) under the default policy:
//! chain check to the CA, Timestamp check, both digests, the signature, the
//! forwarded output. `NoReplayCache`, so iterations never trip replay.
//!
//! With WSSEC_BENCH_DIR set, the messages are read from that directory (as
//! examples/write_bench_messages.rs writes them, so that benches/xmlsec_peer.py
//! times the same bytes); otherwise they are made at bench start.

// Benchmarks and their fixtures may panic on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "wssec_support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealgate::wssec::replay::NoReplayCache;
use sealgate::wssec::verify::verify;

fn bench_verify(c: &mut Criterion) {
    let set = match std::env::var_os("WSSEC_BENCH_DIR") {
        Some(dir) => support::read(&PathBuf::from(dir)),
        None => support::make(SystemTime::now()),
    };
    let policy = support::policy(&set);
    let now = support::verify_time(&set);
    let mut g = c.benchmark_group("verify");
    for (name, msg) in &set.messages {
        // Fail loudly rather than time a refusal.
        verify(msg, &policy, now, &NoReplayCache).unwrap();
        let id = name.trim_start_matches("msg-").trim_end_matches(".xml");
        let large = msg.len() > 100_000;
        g.sample_size(if large { 20 } else { 100 });
        g.measurement_time(Duration::from_secs(if large { 10 } else { 5 }));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(id, |b| {
            b.iter(|| verify(black_box(msg), &policy, now, &NoReplayCache).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
