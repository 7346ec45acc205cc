//! Verification of a message too large to hold: it is read in windows as it
//! arrives, the part before the Body's content (Envelope, Header, Security)
//! held, the Body canonicalized and digested as it passes. Nothing of the
//! Body is kept: the caller keeps the bytes (the proxy in its encrypted
//! spool) and forwards them only once [`StreamVerifier::finish`] says yes.
//!
//! The rules are the buffered path's: the same reader over every byte, the
//! same envelope scan (Ids inside the Body included), the same judgement on
//! the held part, the Body's Reference checked against the digest computed
//! while it passed — and the SignatureValue verified, at the Body's start
//! tag, before any of the Body is digested.

use std::collections::HashMap;
use std::time::SystemTime;

use super::c14n::Canonicalizer;
use super::dsig::{self, DigestTarget, DigestWriter, ParsedSignature};
use super::envelope::{self, Scanned, Security, StreamScan};
use super::replay::{NoReplayCache, ReplayCache};
use super::tokens;
use super::verify::{
    self, Known, Policy, Signed, SignerInfo, StreamedDigest, Verified, WssecError,
};
use super::xml::{Carry, Cutter, Event, Limits, Reader, StartElement, XmlError};

/// Bytes gathered before the reader takes a window: enough to amortize a
/// window's set-up, little enough to stay in cache.
const WINDOW: usize = 64 << 10;

/// A message that passed: `verified.output` is what to forward in place of
/// the message's first `body_from` bytes (the Security header spliced out
/// unless the policy forwards it); the rest follows as it arrived.
#[derive(Debug)]
pub struct Streamed {
    pub verified: Verified,
    pub body_from: usize,
}

/// The Body's canonical form being digested as it passes.
pub(super) struct BodyDigest {
    /// What names the Body (for error messages).
    pub id: String,
    pub c: Canonicalizer,
    pub sink: DigestWriter,
}

/// What the verifier or the signer does when the Body's start tag arrives:
/// `head` is the message up to the end of that tag, `envelope` the root's
/// qualified name. `None`: the Body is not digested; otherwise its start tag
/// has been fed to the canonicalizer, and its content will be.
pub(super) trait BodyOpen {
    fn open(
        &mut self,
        head: &[u8],
        start: &StartElement<'_>,
        scan: &StreamScan,
        envelope: &str,
    ) -> Result<Option<BodyDigest>, WssecError>;

    /// Sees each event of the Body's content after the digest took it.
    fn content(&mut self, _ev: &Event<'_>, _c: &Canonicalizer) -> Result<(), WssecError> {
        Ok(())
    }
}

/// A message read in windows as it arrives: the same reader over every
/// byte, the envelope scan, the part before the Body's content held, and
/// the Body digested as `O` set it up.
pub(super) struct Intake<O> {
    pub open: O,
    /// How each window is read: the caller's limits, with no size or time
    /// bound of their own (the caller bounds the message and its pace).
    limits: Limits,
    /// The part before the Body's content may be this long.
    max_head: usize,
    pending: Vec<u8>,
    /// Offset of `pending[0]` in the message.
    at: usize,
    cutter: Cutter,
    carry: Option<Carry>,
    scan: StreamScan,
    /// The message up to the end of the Body's start tag, once known.
    head: Vec<u8>,
    head_end: Option<usize>,
    envelope: String,
    body: Option<BodyDigest>,
    window: usize,
}

/// A message read to its end.
pub(super) struct Ended<O> {
    pub open: O,
    pub scan: Scanned,
    /// The message up to the end of the Body's start tag.
    pub head: Vec<u8>,
    /// The Body's digest, when it was taken.
    pub digest: Option<Vec<u8>>,
}

impl<O: BodyOpen> Intake<O> {
    pub fn new(open: O, limits: &Limits, actor: Option<&str>) -> Self {
        let mut read = limits.clone();
        read.max_bytes = usize::MAX;
        read.deadline = None;
        Intake {
            open,
            limits: read,
            max_head: limits.max_bytes,
            pending: Vec::new(),
            at: 0,
            cutter: Cutter::default(),
            carry: None,
            scan: StreamScan::new(actor),
            head: Vec::new(),
            head_end: None,
            envelope: String::new(),
            body: None,
            window: WINDOW,
        }
    }

