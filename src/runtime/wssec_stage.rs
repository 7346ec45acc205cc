//! A route's WS-Security verification stage, compiled from its config: the
//! policy, the signer trust store, the replay cache, and the identity binding.

use super::material::Loader;
use crate::config::{BindIdentity, WssecMode, WssecVerifyConfig};
use crate::dn::Name;
use crate::tls::identity::PeerIdentity;
use crate::wssec::envelope::QName;
use crate::wssec::replay::MemoryReplayCache;
use crate::wssec::tokens::{MapPasswordStore, Secret, TrustStore};
use crate::wssec::verify::{Part, Policy, SignerInfo, WssecError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct VerifyStage {
    pub policy: Policy,
    /// The gateway's one replay cache, shared by every verifying route.
    pub replay: Arc<MemoryReplayCache>,
    pub max_body: u64,
    /// Bounds the memory and CPU that buffering and verifying can take. A
    /// permit is held until the verification work itself has ended.
    pub slots: Arc<tokio::sync::Semaphore>,
    pub read_timeout: std::time::Duration,
    bind: BindIdentity,
    /// Client subject -> signer subject.
    identity_map: BTreeMap<Name, Name>,
}

impl VerifyStage {
    /// Compiles a route's verification stage; `Some(None)` for `mode = "none"`,
    /// `None` when a problem was recorded.
    pub fn compile(
        ld: &mut Loader<'_>,
        c: &WssecVerifyConfig,
        path: &str,
        replay: &Arc<MemoryReplayCache>,
    ) -> Option<Option<VerifyStage>> {
        if c.mode == WssecMode::None {
            return Some(None);
        }
        let before = ld.problems.len();
        let at = |k: &str| format!("{path}.{k}");
        check_settings(ld, c, path);
        let mut trust = TrustStore::new();
        match &c.trust {
            None => ld.problem(
                at("trust"),
                "mode = \"verify\" needs trust = \"path/to/signer-ca.crt\" (the CAs that issue signer certificates)",
            ),
            Some(p) => {
                for der in ld.anchors(&at("trust"), p).unwrap_or_default() {
                    if let Err(e) = trust.add_anchor_der(&der) {
                        ld.problem(at("trust"), format!("not a usable trust anchor: {e}"));
                    }
                }
            }
        }
        for (i, p) in c.intermediates.iter().enumerate() {
            let key = at(&format!("intermediates[{i}]"));
            for der in ld.certificates(&key, p).unwrap_or_default() {
                trust.add_intermediate_der(&der);
            }
        }
        if let Some(p) = &c.signers {
            for der in ld.certificates(&at("signers"), p).unwrap_or_default() {
                if let Err(e) = trust.add_signer_der(&der) {
                    ld.problem(at("signers"), format!("unusable signer certificate: {e}"));
                }
            }
        }
        for crl in ld.crls(&at("crls"), &c.crls).unwrap_or_default() {
            if let Err(e) = trust.add_crl_der(&crl) {
                ld.problem(at("crls"), format!("unusable CRL: {e}"));
            }
        }
        let mut policy = Policy::new(trust);
        let mut parts = Vec::new();
        for (i, s) in c.require_signed.iter().enumerate() {
            match part(s) {
                Ok(p) => parts.push(p),
                Err(m) => ld.problem(at(&format!("require_signed[{i}]")), m),
            }
        }
        policy.require_signed = parts;
        let mut headers = Vec::new();
        for (i, s) in c.signable_headers.iter().enumerate() {
            match qname(s) {
                Ok(q) => headers.push(q),
                Err(m) => ld.problem(at(&format!("signable_headers[{i}]")), m),
            }
        }
        policy.signable_headers = headers;
        policy.require_timestamp = c.require_timestamp;
        policy.max_clock_skew = c.max_clock_skew.0;
        policy.max_ttl = c.max_ttl.0;
        policy.allow_sha1 = c.allow_sha1;
        policy.forward_security_header = c.forward_security_header;
        policy.require_username_token = c.require_username_token;
        policy.max_work = Some(c.work_limit.0);
        let max_body = c.max_body.0;
        let l = &mut policy.limits;
        l.max_bytes = usize::try_from(max_body).unwrap_or(usize::MAX);
        let x = &c.xml;
        if let Some(v) = x.max_depth {
            l.max_depth = v;
        }
        if let Some(v) = x.max_attributes {
            l.max_attributes = v;
        }
        if let Some(v) = x.max_namespaces_per_element {
            l.max_ns_per_element = v;
        }
        if let Some(v) = x.max_namespaces_in_scope {
            l.max_ns_in_scope = v;
        }
        if let Some(v) = x.max_name_length {
            l.max_name_len = v;
        }
        if let Some(v) = x.max_text_length {
            l.max_text_len = usize::try_from(v.0).unwrap_or(usize::MAX);
        }
        if let Some(v) = x.max_attribute_length {
            l.max_attr_value_len = usize::try_from(v.0).unwrap_or(usize::MAX);
        }
        if !c.usernames.is_empty() {
            let mut store = MapPasswordStore::new();
            for (i, u) in c.usernames.iter().enumerate() {
                let what = format!("password of {:?}", u.user);
                if let Some(secret) = ld.secret(
                    &at(&format!("usernames[{i}]")),
                    &what,
                    u.password_env.as_deref(),
                    u.password_file.as_deref(),
                ) {
                    store.insert(&u.user, Secret::new(secret));
                }
            }
            policy.passwords = Some(Arc::new(store));
        } else if c.require_username_token {
            ld.problem(
                at("usernames"),
                "require_username_token needs at least one user: usernames = [{ user = \"etl\", password_env = \"ETL_PASSWORD\" }]",
            );
        }
        if c.bind_identity == BindIdentity::Map && c.identity_map.is_empty() {
            ld.problem(
                at("identity_map"),
                "bind_identity = \"map\" needs identity_map = { \"CN=client,O=Acme\" = \"CN=signer,O=Acme\" }",
            );
        }
        let mut identity_map = BTreeMap::new();
        for (k, v) in &c.identity_map {
            match (Name::parse(k), Name::parse(v)) {
                (Ok(client), Ok(signer)) => {
                    if identity_map.insert(client, signer).is_some() {
                        ld.problem(
                            at("identity_map"),
                            format!("{k:?} appears twice (spelling aside)"),
                        );
                    }
                }
                (Err(e), _) | (_, Err(e)) => ld.problem(at("identity_map"), e.to_string()),
            }
        }
        if ld.problems.len() > before {
            return None;
        }
        Some(Some(VerifyStage {
            policy,
            replay: replay.clone(),
            max_body,
            slots: Arc::new(tokio::sync::Semaphore::new(c.max_concurrent)),
            read_timeout: c.read_timeout.0,
            bind: c.bind_identity,
            identity_map,
        }))
    }

    /// Checks the signer against the mutual-TLS client as the route requires.
    pub fn check_binding(
        &self,
        client: Option<&PeerIdentity>,
        signer: Option<&SignerInfo>,
    ) -> Result<(), WssecError> {
        if self.bind == BindIdentity::Off {
            return Ok(());
        }
        let (Some(client), Some(signer)) = (client, signer) else {
            return Err(WssecError::IdentityMismatch);
        };
        let ok = match self.bind {
            BindIdentity::Off => true,
            BindIdentity::Certificate => client.fingerprint == signer.fingerprint,
            BindIdentity::Subject => client.subject == signer.subject,
            BindIdentity::Map => self
                .identity_map
                .get(&client.subject)
                .is_some_and(|want| *want == signer.subject),
        };
        if ok {
            Ok(())
        } else {
            Err(WssecError::IdentityMismatch)
        }
    }
}

/// Settings that would leave a verifying route verifying nothing, or accept
/// replays for ever, are errors rather than surprises.
fn check_settings(ld: &mut Loader<'_>, c: &WssecVerifyConfig, path: &str) {
    let at = |k: &str| format!("{path}.{k}");
    let has = |p: &str| c.require_signed.iter().any(|s| s == p);
    if !has("Body") {
        ld.problem(
            at("require_signed"),
            "a verifying route must require the Body to be signed; add \"Body\"",
        );
    }
    if c.require_timestamp && !has("Timestamp") {
        ld.problem(
            at("require_signed"),
            "an unsigned Timestamp can be rewritten to replay a message; add \"Timestamp\" (or set require_timestamp = false and accept replays after max_ttl)",
        );
    }
    if !c.require_timestamp && has("Timestamp") {
        ld.problem(
            at("require_timestamp"),
            "\"Timestamp\" is in require_signed, so a Timestamp is required anyway; remove one of the two",
        );
    }
    if !c.identity_map.is_empty() && c.bind_identity != BindIdentity::Map {
        ld.problem(
            at("identity_map"),
            "identity_map is only used with bind_identity = \"map\"; set it or remove the map",
        );
    }
    for (key, zero) in [
        ("max_body", c.max_body.0 == 0),
        ("max_ttl", c.max_ttl.0.is_zero()),
        ("replay_cache_entries", c.replay_cache_entries == 0),
        ("max_concurrent", c.max_concurrent == 0),
        ("read_timeout", c.read_timeout.0.is_zero()),
        ("work_limit", c.work_limit.0.is_zero()),
    ] {
        if zero {
            ld.problem(
                at(key),
                "0 would refuse every message; use a value above zero",
            );
        }
    }
}

/// `Body`, `Timestamp`, or a header block as `{namespace}LocalName`.
pub fn part(s: &str) -> Result<Part, String> {
    match s {
        "Body" => Ok(Part::Body),
        "Timestamp" => Ok(Part::Timestamp),
        other => qname(other).map(Part::Header),
    }
}

fn qname(s: &str) -> Result<QName, String> {
    let parsed = s
        .strip_prefix('{')
        .and_then(|r| r.split_once('}'))
        .filter(|(ns, local)| !ns.is_empty() && !local.is_empty() && !local.contains(':'));
    match parsed {
        Some((ns, local)) => Ok(QName::new(ns, local)),
        None => Err(format!(
            "{s:?} is not Body, Timestamp or a header block written as \"{{namespace}}LocalName\", e.g. \"{{http://www.w3.org/2005/08/addressing}}To\""
        )),
    }
}
