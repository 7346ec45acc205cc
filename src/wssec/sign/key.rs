//! The signer's private key: RSA (2048 bits and up) or ECDSA P-256/P-384,
//! read from PKCS#8, PKCS#1 or SEC1 DER. Debug never shows key material.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

use crate::wssec::dsig::SignatureAlgorithm;
use crate::wssec::error::WssecError;
use crate::wssec::tokens::{CertInfo, PublicKey};

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

fn refused(what: &str) -> WssecError {
    WssecError::Config(what.to_owned())
}

impl SigningKey {
    /// An RSA, P-256 or P-384 key in PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, WssecError> {
        Self::from_der(der)
    }

    /// An RSA, P-256 or P-384 key in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) DER.
    pub fn from_der(der: &[u8]) -> Result<Self, WssecError> {
        let key = if let Ok(k) = RsaKeyPair::from_pkcs8(der).or_else(|_| RsaKeyPair::from_der(der))
        {
            SigningKey::Rsa(k)
        } else if let Ok(k) =
            EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
        {
            SigningKey::EcP256(k)
        } else {
            EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der)
                .map(SigningKey::EcP384)
                .map_err(|_| refused("unsupported or malformed private key (RSA, P-256 or P-384 in PKCS#8, PKCS#1 or SEC1)"))?
        };
        if let SigningKey::Rsa(k) = &key {
            if k.public_modulus_len() < 256 {
                return Err(refused(&format!(
                    "RSA-{} key: sign with 2048 bits or more",
                    k.public_modulus_len() * 8
                )));
            }
        }
        Ok(key)
    }

    /// A key from PEM (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, WssecError> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| refused(&format!("no private key in the PEM: {e}")))?;
        Self::from_der(der.secret_der())
    }

    /// The algorithm this key signs with by default.
    /// Whether one signature costs well under a millisecond: an EC key or
    /// RSA up to 3072 bits (RSA-4096 takes about 2 ms, RSA-8192 over 10).
    pub fn signs_quickly(&self) -> bool {
        match self {
            SigningKey::Rsa(k) => k.public_modulus_len() <= 384,
            SigningKey::EcP256(_) | SigningKey::EcP384(_) => true,
        }
    }

    pub fn default_algorithm(&self) -> SignatureAlgorithm {
        match self {
            SigningKey::Rsa(_) => SignatureAlgorithm::RsaSha256,
            SigningKey::EcP256(_) => SignatureAlgorithm::EcdsaSha256,
            SigningKey::EcP384(_) => SignatureAlgorithm::EcdsaSha384,
        }
    }

    /// The public half's bytes (PKCS#1 for RSA, the point for ECDSA).
    pub fn public_bytes(&self) -> Vec<u8> {
        match self {
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
            SigningKey::EcP256(k) | SigningKey::EcP384(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// Whether the certificate carries this key's public half.
    pub fn matches(&self, cert: &CertInfo) -> bool {
        match (self, &cert.key) {
            (SigningKey::Rsa(k), PublicKey::Rsa(p)) => k.public_key().as_ref() == p.as_slice(),
            (SigningKey::EcP256(k), PublicKey::EcP256(p))
            | (SigningKey::EcP384(k), PublicKey::EcP384(p)) => {
                k.public_key().as_ref() == p.as_slice()
            }
            _ => false,
        }
    }

    pub fn sign(&self, alg: SignatureAlgorithm, data: &[u8]) -> Result<Vec<u8>, WssecError> {
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
