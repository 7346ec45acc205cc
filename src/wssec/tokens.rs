//! Security tokens: the signer's certificate (from a BinarySecurityToken or a
//! configured signer set), its trust chain, the Timestamp and UsernameToken.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{constant_time, digest};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyPurposeIdIter, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate, X509Name};

use super::dsig::decode_base64;
use super::envelope::{Node, Security, DS_NS, WSSE_NS, WSU_NS};
use super::verify::WssecError;

pub const X509V3_TYPE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
pub const BASE64_ENCODING: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";
pub const SKI_TYPE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier";
pub const THUMBPRINT_TYPE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#ThumbprintSHA1";
pub const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
pub const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// A signer's public key in the form aws-lc-rs verifies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// PKCS#1 RSAPublicKey DER.
    Rsa(Vec<u8>),
    /// Uncompressed P-256 point.
    EcP256(Vec<u8>),
    /// Uncompressed P-384 point.
    EcP384(Vec<u8>),
}

/// A parsed certificate with the fields key references and logs need.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    /// Serial number, upper-case hex.
    pub serial_hex: String,
    pub serial_decimal: String,
    pub sha256: [u8; 32],
    pub sha1: [u8; 20],
    pub ski: Option<Vec<u8>>,
    pub key: PublicKey,
    issuer_rdns: Vec<(String, String)>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<CertInfo, WssecError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|_| WssecError::BadToken("certificate DER"))?;
        if !rest.is_empty() {
            return Err(WssecError::BadToken("bytes after certificate"));
        }
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        // Without the extension, the RFC 5280 method 1 value (SHA-1 of the
        // subjectPublicKey), as WSS4J computes it.
        let ski = ski.or_else(|| {
            let spk = &cert.public_key().subject_public_key.data;
            Some(
                digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, spk)
                    .as_ref()
                    .to_vec(),
            )
        });
        let serial = &cert.tbs_certificate.serial;
        Ok(CertInfo {
            der: der.to_vec(),
            subject: crate::dn::rfc4514(cert.subject()),
            issuer: crate::dn::rfc4514(cert.issuer()),
            serial_hex: format!("{serial:X}"),
            serial_decimal: serial.to_string(),
            sha256: fixed(digest::digest(&digest::SHA256, der).as_ref()),
            sha1: fixed(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref()),
            ski,
            key: public_key(&cert)?,
            issuer_rdns: name_rdns(cert.issuer()),
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

fn public_key(cert: &X509Certificate<'_>) -> Result<PublicKey, WssecError> {
    let spki = cert.public_key();
    let raw = spki.subject_public_key.data.to_vec();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    match (alg.as_str(), curve.as_deref()) {
        (OID_RSA, _) => Ok(PublicKey::Rsa(raw)),
        (OID_EC, Some(OID_P256)) => Ok(PublicKey::EcP256(raw)),
        (OID_EC, Some(OID_P384)) => Ok(PublicKey::EcP384(raw)),
        _ => Err(WssecError::BadToken("unsupported public key type")),
    }
}

/// A distinguished name as (attribute short name or OID, value) pairs.
fn name_rdns(name: &X509Name<'_>) -> Vec<(String, String)> {
    let reg = x509_parser::objects::oid_registry();
    name.iter_attributes()
        .map(|a| {
            let ty = x509_parser::objects::oid2abbrev(a.attr_type(), reg)
                .map(str::to_owned)
                .unwrap_or_else(|_| a.attr_type().to_id_string());
            (norm_attr_type(&ty), a.as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn norm_attr_type(t: &str) -> String {
    let t = t.trim().to_ascii_uppercase();
    match t.as_str() {
        "EMAILADDRESS" | "E" | "1.2.840.113549.1.9.1" => "EMAIL".to_owned(),
        "S" => "ST".to_owned(),
        "2.5.4.3" => "CN".to_owned(),
        "2.5.4.10" => "O".to_owned(),
        "2.5.4.11" => "OU".to_owned(),
        "2.5.4.6" => "C".to_owned(),
        "2.5.4.7" => "L".to_owned(),
        "2.5.4.8" => "ST".to_owned(),
        _ => t,
    }
}

/// Parses an RFC 2253/4514 DN string (as X509IssuerName carries) into pairs.
fn parse_dn(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut parts = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                cur.push(chars.next()?);
            }
            ',' | ';' | '+' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    for p in parts {
        let (k, v) = p.split_once('=')?;
        out.push((norm_attr_type(k), unescape_dn(v.trim())));
    }
    Some(out)
}

fn unescape_dn(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Same attributes, in either order (RFC 2253 strings list them reversed).
fn same_dn(written: &str, cert: &[(String, String)]) -> bool {
    let Some(mut w) = parse_dn(written) else {
        return false;
    };
    if w.as_slice() == cert {
        return true;
    }
    w.reverse();
    w.as_slice() == cert
}

/// Trust anchors, intermediates, CRLs and the configured signer set.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    // Arc: webpki's CRL type is not Clone, and a policy is cloned per snapshot.
    crls: Vec<std::sync::Arc<CertRevocationList<'static>>>,
    signers: Vec<CertInfo>,
}

fn config(what: &str) -> WssecError {
    WssecError::Config(what.to_owned())
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_anchor_der(&mut self, der: &[u8]) -> Result<(), WssecError> {
        let der = CertificateDer::from(der.to_vec());
        let ta = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| config(&format!("trust anchor: {e}")))?;
        self.anchors.push(ta.to_owned());
        Ok(())
    }

    /// Adds every certificate of a PEM bundle as a trust anchor; returns the count.
    pub fn add_anchors_pem(&mut self, pem: &[u8]) -> Result<usize, WssecError> {
        let certs = pem_certs(pem)?;
        for c in &certs {
            self.add_anchor_der(c)?;
        }
        Ok(certs.len())
    }

    pub fn add_intermediate_der(&mut self, der: &[u8]) {
        self.intermediates.push(CertificateDer::from(der.to_vec()));
    }

    pub fn add_crl_der(&mut self, der: &[u8]) -> Result<(), WssecError> {
        let crl =
            OwnedCertRevocationList::from_der(der).map_err(|e| config(&format!("CRL: {e}")))?;
        self.crls
            .push(std::sync::Arc::new(CertRevocationList::from(crl)));
        Ok(())
    }

    pub fn add_crls_pem(&mut self, pem: &[u8]) -> Result<usize, WssecError> {
        let mut n = 0;
        for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
            let crl = crl.map_err(|e| config(&format!("CRL PEM: {e}")))?;
            self.add_crl_der(crl.as_ref())?;
            n += 1;
        }
        Ok(n)
    }

    /// A certificate that X509IssuerSerial, SubjectKeyIdentifier or thumbprint
    /// references may name. It must still chain to an anchor.
    pub fn add_signer_der(&mut self, der: &[u8]) -> Result<(), WssecError> {
        self.signers
            .push(CertInfo::from_der(der).map_err(|e| config(&e.to_string()))?);
        Ok(())
    }

    pub fn add_signers_pem(&mut self, pem: &[u8]) -> Result<usize, WssecError> {
        let certs = pem_certs(pem)?;
        for c in &certs {
            self.add_signer_der(c)?;
        }
        Ok(certs.len())
    }

    /// Chain to an anchor, validity at `now`, and revocation by the CRLs.
    pub fn check(&self, cert: &CertInfo, now: SystemTime) -> Result<(), WssecError> {
        let der = CertificateDer::from(cert.der.as_slice());
        let ee = EndEntityCert::try_from(&der).map_err(|_| WssecError::BadToken("certificate"))?;
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().map(|c| c.as_ref()).collect();
        // Unknown status is allowed so a CRL list need not cover every issuer;
        // CRL nextUpdate is not enforced (as rustls' default client verifier).
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        let since = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| WssecError::Internal("clock before 1970"))?;
        ee.verify_for_usage(
            CHAIN_ALGS,
            &self.anchors,
            &self.intermediates,
            UnixTime::since_unix_epoch(since),
            AnyEku,
            revocation,
            None,
        )
        .map(|_| ())
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => WssecError::SignerExpired,
            webpki::Error::CertNotValidYet { .. } => WssecError::SignerNotYetValid,
            webpki::Error::CertRevoked => WssecError::SignerRevoked,
            other => WssecError::UntrustedSigner(format!("{other:?}")),
        })
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, WssecError> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| {
            c.map(|c| c.as_ref().to_vec())
                .map_err(|e| config(&format!("certificate PEM: {e}")))
        })
        .collect()
}

