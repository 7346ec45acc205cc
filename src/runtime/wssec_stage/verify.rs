//! Verification: the policy, the signer trust store (anchors, chained and
//! pinned signers, CRLs), the replay cache, and the identity binding.

use super::Direction;
use crate::config::{BindIdentity, SignerConfig, SignersConfig, WssecStageConfig};
use crate::dn::Name;
use crate::fingerprint::Fingerprint;
use crate::runtime::material::{Held, Loader};
use crate::tls::certs::Role;
use crate::tls::identity::PeerIdentity;
use crate::wssec::envelope::QName;
use crate::wssec::tokens::{MapPasswordStore, Secret, TrustStore};
use crate::wssec::verify::{self, Part, Policy, SignerInfo, WssecError};
use crate::wssec::xml::Limits;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct VerifyStage {
    pub policy: Policy,
    /// The gateway's one replay cache, shared by every verifying stage.
    pub replay: Arc<crate::store::Replay>,
    bind: BindIdentity,
    /// Client subject -> signer subject.
    identity_map: BTreeMap<Name, Name>,
}

impl VerifyStage {
    /// Compiles a verifying stage; `None` when a problem was recorded.
    pub fn compile(
        ld: &mut Loader<'_>,
        c: &WssecStageConfig,
        owner: &str,
        path: &str,
        direction: Direction,
        limits: Limits,
        replay: &Arc<crate::store::Replay>,
    ) -> Option<VerifyStage> {
        let before = ld.problems.len();
        let at = |k: &str| format!("{path}.{k}");
        let require_timestamp = c.require_timestamp.unwrap_or(true);
        // Without a Timestamp there is none to sign: the default follows.
        let require_signed = c.require_signed.clone().unwrap_or_else(|| {
            let mut d = vec!["Body".to_owned()];
            if require_timestamp {
                d.push("Timestamp".to_owned());
            }
            d
        });
        check_settings(ld, c, path, direction, &require_signed, require_timestamp);
        let mut trust = TrustStore::new();
        trust.allow_legacy_keys = c.allow_legacy_keys.unwrap_or(false);
        let pins = pinned_signers(ld, c, owner, path, &mut trust);
        // Pins that failed to load have their own problem already.
        let pins_named = matches!(&c.signers, Some(SignersConfig::List(l))
            if l.iter().any(|s| s.pinned || s.fingerprint_sha256.is_some()));
        let chained_named = match &c.signers {
            Some(SignersConfig::File(_)) => true,
            Some(SignersConfig::List(l)) => l.iter().any(|s| s.cert.is_some() && !s.pinned),
            None => false,
        };
        if c.trust.is_none() && chained_named {
            ld.problem(
                at("signers"),
                "a signer that is not pinned must chain to trust, and there is none; set trust = \"signer-ca.crt\" or pin it: { cert = \"signer.crt\", pinned = true }",
            );
        }
        if c.trust.is_none() && !c.crls.is_empty() {
            ld.problem(
                at("crls"),
                "CRLs are checked for signers that chain to trust, and there is none; a pinned signer is revoked by removing its pin",
            );
        }
        // The CAs a signer CRL may come from.
        let mut issuers = Vec::new();
        match &c.trust {
            None if pins == 0 && !pins_named => ld.problem(
                at("trust"),
                "mode = \"verify\" needs trust = \"path/to/signer-ca.crt\" (the CAs that issue signer certificates), or pinned signers: signers = [{ cert = \"signer.crt\", pinned = true }]",
            ),
            None => {}
            Some(p) => {
                for der in ld
                    .certificates(Held(Role::SignerTrust, owner), &at("trust"), p)
                    .unwrap_or_default()
                {
                    if let Err(e) = trust.add_anchor_der(&der) {
                        ld.problem(at("trust"), format!("not a usable trust anchor: {e}"));
                    }
                    issuers.push(der);
                }
            }
        }
        for (i, p) in c.intermediates.iter().enumerate() {
            let key = at(&format!("intermediates[{i}]"));
            for der in ld
                .certificates(Held(Role::SignerTrust, owner), &key, p)
                .unwrap_or_default()
            {
                trust.add_intermediate_der(&der);
                issuers.push(der);
            }
        }
        let grace = c.crl_stale_grace.map_or(Duration::ZERO, |d| d.0);
        let crls = ld.crls(
            Held(Role::SignerTrust, owner),
            &at("crls"),
            &c.crls,
            &issuers,
            grace,
        );
        if let Some(crls) = crls {
            for crl in &crls.ders {
                if let Err(e) = trust.add_crl_der(crl) {
                    ld.problem(at("crls"), format!("unusable CRL: {e}"));
                }
            }
            trust.crl_freshness = crls.freshness;
        }
        let mut policy = Policy::new(trust);
        let mut parts = Vec::new();
        for (i, s) in require_signed.iter().enumerate() {
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
        policy.require_timestamp = require_timestamp;
        if let Some(d) = c.max_clock_skew {
            policy.max_clock_skew = d.0;
        }
        if let Some(d) = c.max_ttl {
            policy.max_ttl = d.0;
        }
        policy.allow_sha1 = c.allow_sha1.unwrap_or(false);
        policy.forward_security_header = c.forward_security_header.unwrap_or(false);
        policy.require_username_token = c.require_username_token.unwrap_or(false);
        policy.max_work = Some(c.work_limit.map_or(Duration::from_secs(5), |d| d.0));
        policy.limits = limits;
        if let Some(a) = &c.actor {
            if a.trim().is_empty() || a.trim() != a {
                ld.problem(
                    at("actor"),
                    "the actor/role URI must not be empty or padded",
                );
            }
            policy.actor = Some(a.clone());
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
        } else if policy.require_username_token {
            ld.problem(
                at("usernames"),
                "require_username_token needs at least one user: usernames = [{ user = \"etl\", password_env = \"ETL_PASSWORD\" }]",
            );
        }
        let bind = c.bind_identity.unwrap_or_default();
        if bind == BindIdentity::Map && c.identity_map.is_empty() {
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
        Some(VerifyStage {
            policy,
            replay: replay.clone(),
            bind,
            identity_map,
        })
    }

    /// Verifies one message, the signer checked against the client.
    pub fn apply(
        &self,
        msg: &[u8],
        now: SystemTime,
        client: Option<&PeerIdentity>,
    ) -> Result<super::Processed, WssecError> {
        let accept = |signer: Option<&SignerInfo>| self.check_binding(client, signer);
        let v = verify::verify_accepting(msg, &self.policy, now, &*self.replay, &accept)?;
        Ok(super::Processed {
            output: v.output,
            signer: v.signer,
            replay_keys: super::Recorded::new(&self.replay, v.replay_keys),
        })
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

/// Settings that would leave a verifying stage verifying nothing, or accept
/// replays for ever, are errors rather than surprises.
fn check_settings(
    ld: &mut Loader<'_>,
    c: &WssecStageConfig,
    path: &str,
    direction: Direction,
    require_signed: &[String],
    require_timestamp: bool,
) {
    let at = |k: &str| format!("{path}.{k}");
    let has = |p: &str| require_signed.iter().any(|s| s == p);
    if !has("Body") {
        ld.problem(
            at("require_signed"),
            "a verifying stage must require the Body to be signed; add \"Body\"",
        );
    }
    if require_timestamp && !has("Timestamp") {
        ld.problem(
            at("require_signed"),
            "an unsigned Timestamp can be rewritten to replay a message; add \"Timestamp\" (or set require_timestamp = false and accept replays after max_ttl)",
        );
    }
    if !require_timestamp && has("Timestamp") {
        ld.problem(
            at("require_timestamp"),
            "\"Timestamp\" is in require_signed, so a Timestamp is required anyway; remove one of the two",
        );
    }
    let bind = c.bind_identity.unwrap_or_default();
    if !c.identity_map.is_empty() && bind != BindIdentity::Map {
        ld.problem(
            at("identity_map"),
            "identity_map is only used with bind_identity = \"map\"; set it or remove the map",
        );
    }
    if direction == Direction::Response && bind != BindIdentity::Off {
        ld.problem(
            at("bind_identity"),
            "bind_identity ties a request's signer to the client's certificate; a response has no client certificate, so remove it here",
        );
    }
    for (key, zero) in [
        ("max_ttl", c.max_ttl.is_some_and(|d| d.0.is_zero())),
        ("replay_cache_entries", c.replay_cache_entries == Some(0)),
    ] {
        if zero {
            ld.problem(
                at(key),
                "0 would refuse every message; use a value above zero",
            );
        }
    }
}

/// Pinned signers from `signers` (certificates or fingerprints) go into
/// `trust` as themselves; chained ones as signers to look up. Returns how
/// many were pinned.
fn pinned_signers(
    ld: &mut Loader<'_>,
    c: &WssecStageConfig,
    owner: &str,
    path: &str,
    trust: &mut TrustStore,
) -> usize {
    let at = |k: &str| format!("{path}.{k}");
    let mut pinned = 0;
    match &c.signers {
        None => {}
        Some(SignersConfig::File(p)) => {
            add_signers(ld, trust, owner, &at("signers"), p, false);
        }
        Some(SignersConfig::List(list)) => {
            for (i, s) in list.iter().enumerate() {
                let key = at(&format!("signers[{i}]"));
                match s {
                    SignerConfig {
                        cert: Some(p),
                        pinned: pin,
                        fingerprint_sha256: None,
                    } => pinned += add_signers(ld, trust, owner, &format!("{key}.cert"), p, *pin),
                    SignerConfig {
                        cert: None,
                        fingerprint_sha256: Some(fp),
                        ..
                    } => match Fingerprint::parse(fp) {
                        Ok(f) => {
                            trust.pin_fingerprint(f);
                            pinned += 1;
                        }
                        Err(e) => ld.problem(format!("{key}.fingerprint_sha256"), e.to_string()),
                    },
                    _ => ld.problem(
                        key.clone(),
                        "a signer is { cert = \"signer.crt\" } (pinned = true to trust it as itself) or { fingerprint_sha256 = \"AB:CD:...\" }, one of the two",
                    ),
                }
                if s.fingerprint_sha256.is_some() && s.pinned {
                    ld.problem(
                        format!("{key}.pinned"),
                        "a fingerprint is always pinned; remove pinned = true",
                    );
                }
            }
        }
    }
    pinned
}

/// The certificates of one file as signers (pinned: trusted as themselves);
/// how many were pinned.
fn add_signers(
    ld: &mut Loader<'_>,
    trust: &mut TrustStore,
    owner: &str,
    key: &str,
    file: &std::path::Path,
    pin: bool,
) -> usize {
    let mut pinned = 0;
    let role = if pin { Role::Pinned } else { Role::SignerTrust };
    for der in ld
        .certificates(Held(role, owner), key, file)
        .unwrap_or_default()
    {
        let added = if pin {
            trust.add_pinned_der(&der)
        } else {
            trust.add_signer_der(&der)
        };
        match added {
            Ok(()) if pin => pinned += 1,
            Ok(()) => {}
            Err(e) => ld.problem(key, format!("unusable signer certificate: {e}")),
        }
    }
    pinned
}

/// `Body`, `Timestamp`, or a header block as `{namespace}LocalName`.
pub fn part(s: &str) -> Result<Part, String> {
    match s {
        "Body" => Ok(Part::Body),
        "Timestamp" => Ok(Part::Timestamp),
        other => qname(other).map(Part::Header),
    }
}

pub fn qname(s: &str) -> Result<QName, String> {
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
