//! A minimal signer: adds a Security header (Timestamp, optional
//! BinarySecurityToken, Signature over Body and Timestamp with exclusive C14N)
//! by splicing into the original bytes. Enough for tests and the egress path
//! to start from; it does not yet handle every shape of input.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use base64::Engine as _;

use super::c14n::{canonicalize_element, Method, EXC_C14N_URI};
use super::dsig::{DigestAlgorithm, SignatureAlgorithm};
use super::envelope::{self, is_id_attribute, Scanned, DS_NS, WSSE_NS, WSU_NS};
use super::tokens::{
    format_datetime, CertInfo, BASE64_ENCODING, SKI_TYPE, THUMBPRINT_TYPE, X509V3_TYPE,
};
use super::verify::WssecError;
use super::xml::{Limits, StartElement};

/// A private signing key. Debug never shows key material.
pub enum SigningKey {
    Rsa(RsaKeyPair),
    EcP256(EcdsaKeyPair),
    EcP384(EcdsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Rsa(_) => "SigningKey(RSA)",
            SigningKey::EcP256(_) => "SigningKey(P-256)",
            SigningKey::EcP384(_) => "SigningKey(P-384)",
        })
    }
}

impl SigningKey {
    /// An RSA, P-256 or P-384 key in PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, WssecError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(SigningKey::Rsa(k));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(SigningKey::EcP256(k));
        }
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map(SigningKey::EcP384)
            .map_err(|_| WssecError::Config("unsupported or malformed private key".into()))
    }

    /// The algorithm this key signs with by default.
    pub fn default_algorithm(&self) -> SignatureAlgorithm {
        match self {
            SigningKey::Rsa(_) => SignatureAlgorithm::RsaSha256,
            SigningKey::EcP256(_) => SignatureAlgorithm::EcdsaSha256,
            SigningKey::EcP384(_) => SignatureAlgorithm::EcdsaSha384,
        }
    }

    fn sign(&self, alg: SignatureAlgorithm, data: &[u8]) -> Result<Vec<u8>, WssecError> {
        let rng = SystemRandom::new();
        let failed = |_| WssecError::Internal("signing failed");
        match (self, alg) {
            (SigningKey::Rsa(k), _) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    SignatureAlgorithm::RsaSha256 => &signature::RSA_PKCS1_SHA256,
                    SignatureAlgorithm::RsaSha384 => &signature::RSA_PKCS1_SHA384,
                    SignatureAlgorithm::RsaSha512 => &signature::RSA_PKCS1_SHA512,
                    _ => return Err(WssecError::AlgorithmKeyMismatch),
                };
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(enc, &rng, data, &mut out).map_err(failed)?;
                Ok(out)
            }
            (SigningKey::EcP256(k), SignatureAlgorithm::EcdsaSha256)
            | (SigningKey::EcP384(k), SignatureAlgorithm::EcdsaSha384) => {
                Ok(k.sign(&rng, data).map_err(failed)?.as_ref().to_vec())
            }
            _ => Err(WssecError::AlgorithmKeyMismatch),
        }
    }
}

/// How the Signature names its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReference {
    BinarySecurityToken,
    IssuerSerial,
    SubjectKeyIdentifier,
    ThumbprintSha1,
}

#[derive(Debug, Clone)]
pub struct SignOptions {
    pub created: SystemTime,
    pub ttl: Duration,
    /// `None`: the key's default.
    pub signature: Option<SignatureAlgorithm>,
    pub digest: DigestAlgorithm,
    pub key_reference: KeyReference,
    /// Add a Timestamp.
    pub timestamp: bool,
    /// Reference the Body / the Timestamp (both by default).
    pub sign_body: bool,
    pub sign_timestamp: bool,
    pub limits: Limits,
}

