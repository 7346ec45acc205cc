//! Finding the signer's certificate from `ds:KeyInfo`: a BinarySecurityToken
//! in the same header, or a configured signer named by KeyIdentifier,
//! X509IssuerSerial or an embedded X509Certificate.

use std::sync::Arc;

use super::{CertInfo, TrustStore, BASE64_ENCODING, SKI_TYPE, THUMBPRINT_TYPE, X509V3_TYPE};
use crate::dn::Name;
use crate::wssec::dsig::decode_base64;
use crate::wssec::envelope::{Node, Security, DS_NS, WSSE_NS, WSU_NS};
use crate::wssec::error::WssecError;

/// How the signature named its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    BinarySecurityToken,
    IssuerSerial,
    /// A certificate carried in KeyInfo itself: `X509Data/X509Certificate`, or
    /// WSS4J's `KeyIdentifier` of ValueType X509v3. Like a BinarySecurityToken,
    /// it must chain to the trust anchors or be pinned.
    X509Certificate,
    SubjectKeyIdentifier,
    ThumbprintSha1,
}

/// Finds the signer certificate from `ds:KeyInfo`: one SecurityTokenReference,
/// one `ds:X509Data`, or both — then the reference wins unless the token it
/// names is absent (signxml and e-Kasa clients send such a pair), and the
/// two must name one certificate.
pub fn resolve_signer(
    key_info: Option<&Node>,
    sec: &Security,
    store: &TrustStore,
) -> Result<(Arc<CertInfo>, KeySource), WssecError> {
    let ki = key_info.ok_or(WssecError::TokenUnavailable("no KeyInfo".into()))?;
    let mut str_ = None;
    let mut data = None;
    for c in &ki.children {
        match (c.name.namespace.as_str(), c.name.local.as_str()) {
            (_, "KeyValue") => return Err(WssecError::KeyValueNotAllowed),
            (_, "RetrievalMethod") => return Err(WssecError::RetrievalMethodNotAllowed),
            (WSSE_NS, "SecurityTokenReference") if str_.is_none() => str_ = Some(c),
            (DS_NS, "X509Data") if data.is_none() => data = Some(c),
            _ => {
                return Err(WssecError::BadKeyInfo(
                    "KeyInfo must hold one SecurityTokenReference and/or one X509Data",
                ))
            }
        }
    }
    let from_data = || match data {
        Some(d) => x509_data(d, store),
        None => Err(WssecError::BadKeyInfo("KeyInfo names no key")),
    };
    let Some(str_) = str_ else {
        return from_data();
    };
    match (token_reference(str_, sec, store), data) {
        (Err(WssecError::TokenUnavailable(_)), Some(_)) => from_data(),
        (Ok(found), Some(_)) => {
            let (beside, _) = from_data()?;
            if beside.der != found.0.der {
                return Err(WssecError::BadKeyInfo(
                    "the X509Data beside the SecurityTokenReference names another certificate",
                ));
            }
            Ok(found)
        }
        (result, _) => result,
    }
}

/// The key a SecurityTokenReference names.
fn token_reference(
    str_: &Node,
    sec: &Security,
    store: &TrustStore,
) -> Result<(Arc<CertInfo>, KeySource), WssecError> {
    let [r] = str_.children.as_slice() else {
        return Err(WssecError::BadKeyInfo(
            "SecurityTokenReference must hold one reference",
        ));
    };
    match (r.name.namespace.as_str(), r.name.local.as_str()) {
        (WSSE_NS, "Reference") => bst_reference(r, sec, store),
        (WSSE_NS, "KeyIdentifier") => key_identifier(r, store),
        (DS_NS, "X509Data") => x509_data(r, store),
        (DS_NS, "KeyValue") => Err(WssecError::KeyValueNotAllowed),
        _ => Err(WssecError::BadKeyInfo("unsupported token reference")),
    }
}

