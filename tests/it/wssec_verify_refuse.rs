//! Refusals, each with its exact reason. Inputs are validly signed messages
//! (from the crate's own signer, so these run without Python) edited byte-wise.

use std::time::{Duration, SystemTime};

use crate::support::wssec::*;
use sealgate::wssec::envelope::QName;
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::sign::{sign, KeyReference, SignOptions};
use sealgate::wssec::verify::{verify, Policy};

const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

struct Setup {
    ca: Ca,
    leaf: Leaf,
    now: SystemTime,
    msg: Vec<u8>,
    policy: Policy,
}

fn setup() -> Setup {
    let ca = make_ca("Signer CA");
    let leaf = current(&ca, "etl-prod", Alg::Rsa);
    let now = SystemTime::now();
    let msg = signed(&leaf, now, KeyReference::BinarySecurityToken);
    let policy = policy(&ca, &[]);
    verify_now(&msg, &policy, now).expect("baseline verifies");
    Setup {
        ca,
        leaf,
        now,
        msg,
        policy,
    }
}

impl Setup {
    #[track_caller]
    fn refused(&self, msg: &[u8], reason: &str) -> sealgate::wssec::verify::WssecError {
        refused(msg, &self.policy, self.now, reason)
    }
    fn s(&self) -> &str {
        text(&self.msg)
    }
    fn with(&self, f: impl FnOnce(&mut SignOptions)) -> Vec<u8> {
        let mut o = SignOptions::new(self.now);
        f(&mut o);
        sign(
            SOAP11.as_bytes(),
            &signing_key(&self.leaf),
            &self.leaf.der,
            &o,
        )
        .unwrap()
    }
}

// --- Tampering ------------------------------------------------------------------

#[test]
fn tampered_body_text() {
    let t = setup();
    let e = t.refused(&edit(&t.msg, "ACME-42", "ACME-43"), "wssec_digest_mismatch");
    assert_eq!(e.fault_code(), "wsse:FailedCheck");
}

#[test]
fn tampered_element() {
    let t = setup();
    let m = edit(
        &t.msg,
        "<urn:account>",
        "<urn:account>x</urn:account><urn:account>",
    );
    let m = edit(
        &m,
        "ACME-42</urn:account>",
        "ACME-42</urn:account><urn:approved>true</urn:approved>",
    );
    t.refused(&m, "wssec_digest_mismatch");
    // An attribute changed.
    t.refused(
        &edit(&t.msg, "currency=\"EUR\"", "currency=\"USD\""),
        "wssec_digest_mismatch",
    );
}

#[test]
fn altered_signature_value() {
    let t = setup();
    let s = t.s();
    let at = s.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
    let mut m = t.msg.clone();
    m[at + 10] = if m[at + 10] == b'A' { b'B' } else { b'A' };
    let e = t.refused(&m, "wssec_bad_signature");
    assert_eq!(e.fault_code(), "wsse:FailedCheck");
}

#[test]
fn expires_extended_after_signing() {
    let t = setup();
    let m = t.with(|o| o.ttl = Duration::from_secs(120));
    let exp = element(text(&m), "wsu:Expires").to_owned();
    let later = sealgate::wssec::tokens::format_datetime(t.now + Duration::from_secs(180));
    let m2 = edit(&m, &exp, &format!("<wsu:Expires>{later}</wsu:Expires>"));
    t.refused(&m2, "wssec_digest_mismatch");
    // Past the lifetime cap it is refused before any crypto.
    let far = sealgate::wssec::tokens::format_datetime(t.now + Duration::from_secs(3600));
    let m3 = edit(&m, &exp, &format!("<wsu:Expires>{far}</wsu:Expires>"));
    let e = t.refused(&m3, "wssec_ttl_too_long");
    assert_eq!(e.fault_code(), "wsu:MessageExpired");
}

// --- Time -----------------------------------------------------------------------

#[test]
fn expired_and_created_in_future() {
    let t = setup();
    // Expires = now + 300 s; skew 60 s.
    let e = refused(
        &t.msg,
        &t.policy,
        t.now + Duration::from_secs(361),
        "wssec_message_expired",
    );
    assert_eq!(e.fault_code(), "wsu:MessageExpired");
    verify_now(&t.msg, &t.policy, t.now + Duration::from_secs(355)).unwrap();
    refused(
        &t.msg,
        &t.policy,
        t.now - Duration::from_secs(61),
        "wssec_created_in_future",
    );
    verify_now(&t.msg, &t.policy, t.now - Duration::from_secs(55)).unwrap();
}

