//! Where the signer's additions go in the caller's bytes, and with which
//! prefixes: one reader pass notes the namespaces in force at the Body and at
//! each header block to be signed, the Ids already there, and the prefixes the
//! Body's content names in attribute values; edits are then spliced in, and
//! nothing else of the original changes.

use std::collections::{BTreeSet, HashMap};

use crate::wssec::c14n::Canonicalizer;
use crate::wssec::dsig::DigestWriter;
use crate::wssec::envelope::{QName, Scanned, StreamScan, WSU_NS};
use crate::wssec::error::WssecError;
use crate::wssec::xml::{Event, Limits, Reader, Span, StartElement};

/// An element the signer references: where its start tag ends, the wsu:Id
/// it already has, and the prefixes bound where it stands.
#[derive(Debug, Clone)]
pub struct Target {
    pub start_tag: Span,
    /// A `wsu:Id` (in the utility namespace) already on it.
    pub wsu_id: Option<String>,
    /// prefix -> URI in force at the element (its own declarations included).
    pub scope: HashMap<String, String>,
}

/// What one pass over the message found for the signer.
#[derive(Debug, Clone)]
pub struct Context {
    pub body: Target,
    /// Header blocks to sign, in the order asked for.
    pub headers: Vec<Target>,
    /// Prefixes the Body's content uses inside attribute values
    /// (`xsi:type="t:Contact"`), bound where they are used: canonicalization
    /// does not see them as used, so they go in an InclusiveNamespaces list.
    pub value_prefixes: BTreeSet<String>,
    /// The Body's digest, taken in the same pass when `context` was given
    /// the means to begin it.
    pub body_digest: Option<Vec<u8>>,
}

/// Begins the Body's canonical form and digest at its start tag (or
/// declines), given the message up to that tag's end, the Body as a target
/// and the scan so far.
pub type OpenBody<'o> = dyn FnMut(
        &[u8],
        &StartElement<'_>,
        &Target,
        &StreamScan,
    ) -> Result<Option<(Canonicalizer, DigestWriter)>, WssecError>
    + 'o;

pub fn target(e: &StartElement<'_>) -> Target {
    Target {
        start_tag: e.span(),
        wsu_id: e.attribute_value(Some(WSU_NS), "Id").map(str::to_owned),
        scope: e
            .in_scope_namespaces()
            .filter(|d| !d.uri.is_empty())
            .map(|d| (d.prefix.to_owned(), d.uri.to_owned()))
            .collect(),
    }
}

/// A QName-shaped value's prefix: `p:local`, both parts name-like.
pub fn value_prefix(v: &str) -> Option<&str> {
    let (p, local) = v.trim().split_once(':')?;
    let name_like = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !s.as_bytes()[0].is_ascii_digit()
    };
    (name_like(p) && name_like(local)).then_some(p)
}

