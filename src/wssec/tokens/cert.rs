//! A signer certificate, parsed once: the fields key references match on, its
//! public key in the form aws-lc-rs verifies with, and its names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ParsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::dn::Name;
use crate::fingerprint::Fingerprint;
use crate::wssec::error::WssecError;

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
    pub subject: Name,
    pub issuer: Name,
    /// Serial number, upper-case hex.
    pub serial_hex: String,
    pub serial_decimal: String,
    pub fingerprint: Fingerprint,
    /// SHA-256 of the SubjectPublicKeyInfo: the same for every certificate
    /// issued for one key (a renewal with the same key keeps it).
    pub spki_sha256: [u8; 32],
    pub sha1: [u8; 20],
    pub ski: Option<Vec<u8>>,
    pub key: PublicKey,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Modulus size of an RSA key.
    pub rsa_bits: Option<usize>,
    /// The algorithm the certificate itself is signed with, by name.
    pub signed_with: String,
    /// The keyUsage extension is present and lacks digitalSignature.
    pub no_digital_signature: bool,
    /// `key` as parsed for each algorithm it verified with.
    pub(in crate::wssec) parsed: ParsedKey,
}

/// A certificate's public key, parsed once per signature algorithm and
/// kept with the certificate (which the cache below shares between
/// messages): parsing an RSA key and setting up its modulus arithmetic
/// cost about a tenth of verifying a small message.
// Boxed: a certificate is held in larger structures.
#[derive(Clone, Default)]
pub struct ParsedKey(Box<[OnceLock<ParsedPublicKey>; KEY_SLOTS]>);

/// One slot per signature algorithm (`dsig::SignatureAlgorithm`).
pub const KEY_SLOTS: usize = 6;

impl std::fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedKey")
    }
}

impl ParsedKey {
    /// Verifies `signature` over `message` with `raw` (the certificate's
    /// key) under `alg`, which always comes with the same `slot`: with the
    /// key as parsed for it before, or parsed now and kept.
    pub fn verify(
        &self,
        slot: usize,
        alg: &'static dyn VerificationAlgorithm,
        raw: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), aws_lc_rs::error::Unspecified> {
        let Some(cell) = self.0.get(slot) else {
            return Err(aws_lc_rs::error::Unspecified);
        };
        let key = match cell.get() {
            Some(key) => key,
            None => {
                let key =
                    ParsedPublicKey::new(alg, raw).map_err(|_| aws_lc_rs::error::Unspecified)?;
                cell.get_or_init(|| key)
            }
        };
        key.verify_sig(message, signature)
    }
}

/// Certificates already read, by their DER: an ETL job sends the same one
/// in every message, and reading it (with its three hashes) costs more
/// than a pass over a small Body. What a certificate says depends on its
/// bytes alone, so nothing here is ever stale; whether it is trusted is
/// judged afresh for every message.
#[derive(Debug, Clone, Default)]
pub struct CertCache(Arc<Mutex<HashMap<Vec<u8>, Arc<CertInfo>>>>);

/// Certificates remembered at most; past this the memory starts over, so
/// a stream of new certificates costs what reading them costs, no more.
const MAX_CACHED: usize = 256;

impl CertCache {
    /// `CertInfo::from_der`, remembered.
    pub fn read(&self, der: &[u8]) -> Result<Arc<CertInfo>, WssecError> {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = lock().get(der) {
            return Ok(Arc::clone(known));
        }
        let cert = Arc::new(CertInfo::from_der(der)?);
        let mut cache = lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(der.to_vec(), Arc::clone(&cert));
        Ok(cert)
    }
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
        let rsa_bits = match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(rsa.key_size()),
            _ => None,
        };
        let no_digital_signature = cert
            .key_usage()
            .ok()
            .flatten()
            .is_some_and(|ku| !ku.value.digital_signature());
        Ok(CertInfo {
            der: der.to_vec(),
            subject: Name::from_x509(cert.subject()),
            issuer: Name::from_x509(cert.issuer()),
            serial_hex: format!("{serial:X}"),
            serial_decimal: serial.to_string(),
            fingerprint: Fingerprint::of(der),
            spki_sha256: fixed(digest::digest(&digest::SHA256, cert.public_key().raw).as_ref()),
            sha1: fixed(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref()),
            ski,
            key: public_key(&cert)?,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            rsa_bits,
            signed_with: algorithm_name(&cert.signature_algorithm.algorithm),
            no_digital_signature,
            parsed: ParsedKey::default(),
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
        _ => Err(WssecError::UnsupportedKey(match curve {
            Some(c) => format!("{} on curve {c}", algorithm_name(&spki.algorithm.algorithm)),
            None => algorithm_name(&spki.algorithm.algorithm),
        })),
    }
}

/// An algorithm OID by its registered name (`md5WithRSAEncryption`), else dotted.
pub fn algorithm_name(oid: &x509_parser::oid_registry::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, KeyAlg, Leaf, Usage};

    fn leaf_der(ca: &Ca, cn: &str) -> Vec<u8> {
        let mut spec = Leaf::new(cn, Usage::Signer);
        spec.alg = KeyAlg::EcdsaP256;
        ca.issue(&spec).unwrap().der
    }

    fn len(c: &CertCache) -> usize {
        c.0.lock().unwrap().len()
    }

    /// A remembered certificate reads as a fresh reading would, each DER as
    /// itself; a bad one is refused every time and never remembered; and the
    /// memory stays bounded however many certificates arrive.
    #[test]
    fn the_certificate_cache_reads_each_der_as_itself_and_stays_bounded() {
        let ca = Ca::new("Cache CA", "Sealgate Test", 1).unwrap();
        let (a, b) = (leaf_der(&ca, "a"), leaf_der(&ca, "b"));
        let cache = CertCache::default();
        for _ in 0..2 {
            for der in [&a, &b] {
                let read = cache.read(der).unwrap();
                let fresh = CertInfo::from_der(der).unwrap();
                assert_eq!(read.der, fresh.der);
                assert_eq!(read.fingerprint, fresh.fingerprint);
                assert_eq!(read.subject, fresh.subject);
                assert_eq!(read.key, fresh.key);
            }
        }
        assert_eq!(len(&cache), 2);
        let mut bad = a.clone();
        bad.push(0);
        for _ in 0..2 {
            assert!(matches!(cache.read(&bad), Err(WssecError::BadToken(_))));
        }
        assert_eq!(len(&cache), 2);
        for i in 0..MAX_CACHED {
            cache.read(&leaf_der(&ca, &format!("n{i}"))).unwrap();
            assert!(len(&cache) <= MAX_CACHED);
        }
        assert_eq!(cache.read(&a).unwrap().der, a);
    }
}
