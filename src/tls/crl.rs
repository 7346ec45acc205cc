//! CRLs as material with a lifetime. Each is checked when loaded — parsable,
//! signed by one of the CAs it must come from — and its nextUpdate is
//! tracked: a certificate whose revocation status rests on a CRL past its
//! nextUpdate is refused (`crl_stale`), or accepted within a configured grace.
//! Listener CRLs and WS-Security signer CRLs share this code.

use super::certs::Role;
use rustls::pki_types::CertificateDer;
use std::time::Duration;
use x509_parser::prelude::*;

/// What the gauge, `check` and the audit events say about one CRL.
#[derive(Debug, Clone)]
pub struct CrlSummary {
    pub held: Role,
    /// The listener or route holding it.
    pub name: String,
    /// The TOML key that names it.
    pub at: String,
    /// The file or URL it came from.
    pub source: String,
    pub issuer: String,
    pub this_update_unix: i64,
    /// `None`: the CRL names no next update (never stale).
    pub next_update_unix: Option<i64>,
}

impl CrlSummary {
    /// Days until nextUpdate (negative once passed); `None` without one.
    pub fn days_left(&self) -> Option<i64> {
        self.next_update_unix
            .map(|t| (t - super::certs::now_unix()).div_euclid(86_400))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("{source_name}: not a usable CRL: {detail}")]
    Unparsable { source_name: String, detail: String },
    #[error("{source_name}: CRL issued by {issuer}, which is none of the CAs it is checked against ({expected}); a CRL must come from one of them (a CRL of an intermediate CA needs that CA in `client_intermediates` or `intermediates`)")]
    UnknownIssuer {
        source_name: String,
        issuer: String,
        expected: String,
    },
    #[error("{source_name}: CRL names {issuer} as its issuer, but its signature does not verify with that CA's key: it was signed by another CA, or altered")]
    BadSignature { source_name: String, issuer: String },
}

/// A parsed, verified CRL's issuer and dates.
pub struct Checked {
    pub issuer: String,
    pub issuer_raw: Vec<u8>,
    pub this_update_unix: i64,
    pub next_update_unix: Option<i64>,
}

/// Parses a DER CRL and checks that one of `issuers` signed it. An issuer
/// is matched by name, then the signature is verified with its key.
pub fn check(
    der: &[u8],
    source_name: &str,
    issuers: &[CertificateDer<'_>],
) -> Result<Checked, CrlError> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| CrlError::Unparsable {
        source_name: source_name.to_owned(),
        detail: e.to_string(),
    })?;
    let issuer_raw = crl.issuer().as_raw().to_vec();
    let issuer = crate::dn::Name::from_x509(crl.issuer()).to_string();
    let mut named = false;
    let mut expected = Vec::new();
    for ca in issuers {
        let Ok((_, cert)) = X509Certificate::from_der(ca.as_ref()) else {
            continue;
        };
        expected.push(crate::dn::Name::from_x509(cert.subject()).to_string());
        if cert.subject().as_raw() != issuer_raw.as_slice() {
            continue;
        }
        named = true;
        if crl.verify_signature(cert.public_key()).is_ok() {
            return Ok(Checked {
                issuer,
                issuer_raw,
                this_update_unix: crl.last_update().timestamp(),
                next_update_unix: crl.next_update().map(|t| t.timestamp()),
            });
        }
    }
    Err(if named {
        CrlError::BadSignature {
            source_name: source_name.to_owned(),
            issuer,
        }
    } else {
        CrlError::UnknownIssuer {
            source_name: source_name.to_owned(),
            issuer,
            expected: if expected.is_empty() {
                "none loaded".to_owned()
            } else {
                expected.join("; ")
            },
        }
    })
}

/// How fresh the CRLs behind one certificate check are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fresh,
    /// Past nextUpdate, within the grace: accepted, and counted
    /// ([`Freshness::count_tolerated`]) where the acceptance is final.
    Tolerated,
    /// Past nextUpdate and the grace: refused.
    Stale,
}

/// The nextUpdate of each CRL by issuer, and the grace allowed after it.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    next_update: Vec<(Vec<u8>, Option<i64>)>,
    grace: Duration,
    /// Counts certificates accepted on a stale CRL within the grace.
    tolerated: Option<prometheus::IntCounter>,
}

impl Freshness {
    pub fn new(grace: Duration, tolerated: Option<prometheus::IntCounter>) -> Freshness {
        Freshness {
            next_update: Vec::new(),
            grace,
            tolerated,
        }
    }

    pub fn add(&mut self, c: &Checked) {
        self.next_update
            .push((c.issuer_raw.clone(), c.next_update_unix));
    }

    pub fn is_empty(&self) -> bool {
        self.next_update.is_empty()
    }

    /// Judges the CRLs of the issuers (raw DER names) a check relied on, at
    /// `now`. Nothing is counted: one message may be judged more than once.
    pub fn judge<'a>(&self, issuers: impl IntoIterator<Item = &'a [u8]>, now: i64) -> Verdict {
        let grace = i64::try_from(self.grace.as_secs()).unwrap_or(i64::MAX);
        let mut verdict = Verdict::Fresh;
        for issuer in issuers {
            for (_, next) in self.next_update.iter().filter(|(i, _)| i == issuer) {
                match next {
                    Some(t) if now >= t.saturating_add(grace) => return Verdict::Stale,
                    Some(t) if now >= *t => verdict = Verdict::Tolerated,
                    _ => {}
                }
            }
        }
        verdict
    }

    /// Counts one certificate accepted on a stale CRL within the grace.
    pub fn count_tolerated(&self) {
        if let Some(c) = &self.tolerated {
            c.inc();
        }
    }
}

/// The issuer names (raw DER) of certificates, for `Freshness::judge`.
pub fn issuers_of<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    certs
        .into_iter()
        .filter_map(|der| {
            X509Certificate::from_der(der)
                .ok()
                .map(|(_, c)| c.issuer().as_raw().to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_after_next_update_unless_within_grace() {
        let c = Checked {
            issuer: "CN=CA".into(),
            issuer_raw: b"ca".to_vec(),
            this_update_unix: 0,
            next_update_unix: Some(1000),
        };
        let mut strict = Freshness::new(Duration::ZERO, None);
        strict.add(&c);
        assert_eq!(strict.judge([&b"ca"[..]], 999), Verdict::Fresh);
        assert_eq!(strict.judge([&b"ca"[..]], 1000), Verdict::Stale);
        // Another issuer's CRL does not matter.
        assert_eq!(strict.judge([&b"other"[..]], 5000), Verdict::Fresh);
        let mut lenient = Freshness::new(Duration::from_secs(100), None);
        lenient.add(&c);
        assert_eq!(lenient.judge([&b"ca"[..]], 1050), Verdict::Tolerated);
        assert_eq!(lenient.judge([&b"ca"[..]], 1100), Verdict::Stale);
    }
}
