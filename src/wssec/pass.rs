//! One read of a message: the envelope scan, with the Body canonicalized and
//! digested as it passes. The verifier reads a message held whole this way,
//! and a message too large to hold in windows as it arrives (`stream`), so
//! the Body is read once, by the same reader and the same scan that judge
//! the envelope.

use super::c14n::Canonicalizer;
use super::dsig::DigestWriter;
use super::envelope::{Scanned, StreamScan};
use super::error::WssecError;
use super::xml::{Event, StartElement};

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

/// The scan and the Body's digest, fed one event at a time. A digest that
/// fails part way (a comment in the Body, say) does not stop the reading:
/// the failure is the digest's outcome, and the verifier refuses with it
/// where its judgement takes the Body's digest, behind whatever it refuses
/// first (an expired Timestamp, an untrusted signer, a forged
/// SignatureValue), as when the Body is digested in a pass of its own.
pub(super) struct BodyPass<O> {
    pub open: O,
    scan: StreamScan,
    /// Where the Body's start tag ends, once it has been read.
    head_end: Option<usize>,
    envelope: String,
    body: Option<BodyDigest>,
    failed: Option<WssecError>,
}

/// A message read to its end.
pub(super) struct Ended<O> {
    pub open: O,
    pub scan: Scanned,
    /// The Body's digest, when it was taken (or why it could not be).
    pub digest: Option<Result<Vec<u8>, WssecError>>,
}

impl<O: BodyOpen> BodyPass<O> {
    pub fn new(open: O, actor: Option<&str>) -> Self {
        BodyPass {
            open,
            scan: StreamScan::new(actor),
            head_end: None,
            envelope: String::new(),
            body: None,
            failed: None,
        }
    }

    /// True once the Body's start tag has been read.
    pub fn body_reached(&self) -> bool {
        self.head_end.is_some()
    }

    /// Takes the next event. At the Body's start tag `head(end)` is asked
    /// for the message up to `end`, the end of that tag.
    pub fn event<'h>(
        &mut self,
        ev: &Event<'_>,
        head: impl FnOnce(usize) -> &'h [u8],
    ) -> Result<(), WssecError> {
        self.scan.event(ev)?;
        if self.head_end.is_none() {
            if let Event::Start(e) = ev {
                if e.depth() == 1 {
                    self.envelope = e.name().to_owned();
                }
                if self.scan.body_opened() {
                    let end = e.span().end;
                    self.head_end = Some(end);
                    let opened = self.open.open(head(end), e, &self.scan, &self.envelope);
                    // The Body's start tag was canonicalized by `open`.
                    self.body = self.settle(opened).flatten();
                    return Ok(());
                }
            }
        }
        if let Some(b) = self.body.as_mut().filter(|b| !b.c.is_done()) {
            let fed = feed(b, ev, &mut self.open);
            if self.settle(fed).is_none() {
                self.body = None;
            }
        }
        Ok(())
    }

    fn settle<T>(&mut self, r: Result<T, WssecError>) -> Option<T> {
        r.map_err(|e| self.failed = Some(e)).ok()
    }

    /// The message has ended.
    pub fn end(self) -> Result<Ended<O>, WssecError> {
        let scan = self.scan.finish()?;
        if self.head_end.is_none() {
            return Err(WssecError::BadEnvelope("no Body"));
        }
        let digest = match (self.body, self.failed) {
            (_, Some(e)) => Some(Err(e)),
            (Some(b), None) if b.c.is_done() => Some(Ok(b.sink.finish().0)),
            (Some(_), None) => return Err(WssecError::Internal("the Body's digest did not close")),
            (None, None) => None,
        };
        Ok(Ended {
            open: self.open,
            scan,
            digest,
        })
    }
}

fn feed<O: BodyOpen>(b: &mut BodyDigest, ev: &Event<'_>, open: &mut O) -> Result<(), WssecError> {
    if let Event::Comment(_) = ev {
        return Err(WssecError::CommentInSignedPart(b.id.clone()));
    }
    b.c.feed(ev, &mut b.sink).map_err(WssecError::from)?;
    open.content(ev, &b.c)
}