    pub fn with_window(mut self, bytes: usize) -> Self {
        self.window = bytes.max(1);
        self
    }

    pub fn window_size(&self) -> usize {
        self.window
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), WssecError> {
        // In window-sized steps, so the part held before the Body is found
        // never runs far past it.
        for piece in chunk.chunks(WINDOW) {
            self.step(piece)?;
        }
        Ok(())
    }

    fn step(&mut self, chunk: &[u8]) -> Result<(), WssecError> {
        let heading = self.head_end.is_none();
        if heading {
            self.head.extend_from_slice(chunk);
        }
        self.pending.extend_from_slice(chunk);
        // Until the Body starts, every piece is read at once: the held part
        // is then known to the byte.
        if self.pending.len() < self.window && !heading {
            return Ok(());
        }
        let cut = self
            .cutter
            .scan(&self.pending)
            .or_else(|| self.cutter.text_cut(&self.pending));
        let read = match cut {
            Some(cut) => self.window(cut, false),
            // One piece of markup longer than any text node may be.
            None if self.pending.len() > self.limits.max_text_len.max(self.window) => {
                Err(XmlError::TextTooLong {
                    at: self.at,
                    limit: self.limits.max_text_len,
                }
                .into())
            }
            None => Ok(()),
        };
        // The part before the Body is held whole, within the buffering limit.
        if read.is_ok() && self.head_end.is_none() && self.at > self.max_head {
            return Err(WssecError::SecurityHeaderTooLarge);
        }
        read
    }

    /// Reads `pending[..cut]` as the next window and lets it go.
    fn window(&mut self, cut: usize, last: bool) -> Result<(), WssecError> {
        let bytes = self.pending.get(..cut).unwrap_or_default();
        let mut r = Reader::window(bytes, self.at, &self.limits, self.carry.take(), last)?;
        r.each(|ev| {
            self.scan.event(ev)?;
            if self.head_end.is_none() {
                if let Event::Start(e) = ev {
                    if e.depth() == 1 {
                        self.envelope = e.name().to_owned();
                    }
                    if self.scan.body_opened() {
                        let end = e.span().end;
                        self.head.truncate(end);
                        self.head_end = Some(end);
                        self.body = self.open.open(&self.head, e, &self.scan, &self.envelope)?;
                        // The Body's start tag was canonicalized by `open`.
                        return Ok(true);
                    }
                }
            }
            if let Some(b) = self.body.as_mut().filter(|b| !b.c.is_done()) {
                if let Event::Comment(_) = ev {
                    return Err(WssecError::CommentInSignedPart(b.id.clone()));
                }
                b.c.feed(ev, &mut b.sink).map_err(WssecError::from)?;
                self.open.content(ev, &b.c)?;
            }
            Ok::<_, WssecError>(true)
        })?;
        self.carry = Some(r.suspend());
        self.pending.drain(..cut);
        self.cutter.drained(cut);
        self.at += cut;
        Ok(())
    }

    /// Reads what is left: the message must end here.
    pub fn end(mut self) -> Result<Ended<O>, WssecError> {
        self.cutter.scan(&self.pending);
        self.window(self.pending.len(), true)?;
        let scan = self.scan.finish()?;
        if self.head_end.is_none() {
            return Err(WssecError::BadEnvelope("no Body"));
        }
        let digest = match self.body {
            Some(b) if b.c.is_done() => Some(b.sink.finish().0),
            Some(_) => return Err(WssecError::Internal("the Body's digest did not close")),
            None => None,
        };
        Ok(Ended {
            open: self.open,
            scan,
            head: self.head,
            digest,
        })
    }
}

/// The verifier's part at the Body: digest it for the Reference that names it.
struct VerifyOpen<'p> {
    policy: &'p Policy,
    target: Option<DigestTarget>,
    /// The SignatureValue as checked at the Body's start.
    checked: Option<Checked>,
}

