//! Signing a message too large to hold: it is read in windows as it
//! arrives (the verifier's intake: the same reader, the same envelope scan),
//! the part before the Body's content held, the Body canonicalized and
//! digested as it passes. At the end the Security header is written into the
//! held part exactly as the buffered signer writes it, the Body standing
//! empty in its place; the caller sends that, then the Body's bytes as they
//! came (the proxy replays them from its encrypted spool).
//!
//! What must be known before the Body's content is read is settled at its
//! start tag: its Id (its own, or a fresh one added there) and the
//! PrefixList of its Reference. The buffered signer lists the prefixes the
//! Body's attribute values name, which only the whole Body shows; here every
//! prefix in scope at the Body is listed (as WSS4J does by default), and a
//! value naming a prefix bound inside the Body by a declaration the canonical
//! form leaves out is refused (`wssec_value_prefix_unsigned`): its meaning
//! would not be signed.

use std::collections::HashMap;
use std::time::SystemTime;

use super::layout;
use super::{begin_edited, id_for, secure_with, Ids, SignOptions, Signer, StreamedBody};

use crate::wssec::c14n::{canonicalize_element, Canonicalizer, Method};
use crate::wssec::dsig::{DigestAlgorithm, DigestWriter};
use crate::wssec::envelope::{self, StreamScan};
use crate::wssec::error::WssecError;
use crate::wssec::pass::{BodyDigest, BodyOpen};
use crate::wssec::stream::Intake;
use crate::wssec::xml::{Event, Limits, StartElement};

/// Prefixes a second pass adds to the list, at most (a real Body names a few).
const MAX_UNSHOWN: usize = 64;

/// What the signer settled at the Body's start tag.
struct Settled {
    id: String,
    /// What the Body's start tag gained (`wsu:Id`, maybe its declaration).
    id_insert: Option<String>,
    /// The canonical form of the Body's start tag as digested.
    c14n_start: Vec<u8>,
    prefixes: Vec<String>,
    /// Closes the message after the Body's start tag (the held part then
    /// reads as a whole message with an empty Body).
    closers: String,
}

struct SignOpen {
    limits: Limits,
    digest: DigestAlgorithm,
    /// A signature over the Body is made.
    digests: bool,
    /// A Security header already there is replaced (else refused).
    replace_security: bool,
    /// A second pass: the Body's Id and the prefixes to list as the first
    /// pass found them.
    again: Option<(String, Vec<String>)>,
    settled: Option<Settled>,
    /// Prefixes named in attribute values where the canonical form did not
    /// show their binding.
    unshown: Vec<String>,
}

impl BodyOpen for SignOpen {
    fn open(
        &mut self,
        head: &[u8],
        start: &StartElement<'_>,
        scan: &StreamScan,
        envelope: &str,
    ) -> Result<Option<BodyDigest>, WssecError> {
        // Refused now rather than after the whole Body was read.
        if scan.security().is_some() && !self.replace_security {
            return Err(WssecError::AlreadySecured);
        }
        let t = layout::target(start);
        let closers = if head.ends_with(b"/>") {
            format!("</{envelope}>")
        } else {
            format!("</{}></{envelope}>", start.name())
        };
        let none = HashMap::new();
        let mut ids = Ids {
            taken: vec![scan.ids().unwrap_or(&none)],
            given: Vec::new(),
        };
        let mut edits = Vec::new();
        let (id, mut prefixes) = match self.again.take() {
            Some((id, prefixes)) => {
                if t.wsu_id.is_none() {
                    edits.push(super::id_edit(head, &t, &id));
                }
                (id, prefixes)
            }
            None => {
                let id = id_for(head, &t, "Body", &mut ids, &mut edits)?;
                let scope = t.scope.keys().filter(|p| !p.is_empty()).cloned();
                (id, scope.collect())
            }
        };
        prefixes.sort_unstable();
        prefixes.dedup();
        let method = Method::exclusive().with_prefix_list(&prefixes.join(" "));
        let settled = self.settled.insert(Settled {
            id: id.clone(),
            id_insert: edits.first().map(|e| e.insert.clone()),
            c14n_start: Vec::new(),
            prefixes,
            closers,
        });
        if !self.digests {
            return Ok(None);
        }
        // The Body's start tag as it will be sent (with its Id) starts the
        // canonical form; its content then comes from the message's reader.
        let mut sink = DigestWriter::new(self.digest, false);
        let (c, tag) = begin_edited(head, &edits, start, method, &self.limits, &mut sink)?;
        settled.c14n_start = tag;
        Ok(Some(BodyDigest { id, c, sink }))
    }

    /// A QName in an attribute value (`xsi:type="t:Contact"`) means what its
    /// prefix is bound to; the buffered signer lists such prefixes so their
    /// declarations are signed. Here the list was fixed at the Body's start:
    /// a binding the canonical form does not show is noted, for a second
    /// pass that lists it (and refused if even that does not show it).
    fn content(&mut self, ev: &Event<'_>, c: &Canonicalizer) -> Result<(), WssecError> {
        let Event::Start(e) = ev else {
            return Ok(());
        };
        for a in e.attributes() {
            let Some(p) = layout::value_prefix(a.value) else {
                continue;
            };
            if let Some(uri) = e.lookup_namespace(p) {
                if c.rendered_uri(p) != Some(uri) && !self.unshown.iter().any(|u| u == p) {
                    if self.unshown.len() >= MAX_UNSHOWN {
                        return Err(WssecError::ValuePrefixUnsigned(p.to_owned()));
                    }
                    self.unshown.push(p.to_owned());
                }
            }
        }
        Ok(())
    }
}

