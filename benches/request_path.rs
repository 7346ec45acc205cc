//! Micro-benchmarks of per-connection and per-request work on the proxy path:
//! parsing a client identity (once per connection), matching allow rules and
//! rewriting headers (once per request).
//!
//!   cargo bench --bench request_path

// Benchmarks and their fixtures may panic on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use sealgate::config::AllowRuleConfig;
use sealgate::pki::{Ca, Leaf, Usage};
use sealgate::proxy::headers::{identity_value, prepare_upstream, ForwardContext};
use sealgate::runtime::authz::AllowRule;
use sealgate::tls::identity::PeerIdentity;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let ca = Ca::new("Bench CA", "bench", 30).expect("ca");
    let mut leaf = Leaf::new("etl-prod", Usage::Client);
    leaf.ou = Some("ETL".into());
    leaf.uris = vec!["spiffe://acme/etl".into()];
    let cert = ca.issue(&leaf).expect("leaf");

    c.bench_function("identity_parse_per_connection", |b| {
        b.iter(|| PeerIdentity::from_der(black_box(&cert.der)).expect("parse"))
    });

    let id = PeerIdentity::from_der(&cert.der).expect("parse");
    let rules: Vec<AllowRule> = (0..20)
        .map(|i| {
            AllowRule::compile(&AllowRuleConfig {
                cn: Some(format!("client-{i}")),
                ou: Some("ETL".into()),
                ..Default::default()
            })
            .expect("rule")
        })
        .chain(std::iter::once(
            AllowRule::compile(&AllowRuleConfig {
                san_uri: Some("spiffe://acme/etl".into()),
                ..Default::default()
            })
            .expect("rule"),
        ))
        .collect();
    c.bench_function("allow_rules_21_last_matches", |b| {
        b.iter(|| rules.iter().any(|r| r.matches(black_box(&id))))
    });

    let xfcc = HeaderValue::from_str(&identity_value(&id)).expect("header");
    let peer = HeaderValue::from_static("10.0.0.1");
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let rid_name = HeaderName::from_static("x-request-id");
    let id_name = HeaderName::from_static("x-forwarded-client-cert");
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "gw.example"),
        ("content-type", "text/xml; charset=utf-8"),
        ("soapaction", "\"\""),
        ("user-agent", "etl/1.0"),
        ("connection", "keep-alive"),
        ("x-forwarded-client-cert", "spoofed"),
        ("content-length", "5120"),
    ] {
        base.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    c.bench_function("prepare_upstream_headers", |b| {
        b.iter(|| {
            let mut h = base.clone();
            prepare_upstream(
                &mut h,
                &ForwardContext {
                    peer_ip: &peer,
                    original_host: Some("gw.example"),
                    request_id: &rid,
                    request_id_header: &rid_name,
                    identity_header: &id_name,
                    identity: Some(&xfcc),
                },
            );
            h
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
