//! The verification entry point: bytes and a policy in, the bytes to forward
//! (or a typed refusal) out. Checks positions, not just Ids (DESIGN.md §6).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::c14n::Canonicalizer;
use super::dsig::{self, DigestTarget, DigestWriter, ParsedSignature, Reference};
use super::envelope::{self, QName, Scanned, Security, SoapVersion, StreamScan};
use super::pass::{BodyDigest, BodyOpen, BodyPass};
use super::replay::{replay_key, NoReplayCache, ReplayCache, ReplayError, ReplayKey};
use super::tokens::{self, CertInfo, KeySource, PasswordStore, Timestamp, TrustStore, Trusted};
use super::xml::{Limits, Mark, Reader, Span, StartElement};
use crate::dn::Name;
use crate::fingerprint::Fingerprint;

pub use super::error::WssecError;

pub use super::reason::{
    FAILED_AUTHENTICATION, FAILED_CHECK, INVALID_SECURITY, INVALID_TOKEN, MESSAGE_EXPIRED,
    TOKEN_UNAVAILABLE, UNSUPPORTED_ALGORITHM,
};

/// A part of the message that must be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Body,
    Timestamp,
    /// A direct child of the SOAP Header, by qualified name.
    Header(QName),
}

/// What one signed Reference covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    Body,
    Timestamp,
    BinarySecurityToken,
    Header(QName),
}

/// Everything a route decides about WS-Security verification.
#[derive(Clone)]
pub struct Policy {
    pub limits: Limits,
    pub trust: TrustStore,
    /// Default: Body and Timestamp.
    pub require_signed: Vec<Part>,
    /// Header blocks that may be referenced without being required.
    pub signable_headers: Vec<QName>,
    pub require_timestamp: bool,
    pub max_clock_skew: Duration,
    /// Longest Timestamp lifetime (and UsernameToken age) accepted.
    pub max_ttl: Duration,
    pub allow_sha1: bool,
    /// False: the Security header is spliced out of the forwarded bytes.
    pub forward_security_header: bool,
    pub max_references: usize,
    /// Secrets for UsernameToken; a token is checked only when this is set.
    pub passwords: Option<Arc<dyn PasswordStore>>,
    pub require_username_token: bool,
    /// Every pass over one message together stops with `wssec_work_limit`
    /// after this long (`None`: no bound).
    pub max_work: Option<Duration>,
    /// The actor (SOAP 1.1) or role (SOAP 1.2) URI this receiver is, beside
    /// the defaults; Security headers for others are left alone.
    pub actor: Option<String>,
}

impl Policy {
    pub fn new(trust: TrustStore) -> Self {
        Policy {
            limits: Limits::default(),
            trust,
            require_signed: vec![Part::Body, Part::Timestamp],
            signable_headers: Vec::new(),
            require_timestamp: true,
            max_clock_skew: Duration::from_secs(60),
            max_ttl: Duration::from_secs(300),
            allow_sha1: false,
            forward_security_header: false,
            max_references: 30,
            passwords: None,
            require_username_token: false,
            max_work: Some(Duration::from_secs(5)),
            actor: None,
        }
    }

    /// The limits one verification reads under: the route's, and a deadline
    /// `max_work` from now.
    pub(super) fn reading_limits(&self) -> Limits {
        let mut limits = self.limits.clone();
        limits.deadline = self
            .max_work
            .and_then(|d| std::time::Instant::now().checked_add(d));
        limits
    }

