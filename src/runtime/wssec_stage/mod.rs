//! A route's WS-Security stages, compiled from `[route.wssec.request]` and
//! `[route.wssec.response]`: how the body is buffered (ceiling, read timeout,
//! slots), and the work done on it — verification (`verify`) or adding a
//! Security header (`sign`). Free of HTTP: bytes in, bytes out.

mod sign;
mod verify;

pub use sign::SignStage;
pub use verify::{part, VerifyStage};

use super::material::Loader;
use crate::config::{WssecMode, WssecStageConfig, XmlLimitsConfig};
use crate::tls::identity::PeerIdentity;
use crate::wssec::replay::{ReplayCache, ReplayKey};
use crate::wssec::verify::{SignerInfo, WssecError};
use crate::wssec::xml::Limits;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Which way a message travels through the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Request, Direction::Response];

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// What a stage does to the buffered message.
pub enum Work {
    Verify(VerifyStage),
    Sign(SignStage),
    /// Remove the Security header for this actor (none: the default ones).
    Strip {
        limits: Limits,
        actor: Option<String>,
        /// The envelope read may take this long.
        work_limit: Duration,
    },
}

/// The largest buffered message worked inline (`Stage::runs_inline`).
pub const INLINE_MAX: usize = 64 << 10;

pub struct Stage {
    pub direction: Direction,
    /// The body is buffered up to this many bytes.
    pub max_body: u64,
    /// The whole body must arrive within this.
    pub read_timeout: Duration,
    /// Requests verified or signed only: above `max_body`, up to this, the message
    /// streams through the spool (0: never).
    pub max_streamed: u64,
    /// A streamed message must arrive within this.
    pub stream_read_timeout: Duration,
    /// Bounds the memory and CPU that buffering and the work can take. A
    /// permit is held until the work itself has ended.
    pub slots: Arc<tokio::sync::Semaphore>,
    pub work: Work,
}

/// The message as it goes on, and what the stage learnt about it.
pub struct Processed {
    pub output: Vec<u8>,
    pub signer: Option<SignerInfo>,
    /// Replay-cache entries the message recorded (verification only).
    pub replay_keys: Recorded,
}

/// Replay-cache entries a verified message recorded, forgotten again when
/// this is dropped before [`Recorded::sent`]: a message whose client left
/// while it was verified, or that never reached the upstream, is no replay
/// when it is sent again. Dropped with a work result nobody awaits any more,
/// it forgets too.
pub struct Recorded {
    replay: Option<Arc<crate::store::Replay>>,
    keys: Vec<ReplayKey>,
}

impl Recorded {
    pub fn none() -> Recorded {
        Recorded {
            replay: None,
            keys: Vec::new(),
        }
    }

    pub fn new(replay: &Arc<crate::store::Replay>, keys: Vec<ReplayKey>) -> Recorded {
        Recorded {
            replay: Some(replay.clone()),
            keys,
        }
    }

    /// The message is on its way: keep the entries.
    pub fn sent(&mut self) {
        self.keys.clear();
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(replay) = &self.replay {
            for k in &self.keys {
                replay.forget(k);
            }
        }
    }
}