impl SignOptions {
    pub fn new(created: SystemTime) -> Self {
        SignOptions {
            created,
            ttl: Duration::from_secs(300),
            signature: None,
            digest: DigestAlgorithm::Sha256,
            key_reference: KeyReference::BinarySecurityToken,
            timestamp: true,
            sign_body: true,
            sign_timestamp: true,
            limits: Limits::default(),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fresh_id(base: &str, ids: &HashMap<String, usize>) -> String {
    (1..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !ids.contains_key(id))
        .unwrap_or_else(|| base.to_owned())
}

/// The qualified name at the start of a tag (`<p:Name ...`).
fn tag_name(tag: &[u8]) -> String {
    let name: Vec<u8> = tag
        .iter()
        .skip(1)
        .take_while(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'>'))
        .copied()
        .collect();
    String::from_utf8_lossy(&name).into_owned()
}

/// Where things go in the original bytes.
struct Layout {
    /// Offset where the Security header (or a new Header holding it) goes.
    insert_at: usize,
    /// What replaces `replace_len` bytes at `insert_at` before the header.
    open: String,
    close: String,
    replace_len: usize,
    body_attr_at: usize,
    body_attr: String,
    body_id: String,
}

fn layout(msg: &[u8], scan: &Scanned) -> Layout {
    let prefix = scan
        .body_qname
        .split_once(':')
        .map_or(String::new(), |(p, _)| format!("{p}:"));
    let (insert_at, open, close, replace_len) = match (scan.header, scan.header_start_tag) {
        (Some(h), Some(st)) if h.end == st.end => {
            // `<p:Header/>`: replace the `/>` with `>` ... `</p:Header>`.
            let name = tag_name(msg.get(st.start..st.end).unwrap_or_default());
            (
                st.end.saturating_sub(2),
                ">".to_owned(),
                format!("</{name}>"),
                2,
            )
        }
        (Some(_), Some(st)) => (st.end, String::new(), String::new(), 0),
        _ => (
            scan.body.start,
            format!("<{prefix}Header>"),
            format!("</{prefix}Header>"),
            0,
        ),
    };
    let existing = scan
        .ids
        .iter()
        .find(|(_, &at)| at == scan.body.start)
        .map(|(id, _)| id.clone());
    let bt = scan.body_start_tag;
    let empty = msg.get(..bt.end).is_some_and(|b| b.ends_with(b"/>"));
    let body_attr_at = bt.end.saturating_sub(if empty { 2 } else { 1 });
    let (body_id, body_attr) = match existing {
        Some(id) => (id, String::new()),
        None => {
            let id = fresh_id("Body", &scan.ids);
            let attr = format!(" xmlns:wsu=\"{WSU_NS}\" wsu:Id=\"{id}\"");
            (id, attr)
        }
    };
    Layout {
        insert_at,
        open,
        close,
        replace_len,
        body_attr_at,
        body_attr,
        body_id,
    }
}

fn assemble(msg: &[u8], l: &Layout, security: &str) -> Result<Vec<u8>, WssecError> {
    let cut = |a: usize, b: usize| {
        msg.get(a..b)
            .ok_or(WssecError::Internal("signer layout out of range"))
    };
    let mut out = Vec::with_capacity(msg.len() + security.len() + 256);
    out.extend_from_slice(cut(0, l.insert_at)?);
    out.extend_from_slice(l.open.as_bytes());
    out.extend_from_slice(security.as_bytes());
    out.extend_from_slice(l.close.as_bytes());
    out.extend_from_slice(cut(l.insert_at + l.replace_len, l.body_attr_at)?);
    out.extend_from_slice(l.body_attr.as_bytes());
    out.extend_from_slice(cut(l.body_attr_at, msg.len())?);
    Ok(out)
}

fn has_id(e: &StartElement<'_>, id: &str) -> bool {
    e.attributes()
        .any(|a| is_id_attribute(a.local_name) && a.value == id)
}

fn digest_of(
    doc: &[u8],
    limits: &Limits,
    id: &str,
    alg: DigestAlgorithm,
) -> Result<String, WssecError> {
    let mut w = super::dsig::DigestWriter::new(alg, false);
    canonicalize_element(doc, limits, &Method::exclusive(), |e| has_id(e, id), &mut w)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(w.finish().0))
}

fn key_reference(kind: KeyReference, cert: &CertInfo, bst_id: &str) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match kind {
        KeyReference::BinarySecurityToken => {
            format!("<wsse:Reference URI=\"#{bst_id}\" ValueType=\"{X509V3_TYPE}\"/>")
        }
        KeyReference::IssuerSerial => format!(
            "<ds:X509Data><ds:X509IssuerSerial><ds:X509IssuerName>{}</ds:X509IssuerName>\
             <ds:X509SerialNumber>{}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data>",
            escape(&cert.issuer.to_string()),
            cert.serial_decimal
        ),
        KeyReference::SubjectKeyIdentifier => format!(
            "<wsse:KeyIdentifier EncodingType=\"{BASE64_ENCODING}\" ValueType=\"{SKI_TYPE}\">{}</wsse:KeyIdentifier>",
            b64(cert.ski.as_deref().unwrap_or_default())
        ),
        KeyReference::ThumbprintSha1 => format!(
            "<wsse:KeyIdentifier EncodingType=\"{BASE64_ENCODING}\" ValueType=\"{THUMBPRINT_TYPE}\">{}</wsse:KeyIdentifier>",
            b64(&cert.sha1)
        ),
    }
}

