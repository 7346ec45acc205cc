//! The client identity taken from a verified certificate, and the allow rules
//! routes match it against.

use crate::config::AllowRuleConfig;
use x509_parser::prelude::*;

/// Who is on the other end of a mutually authenticated connection.
/// Parsed once per connection and shared by `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// RFC 4514 subject (see `crate::dn`), e.g. `CN=etl-prod,OU=ETL,O=Acme`.
    pub subject: String,
    pub cn: Vec<String>,
    pub o: Vec<String>,
    pub ou: Vec<String>,
    pub issuer: String,
    /// Serial number as upper-case hex without separators.
    pub serial: String,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
    pub san_email: Vec<String>,
    pub spiffe_id: Option<String>,
    /// SHA-256 of the DER certificate, upper-case hex with colons.
    pub fingerprint_sha256: String,
    /// Unix seconds.
    pub not_after: i64,
    pub not_before: i64,
}

impl PeerIdentity {
    /// Parses the identity fields from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<PeerIdentity, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("unparseable certificate: {e}"))?;
        let subject = cert.subject();
        let attr = |oid| -> Vec<String> {
            subject
                .iter_by_oid(oid)
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect()
        };
        let mut id = PeerIdentity {
            subject: crate::dn::rfc4514(subject),
            cn: attr(&x509_parser::oid_registry::OID_X509_COMMON_NAME),
            o: attr(&x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME),
            ou: attr(&x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT),
            issuer: crate::dn::rfc4514(cert.issuer()),
            serial: hex_upper(cert.raw_serial(), ""),
            fingerprint_sha256: fingerprint(der),
            not_after: cert.validity().not_after.timestamp(),
            not_before: cert.validity().not_before.timestamp(),
            ..Default::default()
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
        Ok(id)
    }

    /// The most readable single name: CN, else SPIFFE id, else the subject.
    pub fn display_name(&self) -> &str {
        self.cn
            .first()
            .map(String::as_str)
            .or(self.spiffe_id.as_deref())
            .unwrap_or(&self.subject)
    }
}

/// SHA-256 fingerprint of DER bytes, as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    hex_upper(d.as_ref(), ":")
}

pub fn hex_upper(bytes: &[u8], sep: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * (2 + sep.len()));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push_str(sep);
        }
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Normalises a fingerprint or serial written by a person: hex digits only, upper case.
fn normalize_hex(s: &str) -> Result<String, String> {
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_uppercase();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not hex (write it like \"AB:CD:01:...\")"));
    }
    Ok(cleaned)
}

/// One compiled allow rule: every field set must match the peer.
#[derive(Debug, Clone, Default)]
pub struct AllowRule {
    subject: Option<String>,
    cn: Option<String>,
    o: Option<String>,
    ou: Option<String>,
    issuer: Option<String>,
    /// Hex, upper case, no separators, leading zeros trimmed.
    serial: Option<String>,
    san_dns: Option<String>,
    san_uri: Option<String>,
    san_email: Option<String>,
    spiffe_id: Option<String>,
    /// Hex, upper case, no separators.
    fingerprint: Option<String>,
}

impl AllowRule {
    pub fn compile(c: &AllowRuleConfig) -> Result<AllowRule, String> {
        let fingerprint = match &c.fingerprint_sha256 {
            Some(f) => {
                let h = normalize_hex(f).map_err(|e| format!("fingerprint_sha256: {e}"))?;
                if h.len() != 64 {
                    return Err(format!(
                        "fingerprint_sha256: {f:?} has {} hex digits, a SHA-256 fingerprint has 64 (openssl x509 -noout -fingerprint -sha256)",
                        h.len()
                    ));
                }
                Some(h)
            }
            None => None,
        };
        let serial = match &c.serial {
            Some(s) => Some(trim_zeros(
                &normalize_hex(s).map_err(|e| format!("serial: {e}"))?,
            )),
            None => None,
        };
        let rule = AllowRule {
            subject: c.subject.as_deref().map(normalize_dn),
            cn: c.cn.clone(),
            o: c.o.clone(),
            ou: c.ou.clone(),
            issuer: c.issuer.as_deref().map(normalize_dn),
            serial,
            san_dns: c.san_dns.as_ref().map(|s| s.to_ascii_lowercase()),
            san_uri: c.san_uri.clone(),
            san_email: c.san_email.as_ref().map(|s| s.to_ascii_lowercase()),
            spiffe_id: c.spiffe_id.clone(),
            fingerprint,
        };
        if rule.is_empty() {
            return Err("an allow rule needs at least one field (cn, o, ou, subject, issuer, serial, san_dns, san_uri, san_email, spiffe_id or fingerprint_sha256)".into());
        }
        Ok(rule)
    }

