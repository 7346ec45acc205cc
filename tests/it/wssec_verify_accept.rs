//! Messages that must verify: every key type and key reference the crate's
//! signer produces, the stripped output, explain mode and UsernameToken.

use std::sync::Arc;
use std::time::SystemTime;

use crate::support::wssec::*;
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::sign::KeyReference;
use sealgate::wssec::tokens::{KeySource, MapPasswordStore, Secret};
use sealgate::wssec::verify::{explain, verify, SignedPart};

#[test]
fn rsa_bst_verifies_and_strips_exactly_the_security_header() {
    let ca = make_ca("Signer CA");
    let leaf = current(&ca, "etl-prod", Alg::Rsa);
    let now = SystemTime::now();
    let msg = signed(&leaf, now, KeyReference::BinarySecurityToken);
    let p = policy(&ca, &[]);
    let v = verify_now(&msg, &p, now).unwrap();
    assert_eq!(
        v.signed_parts,
        vec![SignedPart::Body, SignedPart::Timestamp]
    );
    let signer = v.signer.as_ref().unwrap();
    assert!(
        signer.subject.to_string().contains("CN=etl-prod"),
        "{}",
        signer.subject
    );
    assert!(signer.issuer.to_string().contains("CN=Signer CA"));
    assert_eq!(signer.serial, "1001");
    assert_eq!(signer.der, leaf.der);
    assert_eq!(signer.key_source, KeySource::BinarySecurityToken);
    assert_eq!(signer.fingerprint.to_string().len(), 32 * 3 - 1);

    // Output = input with exactly the Security element's bytes removed.
    let s = text(&msg);
    let sec = element(s, "wsse:Security");
    let expected = s.replacen(sec, "", 1);
    assert_eq!(text(&v.output), expected);
    assert!(!text(&v.output).contains("wsse:"));

    let mut p2 = p.clone();
    p2.forward_security_header = true;
    let v = verify_now(&msg, &p2, now).unwrap();
    assert_eq!(v.output, msg);
}

#[test]
fn ecdsa_p256_and_p384_verify() {
    let ca = make_ca("Signer CA");
    for alg in [Alg::P256, Alg::P384] {
        let leaf = current(&ca, "ec-signer", alg);
        let now = SystemTime::now();
        let msg = signed(&leaf, now, KeyReference::BinarySecurityToken);
        verify_now(&msg, &policy(&ca, &[]), now).unwrap();
    }
}

#[test]
fn configured_signer_by_issuer_serial_ski_and_thumbprint() {
    let ca = make_ca("Signer CA");
    let leaf = current(&ca, "accounting", Alg::Rsa);
    let p = policy(&ca, &[&leaf]);
    let now = SystemTime::now();
    for (kr, src) in [
        (KeyReference::IssuerSerial, KeySource::IssuerSerial),
        (
            KeyReference::SubjectKeyIdentifier,
            KeySource::SubjectKeyIdentifier,
        ),
        (KeyReference::ThumbprintSha1, KeySource::ThumbprintSha1),
    ] {
        let msg = signed(&leaf, now, kr);
        let v = verify_now(&msg, &p, now).unwrap_or_else(|e| panic!("{kr:?}: {e}"));
        assert_eq!(v.signer.unwrap().key_source, src);
        // Not configured as a signer: the reference names nobody.
        refused(&msg, &policy(&ca, &[]), now, "wssec_token_unavailable");
    }
}

#[test]
fn explain_reports_each_reference() {
    let ca = make_ca("Signer CA");
    let leaf = current(&ca, "etl-prod", Alg::Rsa);
    let now = SystemTime::now();
    let msg = signed(&leaf, now, KeyReference::BinarySecurityToken);
    let p = policy(&ca, &[]);
    let ex = explain(&msg, &p, now);
    assert!(ex.outcome.is_ok());
    assert_eq!(ex.references.len(), 2);
    assert!(ex
        .references
        .iter()
        .all(|r| r.matches && r.canonical.is_none()));
    assert!(ex.signed_info_canonical.is_some());

    let bad = edit(&msg, "100.00", "900.00");
    let ex = explain(&bad, &p, now);
    assert_eq!(ex.outcome.unwrap_err().reason(), "wssec_digest_mismatch");
    let body = &ex.references[0];
    assert!(!body.matches);
    assert_ne!(body.computed.as_deref(), Some(body.claimed.as_str()));
    let canon = String::from_utf8(body.canonical.clone().unwrap()).unwrap();
    assert!(
        canon.starts_with("<soapenv:Body") && canon.contains("900.00"),
        "{canon}"
    );
    // explain never records into a replay cache: the same message verifies after.
    verify_now(&msg, &p, now).unwrap();
}

fn username_message(user: &str, password_xml: &str, nonce: &str, created: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken><wsse:Username>{user}</wsse:Username>{password_xml}<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">{nonce}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header><s:Body><ping/></s:Body></s:Envelope>"#
    )
}

#[test]
fn username_token_text_and_digest() {
    use aws_lc_rs::digest;
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ca = make_ca("Signer CA");
    let mut p = policy(&ca, &[]);
    p.require_signed.clear();
    p.require_timestamp = false;
    p.require_username_token = true;
    let mut store = MapPasswordStore::new();
    store.insert("etl", Secret::new("s3cret-pw"));
    assert!(!format!("{store:?}").contains("s3cret"));
    assert!(!format!("{:?}", Secret::new("s3cret-pw")).contains("s3cret"));
    p.passwords = Some(Arc::new(store));
    let now = SystemTime::now();
    let created = sealgate::wssec::tokens::format_datetime(now);
    let nonce = b"0123456789abcdef";

    let text = r#"<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">s3cret-pw</wsse:Password>"#;
    let m = username_message("etl", text, &b64(nonce), &created);
    let cache = MemoryReplayCache::new(100);
    assert_eq!(
        verify(m.as_bytes(), &p, now, &cache)
            .unwrap()
            .username
            .as_deref(),
        Some("etl")
    );
    let e = verify(m.as_bytes(), &p, now, &cache).unwrap_err();
    assert_eq!(e.reason(), "wssec_replay");

    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(b"s3cret-pw");
    let pd = b64(ctx.finish().as_ref());
    let dig = format!(
        r#"<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{pd}</wsse:Password>"#
    );
    let m = username_message("etl", &dig, &b64(b"another-nonce-01"), &created);
    // The digest covers the nonce: a new nonce with the old digest fails.
    let e = verify_now(m.as_bytes(), &p, now).unwrap_err();
    assert_eq!(e.reason(), "wssec_authentication_failed");
    assert_eq!(e.fault_code(), "wsse:FailedAuthentication");
    let m = username_message("etl", &dig, &b64(nonce), &created);
    verify_now(m.as_bytes(), &p, now).unwrap();
    let m = username_message("mallory", &dig, &b64(nonce), &created);
    refused(m.as_bytes(), &p, now, "wssec_authentication_failed");
    let m = username_message("etl", &dig, &b64(nonce), &created);
    refused(
        m.as_bytes(),
        &p,
        now + 3600 * std::time::Duration::from_secs(1),
        "wssec_message_expired",
    );
}