impl Stage {
    /// Compiles one stage; `Some(None)` for `mode = "none"`, `None` when a
    /// problem was recorded.
    pub fn compile(
        ld: &mut Loader<'_>,
        c: &WssecStageConfig,
        owner: &str,
        path: &str,
        direction: Direction,
        replay: &Arc<crate::store::Replay>,
    ) -> Option<Option<Stage>> {
        let before = ld.problems.len();
        misplaced(ld, c, path);
        let at = |k: &str| format!("{path}.{k}");
        let max_body = c.max_body.map_or(16 << 20, |s| s.0);
        let max_concurrent = c.max_concurrent.unwrap_or(16);
        let read_timeout = c.read_timeout.map_or(Duration::from_secs(30), |d| d.0);
        for (key, zero) in [
            ("max_body", max_body == 0),
            ("max_concurrent", max_concurrent == 0),
            ("read_timeout", read_timeout.is_zero()),
            ("work_limit", c.work_limit.is_some_and(|d| d.0.is_zero())),
        ] {
            if zero {
                ld.problem(
                    at(key),
                    "0 would refuse every message; use a value above zero",
                );
            }
        }
        let streams = matches!(c.mode, WssecMode::Verify | WssecMode::Sign)
            && direction == Direction::Request;
        let max_streamed = match c.max_streamed_body {
            Some(_) if !streams => {
                ld.problem(
                    at("max_streamed_body"),
                    "only a request is verified or signed as it streams; an answer, or a message stripped, is held whole (max_body)",
                );
                0
            }
            Some(s) if s.0 != 0 && s.0 <= max_body => {
                ld.problem(
                    at("max_streamed_body"),
                    format!("{} is not above max_body ({max_body}): set it above, or 0 to stream nothing", s.0),
                );
                0
            }
            Some(s) => s.0,
            // Opt-in: a route streams only what its operator sized a spool for.
            None => 0,
        };
        let stream_read_timeout = c
            .stream_read_timeout
            .map_or(Duration::from_secs(1800), |d| d.0);
        if stream_read_timeout.is_zero() {
            ld.problem(
                at("stream_read_timeout"),
                "0 would refuse every streamed message; use a value above zero",
            );
        }
        let limits = xml_limits(&c.xml, max_body);
        let work = match c.mode {
            WssecMode::None => return (ld.problems.len() == before).then_some(None),
            WssecMode::Verify => {
                VerifyStage::compile(ld, c, owner, path, direction, limits, replay)
                    .map(Work::Verify)
            }
            WssecMode::Sign => SignStage::compile(ld, c, owner, path, limits).map(Work::Sign),
            WssecMode::Strip => Some(Work::Strip {
                limits,
                actor: c.actor.clone(),
                work_limit: c.work_limit.map_or(Duration::from_secs(5), |d| d.0),
            }),
        };
        if ld.problems.len() > before {
            return None;
        }
        Some(Some(Stage {
            direction,
            max_body,
            read_timeout,
            max_streamed,
            stream_read_timeout,
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
            work: work?,
        }))
    }

    /// Whether a buffered message of `len` bytes is worked on the event loop
    /// that holds its connection rather than on a blocking thread. Each
    /// worker has a core: a blocking thread only competes for the same
    /// cores, and the hand-off costs two wake-ups per message. Up to
    /// `INLINE_MAX`, with a key that signs in well under a millisecond, an
    /// ordinary message takes about as long as the TLS handshake the same
    /// loop runs; a hostile one is held to the reader's limits and the
    /// work limit. A check against a shared replay store waits on the
    /// network, so it never runs inline, nor does a signature with a large
    /// RSA key.
    pub fn runs_inline(&self, len: usize) -> bool {
        len <= INLINE_MAX
            && match &self.work {
                Work::Verify(v) => !v.replay.is_shared(),
                Work::Sign(s) => s.signs_quickly(),
                Work::Strip { .. } => true,
            }
    }

    pub fn verifies(&self) -> bool {
        matches!(self.work, Work::Verify(_))
    }

    /// The replay cache entries of a verified message go to, if any.
    pub fn replay(&self) -> Option<&Arc<crate::store::Replay>> {
        match &self.work {
            Work::Verify(v) => Some(&v.replay),
            Work::Sign(_) | Work::Strip { .. } => None,
        }
    }

    /// Does the stage's work on one buffered message (blocking: run it off
    /// the async threads). `client` is the mutual-TLS identity of the caller.
    pub fn apply(
        &self,
        msg: &[u8],
        now: SystemTime,
        client: Option<&PeerIdentity>,
    ) -> Result<Processed, WssecError> {
        match &self.work {
            Work::Verify(v) => v.apply(msg, now, client),
            Work::Sign(s) => s.apply(msg, now),
            Work::Strip {
                limits,
                actor,
                work_limit,
            } => {
                let mut limits = limits.clone();
                limits.deadline = std::time::Instant::now().checked_add(*work_limit);
                Ok(Processed {
                    output: crate::wssec::verify::strip(msg, &limits, actor.as_deref())?,
                    signer: None,
                    replay_keys: Recorded::none(),
                })
            }
        }
    }
}

/// The hardened reader's limits for a stage: the defaults, the body ceiling,
/// and the route's overrides.
pub(crate) fn xml_limits(x: &XmlLimitsConfig, max_body: u64) -> Limits {
    let mut l = Limits::default();
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    l.max_bytes = size(max_body);
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
        l.max_text_len = size(v.0);
    }
    if let Some(v) = x.max_attribute_length {
        l.max_attr_value_len = size(v.0);
    }
    l
}