/// A canonical SignedInfo, the SignatureValue read over it, and whether it
/// verified under the key the KeyInfo names.
struct Checked {
    signed_info: Vec<u8>,
    value: Vec<u8>,
    valid: bool,
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
        self.checked = check_first(head, sec, &parsed, self.policy);
        let valid = self.checked.as_ref().is_some_and(|c| c.valid);
        // The SignatureValue is verified before the Body is digested, as on
        // the buffered path: a forged signature costs one check here, not a
        // pass over a Body of any size. Its verdict waits for the judgement
        // at the end, which refuses in the buffered path's order.
        if !valid {
            return Ok(None);
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

/// One message being verified as it arrives.
pub struct StreamVerifier<'p> {
    intake: Intake<VerifyOpen<'p>>,
}

impl<'p> StreamVerifier<'p> {
    /// Starts a message under `policy`.
    pub fn new(policy: &'p Policy) -> Self {
        let open = VerifyOpen {
            policy,
            target: None,
            checked: None,
        };
        StreamVerifier {
            intake: Intake::new(open, &policy.limits, policy.actor.as_deref()),
        }
    }

    /// Reads in windows of about `bytes` instead (tests use tiny ones so
    /// that every kind of cut happens on small messages).
    pub fn with_window(mut self, bytes: usize) -> Self {
        self.intake = self.intake.with_window(bytes);
        self
    }

    /// Takes the next piece of the message, of any size.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), WssecError> {
        self.intake.feed(chunk)
    }

    /// True once the message is sure to be refused: its SignatureValue did
    /// not verify at the Body's start. The caller need keep none of the
    /// rest; [`finish`](Self::finish) still reads it to its end, so the
    /// refusal has the reason the buffered path would give.
    pub fn will_refuse(&self) -> bool {
        self.intake.open.checked.as_ref().is_some_and(|c| !c.valid)
    }

    /// The end of the message: reads what is left and judges it at `now` —
    /// the time it ended, not began: a message that takes long to arrive is
    /// still judged fresh, and recorded as seen, when it is forwarded.
    pub fn finish(
        self,
        now: SystemTime,
        replay: &dyn ReplayCache,
        accept: &dyn Fn(Option<&SignerInfo>) -> Result<(), WssecError>,
    ) -> Result<Streamed, WssecError> {
        let ended = self.intake.end()?;
        let policy = ended.open.policy;
        let digest = match (ended.open.target, ended.digest) {
            (Some(target), Some(value)) => Some(StreamedDigest { target, value }),
            _ => None,
        };
        let mut limits = policy.limits.clone();
        limits.deadline = policy
            .max_work
            .and_then(|d| std::time::Instant::now().checked_add(d));
        let body_from = ended.head.len();
        let verified = verify::judge(
            &ended.head,
            &ended.scan,
            policy,
            now,
            replay,
            accept,
            None,
            Known {
                body: digest.as_ref(),
                signed: ended.open.checked.as_ref().map(|c| Signed {
                    signed_info: &c.signed_info,
                    value: &c.value,
                    valid: c.valid,
                }),
            },
            Reader::new(&ended.head, &limits)?,
        )?;
        Ok(Streamed {
            verified,
            body_from,
        })
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
/// not fit the algorithm): the judgement refuses those before it needs the
/// Body.
fn check_first(
    head: &[u8],
    sec: &Security,
    parsed: &ParsedSignature<'_>,
    policy: &Policy,
) -> Option<Checked> {
    let si = &parsed.signed_info;
    let (cert, _) = tokens::resolve_signer(parsed.key_info, sec, &policy.trust).ok()?;
    let signed_info =
        dsig::canonical_signed_info(head, &policy.limits, si.span.start, &si.c14n).ok()?;
    let valid = match dsig::verify_signature_value(
        si.algorithm,
        &cert.key,
        &signed_info,
        &parsed.signature_value,
    ) {
        Ok(()) => true,
        Err(WssecError::BadSignature) => false,
        Err(_) => return None,
    };
    Some(Checked {
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
    let mut reader = Reader::new(msg, &policy.limits)?;
    let scan = envelope::scan_with(&mut reader, policy.actor.as_deref())?;
    let body = match body_digest {
        Some(value) => Some(
            scan.security
                .as_ref()
                .and_then(|s| parse(s, policy))
                .and_then(|p| body_reference(&p, &scan.ids, scan.body.start))
                .map(|target| StreamedDigest {
                    target,
                    value: value.to_vec(),
                })
                .ok_or(WssecError::Internal("no Reference names the streamed Body"))?,
        ),
        None => None,
    };
    let known = Known {
        body: body.as_ref(),
        signed: Some(signed),
    };
    verify::judge(
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