    fn header_allowed(&self, q: &QName) -> bool {
        self.signable_headers.contains(q)
            || self
                .require_signed
                .iter()
                .any(|p| matches!(p, Part::Header(h) if h == q))
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("require_signed", &self.require_signed)
            .field("signable_headers", &self.signable_headers)
            .field("require_timestamp", &self.require_timestamp)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("max_ttl", &self.max_ttl)
            .field("allow_sha1", &self.allow_sha1)
            .field("forward_security_header", &self.forward_security_header)
            .field("passwords", &self.passwords.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// The signer's certificate, as logs and identity rules need it.
#[derive(Debug, Clone)]
pub struct SignerInfo {
    pub subject: Name,
    pub issuer: Name,
    /// Upper-case hex.
    pub serial: String,
    pub fingerprint: Fingerprint,
    /// SHA-256 of the signer's SubjectPublicKeyInfo (see `CertInfo`).
    pub spki_sha256: [u8; 32],
    pub der: Vec<u8>,
    pub key_source: KeySource,
}

/// A message that passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub soap: SoapVersion,
    pub signer: Option<SignerInfo>,
    pub signed_parts: Vec<SignedPart>,
    pub timestamp: Option<Timestamp>,
    pub username: Option<String>,
    /// What this message recorded in the replay cache (to forget if it is never delivered).
    pub replay_keys: Vec<ReplayKey>,
    /// The bytes to forward: the input, minus the Security header unless
    /// the policy forwards it.
    pub output: Vec<u8>,
}

/// One Reference as explain mode reports it.
#[derive(Debug, Clone)]
pub struct ReferenceReport {
    pub uri: String,
    /// Where the Id sits, when it sits at an allowed place.
    pub part: Option<SignedPart>,
    pub digest_algorithm: &'static str,
    /// Base64, as DigestValue would carry it.
    pub computed: Option<String>,
    pub claimed: String,
    pub matches: bool,
    /// The canonical bytes, on a mismatch.
    pub canonical: Option<Vec<u8>>,
}

/// What `explain` found: per-Reference digests and the verification outcome.
#[derive(Debug)]
pub struct Explanation {
    pub signed_info_canonical: Option<Vec<u8>>,
    pub references: Vec<ReferenceReport>,
    pub outcome: Result<Verified, WssecError>,
    /// The message was refused before its References were digested; these
    /// digests were computed afterwards, outside verification (no signer,
    /// trust or Timestamp checks), to show what the References cover. They
    /// are no verdict.
    pub diagnostic: bool,
}

/// Verifies a SOAP message under `policy` at time `now`; on success returns
/// the bytes to forward. A verified message is recorded in `replay`.
pub fn verify(
    msg: &[u8],
    policy: &Policy,
    now: SystemTime,
    replay: &dyn ReplayCache,
) -> Result<Verified, WssecError> {
    run(msg, policy, now, replay, &|_| Ok(()), None)
}

/// Like `verify`, with `accept` judging the verified signer (for instance
/// against the TLS client) before the message is recorded as seen: a message
/// refused by `accept` leaves nothing in the replay cache.
pub fn verify_accepting(
    msg: &[u8],
    policy: &Policy,
    now: SystemTime,
    replay: &dyn ReplayCache,
    accept: &dyn Fn(Option<&SignerInfo>) -> Result<(), WssecError>,
) -> Result<Verified, WssecError> {
    run(msg, policy, now, replay, accept, None)
}

/// Like `verify`, without touching any replay cache, and reporting each
/// Reference's computed and claimed digest (with canonical bytes on mismatch).
pub fn explain(msg: &[u8], policy: &Policy, now: SystemTime) -> Explanation {
    let mut ex = Explanation {
        signed_info_canonical: None,
        references: Vec::new(),
        outcome: Err(WssecError::Internal("not run")),
        diagnostic: false,
    };
    let outcome = run(msg, policy, now, &NoReplayCache, &|_| Ok(()), Some(&mut ex));
    if outcome.is_err() && ex.references.is_empty() {
        // Best effort: a message too broken to find its References shows none.
        // Whatever it found is a diagnosis, also when it stopped part way.
        let _ = diagnose(msg, policy, &mut ex);
        ex.diagnostic = !ex.references.is_empty();
    }
    ex.outcome = outcome;
    ex
}

/// For a message refused before its References (untrusted signer, stale
/// Timestamp, an Id that is not there): digests every Reference that can
/// be found, with no check of who signed or when.
fn diagnose(msg: &[u8], policy: &Policy, ex: &mut Explanation) -> Result<(), WssecError> {
    let mut reader = Reader::new(msg, &policy.reading_limits())?;
    let scan = envelope::scan_with(&mut reader, policy.actor.as_deref())?;
    let sec = scan.security.as_ref().ok_or(WssecError::NoSecurityHeader)?;
    let node = sec.signature.as_ref().ok_or(WssecError::Unsigned)?;
    // SHA-1 too: a diagnosis reads what is there, whatever the policy allows.
    let parsed = dsig::parse_signature(node, true, policy.max_references)?;
    let si = &parsed.signed_info;
    let mut targets = Vec::new();
    let mut found = Vec::new();
    for r in &si.references {
        let start = scan.ids.get(&r.id).copied();
        if let Some(start) = start {
            targets.push(DigestTarget::of(r, start, parsed.span, true));
        }
        found.push(start);
    }
    let mut digests = dsig::digest_targets_in(&mut reader, &scan.marks, &targets)?.into_iter();
    for (r, start) in si.references.iter().zip(found) {
        let Some(start) = start else {
            ex.references.push(ReferenceReport {
                uri: r.uri.clone(),
                part: None,
                digest_algorithm: r.digest.uri(),
                computed: None,
                claimed: b64(&r.digest_value),
                matches: false,
                canonical: None,
            });
            continue;
        };
        let d = digests
            .next()
            .ok_or(WssecError::Internal("digest missing"))?;
        let ok = dsig::digests_equal(&d.value, &r.digest_value);
        ex.references
            .push(report(r, &d, classify(start, &scan, sec, policy), ok));
    }
    ex.signed_info_canonical = Some(dsig::canonical_signed_info_in(
        &mut reader,
        &scan.marks,
        si.span.start,
        &si.c14n,
    )?);
    Ok(())
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn run(
    msg: &[u8],
    policy: &Policy,
    now: SystemTime,
    replay: &dyn ReplayCache,
    accept: &dyn Fn(Option<&SignerInfo>) -> Result<(), WssecError>,
    explain: Option<&mut Explanation>,
) -> Result<Verified, WssecError> {
    let mut reader = Reader::new(msg, &policy.reading_limits())?;
    let actor = policy.actor.as_deref();
    if explain.is_some() {
        // An explanation shows each Reference's canonical bytes: every digest
        // is taken in the judgement's own pass, which keeps them.
        let scan = envelope::scan_with(&mut reader, actor)?;
        let known = Known::default();
        return judge(
            msg, &scan, policy, now, replay, accept, explain, known, reader,
        );
    }
    // One read for the scan and the Body's digest: the judgement reads the
    // message again only as far as its other References (the Timestamp).
    let mut pass = BodyPass::new(VerifyOpen::whole(policy, now), actor);
    let head = |end| msg.get(..end).unwrap_or_default();
    reader.each(|ev| pass.event(ev, head).map(|()| true))?;
    let mut ended = pass.end()?;
    let body = ended.open.body_digest(ended.digest.take());
    let known = ended.open.known(body.as_ref());
    judge(
        msg,
        &ended.scan,
        policy,
        now,
        replay,
        accept,
        None,
        known,
        reader,
    )
}

/// The Body's digest computed as it streamed past, for the one Reference
/// that named it (see `stream`).
pub(super) struct StreamedDigest {
    pub target: DigestTarget,
    /// The digest, or why it could not be taken.
    pub value: Result<Vec<u8>, WssecError>,
}

/// What the judgement is given instead of working it out again.
#[derive(Clone, Copy, Default)]
pub(super) struct Known<'a> {
    /// The Body's digest, computed as it streamed past.
    pub body: Option<&'a StreamedDigest>,
    /// The SignatureValue checked already: by the signer of this very
    /// message, in its check of its own output, or by the streaming
    /// verifier at the Body's start. The verifier's canonical SignedInfo and
    /// the SignatureValue it reads must equal these, and the public-key
    /// operation is not made again.
    pub signed: Option<Signed<'a>>,
}

/// A canonical SignedInfo, the signature value made over it, whether that
/// value verified under the signer's key, and who says so.
#[derive(Clone, Copy)]
pub(super) struct Signed<'a> {
    pub signed_info: &'a [u8],
    pub value: &'a [u8],
    pub valid: bool,
    pub by: CheckedBy<'a>,
}

/// Who checked a SignatureValue before the judgement.
#[derive(Clone, Copy)]
pub(super) enum CheckedBy<'a> {
    /// The signer, of its own output: its word is checked, the judgement
    /// canonicalizing the SignedInfo again and holding it to `signed_info`.
    Signer,
    /// The verifier at the Body's start, over the very bytes it judges and
    /// with the key of this signer: taken as it is.
    Verifier(&'a (Arc<CertInfo>, KeySource)),
}

/// Everything after the scan. `msg` holds at least the message up to the
/// Body's content; with `known.body`, only that (the Body's digest came as
/// it passed), and the bytes to forward are that part's. `reader` reads
/// `msg` under the verification's limits (the scan's own, when it has one).
// The pieces of one verification; bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) fn judge(
    msg: &[u8],
    scan: &Scanned,
    policy: &Policy,
    now: SystemTime,
    replay: &dyn ReplayCache,
    accept: &dyn Fn(Option<&SignerInfo>) -> Result<(), WssecError>,
    explain: Option<&mut Explanation>,
    known: Known<'_>,
    reader: Reader<'_>,
) -> Result<Verified, WssecError> {
    check_header_blocks(scan, policy)?;
    let Some(sec) = &scan.security else {
        let needed = !policy.require_signed.is_empty()
            || policy.require_timestamp
            || policy.require_username_token;
        if needed {
            return Err(WssecError::NoSecurityHeader);
        }
        return Ok(verified_without_header(scan, msg));
    };
    let timestamp = match &sec.timestamp {
        Some(ts) => Some(tokens::check_timestamp(
            ts,
            now,
            policy.max_clock_skew,
            policy.max_ttl,
        )?),
        None if policy.require_timestamp => return Err(WssecError::NoTimestamp),
        None => None,
    };
    let signed = match &sec.signature {
        Some(node) => {
            let parsed = dsig::parse_signature(node, policy.allow_sha1, policy.max_references)?;
            let mut at = Passes {
                known,
                reader,
                marks: &scan.marks,
            };
            Some(check_signature(
                &mut at, scan, sec, &parsed, policy, now, explain,
            )?)
        }
        None if !policy.require_signed.is_empty() => return Err(WssecError::Unsigned),
        None => None,
    };
    let parts: Vec<SignedPart> = signed.as_ref().map(|s| s.parts.clone()).unwrap_or_default();
    check_required(policy, &parts, timestamp.is_some())?;
    let username = check_username(sec, policy, now)?;
    // The caller's own judgement of the signer comes before anything is remembered.
    accept(signed.as_ref().map(|s| &s.signer))?;
    let replay_keys = remember(
        replay,
        policy,
        now,
        signed.as_ref(),
        timestamp.as_ref(),
        &username,
    )?;
    // Counted once, for a message accepted, however often trust was asked.
    if signed.as_ref().is_some_and(|s| s.trusted.crl_tolerated) {
        policy.trust.crl_freshness.count_tolerated();
    }
    Ok(Verified {
        replay_keys,
        soap: scan.soap,
        signer: signed.map(|s| s.signer),
        signed_parts: parts,
        timestamp,
        username: username.map(|u| u.username),
        output: output(msg, sec.span, policy.forward_security_header),
    })
}