#[test]
fn long_lived_timestamp_and_bad_dates() {
    let t = setup();
    let m = t.with(|o| o.ttl = Duration::from_secs(600));
    t.refused(&m, "wssec_ttl_too_long");
    let created = element(t.s(), "wsu:Created").to_owned();
    // A zone offset is read (as WSS4J reads it); editing the signed Timestamp
    // then breaks its digest. A time without a zone is refused outright.
    let plus = created.replace("Z<", "+00:00<");
    t.refused(&edit(&t.msg, &created, &plus), "wssec_digest_mismatch");
    let zoneless = created.replace("Z<", "<");
    t.refused(&edit(&t.msg, &created, &zoneless), "wssec_bad_timestamp");
    let no_ts = t.with(|o| o.timestamp = false);
    t.refused(&no_ts, "wssec_no_timestamp");
}

// --- Trust ----------------------------------------------------------------------

#[test]
fn untrusted_signer() {
    let t = setup();
    let other = make_ca("Some Other CA");
    let e = refused(
        &t.msg,
        &policy(&other, &[]),
        t.now,
        "wssec_untrusted_signer",
    );
    assert_eq!(e.fault_code(), "wsse:FailedAuthentication");
    // A self-signed certificate with the same name does not help either.
    let rogue_ca = make_ca("Signer CA");
    let rogue = current(&rogue_ca, "etl-prod", Alg::Rsa);
    t.refused(
        &signed(&rogue, t.now, KeyReference::BinarySecurityToken),
        "wssec_untrusted_signer",
    );
}

#[test]
fn expired_and_revoked_signers() {
    let t = setup();
    let old = make_leaf(&t.ca, "old", Alg::Rsa, (-90, -30), 7);
    t.refused(
        &signed(&old, t.now, KeyReference::BinarySecurityToken),
        "wssec_signer_expired",
    );

    let mut p = t.policy.clone();
    p.trust
        .add_crl_der(&crl_revoking(&t.ca, t.leaf.serial))
        .unwrap();
    let e = refused(&t.msg, &p, t.now, "wssec_signer_revoked");
    assert_eq!(e.fault_code(), "wsse:FailedAuthentication");
    let other = make_leaf(&t.ca, "other", Alg::Rsa, (-1, 1), 9);
    verify_now(
        &signed(&other, t.now, KeyReference::BinarySecurityToken),
        &p,
        t.now,
    )
    .unwrap();
}

/// A signer's chain is remembered once verified (the same certificate
/// arrives in every message), but never past its dates: the same signer,
/// the same policy, a message fresh in its own Timestamp, refused once the
/// certificate has expired; and a CRL added to a copy of the policy
/// revokes a signer the original still remembers.
#[test]
fn a_remembered_signer_is_still_judged_by_its_dates() {
    let t = setup();
    let day = std::time::Duration::from_secs(86_400);
    verify_now(&t.msg, &t.policy, t.now).unwrap();
    let later = t.now + 31 * day;
    let fresh_then = signed(&t.leaf, later, KeyReference::BinarySecurityToken);
    refused(&fresh_then, &t.policy, later, "wssec_signer_expired");
    verify_now(&t.msg, &t.policy, t.now).unwrap();
    let early = t.now - 2 * day;
    let fresh_before = signed(&t.leaf, early, KeyReference::BinarySecurityToken);
    refused(
        &fresh_before,
        &t.policy,
        early,
        "wssec_signer_not_yet_valid",
    );

    let mut revoking = t.policy.clone();
    revoking
        .trust
        .add_crl_der(&crl_revoking(&t.ca, t.leaf.serial))
        .unwrap();
    refused(&t.msg, &revoking, t.now, "wssec_signer_revoked");
    verify_now(&t.msg, &t.policy, t.now).unwrap();
}

