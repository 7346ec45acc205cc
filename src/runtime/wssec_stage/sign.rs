//! Signing: the key and its certificate, checked against each other once,
//! and the options every message is signed with (its Timestamp made fresh).

use super::verify::qname;
use crate::config::{KeyReferenceConfig, WssecStageConfig};
use crate::runtime::material::{Held, Loader};
use crate::tls::certs::Role;
use crate::wssec::sign::{self, KeyReference, SignOptions, Signer, UsernameToken, MAX_TTL};
use crate::wssec::tokens::{CertInfo, Secret};
use crate::wssec::verify::WssecError;
use crate::wssec::xml::Limits;
use std::time::{Duration, SystemTime};

pub struct SignStage {
    /// The key and its certificate (DER); none for a UsernameToken alone.
    signer: Option<Signer>,
    options: SignOptions,
}

/// A message the stage signs once at start, so a key that cannot sign is a
/// problem of the config, not of the first request.
const PROBE: &[u8] = b"<e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\"><e:Body><p/></e:Body></e:Envelope>";

impl SignStage {
    pub fn compile(
        ld: &mut Loader<'_>,
        c: &WssecStageConfig,
        owner: &str,
        path: &str,
        limits: Limits,
    ) -> Option<SignStage> {
        let before = ld.problems.len();
        let at = |k: &str| format!("{path}.{k}");
        let mut o = SignOptions::new(SystemTime::now());
        o.limits = limits;
        o.timestamp = c.timestamp.unwrap_or(true);
        o.replace_security = c.replace_security.unwrap_or(false);
        o.key_reference = match c.key_reference.unwrap_or_default() {
            KeyReferenceConfig::Bst => KeyReference::BinarySecurityToken,
            KeyReferenceConfig::IssuerSerial => KeyReference::IssuerSerial,
            KeyReferenceConfig::Ski => KeyReference::SubjectKeyIdentifier,
            KeyReferenceConfig::Thumbprint => KeyReference::ThumbprintSha1,
        };
        if let Some(t) = c.ttl {
            if t.0.is_zero() || t.0 > MAX_TTL {
                ld.problem(
                    at("ttl"),
                    format!(
                        "a Timestamp lifetime must be above zero and at most {} (receivers refuse longer ones)",
                        humantime::format_duration(MAX_TTL)
                    ),
                );
            }
            o.ttl = t.0;
        }
        if c.ttl.is_some() && !o.timestamp {
            ld.problem(
                at("ttl"),
                "ttl is the Timestamp's lifetime, and timestamp = false writes none; remove one",
            );
        }
        for (i, s) in c.sign_headers.iter().enumerate() {
            match qname(s) {
                Ok(q) => o.sign_headers.push(q),
                Err(m) => ld.problem(at(&format!("sign_headers[{i}]")), m),
            }
        }
        let signer = match (&c.key, &c.cert) {
            (Some(key), Some(cert)) => signing_pair(ld, owner, path, key, cert, o.key_reference),
            (None, None) => None,
            (Some(_), None) => {
                ld.problem(
                    at("cert"),
                    "a signing key needs its certificate: cert = \"signer.crt\"",
                );
                None
            }
            (None, Some(_)) => {
                ld.problem(
                    at("key"),
                    "a signing certificate needs its private key: key = \"signer.key\"",
                );
                None
            }
        };
        if let Some(u) = &c.username_token {
            let what = format!("UsernameToken password of {:?}", u.user);
            if u.user.is_empty() {
                ld.problem(
                    at("username_token.user"),
                    "the UsernameToken needs a user name",
                );
            }
            let secret = ld.secret(
                &at("username_token"),
                &what,
                u.password_env.as_deref(),
                u.password_file.as_deref(),
            );
            if let Some(s) = secret {
                if !u.digest && std::str::from_utf8(&s).is_err() {
                    ld.problem(
                        at("username_token"),
                        "a PasswordText password must be UTF-8 text",
                    );
                }
                o.username_token = Some(UsernameToken {
                    username: u.user.clone(),
                    password: Secret::new(s),
                    digest: u.digest,
                });
            }
        }
        if c.key.is_none() && c.cert.is_none() && c.username_token.is_none() {
            ld.problem(
                path.to_owned(),
                "mode = \"sign\" needs key and cert (to sign), username_token, or both",
            );
        }
        if c.key.is_none() && (!o.sign_headers.is_empty() || c.key_reference.is_some()) {
            ld.problem(
                at(if o.sign_headers.is_empty() {
                    "key_reference"
                } else {
                    "sign_headers"
                }),
                "only a signature uses this; add key and cert, or remove it",
            );
        }
        if ld.problems.len() > before {
            return None;
        }
        let stage = SignStage { signer, options: o };
        if let Err(e) = stage.apply(PROBE, SystemTime::now()) {
            // sign_headers name blocks the probe lacks; anything else is the key's.
            if stage.options.sign_headers.is_empty() {
                ld.problem(
                    path.to_owned(),
                    format!("a test message could not be signed: {e}"),
                );
                return None;
            }
        }
        Some(stage)
    }