/// The message without the Security header for this receiver (`actor`), not
/// judged: a route's `mode = "strip"`. The envelope is read as strictly as
/// for verification, so what is forwarded is one well-formed envelope.
pub fn strip(msg: &[u8], limits: &Limits, actor: Option<&str>) -> Result<Vec<u8>, WssecError> {
    let scan = envelope::scan_for(msg, limits, actor)?;
    Ok(match &scan.security {
        Some(sec) => output(msg, sec.span, false),
        None => msg.to_vec(),
    })
}

fn verified_without_header(scan: &Scanned, msg: &[u8]) -> Verified {
    Verified {
        replay_keys: Vec::new(),
        soap: scan.soap,
        signer: None,
        signed_parts: Vec::new(),
        timestamp: None,
        username: None,
        output: msg.to_vec(),
    }
}

/// A header block that policy lets be signed must appear once: with two, the
/// receiver might process the one that was not signed.
fn check_header_blocks(scan: &Scanned, policy: &Policy) -> Result<(), WssecError> {
    for (i, c) in scan.header_children.iter().enumerate() {
        if policy.header_allowed(&c.name)
            && scan.header_children[..i].iter().any(|o| o.name == c.name)
        {
            return Err(WssecError::DuplicateHeaderBlock(c.name.to_string()));
        }
    }
    Ok(())
}

