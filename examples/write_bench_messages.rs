//! Writes the benchmark messages (and the CA, signer certificate and signing
//! time) into a directory, for benches/wssec_vs_xmlsec.sh.
//!
//! Usage: cargo run --release --example write_bench_messages -- DIR

// Benchmarks and their fixtures may panic on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/wssec_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::SystemTime;

fn main() {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: write_bench_messages DIR"),
    );
    let set = support::make(SystemTime::now());
    support::write(&set, &dir);
    for (name, msg) in &set.messages {
        println!("{name}\t{}", msg.len());
    }
}