#[test]
fn keyvalue_only_and_retrieval_method() {
    let t = setup();
    let ki = element(t.s(), "ds:KeyInfo").to_owned();
    let kv = "<ds:KeyInfo><ds:KeyValue><ds:RSAKeyValue><ds:Modulus>AQAB</ds:Modulus>\
              <ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue></ds:KeyValue></ds:KeyInfo>";
    let e = t.refused(&edit(&t.msg, &ki, kv), "wssec_keyvalue_not_allowed");
    assert_eq!(e.fault_code(), "wsse:InvalidSecurityToken");
    let rm = "<ds:KeyInfo><ds:RetrievalMethod URI=\"http://attacker/key\"/></ds:KeyInfo>";
    t.refused(&edit(&t.msg, &ki, rm), "wssec_retrieval_method_not_allowed");
    let bst = signer_id(t.s(), "X509");
    let missing = edit(&t.msg, &format!("URI=\"#{bst}\""), "URI=\"#X509-absent\"");
    let e = t.refused(&missing, "wssec_token_unavailable");
    assert_eq!(e.fault_code(), "wsse:SecurityTokenUnavailable");
}

// --- Structure and policy ---------------------------------------------------------

#[test]
fn unsigned_messages() {
    let t = setup();
    let sig = element(t.s(), "ds:Signature").to_owned();
    t.refused(&edit(&t.msg, &sig, ""), "wssec_unsigned");
    t.refused(SOAP11.as_bytes(), "wssec_no_security_header");
}

#[test]
fn body_or_timestamp_reference_missing() {
    let t = setup();
    let e = t.refused(&t.with(|o| o.sign_body = false), "wssec_body_not_signed");
    assert_eq!(e.fault_code(), "wsse:InvalidSecurity");
    t.refused(
        &t.with(|o| o.sign_timestamp = false),
        "wssec_timestamp_not_signed",
    );
    // Removing the Body Reference after signing breaks the signature itself.
    let r = element(t.s(), "ds:Reference").to_owned();
    t.refused(&edit(&t.msg, &r, ""), "wssec_bad_signature");
}

#[test]
fn required_header_block_must_be_signed() {
    let t = setup();
    let mut p = t.policy.clone();
    let to = QName::new("http://www.w3.org/2005/08/addressing", "To");
    p.require_signed
        .push(sealgate::wssec::verify::Part::Header(to));
    let m = edit(
        &t.msg,
        "<wsse:Security xmlns",
        "<wsa:To xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">x</wsa:To><wsse:Security xmlns",
    );
    // Adding a header changes nothing signed, so only policy catches it.
    refused(&m, &p, t.now, "wssec_header_not_signed");
    let twice = edit(
        &m,
        "<wsse:Security xmlns",
        "<wsa:To xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">y</wsa:To><wsse:Security xmlns",
    );
    refused(&twice, &p, t.now, "wssec_duplicate_header_block");
}

#[test]
fn replayed_message() {
    let t = setup();
    let cache = MemoryReplayCache::new(100);
    verify(&t.msg, &t.policy, t.now, &cache).unwrap();
    let e = verify(&t.msg, &t.policy, t.now + Duration::from_secs(5), &cache).unwrap_err();
    assert_eq!(e.reason(), "wssec_replay");
    assert_eq!(e.fault_code(), "wsse:InvalidSecurity");
    // A refused message is never remembered.
    let cache2 = MemoryReplayCache::new(100);
    let bad = edit(&t.msg, "ACME-42", "ACME-43");
    assert!(verify(&bad, &t.policy, t.now, &cache2).is_err());
    assert!(cache2.is_empty());
}

#[test]
fn replay_cache_refuses_when_full() {
    let t = setup();
    let cache = MemoryReplayCache::new(1);
    // 16 shards of one entry each: fill until a shard is full.
    let mut reasons = Vec::new();
    for i in 0..40 {
        let m = signed(
            &t.leaf,
            t.now + Duration::from_millis(i * 1000),
            KeyReference::BinarySecurityToken,
        );
        if let Err(e) = verify(&m, &t.policy, t.now + Duration::from_secs(i), &cache) {
            reasons.push(e.reason().as_str());
        }
    }
    assert!(reasons.contains(&"wssec_replay_cache_full"), "{reasons:?}");
    assert!(cache.len() <= 16);
}

#[test]
fn sha1_not_allowed() {
    let t = setup();
    let sha1 = "http://www.w3.org/2000/09/xmldsig#sha1";
    let m = t.s().replacen(SHA256, sha1, 1);
    t.refused(m.as_bytes(), "wssec_sha1_not_allowed");
    let m = edit(
        &t.msg,
        RSA_SHA256,
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    );
    t.refused(&m, "wssec_sha1_not_allowed");
}