fn bst_reference(
    r: &Node,
    sec: &Security,
    store: &TrustStore,
) -> Result<(Arc<CertInfo>, KeySource), WssecError> {
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
    Ok((store.certs.read(&der)?, KeySource::BinarySecurityToken))
}

fn key_identifier(r: &Node, store: &TrustStore) -> Result<(Arc<CertInfo>, KeySource), WssecError> {
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
        // WSS4J's form: the whole certificate, as a BinarySecurityToken would carry it.
        Some(X509V3_TYPE) => return Ok((store.certs.read(&value)?, KeySource::X509Certificate)),
        _ => return Err(WssecError::UnsupportedToken("KeyIdentifier ValueType")),
    };
    let cert = found.ok_or_else(|| {
        WssecError::TokenUnavailable("no configured signer matches the KeyIdentifier".into())
    })?;
    Ok((Arc::clone(cert), source))
}

/// `ds:X509Data`: an embedded X509Certificate is the key (judged like a
/// BinarySecurityToken), with an X509IssuerSerial beside it empty (python-zeep
/// writes one) or naming it; an X509IssuerSerial alone is resolved against the
/// configured signers.
fn x509_data(x509: &Node, store: &TrustStore) -> Result<(Arc<CertInfo>, KeySource), WssecError> {
    let bad = WssecError::BadKeyInfo;
    let is = x509
        .single_child(DS_NS, "X509IssuerSerial")
        .map_err(|_| bad("two X509IssuerSerial"))?
        .filter(|n| !n.children.is_empty());
    let embedded = match x509.single_child(DS_NS, "X509Certificate") {
        Ok(Some(c)) if c.is_text_only() => Some(store.certs.read(&decode_base64(&c.text)?)?),
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
    match (is, embedded) {
        (Some(is), Some(cert)) => {
            let (issuer, serial) = issuer_serial_fields(is)?;
            if !(same_issuer(&issuer, &cert.issuer) && serial == cert.serial_decimal) {
                return Err(bad(
                    "X509IssuerSerial names another certificate than the X509Certificate beside it",
                ));
            }
            Ok((cert, KeySource::X509Certificate))
        }
        (None, Some(cert)) => Ok((cert, KeySource::X509Certificate)),
        (Some(is), None) => Ok((
            Arc::clone(issuer_serial(is, store)?),
            KeySource::IssuerSerial,
        )),
        (None, None) => Err(bad("X509Data names no certificate")),
    }
}

/// X509IssuerName and X509SerialNumber (decimal, leading `+` and zeros dropped).
fn issuer_serial_fields(is: &Node) -> Result<(String, String), WssecError> {
    let text = |local: &str| -> Result<String, WssecError> {
        match is.single_child(DS_NS, local) {
            Ok(Some(n)) if n.is_text_only() => Ok(n.text.trim().to_owned()),
            _ => Err(WssecError::BadKeyInfo("X509IssuerSerial content")),
        }
    };
    let issuer = text("X509IssuerName")?;
    let serial = text("X509SerialNumber")?;
    let serial = serial.strip_prefix('+').unwrap_or(&serial);
    let serial = serial.trim_start_matches('0');
    Ok((
        issuer,
        if serial.is_empty() {
            "0".into()
        } else {
            serial.to_owned()
        },
    ))
}

fn issuer_serial<'s>(is: &Node, store: &'s TrustStore) -> Result<&'s Arc<CertInfo>, WssecError> {
    let (issuer, serial) = issuer_serial_fields(is)?;
    store
        .signers
        .iter()
        .find(|s| s.serial_decimal == serial && same_issuer(&issuer, &s.issuer))
        .ok_or_else(|| {
            WssecError::TokenUnavailable("no configured signer matches X509IssuerSerial".into())
        })
}

/// An X509IssuerName as written equals the certificate's issuer, in either
/// order of its RDNs (stacks disagree on which end comes first).
fn same_issuer(written: &str, issuer: &Name) -> bool {
    Name::parse(written).is_ok_and(|w| w == *issuer || w.reversed() == *issuer)
}
