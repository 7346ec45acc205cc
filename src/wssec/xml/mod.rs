//! Hardened pull reader for untrusted XML (SOAP messages).
//!
//! It refuses anything a signature verifier must not interpret (DTDs, entities,
//! processing instructions, non-UTF-8 input), enforces size limits while it reads,
//! resolves namespaces itself, and gives every event its byte span in the input so
//! callers can splice the original bytes instead of re-serialising.
//!
//! `lex` splits the input into markup and character data; `element` holds
//! names, namespaces and attributes (start tags); `text` character data,
//! references and line ends; this module the event loop.

mod cut;
mod element;
mod lex;
mod text;

pub use cut::Cutter;

use element::State;
pub(super) use element::Sub;
pub use element::{EndElement, StartElement, NO_NAMESPACE_ID, XML_ID};
use text::{check_chars, push_eol_normalized};

use lex::{Attrs, Lexer, Tok};

/// XML 1.0 §2.3 white space (`S`): space, tab, LF, CR, and nothing else.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Namespace bound to the `xml` prefix by definition.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// Namespace of `xmlns` attributes; no prefix may be bound to it.
pub const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// Limits enforced while reading. The defaults suit SOAP messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Size of the whole input, in bytes.
    pub max_bytes: usize,
    /// Element nesting depth (the root element is depth 1).
    pub max_depth: usize,
    /// Attributes on one element, namespace declarations included.
    pub max_attributes: usize,
    /// Namespace declarations on one element.
    pub max_ns_per_element: usize,
    /// Namespace declarations in scope at once (shadowed ones included).
    pub max_ns_in_scope: usize,
    /// Length of an element or attribute name, prefix included, in bytes.
    pub max_name_len: usize,
    /// Length of one text node (adjacent text, references and CDATA together)
    /// or comment, in bytes of input.
    pub max_text_len: usize,
    /// Length of one attribute value, in bytes of input.
    pub max_attr_value_len: usize,
    /// Reading stops with [`XmlError::WorkLimit`] past this instant: every
    /// pass over a message shares one bound on the work it may cost.
    pub deadline: Option<std::time::Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 << 20,
            max_depth: 100,
            max_attributes: 64,
            max_ns_per_element: 32,
            max_ns_in_scope: 128,
            max_name_len: 256,
            max_text_len: 8 << 20,
            max_attr_value_len: 64 << 10,
            deadline: None,
        }
    }
}

/// Why the input was refused. `at` is a byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("input is not UTF-8 at byte {at}")]
    NotUtf8 { at: usize },
    #[error("declared encoding is not UTF-8 (at byte {at})")]
    Encoding { at: usize },
    #[error("XML version other than 1.0 (at byte {at})")]
    Version { at: usize },
    #[error("DOCTYPE is not allowed (at byte {at})")]
    Doctype { at: usize },
    #[error("entity reference other than the predefined ones (at byte {at})")]
    Entity { at: usize },
    #[error("processing instruction is not allowed (at byte {at})")]
    ProcessingInstruction { at: usize },
    #[error("character not allowed in XML (at byte {at})")]
    InvalidChar { at: usize },
    #[error("duplicate attribute (at byte {at})")]
    DuplicateAttribute { at: usize },
    #[error("nesting deeper than {limit} (at byte {at})")]
    TooDeep { at: usize, limit: usize },
    #[error("more than {limit} attributes on one element (at byte {at})")]
    TooManyAttributes { at: usize, limit: usize },
    #[error("more than {limit} namespace declarations (at byte {at})")]
    TooManyNamespaces { at: usize, limit: usize },
    #[error("name longer than {limit} bytes (at byte {at})")]
    NameTooLong { at: usize, limit: usize },
    #[error("text or comment longer than {limit} bytes (at byte {at})")]
    TextTooLong { at: usize, limit: usize },
    #[error("attribute value longer than {limit} bytes (at byte {at})")]
    AttributeTooLong { at: usize, limit: usize },
    #[error("undeclared namespace prefix (at byte {at})")]
    UndeclaredPrefix { at: usize },
    #[error("invalid namespace declaration (at byte {at})")]
    InvalidNamespace { at: usize },
    #[error("malformed XML at byte {at}: {detail}")]
    Malformed { at: usize, detail: String },
    #[error("reading took longer than the work limit (at byte {at})")]
    WorkLimit { at: usize },
}

