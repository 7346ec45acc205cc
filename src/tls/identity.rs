//! The client identity taken from a verified certificate, parsed once per
//! connection and shared by `Arc`.

use crate::dn::Name;
use crate::fingerprint::Fingerprint;
use x509_parser::prelude::*;

/// Who is on the other end of a mutually authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub subject: Name,
    pub cn: Vec<String>,
    pub o: Vec<String>,
    pub ou: Vec<String>,
    pub issuer: Name,
    /// Serial number bytes, leading zero bytes removed.
    pub serial: Vec<u8>,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
    pub san_email: Vec<String>,
    pub spiffe_id: Option<String>,
    pub fingerprint: Fingerprint,
    /// Unix seconds.
    pub not_after: i64,
    pub not_before: i64,
    /// The most readable single name, for log lines: CN, else SPIFFE id, else the subject.
    label: String,
}

/// The certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparseable certificate: {0}")]
pub struct IdentityError(pub String);

/// Serial bytes as compared and shown: without leading zero bytes (DER adds
/// one to keep a serial positive).
pub fn trim_serial(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    if start == raw.len() {
        vec![0]
    } else {
        raw[start..].to_vec()
    }
}

impl PeerIdentity {
    /// Parses the identity fields from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError(e.to_string()))?;
        let subject = cert.subject();
        let attr = |oid| -> Vec<String> {
            subject
                .iter_by_oid(oid)
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect()
        };
        let mut id = PeerIdentity {
            subject: Name::from_x509(subject),
            cn: attr(&x509_parser::oid_registry::OID_X509_COMMON_NAME),
            o: attr(&x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME),
            ou: attr(&x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT),
            issuer: Name::from_x509(cert.issuer()),
            serial: trim_serial(cert.raw_serial()),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
            san_email: Vec::new(),
            spiffe_id: None,
            fingerprint: Fingerprint::of(der),
            not_after: cert.validity().not_after.timestamp(),
            not_before: cert.validity().not_before.timestamp(),
            label: String::new(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) => id.san_dns.push((*s).to_string()),
                    GeneralName::URI(s) => {
                        if s.starts_with("spiffe://") && id.spiffe_id.is_none() {
                            id.spiffe_id = Some((*s).to_string());
                        }
                        id.san_uri.push((*s).to_string())
                    }
                    GeneralName::RFC822Name(s) => id.san_email.push((*s).to_string()),
                    _ => {}
                }
            }
        }
        id.label = id
            .cn
            .first()
            .cloned()
            .or_else(|| id.spiffe_id.clone())
            .unwrap_or_else(|| id.subject.to_string());
        Ok(id)
    }

    /// The most readable single name: CN, else SPIFFE id, else the subject.
    pub fn display_name(&self) -> &str {
        &self.label
    }

    /// Serial as upper-case hex with colons, as logs show it.
    pub fn serial_hex(&self) -> String {
        crate::hex::upper(&self.serial, ":")
    }
}