    fn is_empty(&self) -> bool {
        self.subject.is_none()
            && self.cn.is_none()
            && self.o.is_none()
            && self.ou.is_none()
            && self.issuer.is_none()
            && self.serial.is_none()
            && self.san_dns.is_none()
            && self.san_uri.is_none()
            && self.san_email.is_none()
            && self.spiffe_id.is_none()
            && self.fingerprint.is_none()
    }

    /// True when every field of the rule matches the peer.
    pub fn matches(&self, id: &PeerIdentity) -> bool {
        fn any(want: &Option<String>, have: &[String]) -> bool {
            want.as_ref().is_none_or(|w| have.iter().any(|h| h == w))
        }
        fn any_ci(want: &Option<String>, have: &[String]) -> bool {
            want.as_ref()
                .is_none_or(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w)))
        }
        any(&self.cn, &id.cn)
            && any(&self.o, &id.o)
            && any(&self.ou, &id.ou)
            && any_ci(&self.san_dns, &id.san_dns)
            && any(&self.san_uri, &id.san_uri)
            && any_ci(&self.san_email, &id.san_email)
            && self
                .subject
                .as_ref()
                .is_none_or(|s| *s == normalize_dn(&id.subject))
            && self
                .issuer
                .as_ref()
                .is_none_or(|s| *s == normalize_dn(&id.issuer))
            && self
                .serial
                .as_ref()
                .is_none_or(|s| *s == trim_zeros(&id.serial))
            && self
                .spiffe_id
                .as_ref()
                .is_none_or(|s| id.spiffe_id.as_ref() == Some(s))
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| *f == id.fingerprint_sha256.replace(':', ""))
    }
}

/// DNs compare without spaces after separators, so `CN=a, O=b` equals `CN=a,O=b`.
fn normalize_dn(dn: &str) -> String {
    dn.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

fn trim_zeros(hex: &str) -> String {
    let t = hex.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// Renders the identity for the upstream header, in the `x-forwarded-client-cert`
/// style Envoy uses: `Hash=..;Subject="..";URI="..";DNS=".."`. Every value is
/// quoted with `\` and `"` escaped and control bytes percent-encoded, so no
/// certificate field can add fields or elements of its own.
pub fn forwarded_client_cert(id: &PeerIdentity) -> String {
    fn quoted(v: &str) -> String {
        let mut o = String::with_capacity(v.len() + 2);
        o.push('"');
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    o.push('\\');
                    o.push(c);
                }
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    o.push_str(&format!("%{:02X}", c as u32))
                }
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }
    let mut s = format!(
        "Hash={};Subject={}",
        id.fingerprint_sha256.replace(':', "").to_ascii_lowercase(),
        quoted(&id.subject)
    );
    for u in &id.san_uri {
        s.push_str(";URI=");
        s.push_str(&quoted(u));
    }
    for d in &id.san_dns {
        s.push_str(";DNS=");
        s.push_str(&quoted(d));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PeerIdentity {
        PeerIdentity {
            subject: "CN=etl-prod,OU=ETL,O=Acme".into(),
            cn: vec!["etl-prod".into()],
            o: vec!["Acme".into()],
            ou: vec!["ETL".into()],
            serial: "00AB".into(),
            san_uri: vec!["spiffe://acme/etl".into()],
            spiffe_id: Some("spiffe://acme/etl".into()),
            fingerprint_sha256: "AB:".repeat(31) + "AB",
            ..Default::default()
        }
    }

    #[test]
    fn all_fields_in_a_rule_must_match() {
        let ok = AllowRule::compile(&AllowRuleConfig {
            cn: Some("etl-prod".into()),
            ou: Some("ETL".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(ok.matches(&id()));
        let wrong_ou = AllowRule::compile(&AllowRuleConfig {
            cn: Some("etl-prod".into()),
            ou: Some("Finance".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!wrong_ou.matches(&id()));
    }

    #[test]
    fn fingerprint_serial_and_subject_forms() {
        let r = AllowRule::compile(&AllowRuleConfig {
            fingerprint_sha256: Some("ab".repeat(32)),
            serial: Some("ab".into()),
            subject: Some("CN=etl-prod, OU=ETL, O=Acme".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(r.matches(&id()));
        assert!(AllowRule::compile(&AllowRuleConfig {
            fingerprint_sha256: Some("abc".into()),
            ..Default::default()
        })
        .unwrap_err()
        .contains("64"));
        assert!(AllowRule::compile(&AllowRuleConfig::default()).is_err());
    }
}