/// What to send for a message signed as it streamed: `head` in place of its
/// first `body_from` bytes, then the rest as it came.
#[derive(Debug)]
pub struct SignedHead {
    pub head: Vec<u8>,
    pub body_from: usize,
}

/// The end of a message signed as it streamed.
pub enum Finished<'s> {
    Signed(SignedHead),
    /// The Body names prefixes whose bindings the digest did not cover: feed
    /// the whole message again to this signer, which lists them too.
    Again(Box<StreamSigner<'s>>),
}

/// One message being signed as it arrives.
pub struct StreamSigner<'s> {
    intake: Intake<SignOpen>,
    signer: Option<&'s Signer>,
    opts: &'s SignOptions,
}

impl<'s> StreamSigner<'s> {
    /// Starts a message; `signer` as [`super::secure`] takes it.
    pub fn new(signer: Option<&'s Signer>, opts: &'s SignOptions) -> Self {
        let mut limits = opts.limits.clone();
        limits.max_bytes = usize::MAX;
        let open = SignOpen {
            limits,
            digest: opts.digest,
            digests: signer.is_some() && opts.sign_body,
            replace_security: opts.replace_security,
            again: None,
            settled: None,
            unshown: Vec::new(),
        };
        StreamSigner {
            intake: Intake::new(open, &opts.limits, None),
            signer,
            opts,
        }
    }

    /// Reads in windows of about `bytes` instead (for tests).
    pub fn with_window(mut self, bytes: usize) -> Self {
        self.intake = self.intake.with_window(bytes);
        self
    }

    /// Takes the next piece of the message, of any size.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), WssecError> {
        self.intake.feed(chunk)
    }

    /// The end of the message: its Security header, its Timestamp created
    /// `now`, written into the held part; or a second pass to make.
    pub fn finish(self, now: SystemTime) -> Result<Finished<'s>, WssecError> {
        let window = self.intake.window_size();
        let (ended, head) = self.intake.end()?;
        let digest = ended.digest.transpose()?;
        let mut open = ended.open;
        let s = open.settled.ok_or(WssecError::BadEnvelope("no Body"))?;
        if !open.unshown.is_empty() {
            if open.again.is_some() || open.unshown.iter().any(|p| s.prefixes.contains(p)) {
                // Listed and still not shown: nothing a pass more could do.
                return Err(WssecError::ValuePrefixUnsigned(open.unshown.swap_remove(0)));
            }
            let mut next = StreamSigner::new(self.signer, self.opts).with_window(window);
            let mut prefixes = s.prefixes;
            prefixes.append(&mut open.unshown);
            next.intake.pass.open.again = Some((s.id, prefixes));
            return Ok(Finished::Again(Box::new(next)));
        }
        // A fresh Id the Body's content turned out to use would name two elements.
        if ended
            .scan
            .ids
            .get(&s.id)
            .is_some_and(|&at| at != ended.scan.body.start)
        {
            return Err(WssecError::DuplicateId(s.id));
        }
        let body_from = head.len();
        let mut pseudo = head;
        pseudo.extend_from_slice(s.closers.as_bytes());
        let mut o = self.opts.clone();
        o.created = now;
        // The held part was bounded as it arrived; the edits may add a little.
        o.limits.max_bytes = usize::MAX;
        let streamed = StreamedBody {
            id: &s.id,
            id_insert: s.id_insert.as_deref(),
            prefixes: &s.prefixes,
            digest: digest.as_deref(),
            ids: &ended.scan.ids,
        };
        let out = secure_with(&pseudo, self.signer.map(Signer::keyed), &o, Some(&streamed))?;
        if digest.is_some() {
            check_start_tag(&out, &o, &s)?;
        }
        let head = out
            .strip_suffix(s.closers.as_bytes())
            .ok_or(WssecError::Internal("the signed head lost its Body"))?
            .to_vec();
        Ok(Finished::Signed(SignedHead { head, body_from }))
    }
}

/// The Body's start tag as written must canonicalize to what was digested
/// (the self-check takes the Body's digest as given, so it cannot see this).
fn check_start_tag(out: &[u8], o: &SignOptions, s: &Settled) -> Result<(), WssecError> {
    let scan = envelope::scan(out, &o.limits)?;
    let method = Method::exclusive().with_prefix_list(&s.prefixes.join(" "));
    let mut c14n = Vec::new();
    let at = scan.body.start;
    canonicalize_element(out, &o.limits, &method, |e| e.span().start == at, &mut c14n)?;
    if !c14n.starts_with(&s.c14n_start) || s.c14n_start.is_empty() {
        return Err(WssecError::SelfCheck(Box::new(WssecError::Internal(
            "the Body's start tag as written is not the one digested",
        ))));
    }
    Ok(())
}
