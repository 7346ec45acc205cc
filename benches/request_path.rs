//! Micro-benchmarks of per-connection and per-request work on the proxy path:
//! parsing a client identity (once per connection), matching allow rules and
//! rewriting headers (once per request), and writing a brokered Salesforce
//! session into a SOAP message (beside a plain copy of the same bytes, the
//! least any rewrite costs), and finding a request's route as the listener's
//! routes grow.
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

/// A Salesforce SOAP call of about `size` bytes: a Header with the client's
/// own SessionHeader, and a Body of records.
fn soap_call(size: usize) -> Vec<u8> {
    let record = "<urn:sObjects><urn:Name>Acme &amp; Co</urn:Name><urn:AccountNumber>CD355118</urn:AccountNumber></urn:sObjects>\n";
    let records = record.repeat(size / record.len() + 1);
    format!("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:urn=\"urn:partner.soap.sforce.com\">\n<soapenv:Header><urn:SessionHeader><urn:sessionId>CLIENT</urn:sessionId></urn:SessionHeader></soapenv:Header>\n<soapenv:Body><urn:create>\n{records}</urn:create></soapenv:Body>\n</soapenv:Envelope>").into_bytes()
}

fn session(c: &mut Criterion) {
    use sealgate::credentials::soap::set_session_id;
    use sealgate::wssec::xml::Limits;
    let limits = Limits::default();
    let token = b"00D5g000004ABCD!AQ4AQFakeSessionTokenOfTheUsualLength0123456789abcdefghij";
    for (name, size) in [("5k", 5 << 10), ("1m", 1 << 20)] {
        let msg = soap_call(size);
        let mut g = c.benchmark_group(format!("soap_session_{name}"));
        g.throughput(criterion::Throughput::Bytes(msg.len() as u64));
        g.bench_function("splice", |b| {
            b.iter(|| {
                set_session_id(
                    black_box(&msg),
                    &limits,
                    "urn:partner.soap.sforce.com",
                    token,
                )
                .expect("splice")
            })
        });
        g.bench_function("copy", |b| b.iter(|| black_box(&msg).to_vec()));
        g.finish();
    }
}

/// How finding a request's route grows with the listener's routes (10,
/// 1,000, 100,000 tenant prefixes, the request taking the last one, and a
/// request no route takes): sealgate's index beside trying every route in
/// order, the same answer.
fn route_match_growth(c: &mut Criterion) {
    use http::Method;
    use sealgate::runtime::route::Matcher;
    use sealgate::runtime::route_table::MatcherIndex;
    let mut g = c.benchmark_group("route_match_growth");
    for n in [10usize, 1_000, 100_000] {
        let matchers: Vec<Matcher> = (0..n)
            .map(|i| {
                let methods = if i % 3 == 0 {
                    vec![Method::POST]
                } else {
                    vec![]
                };
                Matcher::new(None, format!("/tenant/{i:06}/services/"), methods, None)
            })
            .collect();
        let index = MatcherIndex::new(matchers.clone());
        let last = format!("/tenant/{:06}/services/Soap/u/60.0", n - 1);
        let miss = "/portal/orders/17";
        for (case, path) in [("last", last.as_str()), ("none", miss)] {
            g.bench_function(format!("index_{case}/{n}"), |b| {
                b.iter(|| index.first(None, &Method::POST, black_box(path), None))
            });
            g.bench_function(format!("scan_{case}/{n}"), |b| {
                b.iter(|| {
                    matchers
                        .iter()
                        .position(|m| m.matches(None, &Method::POST, black_box(path), None))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench, session, route_match_growth);
criterion_main!(benches);
