//! A route's WS-Security verification stage, compiled from its config: the
//! policy, the signer trust store, the replay cache, and the identity binding.

use crate::config::{BindIdentity, Config, Problem, WssecMode, WssecVerifyConfig};
use crate::tls::certs::{self, CertSummary};
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
    /// Bounds the memory and CPU that buffering and verifying can take.
    pub slots: Arc<tokio::sync::Semaphore>,
    pub read_timeout: std::time::Duration,
    bind: BindIdentity,
    /// Normalised client subject -> normalised signer subject.
    identity_map: BTreeMap<String, String>,
}

impl VerifyStage {
    pub fn compile(
        config: &Config,
        c: &WssecVerifyConfig,
        path: &str,
        summaries: &mut Vec<CertSummary>,
        replay: &Arc<MemoryReplayCache>,
    ) -> Result<Option<VerifyStage>, Problem> {
        if c.mode == WssecMode::None {
            return Ok(None);
        }
        let at = |k: &str, m: String| Problem::new(format!("{path}.{k}"), m);
        check_settings(c, &at)?;
        let Some(trust_path) = &c.trust else {
            return Err(at(
                "trust",
                "mode = \"verify\" needs trust = \"path/to/signer-ca.crt\" (the CAs that issue signer certificates)".into(),
            ));
        };
        let mut trust = TrustStore::new();
        let anchors = load(config, trust_path, &at, "trust")?;
        for der in &anchors {
            summaries.push(
                certs::check_validity(&format!("{path}.trust"), &config.resolve(trust_path), der)
                    .map_err(|e| at("trust", e.to_string()))?,
            );
            trust
                .add_anchor_der(der)
                .map_err(|e| at("trust", format!("not a usable trust anchor: {e}")))?;
        }
        for (i, p) in c.intermediates.iter().enumerate() {
            for der in load(config, p, &at, &format!("intermediates[{i}]"))? {
                trust.add_intermediate_der(&der);
            }
        }
        if let Some(p) = &c.signers {
            for der in load(config, p, &at, "signers")? {
                trust
                    .add_signer_der(&der)
                    .map_err(|e| at("signers", format!("unusable signer certificate: {e}")))?;
            }
        }
        for (i, p) in c.crls.iter().enumerate() {
            let crls = certs::load_crls(&config.resolve(p))
                .map_err(|e| at(&format!("crls[{i}]"), e.to_string()))?;
            for crl in crls {
                trust
                    .add_crl_der(&crl)
                    .map_err(|e| at(&format!("crls[{i}]"), format!("unusable CRL: {e}")))?;
            }
        }
        let mut policy = Policy::new(trust);
        policy.require_signed = c
            .require_signed
            .iter()
            .enumerate()
            .map(|(i, s)| part(s).map_err(|m| at(&format!("require_signed[{i}]"), m)))
            .collect::<Result<_, _>>()?;
        policy.signable_headers = c
            .signable_headers
            .iter()
            .enumerate()
            .map(|(i, s)| qname(s).map_err(|m| at(&format!("signable_headers[{i}]"), m)))
            .collect::<Result<_, _>>()?;
        policy.require_timestamp = c.require_timestamp;
        policy.max_clock_skew = c.max_clock_skew.0;
        policy.max_ttl = c.max_ttl.0;
        policy.allow_sha1 = c.allow_sha1;
        policy.forward_security_header = c.forward_security_header;
        policy.require_username_token = c.require_username_token;
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
                let secret = secret(config, u).map_err(|m| at(&format!("usernames[{i}]"), m))?;
                store.insert(&u.user, secret);
            }
            policy.passwords = Some(Arc::new(store));
        } else if c.require_username_token {
            return Err(at(
                "usernames",
                "require_username_token needs at least one user: usernames = [{ user = \"etl\", password_env = \"ETL_PASSWORD\" }]".into(),
            ));
        }
        if c.bind_identity == BindIdentity::Map && c.identity_map.is_empty() {
            return Err(at(
                "identity_map",
                "bind_identity = \"map\" needs identity_map = { \"CN=client,O=Acme\" = \"CN=signer,O=Acme\" }".into(),
            ));
        }
        Ok(Some(VerifyStage {
            policy,
            replay: replay.clone(),
            max_body,
            slots: Arc::new(tokio::sync::Semaphore::new(c.max_concurrent)),
            read_timeout: c.read_timeout.0,
            bind: c.bind_identity,
            identity_map: c
                .identity_map
                .iter()
                .map(|(k, v)| (normalize_dn(k), normalize_dn(v)))
                .collect(),
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
            BindIdentity::Certificate => client
                .fingerprint_sha256
                .eq_ignore_ascii_case(&signer.fingerprint_hex()),
            BindIdentity::Subject => normalize_dn(&client.subject) == normalize_dn(&signer.subject),
            BindIdentity::Map => self
                .identity_map
                .get(&normalize_dn(&client.subject))
                .is_some_and(|want| *want == normalize_dn(&signer.subject)),
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
fn check_settings(
    c: &WssecVerifyConfig,
    at: &dyn Fn(&str, String) -> Problem,
) -> Result<(), Problem> {
    let has = |p: &str| c.require_signed.iter().any(|s| s == p);
    if !has("Body") {
        return Err(at(
            "require_signed",
            "a verifying route must require the Body to be signed; add \"Body\"".into(),
        ));
    }
    if c.require_timestamp && !has("Timestamp") {
        return Err(at(
            "require_signed",
            "an unsigned Timestamp can be rewritten to replay a message; add \"Timestamp\" (or set require_timestamp = false and accept replays after max_ttl)".into(),
        ));
    }
    if !c.require_timestamp && has("Timestamp") {
        return Err(at(
            "require_timestamp",
            "\"Timestamp\" is in require_signed, so a Timestamp is required anyway; remove one of the two".into(),
        ));
    }
    if !c.identity_map.is_empty() && c.bind_identity != BindIdentity::Map {
        return Err(at(
            "identity_map",
            "identity_map is only used with bind_identity = \"map\"; set it or remove the map"
                .into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in c.identity_map.keys() {
        if !seen.insert(normalize_dn(k)) {
            return Err(at(
                "identity_map",
                format!("{k:?} appears twice (spacing aside)"),
            ));
        }
    }
    for (key, zero) in [
        ("max_body", c.max_body.0 == 0),
        ("max_ttl", c.max_ttl.0.is_zero()),
        ("replay_cache_entries", c.replay_cache_entries == 0),
        ("max_concurrent", c.max_concurrent == 0),
        ("read_timeout", c.read_timeout.0.is_zero()),
    ] {
        if zero {
            return Err(at(
                key,
                "0 would refuse every message; use a value above zero".into(),
            ));
        }
    }
    Ok(())
}

fn load(
    config: &Config,
    p: &std::path::Path,
    at: &dyn Fn(&str, String) -> Problem,
    key: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Problem> {
    certs::load_certs(&config.resolve(p)).map_err(|e| at(key, e.to_string()))
}

use crate::dn::normalize as normalize_dn;

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

/// A UsernameToken secret from the environment or a file; never from the config itself.
fn secret(config: &Config, u: &crate::config::UsernameConfig) -> Result<Secret, String> {
    match (&u.password_env, &u.password_file) {
        (Some(var), None) => std::env::var(var)
            .map(|v| Secret::new(v.into_bytes()))
            .map_err(|_| {
                format!(
                    "environment variable {var} (password of {:?}) is not set",
                    u.user
                )
            }),
        (None, Some(f)) => {
            let p = config.resolve(f);
            let mut bytes = std::fs::read(&p)
                .map_err(|e| format!("cannot read password file {}: {e}", p.display()))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.is_empty() {
                return Err(format!("password file {} is empty", p.display()));
            }
            Ok(Secret::new(bytes))
        }
        _ => Err(format!(
            "user {:?} needs exactly one of password_env or password_file",
            u.user
        )),
    }
}