#[test]
fn algorithms_outside_the_allowlist() {
    let t = setup();
    let m = edit(
        &t.msg,
        RSA_SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-md5",
    );
    t.refused(&m, "wssec_algorithm_not_allowed");
    let m = edit(
        &t.msg,
        RSA_SHA256,
        "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
    );
    t.refused(&m, "wssec_algorithm_not_allowed");
    // ECDSA named, RSA key given.
    let m = edit(
        &t.msg,
        RSA_SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    );
    t.refused(&m, "wssec_algorithm_key_mismatch");
}

#[test]
fn hmac_output_length() {
    let t = setup();
    let m = edit(
        &t.msg,
        &format!("<ds:SignatureMethod Algorithm=\"{RSA_SHA256}\"/>"),
        "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#hmac-sha1\">\
         <ds:HMACOutputLength>8</ds:HMACOutputLength></ds:SignatureMethod>",
    );
    t.refused(&m, "wssec_hmac_output_length");
}

#[test]
fn transforms_outside_the_allowlist() {
    let t = setup();
    let exc = format!("<ds:Transform Algorithm=\"{EXC}\"/>");
    let first = |to: &str| t.s().replacen(&exc, to, 1).into_bytes();
    let xpath = "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\">\
                 <ds:XPath>not(ancestor-or-self::urn:amount)</ds:XPath></ds:Transform>";
    let e = t.refused(&first(xpath), "wssec_transform_not_allowed");
    assert_eq!(e.fault_code(), "wsse:UnsupportedAlgorithm");
    let xslt = "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\"/>";
    t.refused(&first(xslt), "wssec_transform_not_allowed");
    let filter2 = "<ds:Transform Algorithm=\"http://www.w3.org/2002/06/xmldsig-filter2\"/>";
    t.refused(&first(filter2), "wssec_transform_not_allowed");
    let comments = format!("<ds:Transform Algorithm=\"{EXC}WithComments\"/>");
    t.refused(&first(&comments), "wssec_transform_not_allowed");
    let two = format!("{exc}{exc}");
    t.refused(&first(&two), "wssec_transform_not_allowed");
    let body_ref = format!("URI=\"#{}\"", signer_id(t.s(), "Body"));
    let xptr = t.s().replacen(&body_ref, "URI=\"#xpointer(/)\"", 1);
    t.refused(xptr.as_bytes(), "wssec_bad_reference_uri");
    let external = t.s().replacen(&body_ref, "URI=\"http://x/\"", 1);
    t.refused(external.as_bytes(), "wssec_bad_reference_uri");
}

#[test]
fn manifest_and_too_many_references() {
    let t = setup();
    let id = signer_id(t.s(), "Body");
    let m = t.s().replacen(
        &format!("<ds:Reference URI=\"#{id}\""),
        &format!("<ds:Reference Type=\"{DS}Manifest\" URI=\"#{id}\""),
        1,
    );
    t.refused(m.as_bytes(), "wssec_manifest_not_allowed");
    let r = element(t.s(), "ds:Reference").to_owned();
    let many = t.s().replacen(&r, &r.repeat(31), 1);
    t.refused(many.as_bytes(), "wssec_too_many_references");
    let dup = t.s().replacen(&r, &r.repeat(2), 1);
    t.refused(dup.as_bytes(), "wssec_duplicate_reference");
}

#[test]
fn digest_value_must_be_strict_base64() {
    let t = setup();
    let dv = element(t.s(), "ds:DigestValue").to_owned();
    let inner = &dv["<ds:DigestValue>".len()..dv.len() - "</ds:DigestValue>".len()];
    let commented = format!(
        "<ds:DigestValue>{}<!--x-->{}</ds:DigestValue>",
        &inner[..4],
        &inner[4..]
    );
    t.refused(&edit(&t.msg, &dv, &commented), "wssec_bad_base64");
    let junk = format!("<ds:DigestValue>{}!</ds:DigestValue>", inner);
    t.refused(&edit(&t.msg, &dv, &junk), "wssec_bad_base64");
    // Whitespace inside is accepted as base64; the edit then only breaks the
    // signature over SignedInfo.
    let spaced = format!(
        "<ds:DigestValue>\n  {} {}\n</ds:DigestValue>",
        &inner[..4],
        &inner[4..]
    );
    t.refused(&edit(&t.msg, &dv, &spaced), "wssec_bad_signature");
}

