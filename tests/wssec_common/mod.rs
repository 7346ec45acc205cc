//! Test PKI made at test time (nothing that can expire is committed) and helpers.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::sign::{sign, KeyReference, SignOptions, SigningKey};
use sealgate::wssec::tokens::{format_datetime, TrustStore};
use sealgate::wssec::verify::{verify, Policy, Verified, WssecError};

pub const DAY: Duration = Duration::from_secs(86_400);

/// (year, month, day) of a SystemTime (via the crate's own formatter).
pub fn ymd(t: SystemTime) -> (i32, u8, u8) {
    let s = format_datetime(t);
    let n = |r: std::ops::Range<usize>| s[r].parse::<i32>().unwrap();
    (n(0..4), n(5..7) as u8, n(8..10) as u8)
}

// rcgen does not re-export its date type, so dates are made where they are used.
macro_rules! date {
    ($t:expr) => {{
        let (y, m, d) = ymd($t);
        rcgen::date_time_ymd(y, m, d)
    }};
}

pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: Vec<u8>,
    pub pem: String,
}

pub struct Leaf {
    pub key_der: Vec<u8>,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub pem: String,
    pub serial: Vec<u8>,
}

impl Leaf {
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_pkcs8_der(&self.key_der).unwrap()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Sealgate Test");
    d.push(DnType::CommonName, cn);
    d
}

pub fn make_ca(cn: &str) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    p.not_before = date!(now - 2 * DAY);
    p.not_after = date!(now + 365 * DAY);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

pub enum Alg {
    Rsa,
    P256,
    P384,
}

/// A signer certificate; `valid` is (not_before, not_after).
pub fn make_leaf(ca: &Ca, cn: &str, alg: Alg, valid: (SystemTime, SystemTime), serial: u8) -> Leaf {
    let key = KeyPair::generate_for(match alg {
        Alg::Rsa => &rcgen::PKCS_RSA_SHA256,
        Alg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Alg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    })
    .unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.not_before = date!(valid.0);
    p.not_after = date!(valid.1);
    let serial = vec![0x10, serial];
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
        pem: cert.pem(),
        serial,
    }
}

pub fn current(ca: &Ca, cn: &str, alg: Alg) -> Leaf {
    let now = SystemTime::now();
    make_leaf(ca, cn, alg, (now - DAY, now + 30 * DAY), 1)
}

pub fn crl_revoking(ca: &Ca, serial: &[u8]) -> Vec<u8> {
    let now = SystemTime::now();
    let p = CertificateRevocationListParams {
        this_update: date!(now - DAY),
        next_update: date!(now + 30 * DAY),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(serial),
            revocation_time: date!(now - DAY),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    };
    p.signed_by(&ca.issuer).unwrap().der().to_vec()
}

/// Policy trusting `ca`, with `signers` configured for key-identifier references.
pub fn policy(ca: &Ca, signers: &[&Leaf]) -> Policy {
    let mut t = TrustStore::new();
    t.add_anchor_der(&ca.der).unwrap();
    for s in signers {
        t.add_signer_der(&s.der).unwrap();
    }
    Policy::new(t)
}

pub const SOAP11: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:example:orders">
  <soapenv:Header/>
  <soapenv:Body>
    <urn:createOrder>
      <urn:account>ACME-42</urn:account>
      <urn:amount currency="EUR">100.00</urn:amount>
    </urn:createOrder>
  </soapenv:Body>
</soapenv:Envelope>
"#;

/// Signs SOAP11 with the crate's own signer at `now`.
pub fn signed(leaf: &Leaf, now: SystemTime, kr: KeyReference) -> Vec<u8> {
    let mut o = SignOptions::new(now);
    o.key_reference = kr;
    sign(SOAP11.as_bytes(), &leaf.signing_key(), &leaf.der, &o).unwrap()
}

pub fn verify_now(msg: &[u8], p: &Policy, now: SystemTime) -> Result<Verified, WssecError> {
    verify(msg, p, now, &MemoryReplayCache::new(1000))
}

#[track_caller]
pub fn refused(msg: &[u8], p: &Policy, now: SystemTime, reason: &str) -> WssecError {
    match verify_now(msg, p, now) {
        Ok(_) => panic!(
            "accepted, expected {reason}:\n{}",
            String::from_utf8_lossy(msg)
        ),
        Err(e) => {
            assert_eq!(e.reason(), reason, "{e}");
            e
        }
    }
}

/// Replaces exactly one occurrence of `from`.
#[track_caller]
pub fn edit(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = std::str::from_utf8(msg).unwrap();
    assert_eq!(
        s.matches(from).count(),
        1,
        "{from:?} must occur once in:\n{s}"
    );
    s.replacen(from, to, 1).into_bytes()
}

pub fn text(msg: &[u8]) -> &str {
    std::str::from_utf8(msg).unwrap()
}

/// The element `<prefix:local ...>...</prefix:local>` (first occurrence) as a string.
#[track_caller]
pub fn element<'a>(msg: &'a str, qname: &str) -> &'a str {
    let start = msg
        .find(&format!("<{qname} "))
        .or_else(|| msg.find(&format!("<{qname}>")))
        .unwrap_or_else(|| panic!("no <{qname}> in\n{msg}"));
    let close = format!("</{qname}>");
    let end = msg[start..].find(&close).unwrap() + start + close.len();
    &msg[start..end]
}