impl XmlError {
    /// Stable machine reason, for metrics labels, logs and faults.
    pub fn reason(&self) -> super::reason::Reason {
        use super::reason::Reason as R;
        match self {
            XmlError::TooLarge { .. } => R::XmlTooLarge,
            XmlError::NotUtf8 { .. } => R::XmlNotUtf8,
            XmlError::Encoding { .. } => R::XmlEncoding,
            XmlError::Version { .. } => R::XmlVersion,
            XmlError::Doctype { .. } => R::XmlDoctype,
            XmlError::Entity { .. } => R::XmlEntity,
            XmlError::ProcessingInstruction { .. } => R::XmlProcessingInstruction,
            XmlError::InvalidChar { .. } => R::XmlInvalidChar,
            XmlError::DuplicateAttribute { .. } => R::XmlDuplicateAttribute,
            XmlError::TooDeep { .. } => R::XmlTooDeep,
            XmlError::TooManyAttributes { .. } => R::XmlTooManyAttributes,
            XmlError::TooManyNamespaces { .. } => R::XmlTooManyNamespaces,
            XmlError::NameTooLong { .. } => R::XmlNameTooLong,
            XmlError::TextTooLong { .. } => R::XmlTextTooLong,
            XmlError::AttributeTooLong { .. } => R::XmlAttributeTooLong,
            XmlError::UndeclaredPrefix { .. } => R::XmlUndeclaredPrefix,
            XmlError::InvalidNamespace { .. } => R::XmlInvalidNamespace,
            XmlError::Malformed { .. } => R::XmlMalformed,
            XmlError::WorkLimit { .. } => R::WorkLimit,
        }
    }
}

pub(super) fn malformed(at: usize, detail: impl Into<String>) -> XmlError {
    XmlError::Malformed {
        at,
        detail: detail.into(),
    }
}

/// Byte range `start..end` of an event in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// One event of the document. Whitespace outside the root element is not reported.
#[derive(Debug, Clone, Copy)]
pub enum Event<'r> {
    /// A start tag, or an empty-element tag (then an `End` with an empty span follows).
    Start(StartElement<'r>),
    End(EndElement<'r>),
    /// Character data inside the root: references resolved, CDATA included, line
    /// endings normalized. One text node may arrive as several consecutive `Text`
    /// events (long text is handed out in pieces); their spans are contiguous.
    Text(Text<'r>),
    /// A comment (line endings normalized), inside or outside the root.
    Comment(Text<'r>),
}

/// Text or comment content.
#[derive(Clone, Copy)]
pub struct Text<'r> {
    text: &'r str,
    span: Span,
}

impl<'r> Text<'r> {
    pub fn text(&self) -> &'r str {
        self.text
    }
    pub fn span(&self) -> Span {
        self.span
    }
}

/// A namespace binding; `prefix` is `""` for the default namespace, and a `uri`
/// of `""` there means "no default namespace" (`xmlns=""`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsDecl<'r> {
    pub prefix: &'r str,
    pub uri: &'r str,
    /// Unique per declaration in the document: two equal ids are one binding
    /// (so one URI) without comparing the URIs.
    pub id: u64,
}

/// An attribute (namespace declarations are reported separately).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'r> {
    /// Qualified name as written.
    pub name: &'r str,
    pub prefix: &'r str,
    pub local_name: &'r str,
    /// `None` for unprefixed attributes: they are in no namespace.
    pub namespace: Option<&'r str>,
    /// `NsDecl::id` of the binding the prefix resolved to.
    pub namespace_id: u64,
    /// Normalized value (XML 1.0 §3.3.3, every attribute taken as CDATA).
    pub value: &'r str,
}

// Debug output names sizes only: content may carry secrets (a UsernameToken
// password, say) and must never reach a log line.
impl std::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text")
            .field("len", &self.text.len())
            .field("span", &self.span)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Prolog,
    Root,
    Epilog,
}

/// What `next` will hand out, computed before borrowing the state for the event.
pub(super) enum Ready<'a> {
    Start(Span),
    End(Span),
    Text(Span, Option<&'a str>),
    Comment(Span, Option<&'a str>),
}

/// Pull reader over a complete message held in memory.
pub struct Reader<'a> {
    lex: Lexer<'a>,
    limits: Limits,
    st: State,
    phase: Phase,
    pending: Option<(Tok<'a>, Span)>,
    pop_pending: bool,
    synth_end: Option<usize>,
    seen_any: bool,
    failed: Option<XmlError>,
    /// Events handed out, for checking the deadline now and then.
    events: u32,
    run: TextRun<'a>,
    /// False for a window of a message that goes on after it.
    last: bool,
    /// Where the document's first token is, for a reader that began there
    /// (not one carried on from an earlier window): it can read it again.
    origin: Option<usize>,
}

/// A start tag and the reader's state right before it: a later pass over
/// the same input begins there ([`Reader::resume`]) instead of reading the
/// message from its start again to reach one element (the SignedInfo, the
/// Timestamp). Made by [`StartElement::mark`].
pub struct Mark {
    st: State,
    span: Span,
}

impl Clone for Mark {
    fn clone(&self) -> Self {
        Mark {
            st: self.st.snapshot(),
            span: self.span,
        }
    }
}

impl Mark {
    /// Where the element's start tag begins.
    pub fn start(&self) -> usize {
        self.span.start
    }
}

// Attribute values may be secrets: only the place is shown.
impl std::fmt::Debug for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mark").field("span", &self.span).finish()
    }
}