#[test]
fn two_signatures_and_two_security_headers() {
    let t = setup();
    let sig = element(t.s(), "ds:Signature").to_owned();
    t.refused(&edit(&t.msg, &sig, &sig.repeat(2)), "wssec_two_signatures");
    let second = "<wsse:Security xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\"/>";
    let m = t.s().replacen(
        "</soapenv:Header>",
        &format!("{second}</soapenv:Header>"),
        1,
    );
    t.refused(m.as_bytes(), "wssec_two_security_headers");
    let ts = element(t.s(), "wsu:Timestamp").to_owned();
    let m = t.s().replacen(
        &ts,
        &format!("{ts}{}", ts.replace(&signer_id(&ts, "TS"), "TS-2")),
        1,
    );
    t.refused(m.as_bytes(), "wssec_two_timestamps");
}

#[test]
fn envelope_structure() {
    let t = setup();
    let body = element(t.s(), "soapenv:Body").to_owned();
    let s = t.s();
    t.refused(
        s.replacen("</soapenv:Body>", "</soapenv:Body><soapenv:Extra/>", 1)
            .as_bytes(),
        "wssec_bad_envelope",
    );
    t.refused(
        s.replacen("</soapenv:Body>", "</soapenv:Body><soapenv:Header/>", 1)
            .as_bytes(),
        "wssec_bad_envelope",
    );
    t.refused(s.replacen(&body, "", 1).as_bytes(), "wssec_bad_envelope");
    t.refused(
        s.replacen(
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"",
            "<soapenv:Envelope xmlns:soapenv=\"urn:not-soap\"",
            1,
        )
        .as_bytes(),
        "wssec_bad_envelope",
    );
    t.refused(
        s.replacen("</soapenv:Body>", "</soapenv:Body>text", 1)
            .as_bytes(),
        "wssec_bad_envelope",
    );
}

// --- Signature wrapping -------------------------------------------------------------

const EVIL_BODY: &str = "<soapenv:Body><urn:createOrder><urn:account>MALLORY</urn:account>\
    <urn:amount currency=\"EUR\">999999.00</urn:amount></urn:createOrder></soapenv:Body>";

#[test]
fn wrapping_signed_body_moved_into_header_wrapper() {
    let t = setup();
    let s = t.s();
    let body = element(s, "soapenv:Body");
    let m = s.replacen(body, EVIL_BODY, 1).replacen(
        "</soapenv:Header>",
        &format!("<w:Wrapper xmlns:w=\"urn:attacker\">{body}</w:Wrapper></soapenv:Header>"),
        1,
    );
    let e = t.refused(m.as_bytes(), "wssec_reference_not_allowed");
    assert!(e.to_string().contains("inside the Header"), "{e}");
}

#[test]
fn wrapping_duplicate_ids() {
    let t = setup();
    let s = t.s();
    let body = element(s, "soapenv:Body");
    // The unsigned Body claims the signed Body's Id, the signed one sits in a wrapper.
    let id = signer_id(s, "Body");
    let evil = EVIL_BODY.replacen("<soapenv:Body>", &format!("<soapenv:Body xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\" wsu:Id=\"{id}\">"), 1);
    let m = s.replacen(body, &evil, 1).replacen(
        "</soapenv:Header>",
        &format!("<w:Wrapper xmlns:w=\"urn:attacker\">{body}</w:Wrapper></soapenv:Header>"),
        1,
    );
    t.refused(m.as_bytes(), "wssec_duplicate_id");
    // Any Id-like attribute counts, whatever its name's namespace or case.
    for attr in ["Id", "ID", "id", "xml:id", "x:Id"] {
        let decoy = format!("<urn:note xmlns:x=\"urn:x\" {attr}=\"{id}\"/></urn:createOrder>");
        let m = edit(&t.msg, "</urn:createOrder>", &decoy);
        t.refused(&m, "wssec_duplicate_id");
    }
}

