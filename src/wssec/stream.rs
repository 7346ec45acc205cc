//! Verification of a message too large to hold: it is read in windows as it
//! arrives, the part before the Body's content (Envelope, Header, Security)
//! held, the Body canonicalized and digested as it passes. Nothing of the
//! Body is kept: the caller keeps the bytes (the proxy in its encrypted
//! spool) and forwards them only once [`StreamVerifier::finish`] says yes.
//!
//! The rules are the buffered path's: the same reader over every byte, the
//! same envelope scan (Ids inside the Body included), the same judgement on
//! the held part (`pass` reads each window as the buffered path reads the
//! whole message), the Body's Reference checked against the digest computed
//! while it passed — and the SignatureValue verified, at the Body's start
//! tag, before any of the Body is digested.

use std::time::SystemTime;

use super::error::WssecError;
use super::pass::{BodyOpen, BodyPass, Ended};
use super::replay::ReplayCache;
use super::verify::{self, Policy, SignerInfo, Verified, VerifyOpen};
use super::xml::{Carry, Cutter, Limits, Reader, XmlError};

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

/// A message read in windows as it arrives: the same reader over every
/// byte, the envelope scan, the part before the Body's content held, and
/// the Body digested as `O` set it up.
pub(super) struct Intake<O> {
    pub pass: BodyPass<O>,
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
    /// The message up to the end of the Body's start tag, once known.
    head: Vec<u8>,
    window: usize,
}

impl<O: BodyOpen> Intake<O> {
    pub fn new(open: O, limits: &Limits, actor: Option<&str>) -> Self {
        let mut read = limits.clone();
        read.max_bytes = usize::MAX;
        read.deadline = None;
        Intake {
            pass: BodyPass::new(open, actor),
            limits: read,
            max_head: limits.max_bytes,
            pending: Vec::new(),
            at: 0,
            cutter: Cutter::default(),
            carry: None,
            head: Vec::new(),
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
        let heading = !self.pass.body_reached();
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
        if read.is_ok() && !self.pass.body_reached() && self.at > self.max_head {
            return Err(WssecError::SecurityHeaderTooLarge);
        }
        read
    }

    /// Reads `pending[..cut]` as the next window and lets it go.
    fn window(&mut self, cut: usize, last: bool) -> Result<(), WssecError> {
        let bytes = self.pending.get(..cut).unwrap_or_default();
        let mut r = Reader::window(bytes, self.at, &self.limits, self.carry.take(), last)?;
        let (pass, head) = (&mut self.pass, &mut self.head);
        r.each(|ev| {
            pass.event(ev, |end| {
                head.truncate(end);
                head
            })?;
            Ok::<_, WssecError>(true)
        })?;
        self.carry = Some(r.suspend());
        self.pending.drain(..cut);
        self.cutter.drained(cut);
        self.at += cut;
        Ok(())
    }

    /// Reads what is left: the message must end here. With the message up
    /// to the end of the Body's start tag.
    pub fn end(mut self) -> Result<(Ended<O>, Vec<u8>), WssecError> {
        self.cutter.scan(&self.pending);
        self.window(self.pending.len(), true)?;
        Ok((self.pass.end()?, self.head))
    }
}

/// One message being verified as it arrives.
pub struct StreamVerifier<'p> {
    intake: Intake<VerifyOpen<'p>>,
}

impl<'p> StreamVerifier<'p> {
    /// Starts a message under `policy`.
    pub fn new(policy: &'p Policy) -> Self {
        let open = VerifyOpen::new(policy);
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
        self.intake
            .pass
            .open
            .checked
            .as_ref()
            .is_some_and(|c| !c.valid)
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
        let (mut ended, head) = self.intake.end()?;
        let policy = ended.open.policy;
        let body = ended.open.body_digest(ended.digest.take());
        let body_from = head.len();
        let verified = verify::judge(
            &head,
            &ended.scan,
            policy,
            now,
            replay,
            accept,
            None,
            ended.open.known(body.as_ref()),
            Reader::new(&head, &policy.reading_limits())?,
        )?;
        Ok(Streamed {
            verified,
            body_from,
        })
    }
}