static CHAIN_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Signer certificates may carry no EKU or any EKU: there is no standard
/// "XML signing" purpose, so only a malformed extension is refused.
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for k in iter {
            k?;
        }
        Ok(())
    }
}

/// How the signature named its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    BinarySecurityToken,
    IssuerSerial,
    /// An X509Certificate in X509Data, equal to a configured signer.
    X509Certificate,
    SubjectKeyIdentifier,
    ThumbprintSha1,
}

/// Finds the signer certificate from `ds:KeyInfo`.
pub fn resolve_signer(
    key_info: Option<&Node>,
    sec: &Security,
    store: &TrustStore,
) -> Result<(CertInfo, KeySource), WssecError> {
    let ki = key_info.ok_or(WssecError::TokenUnavailable("no KeyInfo".into()))?;
    for c in &ki.children {
        match c.name.local.as_str() {
            "KeyValue" => return Err(WssecError::KeyValueNotAllowed),
            "RetrievalMethod" => return Err(WssecError::RetrievalMethodNotAllowed),
            _ => {}
        }
    }
    let str_ = match ki.children.as_slice() {
        [only] if only.is(WSSE_NS, "SecurityTokenReference") => only,
        _ => {
            return Err(WssecError::BadKeyInfo(
                "KeyInfo must hold one SecurityTokenReference",
            ))
        }
    };
    let [r] = str_.children.as_slice() else {
        return Err(WssecError::BadKeyInfo(
            "SecurityTokenReference must hold one reference",
        ));
    };
    match (r.name.namespace.as_str(), r.name.local.as_str()) {
        (WSSE_NS, "Reference") => bst_reference(r, sec),
        (WSSE_NS, "KeyIdentifier") => key_identifier(r, store),
        (DS_NS, "X509Data") => x509_data(r, store),
        (DS_NS, "KeyValue") => Err(WssecError::KeyValueNotAllowed),
        _ => Err(WssecError::BadKeyInfo("unsupported token reference")),
    }
}

