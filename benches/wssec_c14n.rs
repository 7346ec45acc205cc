//! Canonicalization throughput: the Body of a ~5 KB and a ~1 MB SOAP order
//! through exclusive C14N into SHA-256 (what a Reference's digest costs),
//! beside the parts it is made of — reading the events alone, and SHA-256
//! alone over the same bytes, the ceiling no canonicalizer can pass.
//!
//!   cargo bench --bench wssec_c14n

// Benchmarks and their fixtures may panic on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "wssec_support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealgate::wssec::c14n::{canonicalize_element, Method};
use sealgate::wssec::dsig::{DigestAlgorithm, DigestWriter};
use sealgate::wssec::xml::{Limits, Reader};

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

fn bench_c14n(c: &mut Criterion) {
    let limits = Limits::default();
    let method = Method::exclusive();
    for (name, size) in [("5k", 5 << 10), ("1m", 1 << 20)] {
        let msg = support::envelope(size).into_bytes();
        let mut g = c.benchmark_group(format!("c14n_body_{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.measurement_time(Duration::from_secs(5));
        let digest_body = || {
            let mut out = DigestWriter::new(DigestAlgorithm::Sha256, false);
            canonicalize_element(
                black_box(&msg),
                &limits,
                &method,
                |s| s.local_name() == "Body" && s.namespace() == Some(SOAP11),
                &mut out,
            )
            .unwrap();
            out.finish().0
        };
        // Fail loudly rather than time a refusal.
        assert_eq!(digest_body().len(), 32);
        g.bench_function("exc_c14n_sha256", |b| b.iter(digest_body));
        g.bench_function("read_events_only", |b| {
            b.iter(|| {
                let mut r = Reader::new(black_box(&msg), &limits).unwrap();
                let mut n = 0usize;
                while r.next().unwrap().is_some() {
                    n += 1;
                }
                n
            })
        });
        g.bench_function("sha256_only", |b| {
            b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(&msg)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_c14n);
criterion_main!(benches);