#[test]
fn wrapping_signed_body_hidden_in_ds_object() {
    let t = setup();
    let s = t.s();
    let body = element(s, "soapenv:Body");
    let m = s.replacen(body, EVIL_BODY, 1).replacen(
        "</ds:KeyInfo>",
        &format!("</ds:KeyInfo><ds:Object>{body}</ds:Object>"),
        1,
    );
    let e = t.refused(m.as_bytes(), "wssec_reference_not_allowed");
    assert!(e.to_string().contains("inside the Security header"), "{e}");
}

#[test]
fn wrapping_two_body_elements() {
    let t = setup();
    let s = t.s();
    let before = s.replacen("<soapenv:Body", &format!("{EVIL_BODY}<soapenv:Body"), 1);
    t.refused(before.as_bytes(), "wssec_bad_envelope");
    let after = s.replacen("</soapenv:Body>", &format!("</soapenv:Body>{EVIL_BODY}"), 1);
    t.refused(after.as_bytes(), "wssec_bad_envelope");
}

#[test]
fn wrapping_id_on_a_decoy_element_inside_the_body() {
    let t = setup();
    let s = t.s();
    let body = element(s, "soapenv:Body");
    // The signed Body, renamed, becomes a decoy inside a new Body.
    let decoy = body
        .replacen("<soapenv:Body", "<w:Decoy xmlns:w=\"urn:attacker\"", 1)
        .replacen("</soapenv:Body>", "</w:Decoy>", 1);
    let evil = EVIL_BODY.replacen("</soapenv:Body>", &format!("{decoy}</soapenv:Body>"), 1);
    let m = s.replacen(body, &evil, 1);
    let e = t.refused(m.as_bytes(), "wssec_reference_not_allowed");
    assert!(e.to_string().contains("inside the Body"), "{e}");
}

#[test]
fn wrapping_timestamp_wrapped() {
    let t = setup();
    let s = t.s();
    let ts = element(s, "wsu:Timestamp");
    // A fresh unsigned Timestamp in place; the signed one kept inside a wrapper.
    let created = sealgate::wssec::tokens::format_datetime(t.now);
    let expires = sealgate::wssec::tokens::format_datetime(t.now + Duration::from_secs(300));
    let fresh = format!("<wsu:Timestamp wsu:Id=\"TS-9\"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>");
    let m = s.replacen(
        ts,
        &format!("{fresh}<w:Wrapper xmlns:w=\"urn:attacker\">{ts}</w:Wrapper>"),
        1,
    );
    t.refused(m.as_bytes(), "wssec_reference_not_allowed");
}

#[test]
fn wrapping_reference_to_an_unlisted_header_block() {
    let t = setup();
    // Moving the signed Body's Id to a header block the policy does not list.
    let s = t.s();
    let body = element(s, "soapenv:Body");
    let hdr = body
        .replacen("<soapenv:Body", "<w:Order xmlns:w=\"urn:attacker\"", 1)
        .replacen("</soapenv:Body>", "</w:Order>", 1);
    let m = s.replacen(body, EVIL_BODY, 1).replacen(
        "</soapenv:Header>",
        &format!("{hdr}</soapenv:Header>"),
        1,
    );
    t.refused(m.as_bytes(), "wssec_reference_not_allowed");
}

// --- Hostile XML through verify -----------------------------------------------------

#[test]
fn billion_laughs() {
    let t = setup();
    let mut dtd = String::from("<!DOCTYPE soapenv:Envelope [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    dtd.push_str("]>");
    let m = t
        .s()
        .replacen("<soapenv:Envelope", &format!("{dtd}<soapenv:Envelope"), 1);
    let m = m.replacen("ACME-42", "&lol9;", 1);
    let e = t.refused(m.as_bytes(), "xml_doctype");
    assert_eq!(e.fault_code(), "wsse:InvalidSecurity");
}

#[test]
fn deep_nesting() {
    let t = setup();
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    let m = edit(&t.msg, "ACME-42", &deep);
    t.refused(&m, "xml_too_deep");
}