    /// Adds the Security header to one message, its Timestamp created `now`.
    pub fn apply(&self, msg: &[u8], now: SystemTime) -> Result<super::Processed, WssecError> {
        let mut o = self.options.clone();
        o.created = now;
        Ok(super::Processed {
            output: sign::secure(msg, self.signer.as_ref(), &o)?,
            signer: None,
            replay_keys: super::Recorded::none(),
        })
    }

    /// Whether its signature is cheap enough to make on an event loop (no
    /// key: a UsernameToken alone).
    pub fn signs_quickly(&self) -> bool {
        self.signer.as_ref().is_none_or(Signer::signs_quickly)
    }

    /// A signer for one message read as it streams (its Timestamp created
    /// when it has arrived).
    pub fn streamer(&self) -> sign::StreamSigner<'_> {
        sign::StreamSigner::new(self.signer.as_ref(), &self.options)
    }

    /// How long a Timestamp the stage writes lives.
    pub fn ttl(&self) -> Option<Duration> {
        self.options.timestamp.then_some(self.options.ttl)
    }
}

/// The key and its certificate, each checked: the key readable by its owner
/// only (a warning otherwise), the certificate current, for digital
/// signatures, and the key's own.
fn signing_pair(
    ld: &mut Loader<'_>,
    owner: &str,
    path: &str,
    key: &std::path::Path,
    cert: &std::path::Path,
    key_reference: KeyReference,
) -> Option<Signer> {
    let at = |k: &str| format!("{path}.{k}");
    let key = ld.signing_key(&at("key"), key);
    let der = ld
        .certificates(Held(Role::Signer, owner), &at("cert"), cert)
        .and_then(|c| c.into_iter().next())?
        .to_vec();
    let info = match CertInfo::from_der(&der) {
        Ok(i) => i,
        Err(e) => {
            ld.problem(at("cert"), format!("unreadable certificate: {e}"));
            return None;
        }
    };
    if info.no_digital_signature {
        ld.problem(
            at("cert"),
            format!(
                "{} has a keyUsage without digitalSignature, so receivers refuse signatures made with it; issue one with digitalSignature",
                info.subject
            ),
        );
    }
    if key_reference == KeyReference::SubjectKeyIdentifier && info.ski.is_none() {
        ld.problem(
            at("key_reference"),
            "the certificate has no SubjectKeyIdentifier to reference; use key_reference = \"bst\", \"issuer_serial\" or \"thumbprint\"",
        );
    }
    let key = key?;
    if !key.matches(&info) {
        ld.problem(
            at("key"),
            format!(
                "the key is not the one of the certificate {} ({})",
                info.subject,
                at("cert")
            ),
        );
        return None;
    }
    match Signer::new(key, &der) {
        Ok(s) => Some(s),
        Err(e) => {
            ld.problem(
                at("key"),
                format!("the key cannot sign for {}: {e}", info.subject),
            );
            None
        }
    }
}
