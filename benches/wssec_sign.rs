//! Signing a ~5 KB and a ~1 MB SOAP 1.1 message (Timestamp, BinarySecurityToken,
//! Body + Timestamp signed, exclusive C14N, SHA-256 digests) with an RSA-2048
//! and an ECDSA-P256 key — the whole `sign::sign`: reading the message,
//! canonicalizing and digesting, the signature, the splice, and re-verifying
//! what it produced before it is returned. Verification of the same messages
//! (benches/wssec_verify.rs) is the reference it is read against.

// Benchmarks and their fixtures may panic on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "wssec_support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sealgate::pki::{Ca, KeyAlg, Leaf, Usage};
use sealgate::wssec::sign::{secure, SignOptions, Signer, SigningKey};

fn bench_sign(c: &mut Criterion) {
    let ca = Ca::new("Bench CA", "Sealgate Bench", 365).unwrap();
    let mut g = c.benchmark_group("sign");
    for (alg_name, alg) in [("rsa2048", KeyAlg::Rsa2048), ("p256", KeyAlg::EcdsaP256)] {
        let mut leaf = Leaf::new("bench-signer", Usage::Signer);
        leaf.alg = alg;
        let leaf = ca.issue(&leaf).unwrap();
        // Compiled once, as a route holds it: the per-message cost is what
        // is measured.
        let key = SigningKey::from_pkcs8_der(&leaf.key_der).unwrap();
        let signer = Signer::new(key, &leaf.der).unwrap();
        let opts = SignOptions::new(SystemTime::now());
        for &(name, size) in &support::SIZES {
            let msg = support::envelope(size);
            secure(msg.as_bytes(), Some(&signer), &opts).unwrap();
            let id = format!(
                "{alg_name}/{}",
                name.trim_start_matches("msg-").trim_end_matches(".xml")
            );
            let large = size > 100_000;
            g.sample_size(if large { 20 } else { 100 });
            g.measurement_time(Duration::from_secs(if large { 10 } else { 5 }));
            g.throughput(Throughput::Bytes(msg.len() as u64));
            g.bench_function(id, |b| {
                b.iter(|| secure(black_box(msg.as_bytes()), Some(&signer), &opts).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_sign);
criterion_main!(benches);
