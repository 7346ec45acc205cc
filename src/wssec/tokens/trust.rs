//! Trust for signer certificates: anchors, intermediates, CRLs and the
//! configured signer set, checked through webpki.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyPurposeIdIter, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::cert::CertCache;
use super::CertInfo;
use crate::fingerprint::Fingerprint;
use crate::tls::crl::Verdict;
use crate::wssec::error::WssecError;

/// Trust anchors, intermediates, CRLs and the configured signer set.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    // Arc: webpki's CRL type is not Clone, and a policy is cloned per snapshot.
    crls: Vec<Arc<CertRevocationList<'static>>>,
    pub(super) signers: Vec<Arc<CertInfo>>,
    /// Certificates trusted as themselves, with no chain (also signers).
    pinned: Vec<Fingerprint>,
    /// RSA keys under 2048 bits accepted.
    pub allow_legacy_keys: bool,
    /// The CRLs' nextUpdate: a signer whose revocation status rests on a
    /// stale CRL is refused (`wssec_signer_crl_stale`) unless within the grace.
    pub crl_freshness: crate::tls::crl::Freshness,
    /// Pinned certificates are not judged by their dates (the signer's
    /// self-check only: it checks the form of what it wrote).
    pub(crate) ignore_validity: bool,
    /// Signers whose chain verified, with when that holds: an ETL job sends
    /// the same certificate in every message, and its chain's signatures
    /// cost more than the message's own. Replaced (never shared) by any
    /// change to what is trusted.
    verified: Arc<Mutex<HashMap<Fingerprint, Arc<VerifiedChain>>>>,
    /// Certificates messages carried, as read.
    pub(super) certs: CertCache,
}

/// A signer's chain that verified: valid strictly between `from` and
/// `until` (Unix seconds; the leaf's and the intermediates' dates — webpki
/// does not judge an anchor's), and the certificates whose issuers' CRLs
/// the freshness policy judges each time.
#[derive(Debug)]
struct VerifiedChain {
    from: i64,
    until: i64,
    issuers: Vec<Vec<u8>>,
}

/// A signer found trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Trusted {
    /// On a CRL past its nextUpdate, within the configured grace.
    pub crl_tolerated: bool,
}

/// Signers remembered at most; past this the memory starts over.
const MAX_VERIFIED: usize = 4096;

