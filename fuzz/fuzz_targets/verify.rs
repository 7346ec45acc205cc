//! `verify::verify` on arbitrary bytes under a realistic policy: a trust store
//! with a fixed CA and configured signer (see src/lib.rs), a fresh in-memory
//! replay cache per input, at a fixed `now` inside the seeded messages' window.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::verify::{verify, Policy};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| sealgate_fuzz::policy(&sealgate_fuzz::pki()))
}

fuzz_target!(|data: &[u8]| {
    let policy = policy();
    let now = sealgate_fuzz::now();
    let cache = MemoryReplayCache::new(64);
    match verify(data, policy, now, &cache) {
        Ok(v) => {
            // Accepted: the forwarded bytes are the input minus the header,
            // and the same message is refused as a replay.
            assert!(v.output.len() <= data.len());
            let again = verify(data, policy, now, &cache);
            assert_eq!(again.map(|_| ()).unwrap_err().reason(), "wssec_replay");
        }
        Err(e) => {
            let _ = (e.reason(), e.fault_code(), e.to_string());
        }
    }
});