fn bst_reference(r: &Node, sec: &Security) -> Result<(CertInfo, KeySource), WssecError> {
    if r.attr(None, "ValueType").is_some_and(|v| v != X509V3_TYPE) {
        return Err(WssecError::UnsupportedToken("token reference ValueType"));
    }
    let uri = r.attr(None, "URI").unwrap_or("");
    let id = uri
        .strip_prefix('#')
        .filter(|i| !i.is_empty())
        .ok_or(WssecError::BadKeyInfo("token Reference URI must be #id"))?;
    let bst = sec
        .tokens
        .iter()
        .find(|t| t.is(WSSE_NS, "BinarySecurityToken") && t.attr(Some(WSU_NS), "Id") == Some(id))
        .ok_or_else(|| WssecError::TokenUnavailable(format!("no BinarySecurityToken {uri}")))?;
    if bst.attr(None, "ValueType") != Some(X509V3_TYPE) {
        return Err(WssecError::UnsupportedToken(
            "BinarySecurityToken ValueType",
        ));
    }
    if bst
        .attr(None, "EncodingType")
        .is_some_and(|e| e != BASE64_ENCODING)
    {
        return Err(WssecError::UnsupportedToken(
            "BinarySecurityToken EncodingType",
        ));
    }
    if !bst.is_text_only() {
        return Err(WssecError::BadToken("BinarySecurityToken content"));
    }
    let der = decode_base64(&bst.text)?;
    Ok((CertInfo::from_der(&der)?, KeySource::BinarySecurityToken))
}