fn config(what: &str) -> WssecError {
    WssecError::Config(what.to_owned())
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_anchor_der(&mut self, der: &[u8]) -> Result<(), WssecError> {
        self.forget_verified();
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
        self.forget_verified();
        self.intermediates.push(CertificateDer::from(der.to_vec()));
    }

    pub fn add_crl_der(&mut self, der: &[u8]) -> Result<(), WssecError> {
        self.forget_verified();
        let crl =
            OwnedCertRevocationList::from_der(der).map_err(|e| config(&format!("CRL: {e}")))?;
        self.crls.push(Arc::new(CertRevocationList::from(crl)));
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
        self.forget_verified();
        self.signers.push(Arc::new(
            CertInfo::from_der(der).map_err(|e| config(&e.to_string()))?,
        ));
        Ok(())
    }

    /// A signer certificate trusted as itself, without a chain — the way
    /// WSS4J's signature truststore and signxml's `x509_cert` work (Salesforce's
    /// self-signed certificates, test roots). Still checked for validity and
    /// key strength. It may also be named by key references.
    pub fn add_pinned_der(&mut self, der: &[u8]) -> Result<(), WssecError> {
        self.forget_verified();
        let cert = CertInfo::from_der(der).map_err(|e| config(&e.to_string()))?;
        self.pinned.push(cert.fingerprint);
        if !self
            .signers
            .iter()
            .any(|s| s.fingerprint == cert.fingerprint)
        {
            self.signers.push(Arc::new(cert));
        }
        Ok(())
    }

    /// A certificate trusted as itself when it arrives (in a token) with this
    /// SHA-256 fingerprint.
    pub fn pin_fingerprint(&mut self, fp: Fingerprint) {
        self.forget_verified();
        self.pinned.push(fp);
    }

    /// What was remembered held for what was trusted before.
    fn forget_verified(&mut self) {
        self.verified = Arc::default();
    }

    pub fn is_pinned(&self, cert: &CertInfo) -> bool {
        self.pinned.contains(&cert.fingerprint)
    }

    /// Whether anything at all is trusted (anchors or pins).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty() && self.pinned.is_empty()
    }

    pub fn add_signers_pem(&mut self, pem: &[u8]) -> Result<usize, WssecError> {
        let certs = pem_certs(pem)?;
        for c in &certs {
            self.add_signer_der(c)?;
        }
        Ok(certs.len())
    }

    /// Key strength, then: for a pinned certificate its validity at `now`;
    /// otherwise its chain to an anchor, validity and revocation by the CRLs.
    /// Nothing is counted (one message may be checked more than once): the
    /// caller counts a [`Trusted::crl_tolerated`] it accepts.
    pub fn check(&self, cert: &CertInfo, now: SystemTime) -> Result<Trusted, WssecError> {
        if let Some(bits) = cert.rsa_bits {
            if bits < 2048 && !self.allow_legacy_keys {
                return Err(WssecError::WeakKey(bits));
            }
        }
        let since = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| WssecError::Internal("clock before 1970"))?;
        let t = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        if self.is_pinned(cert) {
            if self.ignore_validity {
                return Ok(Trusted::default());
            }
            if t > cert.not_after {
                return Err(WssecError::SignerExpired);
            }
            if t < cert.not_before {
                return Err(WssecError::SignerNotYetValid);
            }
            return Ok(Trusted::default());
        }
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cert.fingerprint)
            .filter(|v| v.from < t && t < v.until)
            .map(Arc::clone);
        let chain = match remembered {
            Some(chain) => chain,
            None => self.verify_chain(cert, since)?,
        };
        if self.crl_freshness.is_empty() {
            return Ok(Trusted::default());
        }
        match self
            .crl_freshness
            .judge(chain.issuers.iter().map(Vec::as_slice), t)
        {
            Verdict::Stale => Err(WssecError::SignerCrlStale),
            Verdict::Tolerated => Ok(Trusted {
                crl_tolerated: true,
            }),
            Verdict::Fresh => Ok(Trusted::default()),
        }
    }

    /// The chain to an anchor, validity and revocation, through webpki;
    /// remembered when it holds.
    fn verify_chain(
        &self,
        cert: &CertInfo,
        since: std::time::Duration,
    ) -> Result<Arc<VerifiedChain>, WssecError> {
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
        let path = ee
            .verify_for_usage(
                CHAIN_ALGS,
                &self.anchors,
                &self.intermediates,
                UnixTime::since_unix_epoch(since),
                AnyEku,
                revocation,
                None,
            )
            .map_err(|e| self.chain_error(cert, e))?;
        let mut checked = vec![cert.der.clone()];
        checked.extend(
            path.intermediate_certificates()
                .map(|c| c.der().as_ref().to_vec()),
        );
        let (mut from, mut until) = (cert.not_before, cert.not_after);
        for der in checked.iter().skip(1) {
            // An intermediate whose dates cannot be read is not remembered.
            let (nb, na) = x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| {
                    let v = c.validity();
                    (v.not_before.timestamp(), v.not_after.timestamp())
                })
                .unwrap_or((i64::MAX, i64::MIN));
            from = from.max(nb);
            until = until.min(na);
        }
        let chain = Arc::new(VerifiedChain {
            from,
            until,
            issuers: crate::tls::crl::issuers_of(checked.iter().map(Vec::as_slice)),
        });
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(cert.fingerprint, Arc::clone(&chain));
        Ok(chain)
    }

    fn chain_error(&self, cert: &CertInfo, e: webpki::Error) -> WssecError {
        match e {
            webpki::Error::CertExpired { .. } => WssecError::SignerExpired,
            webpki::Error::CertNotValidYet { .. } => WssecError::SignerNotYetValid,
            webpki::Error::CertRevoked => WssecError::SignerRevoked,
            webpki::Error::UnknownIssuer => WssecError::UntrustedSigner(format!(
                "{} (issuer {}) does not chain to a trusted anchor; trust its CA or pin it",
                cert.subject, cert.issuer
            )),
            webpki::Error::UnsupportedSignatureAlgorithmContext(_)
            | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                WssecError::UntrustedSigner(format!(
                    "its chain is signed with an algorithm not accepted ({} on the certificate); pin the certificate to trust it as itself",
                    cert.signed_with
                ))
            }
            webpki::Error::CaUsedAsEndEntity => WssecError::UntrustedSigner(format!(
                "{} is a CA certificate (what `openssl req -x509` makes) signing as itself, and it is not pinned; pin it to trust it as itself",
                cert.subject
            )),
            other => WssecError::UntrustedSigner(format!("chain check failed: {other}")),
        }
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