/// Reads the message once for its envelope scan and its `context`.
/// `sign_headers` are direct children of the Header; each must be there
/// exactly once. With `open_body`, the Body's content is canonicalized and
/// digested in the same read, from the start `open_body` makes.
pub fn context(
    msg: &[u8],
    limits: &Limits,
    sign_headers: &[QName],
    mut open_body: Option<&mut OpenBody<'_>>,
) -> Result<(Scanned, Context), WssecError> {
    let mut reader = Reader::new(msg, limits)?;
    let mut scan = StreamScan::new(None);
    let mut body = None;
    let mut headers: Vec<Option<Target>> = vec![None; sign_headers.len()];
    let mut value_prefixes = BTreeSet::new();
    let mut body_depth = None;
    // The signed element being read (depth, name): a comment in it would be
    // refused by every verifier that checks what the upstream reads.
    let mut signed: Option<(usize, String)> = None;
    let mut in_header = false;
    let mut digest: Option<(Canonicalizer, DigestWriter)> = None;
    let mut step = |ev: &Event<'_>, scan: &StreamScan| -> Result<(), WssecError> {
        // The Body's start tag is canonicalized by `open_body`, as edited.
        let mut opened = false;
        match ev {
            Event::Start(e) => {
                let d = e.depth();
                if d == 2 {
                    // The scan holds the Envelope to a Header, then a Body.
                    let is_body = scan.body_opened();
                    in_header = !is_body;
                    if is_body {
                        let t = target(e);
                        if let Some(open) = open_body.as_mut() {
                            let head = msg.get(..e.span().end).unwrap_or_default();
                            digest = open(head, e, &t, scan)?;
                            opened = true;
                        }
                        body = Some(t);
                        body_depth = Some(d);
                        signed = Some((d, "Body".to_owned()));
                    }
                } else if d == 3 && in_header {
                    let q = QName::new(e.namespace().unwrap_or(""), e.local_name());
                    if let Some(i) = sign_headers.iter().position(|h| *h == q) {
                        if headers[i].is_some() {
                            return Err(WssecError::DuplicateHeaderBlock(q.to_string()));
                        }
                        headers[i] = Some(target(e));
                        signed = Some((d, q.to_string()));
                    }
                }
                if body_depth.is_some_and(|b| d > b) {
                    for a in e.attributes() {
                        if let Some(p) = value_prefix(a.value) {
                            if e.lookup_namespace(p).is_some() {
                                value_prefixes.insert(p.to_owned());
                                // The digest needs a PrefixList: another pass.
                                digest = None;
                            }
                        }
                    }
                }
            }
            Event::End(e) => {
                if body_depth == Some(e.depth()) {
                    body_depth = None;
                }
                if signed.as_ref().is_some_and(|(d, _)| *d == e.depth()) {
                    signed = None;
                }
            }
            Event::Comment(_) => {
                if let Some((_, name)) = signed.take() {
                    return Err(WssecError::CommentInSignedPart(name));
                }
            }
            Event::Text(_) => {}
        }
        // A comment in the Body was refused above, before it came here.
        if let Some((c, sink)) = digest.as_mut().filter(|(c, _)| !opened && !c.is_done()) {
            c.feed(ev, sink)?;
        }
        Ok(())
    };
    // The scan reads to the end and refuses first, as when it read alone;
    // the first fault of the layout waits for it.
    let mut fault = None;
    reader.each(|ev| {
        scan.event(ev)?;
        if fault.is_none() {
            fault = step(ev, &scan).err();
        }
        Ok::<_, WssecError>(true)
    })?;
    let scan = scan.finish()?;
    if let Some(e) = fault {
        return Err(e);
    }
    let body_digest = match digest {
        Some((c, sink)) if c.is_done() => Some(sink.finish().0),
        Some(_) => return Err(WssecError::Internal("the Body's digest did not close")),
        None => None,
    };
    let body = body.ok_or(WssecError::Internal("Body not found again"))?;
    let headers = headers
        .into_iter()
        .zip(sign_headers)
        .map(|(t, q)| t.ok_or_else(|| WssecError::MissingHeaderBlock(q.to_string())))
        .collect::<Result<_, _>>()?;
    let context = Context {
        body,
        headers,
        value_prefixes,
        body_digest,
    };
    Ok((scan, context))
}

/// A prefix for the utility namespace on an element with `scope`: one bound
/// to it already (the least, nothing to declare), else `wsu` or `wsuN`, whichever is not
/// bound there — so no name inside the element changes its meaning.
pub fn wsu_prefix(scope: &HashMap<String, String>) -> (String, bool) {
    // The least such prefix: the same scope always gives the same answer
    // (a map's order is not), which the streaming signer relies on.
    let bound = scope
        .iter()
        .filter(|(p, u)| *u == WSU_NS && !p.is_empty())
        .map(|(p, _)| p)
        .min();
    if let Some(p) = bound {
        return (p.clone(), false);
    }
    let fresh = std::iter::once("wsu".to_owned())
        .chain((1..).map(|n| format!("wsu{n}")))
        .find(|p| !scope.contains_key(p))
        .unwrap_or_else(|| "wsu".to_owned());
    (fresh, true)
}

/// One change to the original bytes: at `at`, `delete` bytes give way to `insert`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub at: usize,
    pub delete: usize,
    pub insert: String,
}

/// Applies non-overlapping edits (any order) to `msg`.
pub fn apply(msg: &[u8], edits: &[Edit]) -> Result<Vec<u8>, WssecError> {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| e.at);
    let extra: usize = sorted.iter().map(|e| e.insert.len()).sum();
    let mut out = Vec::with_capacity(msg.len() + extra);
    let mut pos = 0;
    for e in sorted {
        if e.at < pos || e.at + e.delete > msg.len() {
            return Err(WssecError::Internal("signer edits overlap"));
        }
        out.extend_from_slice(&msg[pos..e.at]);
        out.extend_from_slice(e.insert.as_bytes());
        pos = e.at + e.delete;
    }
    out.extend_from_slice(&msg[pos..]);
    Ok(out)
}

/// Where byte `at` of the caller's message is once `edits` are applied:
/// after everything inserted at or before it.
pub fn shifted(edits: &[Edit], at: usize) -> usize {
    let before = edits.iter().filter(|e| e.at + e.delete <= at);
    let (added, removed) = before.fold((0, 0), |(a, r), e| (a + e.insert.len(), r + e.delete));
    (at + added).saturating_sub(removed)
}

/// The offset where attributes can be added to a start tag (before `>` or `/>`).
pub fn attribute_point(msg: &[u8], tag: Span) -> usize {
    let empty = msg.get(..tag.end).is_some_and(|b| b.ends_with(b"/>"));
    tag.end.saturating_sub(if empty { 2 } else { 1 })
}