fn output(msg: &[u8], security: Span, forward: bool) -> Vec<u8> {
    if forward {
        return msg.to_vec();
    }
    let mut out = Vec::with_capacity(msg.len());
    out.extend_from_slice(msg.get(..security.start).unwrap_or_default());
    out.extend_from_slice(msg.get(security.end..).unwrap_or_default());
    out
}

/// What the later passes read: a reader of the message (or of its part
/// before the Body's content, when the Body streamed past), rewound for
/// each pass so the message is validated as UTF-8 once and the reader's
/// buffers grow once, and what is known already.
struct Passes<'m> {
    known: Known<'m>,
    reader: Reader<'m>,
    marks: &'m [Mark],
}

impl Passes<'_> {
    /// Each target's digest, in order: the streamed Body's as computed while
    /// it passed (for exactly the Reference it was computed for), the others
    /// in one pass over `msg`.
    fn digests(&mut self, targets: &[DigestTarget]) -> Result<Vec<dsig::DigestOutput>, WssecError> {
        let Some(s) = self.known.body else {
            return dsig::digest_targets_in(&mut self.reader, self.marks, targets);
        };
        let is_body = |t: &DigestTarget| t.start == s.target.start;
        let rest: Vec<DigestTarget> = targets.iter().filter(|t| !is_body(t)).cloned().collect();
        let mut rest = dsig::digest_targets_in(&mut self.reader, self.marks, &rest)?.into_iter();
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            if !is_body(t) {
                out.push(rest.next().ok_or(WssecError::Internal("digest missing"))?);
                continue;
            }
            let same = t.id == s.target.id
                && t.method == s.target.method
                && t.digest == s.target.digest
                && t.skip == s.target.skip;
            if !same {
                return Err(WssecError::Internal(
                    "the Body was digested for another Reference",
                ));
            }
            out.push(dsig::DigestOutput {
                value: s.value.clone()?,
                canonical: None,
            });
        }
        Ok(out)
    }
}