/// A key of one mode set on a stage of another would silently do nothing:
/// each is reported with the mode it belongs to.
fn misplaced(ld: &mut Loader<'_>, c: &WssecStageConfig, path: &str) {
    let verify_keys = [
        ("trust", c.trust.is_some()),
        ("intermediates", !c.intermediates.is_empty()),
        ("signers", c.signers.is_some()),
        ("crls", !c.crls.is_empty()),
        ("crl_stale_grace", c.crl_stale_grace.is_some()),
        ("require_signed", c.require_signed.is_some()),
        ("signable_headers", !c.signable_headers.is_empty()),
        ("require_timestamp", c.require_timestamp.is_some()),
        ("max_clock_skew", c.max_clock_skew.is_some()),
        ("max_ttl", c.max_ttl.is_some()),
        ("allow_sha1", c.allow_sha1.is_some()),
        ("allow_legacy_keys", c.allow_legacy_keys.is_some()),
        ("actor", c.actor.is_some()),
        (
            "forward_security_header",
            c.forward_security_header.is_some(),
        ),
        ("replay_cache_entries", c.replay_cache_entries.is_some()),
        ("bind_identity", c.bind_identity.is_some()),
        ("identity_map", !c.identity_map.is_empty()),
        ("usernames", !c.usernames.is_empty()),
        ("require_username_token", c.require_username_token.is_some()),
    ];
    let sign_keys = [
        ("key", c.key.is_some()),
        ("cert", c.cert.is_some()),
        ("key_reference", c.key_reference.is_some()),
        ("ttl", c.ttl.is_some()),
        ("timestamp", c.timestamp.is_some()),
        ("sign_headers", !c.sign_headers.is_empty()),
        ("replace_security", c.replace_security.is_some()),
        ("username_token", c.username_token.is_some()),
    ];
    let shared = [
        ("max_body", c.max_body.is_some()),
        ("max_concurrent", c.max_concurrent.is_some()),
        ("read_timeout", c.read_timeout.is_some()),
        ("work_limit", c.work_limit.is_some()),
        ("max_streamed_body", c.max_streamed_body.is_some()),
        ("stream_read_timeout", c.stream_read_timeout.is_some()),
    ];
    let mut report = |keys: &[(&str, bool)], belongs: &str| {
        for (k, set) in keys {
            if *set {
                ld.problem(
                    format!("{path}.{k}"),
                    format!(
                        "{k} is a setting of mode = \"{belongs}\", and this stage is mode = \"{}\"; remove it or change the mode",
                        c.mode.as_str()
                    ),
                );
            }
        }
    };
    match c.mode {
        WssecMode::Verify => report(&sign_keys, "sign"),
        WssecMode::Sign => report(&verify_keys, "verify"),
        WssecMode::Strip => {
            report(&sign_keys, "sign");
            let verify_only: Vec<(&str, bool)> = verify_keys
                .into_iter()
                .filter(|(k, _)| *k != "actor")
                .collect();
            report(&verify_only, "verify");
        }
        WssecMode::None => {
            report(&sign_keys, "sign");
            report(&verify_keys, "verify");
            for (k, set) in shared {
                if set {
                    ld.problem(
                        format!("{path}.{k}"),
                        format!("{k} does nothing with mode = \"none\"; remove it"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wssec::replay::replay_key;
    use std::time::{Duration, SystemTime};

    #[test]
    fn recorded_entries_are_forgotten_unless_the_message_was_sent() {
        let replay = Arc::new(crate::store::Replay::new(100));
        let now = SystemTime::now();
        let until = now + Duration::from_secs(60);
        let (a, b) = (replay_key("t", &[b"a"]), replay_key("t", &[b"b"]));
        replay.check_and_insert(a, until, now).unwrap();
        replay.check_and_insert(b, until, now).unwrap();
        // A result dropped unawaited (its client left): a is no replay.
        drop(Recorded::new(&replay, vec![a]));
        assert!(replay.check_and_insert(a, until, now).is_ok());
        // Sent on: b stays seen.
        let mut sent = Recorded::new(&replay, vec![b]);
        sent.sent();
        drop(sent);
        assert!(replay.check_and_insert(b, until, now).is_err());
    }
}
