//! The benchmark messages (benches/support, shared with
//! examples/write_bench_messages.rs) are the sizes the benchmark names and
//! verify under the policy the benchmark uses, also after a write/read round trip.

#[path = "../../benches/wssec_support/mod.rs"]
mod support;

use std::time::SystemTime;

use sealgate::wssec::replay::NoReplayCache;
use sealgate::wssec::verify::{verify, SignedPart};

#[test]
fn bench_messages_have_their_sizes_and_verify() {
    let set = support::make(SystemTime::now());
    let dir = std::env::temp_dir().join(format!("wssec-bench-msgs-{}", std::process::id()));
    support::write(&set, &dir);
    let back = support::read(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    // signed_at is stored in whole seconds, as the Timestamp carries it.
    let lag = set.signed_at.duration_since(back.signed_at).unwrap();
    assert!(lag.as_secs() == 0, "{lag:?}");
    let policy = support::policy(&back);
    for ((name, msg), (_, size)) in back.messages.iter().zip(support::SIZES) {
        let len = msg.len();
        assert!(len >= size && len < size + size / 5, "{name}: {len} bytes");
        let v = verify(msg, &policy, support::verify_time(&back), &NoReplayCache)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            v.signed_parts,
            vec![SignedPart::Body, SignedPart::Timestamp]
        );
        assert!(msg.windows(19).any(|w| w == b"BinarySecurityToken"));
    }
}
