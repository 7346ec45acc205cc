//! JSON Web Tokens the gateway signs: the RFC 7523 assertions of the JWT
//! bearer grant (Salesforce) and of `private_key_jwt` client
//! authentication. Signed through the same aws-lc-rs keys as WS-Security.

use crate::wssec::dsig::SignatureAlgorithm;
use crate::wssec::sign::SigningKey;
use base64::Engine;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the key cannot sign a JWT ({0})")]
    Key(String),
}

/// What an assertion says; `exp` is `now + lifetime`.
pub struct Claims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub lifetime: Duration,
    /// A unique id (`jti`), for endpoints that refuse a reused assertion.
    pub jti: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWS algorithm of a key: RS256 for RSA, ES256/ES384 for ECDSA.
pub fn algorithm(key: &SigningKey) -> (&'static str, SignatureAlgorithm) {
    match key.default_algorithm() {
        SignatureAlgorithm::EcdsaSha256 => ("ES256", SignatureAlgorithm::EcdsaSha256),
        SignatureAlgorithm::EcdsaSha384 => ("ES384", SignatureAlgorithm::EcdsaSha384),
        _ => ("RS256", SignatureAlgorithm::RsaSha256),
    }
}

/// A signed compact JWS over `claims`, issued at `now`.
pub fn sign(
    key: &SigningKey,
    key_id: Option<&str>,
    claims: &Claims<'_>,
    now: SystemTime,
) -> Result<String, JwtError> {
    let (alg, sig_alg) = algorithm(key);
    let mut header = serde_json::json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = key_id {
        header["kid"] = kid.into();
    }
    let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut body = serde_json::json!({
        "iss": claims.iss,
        "sub": claims.sub,
        "aud": claims.aud,
        "iat": iat,
        "exp": iat + claims.lifetime.as_secs(),
    });
    if let Some(jti) = &claims.jti {
        body["jti"] = jti.as_str().into();
    }
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(body.to_string().as_bytes())
    );
    let sig = key
        .sign(sig_alg, signing_input.as_bytes())
        .map_err(|e| JwtError::Key(e.to_string()))?;
    Ok(format!("{signing_input}.{}", b64(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rs256_assertion_verifies_with_the_public_key() {
        let key_pair =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let key = SigningKey::from_pkcs8_der(&key_pair.serialize_der()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let jwt = sign(
            &key,
            Some("k1"),
            &Claims {
                iss: "3MVG9",
                sub: "etl@acme.com",
                aud: "https://login.salesforce.com",
                lifetime: Duration::from_secs(180),
                jti: None,
            },
            now,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let header: serde_json::Value = serde_json::from_slice(&dec(parts[0])).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&dec(parts[1])).unwrap();
        assert_eq!(header["kid"], "k1");
        assert_eq!(body["exp"], 1_800_000_180u64);
        assert_eq!(body["sub"], "etl@acme.com");
        assert_eq!(header["alg"], "RS256");
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            key_pair.public_key_raw(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &dec(parts[2])).unwrap();
    }
}