/// What the reader of one window of a message leaves for the next window's:
/// the open elements, namespaces in scope and where in the document it is.
pub struct Carry {
    st: State,
    phase: Phase,
    seen_any: bool,
    events: u32,
}

/// Progress through a run of adjacent text, CDATA and references.
#[derive(Default)]
pub(super) struct TextRun<'a> {
    active: bool,
    /// Input bytes of the run so far, checked against `max_text_len`.
    len: usize,
    /// Unconsumed content of the current text or CDATA piece.
    rest: &'a str,
    /// Input offset where the unconsumed raw part begins (span starts).
    pos: usize,
    /// Input offset of `rest` itself.
    offset: usize,
    /// Input offset where the current piece's markup ends.
    end: usize,
    /// Whether the current piece holds a CR (to normalize).
    cr: bool,
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8], limits: &Limits) -> Result<Reader<'a>, XmlError> {
        if input.len() > limits.max_bytes {
            return Err(XmlError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        Reader::window(input, 0, limits, None, true)
    }

    /// A reader over one window of a message that arrives in pieces: the
    /// window starts at byte `offset` of the message and ends where a
    /// [`Cutter`] said it may; `carry` is what the previous window's reader
    /// left (`None` for the first window). Unless `last`, reaching the
    /// window's end inside the document is not an error: `next` returns
    /// `None` and [`Reader::suspend`] hands the state on. Sizes are the
    /// caller's to bound.
    pub fn window(
        input: &'a [u8],
        offset: usize,
        limits: &Limits,
        carry: Option<Carry>,
        last: bool,
    ) -> Result<Reader<'a>, XmlError> {
        let mut skip = 0;
        if carry.is_none() {
            // UTF-16/32 (with or without BOM) shows as a BOM or a NUL in the first bytes.
            if input.starts_with(&[0xFE, 0xFF])
                || input.starts_with(&[0xFF, 0xFE])
                || input.iter().take(4).any(|&b| b == 0)
            {
                return Err(XmlError::NotUtf8 { at: 0 });
            }
            // The byte order mark is not a character of the document; a
            // second one, or one opening a later window, is.
            if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
                skip = 3;
            }
        }
        let body = input.get(skip..).unwrap_or_default();
        // Validated once, so every piece after is borrowed as it is.
        let text = std::str::from_utf8(body).map_err(|e| XmlError::NotUtf8 {
            at: offset + skip + e.valid_up_to(),
        })?;
        let origin = carry.is_none().then_some(offset + skip);
        let carry = carry.unwrap_or(Carry {
            st: State::default(),
            phase: Phase::Prolog,
            seen_any: false,
            events: 0,
        });
        Ok(Reader {
            lex: Lexer::new(text, offset + skip),
            limits: limits.clone(),
            st: carry.st,
            phase: carry.phase,
            pending: None,
            pop_pending: false,
            synth_end: None,
            seen_any: carry.seen_any,
            failed: None,
            events: carry.events,
            run: TextRun::default(),
            last,
            origin,
        })
    }

    /// Reads the same input again from its start, with the buffers grown so
    /// far: verification reads one message in up to three passes, and each
    /// would otherwise validate the UTF-8 and grow its arenas anew. A reader
    /// carried on from an earlier window has no start of its own to go back
    /// to; it then refuses to read on.
    pub fn rewind(&mut self) {
        let Some(origin) = self.origin else {
            self.failed = Some(XmlError::Malformed {
                at: self.lex.offset(),
                detail: "a window carried on from another cannot be read again".into(),
            });
            return;
        };
        self.st.clear();
        self.restart(Lexer::new(self.lex.text(), origin), false);
    }

    /// Reads on from `lex` with the state as it is: nothing pending.
    fn restart(&mut self, lex: Lexer<'a>, seen_any: bool) {
        self.lex = lex;
        self.phase = if self.st.frames.is_empty() {
            Phase::Prolog
        } else {
            Phase::Root
        };
        self.pending = None;
        self.pop_pending = false;
        self.synth_end = None;
        self.seen_any = seen_any;
        self.failed = None;
        self.run = TextRun::default();
    }

    /// Reads from the element at `start` when `marks` has it (its start tag
    /// is the next event), from the input's start otherwise.
    pub fn begin_at(&mut self, start: usize, marks: &[Mark]) {
        match marks.iter().find(|m| m.span.start == start) {
            Some(m) => self.resume(m),
            None => self.rewind(),
        }
    }

    /// Reads again from `mark`'s start tag, which is the next event, with
    /// the state the reader had before it. The mark must come from a reader
    /// of this same input (a window of it counts, offsets being the
    /// message's), which read the whole message through once and found it
    /// well formed: a pass from the mark only goes as far as its caller needs.
    pub fn resume(&mut self, mark: &Mark) {
        let text = self.lex.text();
        let origin = self.origin;
        let at = origin.and_then(|o| mark.span.start.checked_sub(o));
        let len = mark.span.end.saturating_sub(mark.span.start);
        // The mark's own tag, as far as its bounds tell: `<` to `>`.
        let tag = |a: usize| text.get(a..a.saturating_add(len));
        let at = at.filter(|&a| tag(a).is_some_and(|t| t.starts_with('<') && t.ends_with('>')));
        let Some(at) = at else {
            self.failed = Some(malformed(mark.span.start, "a mark outside this input"));
            return;
        };
        self.st.restore(&mark.st);
        self.restart(Lexer::at(text, origin.unwrap_or_default(), at), true);
    }

    /// What the next window's reader needs, once `next` returned `None`.
    pub fn suspend(self) -> Carry {
        Carry {
            st: self.st,
            phase: self.phase,
            seen_any: self.seen_any,
            events: self.events,
        }
    }

    /// Current element depth (0 outside the root).
    pub fn depth(&self) -> usize {
        self.st.frames.len()
    }

    /// Heap capacity of the reader's reusable buffers, in bytes. Diagnostic: it
    /// stays bounded by the limits, whatever the document size.
    pub fn buffered_capacity(&self) -> usize {
        self.st.capacity()
    }

    /// Next event, or `None` at the end of a well-formed document.
    #[allow(clippy::should_implement_trait)] // a lending iterator: events borrow the reader
    pub fn next(&mut self) -> Result<Option<Event<'_>>, XmlError> {
        // After a refusal the stacks may be half-updated: keep refusing.
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.events = self.events.wrapping_add(1);
        if let Some(d) = self.limits.deadline {
            // Often enough to stop within a fraction of a millisecond, rarely
            // enough to cost nothing.
            if self.events % 256 == 0 && std::time::Instant::now() > d {
                let e = XmlError::WorkLimit {
                    at: self.lex.offset(),
                };
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        let ready = match self.advance() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let st = &self.st;
        let depth = st.frames.len();
        let frame = st.frames.last();
        Ok(Some(match (ready, frame) {
            (Ready::Start(span), Some(frame)) => Event::Start(StartElement {
                st,
                frame,
                depth,
                span,
            }),
            (Ready::End(span), Some(frame)) => Event::End(EndElement {
                st,
                frame,
                depth,
                span,
            }),
            (Ready::Text(span, t), _) => Event::Text(Text {
                text: t.unwrap_or(&st.text),
                span,
            }),
            (Ready::Comment(span, t), _) => Event::Comment(Text {
                text: t.unwrap_or(&st.text),
                span,
            }),
            (_, None) => return Err(malformed(0, "internal: no open element")),
        }))
    }

    /// Hands each event to `f` until the document ends or `f` returns
    /// `Ok(false)`. For the loops over a whole message: the event is used
    /// where `next` left it, while moved out of its `Result` it is copied in
    /// wide loads that stall on the narrower stores that just wrote it
    /// (about a tenth of canonicalizing a large Body).
    pub fn each<E: From<XmlError>>(
        &mut self,
        mut f: impl FnMut(&Event<'_>) -> Result<bool, E>,
    ) -> Result<(), E> {
        loop {
            let next = self.next();
            match next {
                Ok(Some(ref ev)) => {
                    if !f(ev)? {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn advance(&mut self) -> Result<Option<Ready<'a>>, XmlError> {
        if self.pop_pending {
            self.pop_pending = false;
            self.st.pop();
        }
        if let Some(at) = self.synth_end.take() {
            return Ok(Some(self.end_ready(Span { start: at, end: at })));
        }
        if self.run.active {
            if let Some(r) = self.text_step()? {
                return Ok(Some(r));
            }
        }
        loop {
            let (ev, span) = match self.pending.take() {
                Some(p) => p,
                None => self.read_raw()?,
            };
            // The end of a window is not a token: a declaration after it
            // may still be the first thing in the message.
            let first = !self.seen_any;
            self.seen_any |= ev != Tok::Eof;
            match ev {
                Tok::Decl(d) => {
                    // Only as the very first thing; elsewhere `<?xml` is a reserved PI.
                    if !first {
                        return Err(XmlError::ProcessingInstruction { at: span.start });
                    }
                    check_decl(d, span.start)?;
                }
                Tok::Pi => return Err(XmlError::ProcessingInstruction { at: span.start }),
                Tok::Doctype => return Err(XmlError::Doctype { at: span.start }),
                Tok::Start { name, attrs } => {
                    return self.start(name, attrs, span, false).map(Some);
                }
                Tok::Empty { name, attrs } => {
                    let r = self.start(name, attrs, span, true)?;
                    self.synth_end = Some(span.end);
                    return Ok(Some(r));
                }
                Tok::End(name) => {
                    let open = self.st.frames.last().map(|f| f.name.of(&self.st.names));
                    if open != Some(name) {
                        return Err(malformed(span.start, "end tag does not match start tag"));
                    }
                    return Ok(Some(self.end_ready(span)));
                }
                Tok::Comment(t) => {
                    let l = &self.limits;
                    if t.len() > l.max_text_len {
                        return Err(XmlError::TextTooLong {
                            at: span.start,
                            limit: l.max_text_len,
                        });
                    }
                    let has_cr = check_chars(t, span.start)?;
                    return Ok(Some(Ready::Comment(span, self.keep(t, has_cr))));
                }
                Tok::Text(t) if self.phase != Phase::Root => {
                    if !t.bytes().all(is_space) {
                        return Err(malformed(span.start, "text outside the root element"));
                    }
                }
                Tok::Text(_) | Tok::CData(_) | Tok::Ref(_) => {
                    if self.phase != Phase::Root {
                        return Err(malformed(span.start, "content outside the root element"));
                    }
                    self.run = TextRun {
                        active: true,
                        ..TextRun::default()
                    };
                    self.pending = Some((ev, span));
                    if let Some(r) = self.text_step()? {
                        return Ok(Some(r));
                    }
                }
                Tok::Eof => {
                    return match self.phase {
                        _ if !self.last => Ok(None),
                        Phase::Epilog => Ok(None),
                        Phase::Prolog => Err(malformed(span.start, "no root element")),
                        Phase::Root => Err(malformed(span.start, "unclosed element")),
                    };
                }
            }
        }
    }

    // Inlined where it is called in the loops over tokens: returning the
    // token through memory costs more than reading most tokens.
    #[inline(always)]
    fn read_raw(&mut self) -> Result<(Tok<'a>, Span), XmlError> {
        let start = self.lex.offset();
        let ev = self.lex.next()?;
        Ok((
            ev,
            Span {
                start,
                end: self.lex.offset(),
            },
        ))
    }

    /// Keep a borrowed piece of input as is, or copy it normalized into `st.text`.
    fn keep(&mut self, t: &'a str, has_cr: bool) -> Option<&'a str> {
        if !has_cr {
            return Some(t);
        }
        self.st.text.clear();
        push_eol_normalized(&mut self.st.text, t);
        None
    }

    fn end_ready(&mut self, span: Span) -> Ready<'a> {
        self.pop_pending = true;
        if self.st.frames.len() == 1 {
            self.phase = Phase::Epilog;
        }
        Ready::End(span)
    }
}

/// XML 1.0 §2.8: `version`, then optionally `encoding` and `standalone`,
/// in that order; only version 1.0 and UTF-8 are read.
fn check_decl(text: &str, at: usize) -> Result<(), XmlError> {
    let mut attrs = Attrs::new(text, at);
    let mut next = attrs.next().transpose()?;
    match next {
        Some(("version", "1.0")) => {}
        Some(("version", _)) => return Err(XmlError::Version { at }),
        _ => return Err(malformed(at, "XML declaration without a version")),
    }
    next = attrs.next().transpose()?;
    if let Some(("encoding", enc)) = next {
        if !enc.eq_ignore_ascii_case("utf-8") {
            return Err(XmlError::Encoding { at });
        }
        next = attrs.next().transpose()?;
    }
    if let Some(("standalone", sd)) = next {
        if sd != "yes" && sd != "no" {
            return Err(malformed(at, "standalone is neither yes nor no"));
        }
        next = attrs.next().transpose()?;
    }
    match next {
        None => Ok(()),
        Some(_) => Err(malformed(
            at,
            "unexpected pseudo-attribute in the XML declaration",
        )),
    }
}