struct SignatureOutcome {
    signer: SignerInfo,
    trusted: Trusted,
    parts: Vec<SignedPart>,
    /// SHA-256 of the canonical SignedInfo. Replays are recognised by it, not
    /// by SignatureValue: an ECDSA signature has other valid encodings (and can
    /// be made afresh), but the signed content cannot change.
    signed_info_digest: Vec<u8>,
}

/// Where a referenced element sits, if it sits at an allowed place.
fn classify(start: usize, scan: &Scanned, sec: &Security, policy: &Policy) -> Option<SignedPart> {
    if start == scan.body.start {
        return Some(SignedPart::Body);
    }
    if sec
        .timestamp
        .as_ref()
        .is_some_and(|t| t.span.start == start)
    {
        return Some(SignedPart::Timestamp);
    }
    if sec
        .tokens
        .iter()
        .any(|t| t.is(envelope::WSSE_NS, "BinarySecurityToken") && t.span.start == start)
    {
        return Some(SignedPart::BinarySecurityToken);
    }
    scan.header_children
        .iter()
        .find(|c| c.span.start == start && policy.header_allowed(&c.name))
        .map(|c| SignedPart::Header(c.name.clone()))
}

/// Describes a refused position for the error (and the log).
fn describe(start: usize, scan: &Scanned, sec: &Security) -> &'static str {
    let within = |s: Span| start > s.start && start < s.end;
    if within(sec.span) {
        "inside the Security header"
    } else if within(scan.body) {
        "inside the Body"
    } else if scan.header.is_some_and(within) {
        "inside the Header"
    } else {
        "elsewhere"
    }
}

// The pieces of one verification; bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
fn check_signature(
    at: &mut Passes<'_>,
    scan: &Scanned,
    sec: &Security,
    parsed: &ParsedSignature<'_>,
    policy: &Policy,
    now: SystemTime,
    mut explain: Option<&mut Explanation>,
) -> Result<SignatureOutcome, WssecError> {
    let si = &parsed.signed_info;
    let (cert, source) = match at.known.signed.map(|s| s.by) {
        Some(CheckedBy::Verifier(found)) => found.clone(),
        _ => tokens::resolve_signer(parsed.key_info, sec, &policy.trust)?,
    };
    dsig::check_key_type(si.algorithm, &cert.key)?;
    let trusted = policy.trust.check(&cert, now)?;

    let keep = explain.is_some();
    let mut targets = Vec::with_capacity(si.references.len());
    let mut parts = Vec::with_capacity(si.references.len());
    let mut first_err = None;
    for r in &si.references {
        let start = *scan
            .ids
            .get(&r.id)
            .ok_or_else(|| WssecError::ReferenceNotFound(r.uri.clone()))?;
        let part = classify(start, scan, sec, policy);
        if part.is_none() && first_err.is_none() {
            first_err = Some(WssecError::ReferenceNotAllowed {
                uri: r.uri.clone(),
                found: describe(start, scan, sec),
            });
        }
        if targets.iter().any(|t: &DigestTarget| t.start == start) && first_err.is_none() {
            first_err = Some(WssecError::DuplicateReference);
        }
        parts.push(part);
        targets.push(DigestTarget::of(r, start, parsed.span, keep));
    }
    // Outside explain mode a misplaced reference is refused before any digest work.
    if let (Some(e), None) = (&first_err, &explain) {
        return Err(e.clone());
    }
    // The signature over the canonical SignedInfo is checked before any
    // Reference is digested (as Santuario does): unauthenticated input costs
    // one signature check, not a pass over the Body.
    let si_bytes = match at.known.signed {
        Some(Signed {
            signed_info,
            by: CheckedBy::Verifier(_),
            ..
        }) => Cow::Borrowed(signed_info),
        _ => Cow::Owned(dsig::canonical_signed_info_in(
            &mut at.reader,
            at.marks,
            si.span.start,
            &si.c14n,
        )?),
    };
    let signature = match at.known.signed {
        None => {
            dsig::verify_signature_value(si.algorithm, &cert, &si_bytes, &parsed.signature_value)
        }
        Some(s) if s.signed_info == &*si_bytes && s.value == parsed.signature_value => {
            if s.valid {
                Ok(())
            } else {
                Err(WssecError::BadSignature)
            }
        }
        Some(_) => Err(WssecError::Internal(
            "the SignedInfo or SignatureValue a verifier reads is not the one that was signed",
        )),
    };
    let signature = match (signature, &explain) {
        (Err(e), None) => return Err(e),
        (result, _) => result,
    };
    let digests = at.digests(&targets)?;
    let mut mismatch = None;
    for ((r, d), part) in si.references.iter().zip(&digests).zip(&parts) {
        let ok = dsig::digests_equal(&d.value, &r.digest_value);
        if !ok && mismatch.is_none() {
            mismatch = Some(WssecError::DigestMismatch(r.uri.clone()));
        }
        if let Some(ex) = explain.as_deref_mut() {
            ex.references.push(report(r, d, part.clone(), ok));
        }
    }
    if let Some(ex) = explain {
        ex.signed_info_canonical = Some(si_bytes.to_vec());
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    signature?;
    if let Some(e) = mismatch {
        return Err(e);
    }
    Ok(SignatureOutcome {
        trusted,
        signer: SignerInfo {
            subject: cert.subject.clone(),
            issuer: cert.issuer.clone(),
            serial: cert.serial_hex.clone(),
            fingerprint: cert.fingerprint,
            spki_sha256: cert.spki_sha256,
            der: cert.der.clone(),
            key_source: source,
        },
        parts: parts.into_iter().flatten().collect(),
        signed_info_digest: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &si_bytes)
            .as_ref()
            .to_vec(),
    })
}

