//! Smaller pieces: strict dates, the enveloped-signature skip in the digest
//! pass, fault-code mapping and the replay cache under concurrency.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use sealgate::wssec::c14n::Method;
use sealgate::wssec::dsig::{canonical_signed_info, digest_targets, DigestAlgorithm, DigestTarget};
use sealgate::wssec::replay::{replay_key, MemoryReplayCache, ReplayCache, ReplayError};
use sealgate::wssec::tokens::{format_datetime, parse_datetime};
use sealgate::wssec::verify::WssecError;
use sealgate::wssec::xml::{Limits, Span};

#[test]
fn datetimes_are_strict_utc() {
    let t = |s: &str| parse_datetime(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
    assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
    assert_eq!(
        t("2024-02-29T23:59:59Z"),
        Some(Duration::from_secs(1_709_251_199))
    );
    assert_eq!(
        t("2024-01-01T00:00:00.5Z"),
        Some(Duration::new(1_704_067_200, 500_000_000))
    );
    // Offsets and surrounding whitespace, as WSS4J accepts them.
    assert_eq!(t("2024-01-01T01:30:00+01:30"), t("2024-01-01T00:00:00Z"));
    assert_eq!(t("2023-12-31T19:00:00-05:00"), t("2024-01-01T00:00:00Z"));
    assert_eq!(t(" 2024-01-01T00:00:00+00:00\n"), t("2024-01-01T00:00:00Z"));
    for bad in [
        "2023-02-29T00:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00+0000",
        "2024-01-01T00:00:00+15:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00 Z",
        "2024-1-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-13-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "+2024-01-01T00:00:00Z",
        "2024-01-01t00:00:00z",
    ] {
        assert!(parse_datetime(bad).is_none(), "{bad}");
    }
    let now = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    assert_eq!(parse_datetime(&format_datetime(now)), Some(now));
}

fn at(doc: &str, pat: &str) -> usize {
    doc.find(pat).unwrap()
}

#[test]
fn enveloped_signature_is_left_out_of_the_digest() {
    let doc = r#"<r xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><a Id="x"><b>t</b><ds:Signature><ds:SignedInfo>s</ds:SignedInfo></ds:Signature></a></r>"#;
    let sig = Span {
        start: at(doc, "<ds:Signature>"),
        end: at(doc, "</a>"),
    };
    let target = |skip| DigestTarget {
        id: "x".into(),
        start: at(doc, "<a "),
        method: Method::exclusive(),
        digest: DigestAlgorithm::Sha256,
        skip,
        keep_bytes: true,
    };
    let si = canonical_signed_info(
        doc.as_bytes(),
        &Limits::default(),
        at(doc, "<ds:SignedInfo>"),
        &Method::exclusive(),
    )
    .unwrap();
    let out = digest_targets(
        doc.as_bytes(),
        &Limits::default(),
        &[target(Some(sig)), target(None)],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(si).unwrap(),
        r#"<ds:SignedInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">s</ds:SignedInfo>"#
    );
    let kept = String::from_utf8(out[0].canonical.clone().unwrap()).unwrap();
    assert_eq!(kept, r#"<a Id="x"><b>t</b></a>"#);
    assert_eq!(
        out[0].value,
        digest::digest(&digest::SHA256, kept.as_bytes()).as_ref()
    );
    let full = String::from_utf8(out[1].canonical.clone().unwrap()).unwrap();
    assert!(full.contains("<ds:Signature"));
}

#[test]
fn fault_codes() {
    let cases: Vec<(WssecError, &str, &str)> = vec![
        (
            WssecError::NoSecurityHeader,
            "wssec_no_security_header",
            "wsse:InvalidSecurity",
        ),
        (
            WssecError::DigestMismatch("#b".into()),
            "wssec_digest_mismatch",
            "wsse:FailedCheck",
        ),
        (
            WssecError::BadSignature,
            "wssec_bad_signature",
            "wsse:FailedCheck",
        ),
        (
            WssecError::TokenUnavailable("x".into()),
            "wssec_token_unavailable",
            "wsse:SecurityTokenUnavailable",
        ),
        (
            WssecError::KeyValueNotAllowed,
            "wssec_keyvalue_not_allowed",
            "wsse:InvalidSecurityToken",
        ),
        (
            WssecError::UntrustedSigner("x".into()),
            "wssec_untrusted_signer",
            "wsse:FailedAuthentication",
        ),
        (
            WssecError::MessageExpired,
            "wssec_message_expired",
            "wsu:MessageExpired",
        ),
        (WssecError::Replay, "wssec_replay", "wsse:InvalidSecurity"),
    ];
    for (e, reason, fault) in cases {
        assert_eq!(e.reason(), reason);
        assert_eq!(e.fault_code(), fault, "{reason}");
    }
}

#[test]
fn replay_cache_is_safe_across_threads_and_forgets_after_deadline() {
    let cache = Arc::new(MemoryReplayCache::new(10_000));
    let now = SystemTime::now();
    let until = now + Duration::from_secs(60);
    let key = replay_key("signature", &[b"fp", b"created", b"sig"]);
    let wins: usize = (0..8)
        .map(|i| {
            let c = Arc::clone(&cache);
            std::thread::spawn(move || {
                let own = replay_key("signature", &[b"fp", &[i], b"sig"]);
                assert_eq!(c.check_and_insert(own, until, now), Ok(()));
                usize::from(c.check_and_insert(key, until, now).is_ok())
            })
        })
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(wins, 1, "exactly one thread may record the shared key");
    assert_eq!(
        cache.check_and_insert(key, until, now),
        Err(ReplayError::Replay)
    );
    // After the deadline the entry is purged and the key is accepted again.
    let later = until + Duration::from_secs(1);
    assert_eq!(
        cache.check_and_insert(key, later + Duration::from_secs(60), later),
        Ok(())
    );
    // Keys are domain-separated and length-prefixed.
    assert_ne!(replay_key("a", &[b"bc"]), replay_key("ab", &[b"c"]));
    assert_ne!(replay_key("a", &[b"b", b"c"]), replay_key("a", &[b"bc"]));
}

#[test]
fn the_scan_keeps_a_bounded_number_of_header_blocks_and_ids() {
    use sealgate::wssec::envelope::scan;
    use sealgate::wssec::xml::Limits;
    let env = |header: &str, body: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
        )
    };
    let many_blocks = env(&"<a/>".repeat(300), "");
    let e = scan(many_blocks.as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(e.reason(), "wssec_too_many_parts");
    let ids: String = (0..10_001).map(|i| format!("<x Id=\"i{i}\"/>")).collect();
    let e = scan(env("", &ids).as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(e.reason(), "wssec_too_many_parts");
    // Few but long: their bytes are bounded too (a streamed message keeps
    // each Id to its end, whatever its size).
    let long: String = (0..25)
        .map(|i| format!("<x Id=\"{i}-{}\"/>", "i".repeat(50_000)))
        .collect();
    let e = scan(env("", &long).as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(e.reason(), "wssec_too_many_parts");
    assert!(e.to_string().contains("bytes of Id values"), "{e}");
    // Ordinary numbers are fine.
    let few: String = (0..100).map(|i| format!("<x Id=\"i{i}\"/>")).collect();
    let ok = scan(env(&"<a/>".repeat(20), &few).as_bytes(), &Limits::default());
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.reason()));
}