#[test]
fn fifty_thousand_attributes() {
    let t = setup();
    let attrs: String = (0..50_000).map(|i| format!(" a{i}=\"v\"")).collect();
    let m = edit(
        &t.msg,
        "<urn:createOrder>",
        &format!("<urn:createOrder{attrs}>"),
    );
    let started = std::time::Instant::now();
    t.refused(&m, "xml_too_many_attributes");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn not_utf8() {
    let t = setup();
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16)
        .chain(t.s().encode_utf16())
        .flat_map(|u| u.to_le_bytes())
        .collect();
    t.refused(&utf16, "xml_not_utf8");
    let m = edit(&t.msg, "encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
    t.refused(&m, "xml_encoding");
}

// --- Work bounds ----------------------------------------------------------------

#[test]
fn the_signature_is_checked_before_any_reference_is_digested() {
    let t = setup();
    // SignedInfo changed (so the signature no longer verifies) and the Body
    // changed too: the refusal is the signature's, so the Body was never
    // canonicalized. Digesting first would have reported the Body's digest.
    let dv = element(t.s(), "ds:DigestValue").to_owned();
    let m = edit(&t.msg, &dv, "<ds:DigestValue>AAAA</ds:DigestValue>");
    let m = edit(&m, "ACME-42", "ACME-43");
    let e = t.refused(&m, "wssec_bad_signature");
    assert_eq!(e.fault_code(), "wsse:FailedCheck");
}

#[test]
fn a_message_that_needs_more_work_than_allowed_is_refused() {
    let t = setup();
    let big = "<urn:line>x</urn:line>".repeat(200_000);
    let m = edit(&t.msg, "ACME-42", &big);
    let mut p = t.policy.clone();
    p.max_work = Some(Duration::from_millis(1));
    let started = std::time::Instant::now();
    refused(&m, &p, t.now, "wssec_work_limit");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_comment_inside_a_signed_element_is_refused() {
    let t = setup();
    // Canonicalization without comments drops it, so the digest still
    // matches — but the upstream would read `ACME-<!-- -->42`, not what was signed.
    let m = edit(&t.msg, "ACME-42", "ACME-<!-- c -->42");
    let e = t.refused(&m, "wssec_comment_in_signed_part");
    assert_eq!(e.fault_code(), "wsse:FailedCheck");
    // Outside the signed parts a comment is only a comment.
    let m = edit(&t.msg, "<soapenv:Body", "<!-- c --><soapenv:Body");
    verify_now(&m, &t.policy, t.now).unwrap();
}

#[test]
fn a_fault_in_the_body_keeps_its_place_behind_earlier_refusals() {
    // The Body is digested in the same read as the envelope scan, before the
    // Timestamp, the signer or the SignatureValue are judged. What that digest
    // finds must not jump the queue: each refusal below is the one the
    // judgement reaches first, as when the Body was digested last.
    let t = setup();
    let commented = edit(&t.msg, "ACME-42", "ACME-<!-- c -->42");
    refused(
        &commented,
        &t.policy,
        t.now + Duration::from_secs(361),
        "wssec_message_expired",
    );
    let other = make_ca("Some Other CA");
    refused(
        &commented,
        &policy(&other, &[]),
        t.now,
        "wssec_untrusted_signer",
    );
    let dv = element(t.s(), "ds:DigestValue").to_owned();
    let forged = edit(&commented, &dv, "<ds:DigestValue>AAAA</ds:DigestValue>");
    t.refused(&forged, "wssec_bad_signature");
    // A Body whose digest fails is digested again by the judgement, which
    // then refuses it for what it is.
    t.refused(&commented, "wssec_comment_in_signed_part");
    t.refused(&edit(&t.msg, "ACME-42", "ACME-43"), "wssec_digest_mismatch");
}

#[test]
fn a_certificate_renewed_for_the_same_key_buys_no_replay() {
    let t = setup();
    let cache = MemoryReplayCache::new(100);
    verify(&t.msg, &t.policy, t.now, &cache).unwrap();
    // The same key, a new certificate: swapped into the (unsigned) token,
    // the signature still verifies, but the message is the same one.
    let mut spec = sealgate::pki::Leaf::new("etl-prod", sealgate::pki::Usage::Signer);
    spec.o = Some("Sealgate Test".into());
    spec.alg = KeyAlg::Rsa2048;
    let renewed = t.ca.reissue(&spec, &t.leaf.key_pem).unwrap();
    let b64 = |der: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let m = edit(&t.msg, &b64(&t.leaf.der), &b64(&renewed.der));
    let e = verify(&m, &t.policy, t.now + Duration::from_secs(1), &cache).unwrap_err();
    assert_eq!(e.reason(), "wssec_replay");
}
