//! UsernameToken: password text or digest, checked against secrets that
//! never appear in a log or a `Debug` output.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::{constant_time, digest};
use base64::Engine as _;

use super::timestamp::{later, parse_datetime};
use super::{BASE64_ENCODING, PASSWORD_DIGEST, PASSWORD_TEXT};
use crate::wssec::dsig::decode_base64;
use crate::wssec::envelope::{Node, WSSE_NS, WSU_NS};
use crate::wssec::error::WssecError;

/// A password or other shared secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where UsernameToken secrets come from (a map, a vault, ...).
pub trait PasswordStore: Send + Sync {
    fn secret(&self, username: &str) -> Option<Secret>;
}

/// An in-memory username -> secret map; Debug lists usernames only.
#[derive(Clone, Default)]
pub struct MapPasswordStore(HashMap<String, Secret>);

impl MapPasswordStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, username: &str, secret: Secret) {
        self.0.insert(username.to_owned(), secret);
    }
}

impl std::fmt::Debug for MapPasswordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapPasswordStore")
            .field("users", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordStore for MapPasswordStore {
    fn secret(&self, username: &str) -> Option<Secret> {
        self.0.get(username).cloned()
    }
}

/// A verified UsernameToken.
#[derive(Debug, Clone)]
pub struct UsernameOutcome {
    pub username: String,
    /// (Nonce, Created) to remember until the given time, when both were sent.
    pub replay: Option<(Vec<u8>, String, SystemTime)>,
}

fn ut_bad(what: &'static str) -> WssecError {
    WssecError::BadUsernameToken(what)
}

fn ut_text<'n>(ut: &'n Node, ns: &str, local: &str) -> Result<Option<&'n Node>, WssecError> {
    match ut.single_child(ns, local) {
        Ok(Some(n)) if !n.is_text_only() => Err(ut_bad("element content")),
        Ok(n) => Ok(n),
        Err(_) => Err(ut_bad("repeated element")),
    }
}

/// Checks a UsernameToken's password (text or digest) and freshness.
pub fn check_username_token(
    ut: &Node,
    store: &dyn PasswordStore,
    now: SystemTime,
    skew: Duration,
    max_age: Duration,
) -> Result<UsernameOutcome, WssecError> {
    let username = ut_text(ut, WSSE_NS, "Username")?
        .ok_or(ut_bad("no Username"))?
        .text
        .trim()
        .to_owned();
    let password = ut_text(ut, WSSE_NS, "Password")?.ok_or(ut_bad("no Password"))?;
    let nonce = match ut_text(ut, WSSE_NS, "Nonce")? {
        Some(n)
            if n.attr(None, "EncodingType")
                .is_some_and(|e| e != BASE64_ENCODING) =>
        {
            return Err(ut_bad("Nonce EncodingType"))
        }
        Some(n) => Some(decode_base64(&n.text)?),
        None => None,
    };
    let created = ut_text(ut, WSU_NS, "Created")?.map(|c| c.text.clone());
    let created_at = match &created {
        Some(c) => Some(parse_datetime(c).ok_or(ut_bad("Created is not an xsd:dateTime in UTC"))?),
        None => None,
    };
    if let Some(t) = created_at {
        if t > later(now, skew) {
            return Err(WssecError::CreatedInFuture);
        }
        if later(later(t, max_age), skew) < now {
            return Err(WssecError::MessageExpired);
        }
    }
    // An unknown user and a wrong password fail alike.
    let secret = store
        .secret(&username)
        .ok_or(WssecError::AuthenticationFailed)?;
    let ok = match password.attr(None, "Type").unwrap_or(PASSWORD_TEXT) {
        PASSWORD_TEXT => {
            constant_time::verify_slices_are_equal(password.text.as_bytes(), secret.expose())
                .is_ok()
        }
        PASSWORD_DIGEST => {
            let (Some(n), Some(c)) = (&nonce, &created) else {
                return Err(ut_bad("PasswordDigest needs Nonce and Created"));
            };
            let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(n);
            ctx.update(c.as_bytes());
            ctx.update(secret.expose());
            let expected = base64::engine::general_purpose::STANDARD.encode(ctx.finish());
            constant_time::verify_slices_are_equal(
                password.text.trim().as_bytes(),
                expected.as_bytes(),
            )
            .is_ok()
        }
        _ => return Err(ut_bad("Password Type")),
    };
    if !ok {
        return Err(WssecError::AuthenticationFailed);
    }
    let replay = match (nonce, created, created_at) {
        (Some(n), Some(c), Some(t)) => Some((n, c, later(later(t, max_age), skew))),
        _ => None,
    };
    Ok(UsernameOutcome { username, replay })
}
