//! Messages signed by other WS-Security stacks (tests/vectors/wss-interop:
//! WCF, WSE 2.0, SoapUI/WSS4J, an e-Kasa client, .NET SignedXml) get the
//! verdict their README gives, under the policy it states — each policy
//! saying what it allows (a pinned certificate, SHA-1, legacy key sizes, no
//! Timestamp, a longer lifetime, signable WS-Addressing headers).

use std::path::PathBuf;
use std::time::SystemTime;

use sealgate::wssec::envelope::QName;
use sealgate::wssec::replay::NoReplayCache;
use sealgate::wssec::tokens::{parse_datetime, KeySource, TrustStore};
use sealgate::wssec::verify::{explain, verify, Part, Policy, SignedPart};

fn file(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/wss-interop")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn at(t: &str) -> SystemTime {
    parse_datetime(t).unwrap()
}

/// A policy trusting only `pem` pinned, with SHA-1 and legacy keys allowed:
/// what the WCF, WSE 2.0 and SoapUI test certificates need.
fn pinned(pem: &str) -> Policy {
    let mut t = TrustStore::new();
    for der in rustls_pemfile_certs(&file(pem)) {
        t.add_pinned_der(&der).unwrap();
    }
    t.allow_legacy_keys = true;
    let mut p = Policy::new(t);
    p.allow_sha1 = true;
    p
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn header(ns: &str, local: &str) -> QName {
    QName::new(ns, local)
}

#[test]
fn e_kasa_soap12_with_an_embedded_certificate_verifies_under_its_ca() {
    let mut t = TrustStore::new();
    t.add_anchors_pem(&file("signxml/soap-ca.pem")).unwrap();
    let mut p = Policy::new(t);
    p.require_timestamp = false;
    p.require_signed = vec![Part::Body];
    let msg = file("signxml/soap-request.xml");
    let v = verify(&msg, &p, at("2020-01-01T00:00:00Z"), &NoReplayCache)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.signed_parts, vec![SignedPart::Body]);
    assert_eq!(
        v.signer.as_ref().unwrap().key_source,
        KeySource::X509Certificate
    );
    // The same message outside the certificate's validity is refused.
    let e = verify(&msg, &p, at("2022-01-01T00:00:00Z"), &NoReplayCache).unwrap_err();
    assert_eq!(e.reason(), "wssec_signer_expired");
    // Requiring a Timestamp refuses it: the policy has to say it waives one.
    let e = verify(
        &msg,
        &Policy::new(p.trust.clone()),
        at("2020-01-01T00:00:00Z"),
        &NoReplayCache,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "wssec_no_timestamp");
}

#[test]
fn wcf_response_with_issuer_serial_verifies_with_the_pinned_certificate() {
    let p = pinned("signxml/server_public.pem");
    let now = at("2012-05-25T11:37:30Z");
    let v = verify(&file("signxml/valid-wss-resp.xml"), &p, now, &NoReplayCache)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v.signed_parts,
        vec![SignedPart::Body, SignedPart::Timestamp]
    );
    assert_eq!(v.signer.unwrap().key_source, KeySource::IssuerSerial);
    // Without SHA-1, without legacy keys, without the pin: each is refused.
    let mut no_sha1 = p.clone();
    no_sha1.allow_sha1 = false;
    let e = verify(
        &file("signxml/valid-wss-resp.xml"),
        &no_sha1,
        now,
        &NoReplayCache,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "wssec_sha1_not_allowed");
    let mut strict = p.clone();
    strict.trust.allow_legacy_keys = false;
    let e = verify(
        &file("signxml/valid-wss-resp.xml"),
        &strict,
        now,
        &NoReplayCache,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "wssec_weak_key");
}

#[test]
fn the_tampered_wcf_response_is_refused_for_its_body_digest() {
    let p = pinned("signxml/server_public.pem");
    let now = at("2012-05-21T19:20:10Z");
    let msg = file("signxml/invalid-wss-resp---changed-content.xml");
    let e = verify(&msg, &p, now, &NoReplayCache).unwrap_err();
    assert_eq!(e.reason(), "wssec_digest_mismatch");
    assert!(e.to_string().contains("#_1"), "{e}");
    let ex = explain(&msg, &p, now);
    let bad: Vec<_> = ex.references.iter().filter(|r| !r.matches).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].uri, "#_1");
    assert_eq!(bad[0].part, Some(SignedPart::Body));
}

#[test]
fn soapui_wss4j_with_an_x509v3_key_identifier_and_signed_addressing_headers() {
    let mut p = pinned("xml-crypto/client_public.pem");
    p.max_ttl = std::time::Duration::from_secs(12 * 3600);
    let wsa = "http://www.w3.org/2005/08/addressing";
    p.signable_headers = ["Action", "From", "MessageID", "To"]
        .iter()
        .map(|l| header(wsa, l))
        .collect();
    let msg = file("xml-crypto/valid_signature_with_unused_prefixes.xml");
    let now = at("2019-03-18T16:28:00Z");
    let v = verify(&msg, &p, now, &NoReplayCache).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.signer.unwrap().key_source, KeySource::X509Certificate);
    assert_eq!(v.signed_parts.len(), 6);
    // The default lifetime cap (300 s) refuses its 12-hour Timestamp.
    let mut short = p.clone();
    short.max_ttl = std::time::Duration::from_secs(300);
    assert_eq!(
        verify(&msg, &short, now, &NoReplayCache)
            .unwrap_err()
            .reason(),
        "wssec_ttl_too_long"
    );
}

#[test]
fn wse2_request_with_a_binary_security_token() {
    let mut p = pinned("xml-crypto/client_public.pem");
    let wsa = "http://schemas.xmlsoap.org/ws/2004/03/addressing";
    p.signable_headers = ["Action", "MessageID", "ReplyTo", "To"]
        .iter()
        .map(|l| header(wsa, l))
        .collect();
    let msg = file("xml-crypto/wse2-stockquote-request.xml");
    let v = verify(&msg, &p, at("2008-09-01T17:44:30Z"), &NoReplayCache)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.signer.unwrap().key_source, KeySource::BinarySecurityToken);
    assert!(v.signed_parts.contains(&SignedPart::Body));
    assert!(v.signed_parts.contains(&SignedPart::Timestamp));
}

#[test]
fn plain_xml_signatures_are_not_envelopes() {
    let p = pinned("xml-crypto/client_public.pem");
    for f in [
        "valid_signature-wsu.xml",
        "invalid_signature---wsu---changed-content.xml",
        "invalid_signature---wsu---hash.xml",
        "invalid_signature---wsu---invalid-signature-value.xml",
        "invalid_signature---wsu---non-existing-reference.xml",
    ] {
        let e = verify(
            &file(&format!("xml-crypto/{f}")),
            &p,
            SystemTime::now(),
            &NoReplayCache,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "wssec_bad_envelope", "{f}");
    }
}
