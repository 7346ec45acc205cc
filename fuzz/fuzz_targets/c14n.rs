//! Canonicalizes arbitrary bytes: the whole document (inclusive and exclusive,
//! with and without comments) and one subtree (the first child of the root,
//! and the first element named Body). Inclusive c14n must be idempotent.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use sealgate::wssec::c14n::{canonicalize_document, canonicalize_element, Method};
use sealgate::wssec::xml::Limits;

/// Counts bytes and keeps at most a copy of the first `cap` of them.
struct Capped {
    kept: Vec<u8>,
    cap: usize,
    total: usize,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&buf[..buf.len().min(room)]);
        self.total += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capped(cap: usize) -> Capped {
    Capped {
        kept: Vec::new(),
        cap,
        total: 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let keep = 4 * data.len() + 4096;

    let mut inc = capped(keep);
    let inc_ok = canonicalize_document(data, &limits, &Method::inclusive(), &mut inc).is_ok();
    let mut out = capped(0);
    let _ = canonicalize_document(data, &limits, &Method::exclusive(), &mut out);
    let mut out = capped(0);
    let _ = canonicalize_document(
        data,
        &limits,
        &Method::exclusive()
            .with_comments()
            .with_prefix_list("soap #default"),
        &mut out,
    );
    let mut out = capped(0);
    let _ = canonicalize_document(
        data,
        &limits,
        &Method::inclusive().with_comments(),
        &mut out,
    );

    let mut out = capped(0);
    let _ = canonicalize_element(
        data,
        &limits,
        &Method::exclusive(),
        |e| e.depth() == 2,
        &mut out,
    );
    let mut out = capped(0);
    let _ = canonicalize_element(
        data,
        &limits,
        &Method::inclusive(),
        |e| e.local_name() == "Body",
        &mut out,
    );

    // Canonical form is a fixed point: canonicalizing it again changes nothing.
    if inc_ok && inc.total == inc.kept.len() && !inc.kept.is_empty() {
        let mut again = Vec::new();
        canonicalize_document(&inc.kept, &limits, &Method::inclusive(), &mut again)
            .unwrap_or_else(|e| panic!("canonical output refused: {e}"));
        assert_eq!(again, inc.kept, "inclusive c14n is not idempotent");
    }
});
