//! Verification of a message too large to hold: it is read in windows as it
//! arrives, the part before the Body's content (Envelope, Header, Security)
//! held, the Body canonicalized and digested as it passes. Nothing of the
//! Body is kept: the caller keeps the bytes (the proxy in its encrypted
//! spool) and forwards them only once [`StreamVerifier::finish`] says yes.
//!
//! The rules are the buffered path's: the same reader over every byte, the
//! same envelope scan (Ids inside the Body included), the same judgement on
//! the held part, the Body's Reference checked against the digest computed
//! while it passed.

use std::time::SystemTime;

use super::c14n::Canonicalizer;
use super::dsig::{self, DigestTarget, DigestWriter};
use super::envelope::StreamScan;
use super::replay::ReplayCache;
use super::verify::{self, Policy, SignerInfo, StreamedDigest, Verified, WssecError};
use super::xml::{Carry, Cutter, Event, Limits, Reader, XmlError};

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

struct BodyDigest {
    target: DigestTarget,
    c: Canonicalizer,
    sink: DigestWriter,
}

/// One message being verified as it arrives.
pub struct StreamVerifier {
    policy: Policy,
    /// How each window is read: the policy's limits, with no size or time
    /// bound of their own (the caller bounds the message and its pace).
    limits: Limits,
    pending: Vec<u8>,
    /// Offset of `pending[0]` in the message.
    at: usize,
    cutter: Cutter,
    carry: Option<Carry>,
    scan: StreamScan,
    /// The message up to the end of the Body's start tag, once known.
    head: Vec<u8>,
    head_end: Option<usize>,
    body: Option<BodyDigest>,
    window: usize,
}

impl StreamVerifier {
    /// Starts a message under `policy`.
    pub fn new(policy: &Policy) -> Self {
        let mut limits = policy.limits.clone();
        limits.max_bytes = usize::MAX;
        limits.deadline = None;
        StreamVerifier {
            policy: policy.clone(),
            limits,
            pending: Vec::new(),
            at: 0,
            cutter: Cutter::default(),
            carry: None,
            scan: StreamScan::new(policy.actor.as_deref()),
            head: Vec::new(),
            head_end: None,
            body: None,
            window: WINDOW,
        }
    }

    /// Reads in windows of about `bytes` instead (tests use tiny ones so
    /// that every kind of cut happens on small messages).
    pub fn with_window(mut self, bytes: usize) -> Self {
        self.window = bytes.max(1);
        self
    }

    /// Where the Body's content starts in the message, once it has arrived.
    pub fn head_end(&self) -> Option<usize> {
        self.head_end
    }

    /// Takes the next piece of the message, of any size.
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
        if read.is_ok() && self.head_end.is_none() && self.at > self.policy.limits.max_bytes {
            return Err(WssecError::SecurityHeaderTooLarge);
        }
        read
    }

    /// Reads `pending[..cut]` as the next window and lets it go.
    fn window(&mut self, cut: usize, last: bool) -> Result<(), WssecError> {
        let bytes = self.pending.get(..cut).unwrap_or_default();
        let mut r = Reader::window(bytes, self.at, &self.limits, self.carry.take(), last)?;
        while let Some(ev) = r.next()? {
            self.scan.event(&ev)?;
            if self.head_end.is_none() {
                if let Event::Start(e) = &ev {
                    if self.scan.body_opened() {
                        let end = e.span().end;
                        self.head.truncate(end);
                        self.head_end = Some(end);
                        self.body = self.body_target(e.span().start).map(|target| BodyDigest {
                            c: Canonicalizer::subtree(target.method.clone()),
                            sink: DigestWriter::new(target.digest, false),
                            target,
                        });
                    }
                }
            }
            if let Some(b) = self.body.as_mut().filter(|b| !b.c.is_done()) {
                if let Event::Comment(_) = ev {
                    return Err(WssecError::CommentInSignedPart(b.target.id.clone()));
                }
                b.c.feed(&ev, &mut b.sink).map_err(WssecError::from)?;
            }
        }
        self.carry = Some(r.suspend());
        self.pending.drain(..cut);
        self.cutter.drained(cut);
        self.at += cut;
        Ok(())
    }

    /// The Reference that names the Body starting at `start`, as the
    /// judgement will read it (a Signature that does not parse is refused
    /// there, so nothing is digested for it here).
    fn body_target(&self, start: usize) -> Option<DigestTarget> {
        let node = self.scan.security()?.signature.as_ref()?;
        let parsed =
            dsig::parse_signature(node, self.policy.allow_sha1, self.policy.max_references).ok()?;
        let ids = self.scan.ids()?;
        parsed
            .signed_info
            .references
            .iter()
            .find(|r| ids.get(&r.id) == Some(&start))
            .map(|r| DigestTarget::of(r, start, parsed.span, false))
    }

    /// The end of the message: reads what is left and judges it at `now` —
    /// the time it ended, not began: a message that takes long to arrive is
    /// still judged fresh, and recorded as seen, when it is forwarded.
    pub fn finish(
        mut self,
        now: SystemTime,
        replay: &dyn ReplayCache,
        accept: &dyn Fn(Option<&SignerInfo>) -> Result<(), WssecError>,
    ) -> Result<Streamed, WssecError> {
        self.cutter.scan(&self.pending);
        self.window(self.pending.len(), true)?;
        let scan = self.scan.finish()?;
        let digest = match self.body {
            Some(b) if b.c.is_done() => Some(StreamedDigest {
                value: b.sink.finish().0,
                target: b.target,
            }),
            Some(_) => return Err(WssecError::Internal("the Body's digest did not close")),
            None => None,
        };
        let mut limits = self.policy.limits.clone();
        limits.deadline = self
            .policy
            .max_work
            .and_then(|d| std::time::Instant::now().checked_add(d));
        let body_from = self.head_end.ok_or(WssecError::BadEnvelope("no Body"))?;
        let verified = verify::judge(
            &self.head,
            &scan,
            &self.policy,
            &limits,
            now,
            replay,
            accept,
            None,
            digest.as_ref(),
        )?;
        Ok(Streamed {
            verified,
            body_from,
        })
    }
}
