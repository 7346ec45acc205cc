//! `sign::sign` on arbitrary bytes (the first byte picks the key reference and
//! whether an existing Security header is replaced): whatever the signer
//! agrees to sign must verify in sealgate's own verifier under the `verify`
//! target's policy, and the Body's content must canonicalize exactly as it
//! did before signing — the signer adds attributes to Body, never meaning.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealgate::wssec::c14n::{canonicalize_element, Method};
use sealgate::wssec::envelope::{SOAP11_NS, SOAP12_NS};
use sealgate::wssec::replay::NoReplayCache;
use sealgate::wssec::sign::{sign, KeyReference, SignOptions, SigningKey};
use sealgate::wssec::verify::{verify, Policy};
use sealgate::wssec::xml::Limits;

struct Fixture {
    policy: Policy,
    key: SigningKey,
    cert: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pki = sealgate_fuzz::pki();
        Fixture {
            policy: sealgate_fuzz::policy(&pki),
            key: SigningKey::from_pem(pki.leaf_key_pem.as_bytes()).expect("fuzz key"),
            cert: pki.leaf_der,
        }
    })
}

/// The Body's content in exclusive C14N: what follows its start tag (whose
/// attribute values, quoted, may hold a `>`).
fn body_content(msg: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    canonicalize_element(
        msg,
        &Limits::default(),
        &Method::exclusive(),
        |e| e.local_name() == "Body" && matches!(e.namespace(), Some(SOAP11_NS) | Some(SOAP12_NS)),
        &mut out,
    )
    .ok()?;
    let mut quoted = false;
    let end = out.iter().position(|&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        b == b'>' && !quoted
    })?;
    Some(out.split_off(end + 1))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, msg)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mut o = SignOptions::new(sealgate_fuzz::signed_at());
    o.key_reference = match choice & 3 {
        0 => KeyReference::BinarySecurityToken,
        1 => KeyReference::IssuerSerial,
        2 => KeyReference::SubjectKeyIdentifier,
        _ => KeyReference::ThumbprintSha1,
    };
    o.replace_security = choice & 4 != 0;
    let Ok(signed) = sign(msg, &f.key, &f.cert, &o) else {
        return;
    };
    if let Err(e) = verify(&signed, &f.policy, sealgate_fuzz::now(), &NoReplayCache) {
        panic!(
            "signed output refused: {} {e}\n{}",
            e.reason(),
            String::from_utf8_lossy(&signed)
        );
    }
    let before = body_content(msg).expect("the signed input's Body canonicalizes");
    let after = body_content(&signed).expect("the signed output's Body canonicalizes");
    assert!(
        before == after,
        "Body content changed:\n{}\n---\n{}",
        String::from_utf8_lossy(&before),
        String::from_utf8_lossy(&after)
    );
});