fn key_identifier(r: &Node, store: &TrustStore) -> Result<(CertInfo, KeySource), WssecError> {
    if r.attr(None, "EncodingType")
        .is_some_and(|e| e != BASE64_ENCODING)
    {
        return Err(WssecError::UnsupportedToken("KeyIdentifier EncodingType"));
    }
    if !r.is_text_only() {
        return Err(WssecError::BadKeyInfo("KeyIdentifier content"));
    }
    let value = decode_base64(&r.text)?;
    let (source, found) = match r.attr(None, "ValueType") {
        Some(SKI_TYPE) => (
            KeySource::SubjectKeyIdentifier,
            store
                .signers
                .iter()
                .find(|s| s.ski.as_deref() == Some(value.as_slice())),
        ),
        Some(THUMBPRINT_TYPE) => (
            KeySource::ThumbprintSha1,
            store.signers.iter().find(|s| s.sha1[..] == value[..]),
        ),
        _ => return Err(WssecError::UnsupportedToken("KeyIdentifier ValueType")),
    };
    let cert = found.ok_or_else(|| {
        WssecError::TokenUnavailable("no configured signer matches the KeyIdentifier".into())
    })?;
    Ok((cert.clone(), source))
}

/// `ds:X509Data` in the STR, resolved only against the configured signers: by
/// X509IssuerSerial, or (when that is empty, as zeep with libxmlsec1 1.3
/// sends it) by an embedded X509Certificate equal to a configured one.
fn x509_data(x509: &Node, store: &TrustStore) -> Result<(CertInfo, KeySource), WssecError> {
    let bad = WssecError::BadKeyInfo;
    let is = x509
        .single_child(DS_NS, "X509IssuerSerial")
        .map_err(|_| bad("two X509IssuerSerial"))?;
    let embedded = match x509.single_child(DS_NS, "X509Certificate") {
        Ok(Some(c)) if c.is_text_only() => Some(decode_base64(&c.text)?),
        Ok(None) => None,
        _ => return Err(bad("X509Certificate content")),
    };
    if x509
        .children
        .iter()
        .any(|c| !c.is(DS_NS, "X509IssuerSerial") && !c.is(DS_NS, "X509Certificate"))
    {
        return Err(bad("unsupported X509Data content"));
    }
    let (cert, source) = match (is.filter(|n| !n.children.is_empty()), &embedded) {
        (Some(is), _) => (issuer_serial(is, store)?, KeySource::IssuerSerial),
        (None, Some(der)) => (
            store
                .signers
                .iter()
                .find(|s| &s.der == der)
                .ok_or_else(|| {
                    WssecError::TokenUnavailable(
                        "X509Certificate is not a configured signer".into(),
                    )
                })?,
            KeySource::X509Certificate,
        ),
        (None, None) => return Err(bad("X509Data names no certificate")),
    };
    // A certificate sent beside the IssuerSerial must be the one it names.
    if embedded.as_ref().is_some_and(|d| d != &cert.der) {
        return Err(bad(
            "X509Certificate differs from the X509IssuerSerial match",
        ));
    }
    Ok((cert.clone(), source))
}

fn issuer_serial<'s>(is: &Node, store: &'s TrustStore) -> Result<&'s CertInfo, WssecError> {
    let text = |local: &str| -> Result<String, WssecError> {
        match is.single_child(DS_NS, local) {
            Ok(Some(n)) if n.is_text_only() => Ok(n.text.trim().to_owned()),
            _ => Err(WssecError::BadKeyInfo("X509IssuerSerial content")),
        }
    };
    let issuer = text("X509IssuerName")?;
    let serial = text("X509SerialNumber")?;
    let serial = serial.strip_prefix('+').unwrap_or(&serial);
    store
        .signers
        .iter()
        .find(|s| {
            s.serial_decimal == serial.trim_start_matches('0') && same_dn(&issuer, &s.issuer_rdns)
        })
        .ok_or_else(|| {
            WssecError::TokenUnavailable("no configured signer matches X509IssuerSerial".into())
        })
}