/// Signs Body (and the Timestamp it adds) of a message without a Security header.
pub fn sign(
    msg: &[u8],
    key: &SigningKey,
    cert_der: &[u8],
    opts: &SignOptions,
) -> Result<Vec<u8>, WssecError> {
    let scan = envelope::scan(msg, &opts.limits)?;
    if scan.security.is_some() {
        return Err(WssecError::Config(
            "message already has a Security header".into(),
        ));
    }
    let cert = CertInfo::from_der(cert_der)?;
    let alg = opts.signature.unwrap_or_else(|| key.default_algorithm());
    let l = layout(msg, &scan);
    let ts_id = fresh_id("TS", &scan.ids);
    let bst_id = fresh_id("X509", &scan.ids);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    let mut parts = String::new();
    if opts.timestamp {
        parts.push_str(&format!(
            "<wsu:Timestamp wsu:Id=\"{ts_id}\"><wsu:Created>{}</wsu:Created><wsu:Expires>{}</wsu:Expires></wsu:Timestamp>",
            format_datetime(opts.created),
            format_datetime(opts.created + opts.ttl)
        ));
    }
    if opts.key_reference == KeyReference::BinarySecurityToken {
        parts.push_str(&format!(
            "<wsse:BinarySecurityToken EncodingType=\"{BASE64_ENCODING}\" ValueType=\"{X509V3_TYPE}\" wsu:Id=\"{bst_id}\">{}</wsse:BinarySecurityToken>",
            b64(cert_der)
        ));
    }
    let security = |sig: &str| {
        format!("<wsse:Security xmlns:wsse=\"{WSSE_NS}\" xmlns:wsu=\"{WSU_NS}\">{parts}{sig}</wsse:Security>")
    };

    let unsigned = assemble(msg, &l, &security(""))?;
    let mut refs = Vec::new();
    if opts.sign_body {
        refs.push(l.body_id.clone());
    }
    if opts.timestamp && opts.sign_timestamp {
        refs.push(ts_id);
    }
    let mut references = String::new();
    for id in &refs {
        references.push_str(&format!(
            "<ds:Reference URI=\"#{id}\"><ds:Transforms><ds:Transform Algorithm=\"{EXC_C14N_URI}\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue></ds:Reference>",
            opts.digest.uri(),
            digest_of(&unsigned, &opts.limits, id, opts.digest)?
        ));
    }
    let signed_info = format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N_URI}\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/>{references}</ds:SignedInfo>",
        alg.uri()
    );
    let key_info = key_reference(opts.key_reference, &cert, &bst_id);
    let signature = |value: &str| {
        format!(
            "<ds:Signature xmlns:ds=\"{DS_NS}\">{signed_info}<ds:SignatureValue>{value}</ds:SignatureValue>\
             <ds:KeyInfo><wsse:SecurityTokenReference>{key_info}</wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature>"
        )
    };
    let draft = assemble(msg, &l, &security(&signature("")))?;
    let mut si_c14n = Vec::new();
    canonicalize_element(
        &draft,
        &opts.limits,
        &Method::exclusive(),
        |e| e.local_name() == "SignedInfo" && e.namespace() == Some(DS_NS),
        &mut si_c14n,
    )?;
    let value = b64(&key.sign(alg, &si_c14n)?);
    assemble(msg, &l, &security(&signature(&value)))
}
