//! Finding the signer's certificate from `ds:KeyInfo`: a BinarySecurityToken
//! in the same header, or a configured signer named by KeyIdentifier,
//! X509IssuerSerial or an embedded X509Certificate.

use super::{CertInfo, TrustStore, BASE64_ENCODING, SKI_TYPE, THUMBPRINT_TYPE, X509V3_TYPE};
use crate::dn::Name;
use crate::wssec::dsig::decode_base64;
use crate::wssec::envelope::{Node, Security, DS_NS, WSSE_NS, WSU_NS};
use crate::wssec::verify::WssecError;

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
            s.serial_decimal == serial.trim_start_matches('0') && same_issuer(&issuer, &s.issuer)
        })
        .ok_or_else(|| {
            WssecError::TokenUnavailable("no configured signer matches X509IssuerSerial".into())
        })
}

/// An X509IssuerName as written equals the certificate's issuer, in either
/// order of its RDNs (stacks disagree on which end comes first).
fn same_issuer(written: &str, issuer: &Name) -> bool {
    Name::parse(written).is_ok_and(|w| w == *issuer || w.reversed() == *issuer)
}