fn report(
    r: &Reference,
    d: &dsig::DigestOutput,
    part: Option<SignedPart>,
    ok: bool,
) -> ReferenceReport {
    ReferenceReport {
        uri: r.uri.clone(),
        part,
        digest_algorithm: r.digest.uri(),
        computed: Some(b64(&d.value)),
        claimed: b64(&r.digest_value),
        matches: ok,
        canonical: if ok { None } else { d.canonical.clone() },
    }
}

fn check_required(policy: &Policy, parts: &[SignedPart], has_ts: bool) -> Result<(), WssecError> {
    for p in &policy.require_signed {
        let covered = match p {
            Part::Body => parts.contains(&SignedPart::Body),
            Part::Timestamp => parts.contains(&SignedPart::Timestamp),
            Part::Header(q) => parts.contains(&SignedPart::Header(q.clone())),
        };
        if covered {
            continue;
        }
        return Err(match p {
            Part::Body => WssecError::BodyNotSigned,
            Part::Timestamp if !has_ts => WssecError::NoTimestamp,
            Part::Timestamp => WssecError::TimestampNotSigned,
            Part::Header(q) => WssecError::HeaderNotSigned(q.to_string()),
        });
    }
    Ok(())
}

fn check_username(
    sec: &Security,
    policy: &Policy,
    now: SystemTime,
) -> Result<Option<tokens::UsernameOutcome>, WssecError> {
    match (&sec.username_token, &policy.passwords) {
        (Some(ut), Some(store)) => Ok(Some(tokens::check_username_token(
            ut,
            store.as_ref(),
            now,
            policy.max_clock_skew,
            policy.max_ttl,
        )?)),
        (None, _) if policy.require_username_token => Err(WssecError::NoUsernameToken),
        (Some(_), None) if policy.require_username_token => Err(WssecError::Config(
            "UsernameToken required but no secrets configured".into(),
        )),
        _ => Ok(None),
    }
}

/// Records the message last, once everything else passed, so unverified
/// input can never fill the cache.
fn remember(
    replay: &dyn ReplayCache,
    policy: &Policy,
    now: SystemTime,
    signed: Option<&SignatureOutcome>,
    ts: Option<&Timestamp>,
    username: &Option<tokens::UsernameOutcome>,
) -> Result<Vec<ReplayKey>, WssecError> {
    let skew = policy.max_clock_skew;
    let mut entries = Vec::new();
    let map = |e: ReplayError| match e {
        ReplayError::Replay => WssecError::Replay,
        ReplayError::Full => WssecError::ReplayCacheFull,
        ReplayError::Unavailable => WssecError::ReplayStoreUnavailable,
    };
    if let Some(s) = signed {
        let created = ts.map_or("", |t| t.created_text.as_str());
        // Without a Timestamp, keep as long as any Timestamp could have lived.
        let until = tokens::later(
            ts.map_or(tokens::later(now, policy.max_ttl), |t| t.expires),
            skew,
        );
        // Keyed on the signer's public key, not its certificate: a certificate
        // renewed for the same key must not buy one more replay.
        let key = replay_key(
            "signed-info",
            &[
                &s.signer.spki_sha256,
                created.as_bytes(),
                &s.signed_info_digest,
            ],
        );
        entries.push((key, until));
    }
    if let Some(u) = username {
        if let Some((nonce, created, until)) = &u.replay {
            let key = replay_key(
                "username-token",
                &[u.username.as_bytes(), nonce, created.as_bytes()],
            );
            entries.push((key, *until));
        }
    }
    if !entries.is_empty() {
        replay.check_and_insert_all(&entries, now).map_err(map)?;
    }
    let keys = entries.into_iter().map(|(k, _)| k).collect();
    Ok(keys)
}