/// A checked `wsu:Timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub created: SystemTime,
    pub expires: SystemTime,
    /// `Created` as written (part of the replay key).
    pub created_text: String,
}

/// Checks Created/Expires: present once each, strict UTC, fresh, lifetime capped.
pub fn check_timestamp(
    ts: &Node,
    now: SystemTime,
    skew: Duration,
    max_ttl: Duration,
) -> Result<Timestamp, WssecError> {
    let mut kids = ts.children.iter();
    let (Some(c), Some(e), None) = (kids.next(), kids.next(), kids.next()) else {
        return Err(WssecError::BadTimestamp(
            "Timestamp needs Created then Expires",
        ));
    };
    if !c.is(WSU_NS, "Created") || !e.is(WSU_NS, "Expires") {
        return Err(WssecError::BadTimestamp(
            "Timestamp needs Created then Expires",
        ));
    }
    let created = date_of(c)?;
    let expires = date_of(e)?;
    if expires <= created {
        return Err(WssecError::BadTimestamp("Expires not after Created"));
    }
    if created > later(now, skew) {
        return Err(WssecError::CreatedInFuture);
    }
    if later(expires, skew) < now {
        return Err(WssecError::MessageExpired);
    }
    if expires.duration_since(created).unwrap_or_default() > max_ttl {
        return Err(WssecError::TtlTooLong);
    }
    Ok(Timestamp {
        created,
        expires,
        created_text: c.text.clone(),
    })
}

/// `t + d`, or `t` if that overflows (a configuration extreme; stricter, never laxer
/// for a "not after" bound, and only reachable with absurd durations).
pub fn later(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}

fn date_of(n: &Node) -> Result<SystemTime, WssecError> {
    if !n.is_text_only() || n.attrs.iter().any(|a| a.local == "ValueType") {
        return Err(WssecError::BadTimestamp("date element content"));
    }
    parse_datetime(&n.text).ok_or(WssecError::BadTimestamp("not an xsd:dateTime in UTC"))
}

/// Strict `YYYY-MM-DDThh:mm:ss[.fraction]Z` (no other zone, no surrounding space).
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let d = b.get(r)?;
        d.iter().all(u8::is_ascii_digit).then(|| {
            d.iter()
                .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &b[19..];
    let (frac, zone) = match rest.first() {
        Some(b'.') => {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            (&rest[1..1 + n], &rest[1 + n..])
        }
        _ => (&rest[..0], rest),
    };
    if zone != b"Z" || y < 1970 || !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    if d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    let nanos = frac
        .iter()
        .take(9)
        .chain(std::iter::repeat(&b'0'))
        .take(9)
        .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year >= 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let days_before_year: u64 = (1970..y)
        .map(|yy| if is_leap(yy) { 366 } else { 365 })
        .sum();
    let days_before_month: u64 = (1..m).map(|mm| days_in_month(y, mm)).sum();
    days_before_year + days_before_month + d - 1
}

/// Formats a time as `YYYY-MM-DDThh:mm:ssZ` (whole seconds).
pub fn format_datetime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (mut days, rem) = (secs / 86_400, secs % 86_400);
    let mut y = 1970;
    loop {
        let n = if is_leap(y) { 366 } else { 365 };
        if days < n {
            break;
        }
        days -= n;
        y += 1;
    }
    let mut m = 1;
    while days >= days_in_month(y, m) {
        days -= days_in_month(y, m);
        m += 1;
    }
    format!(
        "{y:04}-{m:02}-{:02}T{:02}:{:02}:{:02}Z",
        days + 1,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A password or other shared secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where UsernameToken secrets come from (a map, a vault, ...).
pub trait PasswordStore: Send + Sync {
    fn secret(&self, username: &str) -> Option<Secret>;
}

/// An in-memory username -> secret map; Debug lists usernames only.
#[derive(Clone, Default)]
pub struct MapPasswordStore(HashMap<String, Secret>);

impl MapPasswordStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, username: &str, secret: Secret) {
        self.0.insert(username.to_owned(), secret);
    }
}

