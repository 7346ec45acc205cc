//! `verify::verify` on arbitrary bytes under a realistic policy: a trust store
//! with a fixed CA and configured signer (see src/lib.rs), a fresh in-memory
//! replay cache per input, at a fixed `now` inside the seeded messages' window.
//! The streaming verifier reads the same input in small windows beside it:
//! whatever it accepts, the buffered path must accept, forwarding the same bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::stream::StreamVerifier;
use sealgate::wssec::verify::{verify, Policy};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| sealgate_fuzz::policy(&sealgate_fuzz::pki()))
}

fuzz_target!(|data: &[u8]| {
    let policy = policy();
    let now = sealgate_fuzz::now();
    let cache = MemoryReplayCache::new(64);
    // Window and piece sizes from the input itself, so both vary.
    let window = 1 + usize::from(data.first().copied().unwrap_or(0)) % 61;
    let piece = 1 + usize::from(data.last().copied().unwrap_or(0)) % 97;
    let mut s = StreamVerifier::new(policy).with_window(window);
    let fed = data.chunks(piece).try_for_each(|c| s.feed(c));
    let streamed = fed.and_then(|()| s.finish(now, &MemoryReplayCache::new(64), &|_| Ok(())));
    let whole = verify(data, policy, now, &cache);
    // Bounds only a held message has (its size, one text node's, the work
    // limit) may refuse what streams.
    let held_bound = whole.as_ref().err().is_some_and(|e| {
        matches!(
            e.reason().as_str(),
            "xml_too_large" | "xml_text_too_long" | "wssec_work_limit"
        )
    });
    if let (Ok(st), false) = (&streamed, held_bound) {
        let w = whole
            .as_ref()
            .expect("streamed accepted what buffered refused");
        let mut out = st.verified.output.clone();
        out.extend_from_slice(&data[st.body_from..]);
        assert_eq!(out, w.output, "streamed forwards other bytes");
    }
    match whole {
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
