//! Route authorization as plain data: allow rules compiled from the config
//! once per snapshot, matched against the connection's `PeerIdentity`.

use crate::config::AllowRuleConfig;
use crate::dn::{DnError, Name};
use crate::fingerprint::{Fingerprint, FingerprintError};
use crate::tls::identity::{trim_serial, PeerIdentity};

/// One compiled allow rule: every field set must match the peer.
#[derive(Debug, Clone, Default)]
pub struct AllowRule {
    subject: Option<Name>,
    cn: Option<String>,
    o: Option<String>,
    ou: Option<String>,
    issuer: Option<Name>,
    /// Leading zero bytes removed.
    serial: Option<Vec<u8>>,
    /// Lower case.
    san_dns: Option<String>,
    san_uri: Option<String>,
    /// Lower case.
    san_email: Option<String>,
    spiffe_id: Option<String>,
    fingerprint: Option<Fingerprint>,
}

/// An allow rule that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowRuleError {
    #[error("an allow rule needs at least one field (cn, o, ou, subject, issuer, serial, san_dns, san_uri, san_email, spiffe_id or fingerprint_sha256)")]
    Empty,
    #[error("fingerprint_sha256: {0}")]
    Fingerprint(#[from] FingerprintError),
    #[error("serial: {0:?} is not hex (write it like \"0A:1B:...\")")]
    Serial(String),
    #[error("{field}: {error}")]
    Name { field: &'static str, error: DnError },
}

impl AllowRule {
    pub fn compile(c: &AllowRuleConfig) -> Result<AllowRule, AllowRuleError> {
        let name = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|s| Name::parse(s).map_err(|error| AllowRuleError::Name { field, error }))
                .transpose()
        };
        let serial = match &c.serial {
            Some(s) => Some(trim_serial(
                &crate::hex::decode(&pad_odd(s))
                    .ok_or_else(|| AllowRuleError::Serial(s.clone()))?,
            )),
            None => None,
        };
        let rule = AllowRule {
            subject: name("subject", &c.subject)?,
            cn: c.cn.clone(),
            o: c.o.clone(),
            ou: c.ou.clone(),
            issuer: name("issuer", &c.issuer)?,
            serial,
            san_dns: c.san_dns.as_ref().map(|s| s.to_ascii_lowercase()),
            san_uri: c.san_uri.clone(),
            san_email: c.san_email.as_ref().map(|s| s.to_ascii_lowercase()),
            spiffe_id: c.spiffe_id.clone(),
            fingerprint: c
                .fingerprint_sha256
                .as_deref()
                .map(Fingerprint::parse)
                .transpose()?,
        };
        if rule.is_empty() {
            return Err(AllowRuleError::Empty);
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
        fn same<T: PartialEq>(want: &Option<T>, have: &T) -> bool {
            want.as_ref().is_none_or(|w| w == have)
        }
        any(&self.cn, &id.cn)
            && any(&self.o, &id.o)
            && any(&self.ou, &id.ou)
            && any_ci(&self.san_dns, &id.san_dns)
            && any(&self.san_uri, &id.san_uri)
            && any_ci(&self.san_email, &id.san_email)
            && same(&self.subject, &id.subject)
            && same(&self.issuer, &id.issuer)
            && same(&self.serial, &id.serial)
            && same(&self.fingerprint, &id.fingerprint)
            && self
                .spiffe_id
                .as_ref()
                .is_none_or(|s| id.spiffe_id.as_ref() == Some(s))
    }
}

/// `ABC` reads as `0ABC`: serials are often written without their leading zero.
fn pad_odd(s: &str) -> String {
    let digits = s.chars().filter(char::is_ascii_hexdigit).count();
    if digits % 2 == 1 && !s.contains(':') {
        format!("0{}", s.trim())
    } else {
        s.to_owned()
    }
}

/// Why a route refused a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No certificate, and the route does not allow anonymous callers.
    Anonymous,
    /// A certificate, but no allow rule matched it.
    NotAllowed,
}

/// Who may use a route.
#[derive(Debug, Clone, Default)]
pub struct Authz {
    /// Any rule admits; none: any verified client.
    pub rules: Vec<AllowRule>,
    pub allow_anonymous: bool,
}

impl Authz {
    pub fn authorize(&self, id: Option<&PeerIdentity>) -> Result<(), Denied> {
        match id {
            None if self.allow_anonymous => Ok(()),
            None => Err(Denied::Anonymous),
            Some(_) if self.rules.is_empty() => Ok(()),
            Some(id) if self.rules.iter().any(|r| r.matches(id)) => Ok(()),
            Some(_) => Err(Denied::NotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, KeyAlg, Leaf, Usage};

    fn id() -> PeerIdentity {
        let ca = Ca::new("Authz CA", "Acme", 30).unwrap();
        let mut l = Leaf::new("etl-prod", Usage::Client);
        l.ou = Some("ETL".into());
        l.o = Some("Acme, Inc".into());
        l.uris = vec!["spiffe://acme/etl".into()];
        l.alg = KeyAlg::EcdsaP256;
        l.serial = 0xAB;
        PeerIdentity::from_der(&ca.issue(&l).unwrap().der).unwrap()
    }

    fn rule(c: AllowRuleConfig) -> AllowRule {
        AllowRule::compile(&c).unwrap()
    }

    #[test]
    fn all_fields_in_a_rule_must_match() {
        let id = id();
        let ok = rule(AllowRuleConfig {
            cn: Some("etl-prod".into()),
            ou: Some("ETL".into()),
            ..Default::default()
        });
        assert!(ok.matches(&id));
        let wrong_ou = rule(AllowRuleConfig {
            cn: Some("etl-prod".into()),
            ou: Some("Finance".into()),
            ..Default::default()
        });
        assert!(!wrong_ou.matches(&id));
    }

    #[test]
    fn subjects_compare_as_names_and_fingerprints_and_serials_as_bytes() {
        let id = id();
        // Lower-case types, spaces, and an escaped comma inside O all match.
        for subject in [
            "O=Acme\\, Inc,OU=ETL,CN=etl-prod",
            "o=Acme\\, Inc, ou=ETL, cn=etl-prod",
            "O=Acme\\2C Inc,OU=ETL,CN=etl-prod",
        ] {
            let r = rule(AllowRuleConfig {
                subject: Some(subject.into()),
                ..Default::default()
            });
            assert!(r.matches(&id), "{subject} vs {}", id.subject);
        }
        // Splitting on the escaped comma would see attributes that are not there.
        let r = rule(AllowRuleConfig {
            subject: Some("O=Acme,OU=ETL,CN=etl-prod".into()),
            ..Default::default()
        });
        assert!(!r.matches(&id));
        let r = rule(AllowRuleConfig {
            fingerprint_sha256: Some(id.fingerprint.hex()),
            serial: Some("ab".into()),
            spiffe_id: Some("spiffe://acme/etl".into()),
            ..Default::default()
        });
        assert!(r.matches(&id));
        let r = rule(AllowRuleConfig {
            serial: Some("00:AB".into()),
            ..Default::default()
        });
        assert!(r.matches(&id));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let e = AllowRule::compile(&AllowRuleConfig {
            fingerprint_sha256: Some("abc".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("64"), "{e}");
        assert_eq!(
            AllowRule::compile(&AllowRuleConfig::default()).unwrap_err(),
            AllowRuleError::Empty
        );
        let e = AllowRule::compile(&AllowRuleConfig {
            subject: Some("CM=x".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("subject: "), "{e}");
    }
}