/// The verifier's part at the Body's start tag: the SignatureValue checked,
/// then the Body digested for the Reference that names it.
pub(super) struct VerifyOpen<'p> {
    pub policy: &'p Policy,
    early: EarlyCheck,
    target: Option<DigestTarget>,
    /// The SignatureValue as checked at the Body's start.
    pub checked: Option<Checked>,
}

/// Whether the SignatureValue is checked at the Body's start, before the
/// Body is digested.
#[derive(Clone, Copy)]
enum EarlyCheck {
    /// A message read in windows: whoever the signer, as the Body will not
    /// be read again.
    Always,
    /// A message held whole: only when the signer is trusted at this time.
    /// The judgement refuses any other before its public-key operation, and
    /// reading early must not make that operation for it.
    IfTrustedAt(SystemTime),
    /// A signer's own output: the judgement holds what it reads to what was
    /// signed, with no public-key operation, so the Body is digested as it
    /// passes and nothing is checked here.
    Never,
}

/// The signer the KeyInfo names, a canonical SignedInfo, the SignatureValue
/// read over it, and whether it verified under the signer's key.
pub(super) struct Checked {
    signer: (Arc<CertInfo>, KeySource),
    signed_info: Vec<u8>,
    value: Vec<u8>,
    pub valid: bool,
}

impl<'p> VerifyOpen<'p> {
    /// For a message read in windows: its SignatureValue is checked at the
    /// Body's start, whoever the signer, as the Body will not be read again.
    pub fn new(policy: &'p Policy) -> Self {
        VerifyOpen {
            policy,
            early: EarlyCheck::Always,
            target: None,
            checked: None,
        }
    }

    /// For a message held whole, judged at `now`.
    pub fn whole(policy: &'p Policy, now: SystemTime) -> Self {
        VerifyOpen {
            early: EarlyCheck::IfTrustedAt(now),
            ..VerifyOpen::new(policy)
        }
    }

    /// For a signer's own output, held whole.
    fn own_output(policy: &'p Policy) -> Self {
        VerifyOpen {
            early: EarlyCheck::Never,
            ..VerifyOpen::new(policy)
        }
    }

    /// The Body's digest taken as it passed, with the Reference it was
    /// taken for.
    pub fn body_digest(
        &mut self,
        digest: Option<Result<Vec<u8>, WssecError>>,
    ) -> Option<StreamedDigest> {
        let target = self.target.take()?;
        digest.map(|value| StreamedDigest { target, value })
    }

    /// What the judgement is told: the Body's digest, and the SignatureValue
    /// as checked at the Body's start.
    pub fn known<'k>(&'k self, body: Option<&'k StreamedDigest>) -> Known<'k> {
        Known {
            body,
            signed: self.checked.as_ref().map(|c| Signed {
                signed_info: &c.signed_info,
                value: &c.value,
                valid: c.valid,
                by: CheckedBy::Verifier(&c.signer),
            }),
        }
    }
}

impl BodyOpen for VerifyOpen<'_> {
    fn open(
        &mut self,
        head: &[u8],
        start: &StartElement<'_>,
        scan: &StreamScan,
        _envelope: &str,
    ) -> Result<Option<BodyDigest>, WssecError> {
        let (Some(sec), Some(ids)) = (scan.security(), scan.ids()) else {
            return Ok(None);
        };
        let Some(parsed) = parse(sec, self.policy) else {
            return Ok(None);
        };
        self.target = body_reference(&parsed, ids, start.span().start);
        let Some(t) = &self.target else {
            return Ok(None);
        };
        if !matches!(self.early, EarlyCheck::Never) {
            let marks = scan.marks();
            self.checked = check_first(head, marks, sec, &parsed, self.policy, self.early);
            let valid = self.checked.as_ref().is_some_and(|c| c.valid);
            // The SignatureValue is verified before the Body is digested, as
            // on the buffered path: a forged signature costs one check here,
            // not a pass over a Body of any size. Its verdict waits for the
            // judgement at the end, which refuses in the buffered path's order.
            if !valid {
                return Ok(None);
            }
        }
        let mut b = BodyDigest {
            id: t.id.clone(),
            c: Canonicalizer::subtree(t.method.clone()),
            sink: DigestWriter::new(t.digest, false),
        };
        b.c.start_with(start, &mut b.sink)?;
        Ok(Some(b))
    }
}

