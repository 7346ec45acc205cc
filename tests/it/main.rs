//! sealgate's integration tests, in one binary: real sockets, real TLS, a
//! fresh PKI per run (`support`), real upstreams and real peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod admission;
mod container;
mod credentials;
mod demo;
mod fleet;
mod grpc;
mod hardening;
mod logs;
mod metrics;
mod probe;
mod process;
mod proxy;
mod rate_memory;
mod reload;
mod scenario_salesforce_outbound;
mod tls_handshake;
mod wssec_bench_messages;
mod wssec_bounds;
mod wssec_c14n_rules;
mod wssec_c14n_vectors;
mod wssec_cli;
mod wssec_egress;
mod wssec_interop;
mod wssec_proxy;
mod wssec_reader;
mod wssec_sign;
mod wssec_stream;
mod wssec_units;
mod wssec_vectors;
mod wssec_verify_accept;
mod wssec_verify_refuse;