impl std::fmt::Debug for MapPasswordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapPasswordStore")
            .field("users", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordStore for MapPasswordStore {
    fn secret(&self, username: &str) -> Option<Secret> {
        self.0.get(username).cloned()
    }
}

/// A verified UsernameToken.
#[derive(Debug, Clone)]
pub struct UsernameOutcome {
    pub username: String,
    /// (Nonce, Created) to remember until the given time, when both were sent.
    pub replay: Option<(Vec<u8>, String, SystemTime)>,
}

fn ut_bad(what: &'static str) -> WssecError {
    WssecError::BadUsernameToken(what)
}

fn ut_text<'n>(ut: &'n Node, ns: &str, local: &str) -> Result<Option<&'n Node>, WssecError> {
    match ut.single_child(ns, local) {
        Ok(Some(n)) if !n.is_text_only() => Err(ut_bad("element content")),
        Ok(n) => Ok(n),
        Err(_) => Err(ut_bad("repeated element")),
    }
}

/// Checks a UsernameToken's password (text or digest) and freshness.
pub fn check_username_token(
    ut: &Node,
    store: &dyn PasswordStore,
    now: SystemTime,
    skew: Duration,
    max_age: Duration,
) -> Result<UsernameOutcome, WssecError> {
    let username = ut_text(ut, WSSE_NS, "Username")?
        .ok_or(ut_bad("no Username"))?
        .text
        .trim()
        .to_owned();
    let password = ut_text(ut, WSSE_NS, "Password")?.ok_or(ut_bad("no Password"))?;
    let nonce = match ut_text(ut, WSSE_NS, "Nonce")? {
        Some(n)
            if n.attr(None, "EncodingType")
                .is_some_and(|e| e != BASE64_ENCODING) =>
        {
            return Err(ut_bad("Nonce EncodingType"))
        }
        Some(n) => Some(decode_base64(&n.text)?),
        None => None,
    };
    let created = ut_text(ut, WSU_NS, "Created")?.map(|c| c.text.clone());
    let created_at = match &created {
        Some(c) => Some(parse_datetime(c).ok_or(ut_bad("Created is not an xsd:dateTime in UTC"))?),
        None => None,
    };
    if let Some(t) = created_at {
        if t > later(now, skew) {
            return Err(WssecError::CreatedInFuture);
        }
        if later(later(t, max_age), skew) < now {
            return Err(WssecError::MessageExpired);
        }
    }
    // An unknown user and a wrong password fail alike.
    let secret = store
        .secret(&username)
        .ok_or(WssecError::AuthenticationFailed)?;
    let ok = match password.attr(None, "Type").unwrap_or(PASSWORD_TEXT) {
        PASSWORD_TEXT => {
            constant_time::verify_slices_are_equal(password.text.as_bytes(), secret.expose())
                .is_ok()
        }
        PASSWORD_DIGEST => {
            let (Some(n), Some(c)) = (&nonce, &created) else {
                return Err(ut_bad("PasswordDigest needs Nonce and Created"));
            };
            let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(n);
            ctx.update(c.as_bytes());
            ctx.update(secret.expose());
            let expected = base64::engine::general_purpose::STANDARD.encode(ctx.finish());
            constant_time::verify_slices_are_equal(
                password.text.trim().as_bytes(),
                expected.as_bytes(),
            )
            .is_ok()
        }
        _ => return Err(ut_bad("Password Type")),
    };
    if !ok {
        return Err(WssecError::AuthenticationFailed);
    }
    let replay = match (nonce, created, created_at) {
        (Some(n), Some(c), Some(t)) => Some((n, c, later(later(t, max_age), skew))),
        _ => None,
    };
    Ok(UsernameOutcome { username, replay })
}