/// `sec`'s Signature as the judgement will read it (one that does not
/// parse is refused there, so nothing is digested for it here).
fn parse<'s>(sec: &'s Security, policy: &Policy) -> Option<ParsedSignature<'s>> {
    let node = sec.signature.as_ref()?;
    dsig::parse_signature(node, policy.allow_sha1, policy.max_references).ok()
}

/// The Reference of `parsed` that names the Body starting at `start`.
fn body_reference(
    parsed: &ParsedSignature<'_>,
    ids: &HashMap<String, usize>,
    start: usize,
) -> Option<DigestTarget> {
    parsed
        .signed_info
        .references
        .iter()
        .find(|r| ids.get(&r.id) == Some(&start))
        .map(|r| DigestTarget::of(r, start, parsed.span, false))
}

/// `parsed`'s SignatureValue checked over `head` under the key its KeyInfo
/// names. `None` when that cannot be done (no signer resolves, the key does
/// not fit the algorithm, or with `IfTrustedAt` the signer is not trusted
/// then): the judgement refuses those before it needs the Body.
fn check_first(
    head: &[u8],
    marks: &[Mark],
    sec: &Security,
    parsed: &ParsedSignature<'_>,
    policy: &Policy,
    early: EarlyCheck,
) -> Option<Checked> {
    let si = &parsed.signed_info;
    let signer = tokens::resolve_signer(parsed.key_info, sec, &policy.trust).ok()?;
    let cert = &signer.0;
    if let EarlyCheck::IfTrustedAt(now) = early {
        // A gate only: the judgement asks again, and counts what it accepts.
        let _ = policy.trust.check(cert, now).ok()?;
    }
    let mut reader = Reader::new(head, &policy.limits).ok()?;
    let signed_info =
        dsig::canonical_signed_info_in(&mut reader, marks, si.span.start, &si.c14n).ok()?;
    let valid = match dsig::verify_signature_value(
        si.algorithm,
        cert,
        &signed_info,
        &parsed.signature_value,
    ) {
        Ok(()) => true,
        Err(WssecError::BadSignature) => false,
        Err(_) => return None,
    };
    Some(Checked {
        signer,
        signed_info,
        value: parsed.signature_value.clone(),
        valid,
    })
}

/// Judges a signer's own output, `msg`: what it signed is `signed`, and
/// with `body_digest` its Body streamed past (then `msg` holds it empty) and
/// this was its digest.
pub(super) fn judge_own_output(
    msg: &[u8],
    policy: &Policy,
    now: SystemTime,
    body_digest: Option<&[u8]>,
    signed: Signed<'_>,
) -> Result<Verified, WssecError> {
    let signed = Signed {
        by: CheckedBy::Signer,
        ..signed
    };
    let mut reader = Reader::new(msg, &policy.limits)?;
    let actor = policy.actor.as_deref();
    let (scan, body) = match body_digest {
        Some(value) => {
            let scan = envelope::scan_with(&mut reader, actor)?;
            let body = scan
                .security
                .as_ref()
                .and_then(|s| parse(s, policy))
                .and_then(|p| body_reference(&p, &scan.ids, scan.body.start))
                .map(|target| StreamedDigest {
                    target,
                    value: Ok(value.to_vec()),
                })
                .ok_or(WssecError::Internal("no Reference names the streamed Body"))?;
            (scan, Some(body))
        }
        // One read for the scan and the Body's digest, as for a sender's message.
        None => {
            let mut pass = BodyPass::new(VerifyOpen::own_output(policy), actor);
            let head = |end| msg.get(..end).unwrap_or_default();
            reader.each(|ev| pass.event(ev, head).map(|()| true))?;
            let mut ended = pass.end()?;
            let body = ended.open.body_digest(ended.digest.take());
            (ended.scan, body)
        }
    };
    let known = Known {
        body: body.as_ref(),
        signed: Some(signed),
    };
    judge(
        msg,
        &scan,
        policy,
        now,
        &NoReplayCache,
        &|_| Ok(()),
        None,
        known,
        reader,
    )
}
