//! Hardened pull reader for untrusted XML (SOAP messages), built on quick-xml.
//!
//! It refuses anything a signature verifier must not interpret (DTDs, entities,
//! processing instructions, non-UTF-8 input), enforces size limits while it reads,
//! resolves namespaces itself, and gives every event its byte span in the input so
//! callers can splice the original bytes instead of re-serialising.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event as QEvent};
use quick_xml::reader::Reader as QReader;

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
        }
    }
}

fn malformed(at: usize, detail: impl Into<String>) -> XmlError {
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
    /// Normalized value (XML 1.0 §3.3.3, every attribute taken as CDATA).
    pub value: &'r str,
}

/// Range into one of the reader's (or the canonicalizer's) string arenas.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sub {
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Sub {
    pub(super) fn of(self, buf: &str) -> &str {
        buf.get(self.start..self.end).unwrap_or("")
    }
}

/// Resolved namespace of a name.
#[derive(Debug, Clone, Copy)]
enum NsRef {
    None,
    Xml,
    Decl(usize),
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    prefix: Sub,
    uri: Sub,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    name: Sub,
    prefix_len: usize,
    ns: NsRef,
    ns_mark: usize,
    ns_text_mark: usize,
    xml_mark: usize,
    xml_text_mark: usize,
}

#[derive(Debug, Clone, Copy)]
struct AttrRec {
    name: Sub,
    prefix_len: usize,
    ns: NsRef,
    value: Sub,
}

/// Everything events borrow: kept apart from the quick-xml reader so an event can
/// borrow it while the reader advances only on the next call. All buffers are
/// reused, so steady-state reading allocates nothing per node.
#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    names: String,
    ns: Vec<Binding>,
    ns_text: String,
    // xml:* attributes of open elements (C14N 1.0 inherits them into subsets).
    xml_attrs: Vec<(Sub, Sub)>,
    xml_text: String,
    attrs: Vec<AttrRec>,
    attr_text: String,
    text: String,
}

impl State {
    fn ns_uri(&self, r: NsRef) -> Option<&str> {
        match r {
            NsRef::None => None,
            NsRef::Xml => Some(XML_NS),
            NsRef::Decl(i) => self.ns.get(i).map(|b| b.uri.of(&self.ns_text)),
        }
    }

    /// Innermost binding of `prefix`, whether or not it is an undeclaration.
    fn find(&self, prefix: &str) -> Option<usize> {
        self.ns
            .iter()
            .rposition(|b| b.prefix.of(&self.ns_text) == prefix)
    }

    fn resolve(&self, prefix: &str, at: usize) -> Result<NsRef, XmlError> {
        if prefix == "xml" {
            return Ok(NsRef::Xml);
        }
        match self.find(prefix) {
            Some(i) if !self.ns[i].uri.of(&self.ns_text).is_empty() => Ok(NsRef::Decl(i)),
            _ if prefix.is_empty() => Ok(NsRef::None),
            _ => Err(XmlError::UndeclaredPrefix { at }),
        }
    }

    fn pop(&mut self) {
        if let Some(f) = self.frames.pop() {
            self.names.truncate(f.name.start);
            self.ns.truncate(f.ns_mark);
            self.ns_text.truncate(f.ns_text_mark);
            self.xml_attrs.truncate(f.xml_mark);
            self.xml_text.truncate(f.xml_text_mark);
        }
    }
}

/// A start tag with its resolved names, attributes and namespace context.
#[derive(Clone, Copy)]
pub struct StartElement<'r> {
    st: &'r State,
    frame: Frame,
    depth: usize,
    span: Span,
    empty: bool,
}

/// Name, namespace, depth and span: the same accessors on start and end tags.
macro_rules! element_accessors {
    () => {
        /// Qualified name as written.
        pub fn name(&self) -> &'r str {
            self.frame.name.of(&self.st.names)
        }
        pub fn prefix(&self) -> &'r str {
            self.name().get(..self.frame.prefix_len).unwrap_or("")
        }
        pub fn local_name(&self) -> &'r str {
            local_part(self.name(), self.frame.prefix_len)
        }
        /// Namespace URI, `None` when the element is in no namespace.
        pub fn namespace(&self) -> Option<&'r str> {
            self.st.ns_uri(self.frame.ns)
        }
        /// 1 for the root element; an end tag has its start's depth.
        pub fn depth(&self) -> usize {
            self.depth
        }
        /// Bytes of the tag (`<a ...>`, `<a .../>` or `</a>`).
        pub fn span(&self) -> Span {
            self.span
        }
    };
}

impl<'r> StartElement<'r> {
    element_accessors!();
    /// True for `<a/>`; its `End` event has an empty span.
    pub fn is_empty_tag(&self) -> bool {
        self.empty
    }
    pub fn attribute_count(&self) -> usize {
        self.st.attrs.len()
    }
    pub fn attribute(&self, i: usize) -> Option<Attribute<'r>> {
        let st = self.st;
        st.attrs.get(i).map(|a| {
            let name = a.name.of(&st.attr_text);
            Attribute {
                name,
                prefix: name.get(..a.prefix_len).unwrap_or(""),
                local_name: local_part(name, a.prefix_len),
                namespace: st.ns_uri(a.ns),
                value: a.value.of(&st.attr_text),
            }
        })
    }
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'r>> + 'r {
        let e = *self;
        (0..e.attribute_count()).filter_map(move |i| e.attribute(i))
    }
    /// Value of the attribute with this namespace (`None`: unprefixed) and local name.
    pub fn attribute_value(&self, namespace: Option<&str>, local_name: &str) -> Option<&'r str> {
        self.attributes()
            .find(|a| a.namespace == namespace && a.local_name == local_name)
            .map(|a| a.value)
    }
    /// Namespace declarations written on this element, in document order.
    pub fn namespace_decls(&self) -> impl Iterator<Item = NsDecl<'r>> + 'r {
        let st = self.st;
        st.ns
            .get(self.frame.ns_mark..)
            .unwrap_or_default()
            .iter()
            .map(move |b| decl(st, b))
    }
    /// Every binding in scope here (ancestors' and this element's), innermost
    /// first, each prefix once. Includes a default of `""` if one was undeclared.
    pub fn in_scope_namespaces(&self) -> impl Iterator<Item = NsDecl<'r>> + 'r {
        let st = self.st;
        st.ns
            .iter()
            .enumerate()
            .rev()
            .filter(move |(i, b)| {
                let p = b.prefix.of(&st.ns_text);
                !st.ns[i + 1..].iter().any(|o| o.prefix.of(&st.ns_text) == p)
            })
            .map(move |(_, b)| decl(st, b))
    }
    /// URI bound to `prefix` here (`""` asks for the default namespace).
    pub fn lookup_namespace(&self, prefix: &str) -> Option<&'r str> {
        if prefix == "xml" {
            return Some(XML_NS);
        }
        let st = self.st;
        st.find(prefix)
            .map(|i| st.ns[i].uri.of(&st.ns_text))
            .filter(|u| !u.is_empty())
    }
    /// `xml:*` attributes in scope from ancestors (not this element's own), as
    /// (local name, value), nearest first, each name once.
    pub fn inherited_xml_attributes(&self) -> impl Iterator<Item = (&'r str, &'r str)> + 'r {
        let st = self.st;
        let upto = self.frame.xml_mark.min(st.xml_attrs.len());
        let list = &st.xml_attrs[..upto];
        list.iter()
            .enumerate()
            .rev()
            .filter(move |(i, (l, _))| {
                let l = l.of(&st.xml_text);
                !list[i + 1..].iter().any(|(o, _)| o.of(&st.xml_text) == l)
            })
            .map(move |(_, (l, v))| (l.of(&st.xml_text), v.of(&st.xml_text)))
    }
}

fn decl<'r>(st: &'r State, b: &Binding) -> NsDecl<'r> {
    NsDecl {
        prefix: b.prefix.of(&st.ns_text),
        uri: b.uri.of(&st.ns_text),
    }
}

fn local_part(name: &str, prefix_len: usize) -> &str {
    if prefix_len == 0 {
        name
    } else {
        name.get(prefix_len + 1..).unwrap_or("")
    }
}

/// An end tag (or the implied end of an empty-element tag).
#[derive(Clone, Copy)]
pub struct EndElement<'r> {
    st: &'r State,
    frame: Frame,
    depth: usize,
    span: Span,
}

impl<'r> EndElement<'r> {
    element_accessors!();
}

// Debug output names elements and sizes only: content may carry secrets
// (a UsernameToken password, say) and must never reach a log line.
impl std::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text")
            .field("len", &self.text.len())
            .field("span", &self.span)
            .finish()
    }
}

impl std::fmt::Debug for Attribute<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attribute")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("value_len", &self.value.len())
            .finish()
    }
}

impl std::fmt::Debug for StartElement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartElement")
            .field("name", &self.name())
            .field("namespace", &self.namespace())
            .field("depth", &self.depth)
            .field("span", &self.span)
            .finish()
    }
}

impl std::fmt::Debug for EndElement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndElement")
            .field("name", &self.name())
            .field("depth", &self.depth)
            .field("span", &self.span)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prolog,
    Root,
    Epilog,
}

/// What `next` will hand out, computed before borrowing the state for the event.
enum Ready<'a> {
    Start(Span, bool),
    End(Span),
    Text(Span, Option<&'a str>),
    Comment(Span, Option<&'a str>),
}

/// Pull reader over a complete message held in memory.
pub struct Reader<'a> {
    q: QReader<&'a [u8]>,
    base: usize,
    limits: Limits,
    st: State,
    phase: Phase,
    pending: Option<(QEvent<'a>, Span)>,
    pop_pending: bool,
    synth_end: Option<usize>,
    seen_any: bool,
    failed: Option<XmlError>,
    run: TextRun<'a>,
}

/// Progress through a run of adjacent text, CDATA and references.
#[derive(Default)]
struct TextRun<'a> {
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
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8], limits: &Limits) -> Result<Reader<'a>, XmlError> {
        if input.len() > limits.max_bytes {
            return Err(XmlError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        // UTF-16/32 (with or without BOM) shows as a BOM or a NUL in the first bytes.
        if input.starts_with(&[0xFE, 0xFF])
            || input.starts_with(&[0xFF, 0xFE])
            || input.iter().take(4).any(|&b| b == 0)
        {
            return Err(XmlError::NotUtf8 { at: 0 });
        }
        let base = if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
            3
        } else {
            0
        };
        let mut q = QReader::from_reader(input.get(base..).unwrap_or_default());
        let cfg = q.config_mut();
        cfg.check_comments = true;
        // We keep our own element stack and compare end names against it.
        cfg.check_end_names = false;
        cfg.expand_empty_elements = false;
        cfg.trim_text(false);
        Ok(Reader {
            q,
            base,
            limits: limits.clone(),
            st: State::default(),
            phase: Phase::Prolog,
            pending: None,
            pop_pending: false,
            synth_end: None,
            seen_any: false,
            failed: None,
            run: TextRun::default(),
        })
    }

    /// Current element depth (0 outside the root).
    pub fn depth(&self) -> usize {
        self.st.frames.len()
    }

    /// Heap capacity of the reader's reusable buffers, in bytes. Diagnostic: it
    /// stays bounded by the limits, whatever the document size.
    pub fn buffered_capacity(&self) -> usize {
        use std::mem::size_of;
        let st = &self.st;
        st.frames.capacity() * size_of::<Frame>()
            + st.names.capacity()
            + st.ns.capacity() * size_of::<Binding>()
            + st.ns_text.capacity()
            + st.xml_attrs.capacity() * size_of::<(Sub, Sub)>()
            + st.xml_text.capacity()
            + st.attrs.capacity() * size_of::<AttrRec>()
            + st.attr_text.capacity()
            + st.text.capacity()
    }

    /// Next event, or `None` at the end of a well-formed document.
    #[allow(clippy::should_implement_trait)] // a lending iterator: events borrow the reader
    pub fn next(&mut self) -> Result<Option<Event<'_>>, XmlError> {
        // After a refusal the stacks may be half-updated: keep refusing.
        if let Some(e) = &self.failed {
            return Err(e.clone());
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
        let frame = st.frames.last().copied();
        Ok(Some(match (ready, frame) {
            (Ready::Start(span, empty), Some(frame)) => Event::Start(StartElement {
                st,
                frame,
                depth,
                span,
                empty,
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
            let first = !self.seen_any;
            self.seen_any = true;
            match ev {
                QEvent::Decl(d) => {
                    // Only as the very first thing; elsewhere `<?xml` is a reserved PI.
                    if !first {
                        return Err(XmlError::ProcessingInstruction { at: span.start });
                    }
                    check_decl(&d, span.start)?;
                }
                QEvent::PI(_) => return Err(XmlError::ProcessingInstruction { at: span.start }),
                QEvent::DocType(_) => return Err(XmlError::Doctype { at: span.start }),
                QEvent::Start(s) => return self.start(s, span, false).map(Some),
                QEvent::Empty(s) => {
                    let r = self.start(s, span, true)?;
                    self.synth_end = Some(span.end);
                    return Ok(Some(r));
                }
                QEvent::End(e) => {
                    let name = e.name();
                    let name: &str = name.as_ref();
                    let open = self.st.frames.last().map(|f| f.name.of(&self.st.names));
                    if open != Some(name) {
                        return Err(malformed(span.start, "end tag does not match start tag"));
                    }
                    return Ok(Some(self.end_ready(span)));
                }
                QEvent::Comment(c) => {
                    let t = c.into_inner();
                    let l = &self.limits;
                    if t.len() > l.max_text_len {
                        return Err(XmlError::TextTooLong {
                            at: span.start,
                            limit: l.max_text_len,
                        });
                    }
                    let has_cr = check_chars(&t, span.start)?;
                    return Ok(Some(Ready::Comment(span, self.keep(t, has_cr))));
                }
                QEvent::Text(t) if self.phase != Phase::Root => {
                    let t = t.into_inner();
                    if !t.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
                        return Err(malformed(span.start, "text outside the root element"));
                    }
                }
                QEvent::Text(_) | QEvent::CData(_) | QEvent::GeneralRef(_) => {
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
                QEvent::Eof => {
                    return match self.phase {
                        Phase::Epilog => Ok(None),
                        Phase::Prolog => Err(malformed(span.start, "no root element")),
                        Phase::Root => Err(malformed(span.start, "unclosed element")),
                    };
                }
            }
        }
    }

    fn read_raw(&mut self) -> Result<(QEvent<'a>, Span), XmlError> {
        let start = self.offset(self.q.buffer_position());
        let ev = self.q.read_event().map_err(|e| {
            let at = self.offset(self.q.error_position());
            match e {
                quick_xml::Error::Encoding(_) => XmlError::NotUtf8 { at },
                other => malformed(at, other.to_string()),
            }
        })?;
        Ok((
            ev,
            Span {
                start,
                end: self.offset(self.q.buffer_position()),
            },
        ))
    }

    /// Input offset of a quick-xml position (which does not count the BOM).
    fn offset(&self, qpos: u64) -> usize {
        usize::try_from(qpos)
            .unwrap_or(usize::MAX)
            .saturating_add(self.base)
    }

    /// Keep a borrowed piece of input as is, or copy it normalized into `st.text`.
    fn keep(&mut self, t: Cow<'a, str>, has_cr: bool) -> Option<&'a str> {
        match t {
            Cow::Borrowed(s) if !has_cr => Some(s),
            t => {
                self.st.text.clear();
                push_eol_normalized(&mut self.st.text, &t);
                None
            }
        }
    }

    fn end_ready(&mut self, span: Span) -> Ready<'a> {
        self.pop_pending = true;
        if self.st.frames.len() == 1 {
            self.phase = Phase::Epilog;
        }
        Ready::End(span)
    }

    fn start(&mut self, s: BytesStart<'a>, span: Span, empty: bool) -> Result<Ready<'a>, XmlError> {
        let at = span.start;
        let l = &self.limits;
        match self.phase {
            Phase::Epilog => return Err(malformed(at, "second root element")),
            Phase::Prolog => self.phase = Phase::Root,
            Phase::Root => {}
        }
        if self.st.frames.len() >= l.max_depth {
            return Err(XmlError::TooDeep {
                at,
                limit: l.max_depth,
            });
        }
        let qname = s.name();
        let qname: &str = qname.as_ref();
        let prefix_len = check_qname(qname, l, at)?;
        if qname.get(..prefix_len) == Some("xmlns") {
            return Err(XmlError::InvalidNamespace { at });
        }
        check_chars(qname, at)?;

        let st = &mut self.st;
        let name_start = st.names.len();
        st.names.push_str(qname);
        let mut frame = Frame {
            name: Sub {
                start: name_start,
                end: st.names.len(),
            },
            prefix_len,
            ns: NsRef::None,
            ns_mark: st.ns.len(),
            ns_text_mark: st.ns_text.len(),
            xml_mark: st.xml_attrs.len(),
            xml_text_mark: st.xml_text.len(),
        };
        // Pushed now, completed once this element's declarations are known.
        st.frames.push(frame);
        st.attrs.clear();
        st.attr_text.clear();

        let mut count = 0usize;
        for a in s.attributes().with_checks(false) {
            let a = a.map_err(|e| malformed(at, e.to_string()))?;
            count += 1;
            if count > l.max_attributes {
                return Err(XmlError::TooManyAttributes {
                    at,
                    limit: l.max_attributes,
                });
            }
            let key: &str = a.key.as_ref();
            let plen = check_qname(key, l, at)?;
            check_chars(key, at)?;
            if a.value.len() > l.max_attr_value_len {
                return Err(XmlError::AttributeTooLong {
                    at,
                    limit: l.max_attr_value_len,
                });
            }
            check_chars(&a.value, at)?;
            let ns_prefix = if key == "xmlns" {
                Some("")
            } else if plen > 0 && key.get(..plen) == Some("xmlns") {
                Some(local_part(key, plen))
            } else {
                None
            };
            if let Some(p) = ns_prefix {
                if st.ns.len() - frame.ns_mark >= l.max_ns_per_element {
                    return Err(XmlError::TooManyNamespaces {
                        at,
                        limit: l.max_ns_per_element,
                    });
                }
                if st.ns.len() >= l.max_ns_in_scope {
                    return Err(XmlError::TooManyNamespaces {
                        at,
                        limit: l.max_ns_in_scope,
                    });
                }
                if st.ns[frame.ns_mark..]
                    .iter()
                    .any(|b| b.prefix.of(&st.ns_text) == p)
                {
                    return Err(XmlError::DuplicateAttribute { at });
                }
                let p0 = st.ns_text.len();
                st.ns_text.push_str(p);
                let u0 = st.ns_text.len();
                push_attr_value(&mut st.ns_text, &a.value, at)?;
                let b = Binding {
                    prefix: Sub { start: p0, end: u0 },
                    uri: Sub {
                        start: u0,
                        end: st.ns_text.len(),
                    },
                };
                check_binding(p, b.uri.of(&st.ns_text), at)?;
                st.ns.push(b);
            } else {
                let n0 = st.attr_text.len();
                st.attr_text.push_str(key);
                let v0 = st.attr_text.len();
                push_attr_value(&mut st.attr_text, &a.value, at)?;
                st.attrs.push(AttrRec {
                    name: Sub { start: n0, end: v0 },
                    prefix_len: plen,
                    ns: NsRef::None,
                    value: Sub {
                        start: v0,
                        end: st.attr_text.len(),
                    },
                });
            }
        }

        // Resolve names now that this element's declarations are in scope.
        frame.ns = st.resolve(qname.get(..prefix_len).unwrap_or(""), at)?;
        for i in 0..st.attrs.len() {
            let a = st.attrs[i];
            if a.prefix_len > 0 {
                let name = a.name.of(&st.attr_text);
                let ns = st.resolve(name.get(..a.prefix_len).unwrap_or(""), at)?;
                st.attrs[i].ns = ns;
            }
        }
        // Duplicates by qualified name and by expanded name; n <= max_attributes.
        for (i, a) in st.attrs.iter().enumerate() {
            let an = a.name.of(&st.attr_text);
            for b in &st.attrs[..i] {
                let bn = b.name.of(&st.attr_text);
                let same_expanded = a.prefix_len > 0
                    && b.prefix_len > 0
                    && local_part(an, a.prefix_len) == local_part(bn, b.prefix_len)
                    && st.ns_uri(a.ns) == st.ns_uri(b.ns);
                if an == bn || same_expanded {
                    return Err(XmlError::DuplicateAttribute { at });
                }
            }
        }
        for a in &st.attrs {
            if let NsRef::Xml = a.ns {
                let name = a.name.of(&st.attr_text);
                let l0 = st.xml_text.len();
                st.xml_text.push_str(local_part(name, a.prefix_len));
                let v0 = st.xml_text.len();
                st.xml_text.push_str(a.value.of(&st.attr_text));
                st.xml_attrs.push((
                    Sub { start: l0, end: v0 },
                    Sub {
                        start: v0,
                        end: st.xml_text.len(),
                    },
                ));
            }
        }
        if let Some(top) = st.frames.last_mut() {
            *top = frame;
        }
        Ok(Ready::Start(span, empty))
    }

    /// Emits the next chunk of the current run of text, CDATA and references.
    /// Long runs without CR are handed out borrowed from the input; short pieces,
    /// resolved references and normalized line ends are gathered in `st.text`,
    /// flushed every `CHUNK` bytes, so memory stays constant whatever the text size.
    /// Returns `None` when the run ended with nothing left to emit.
    fn text_step(&mut self) -> Result<Option<Ready<'a>>, XmlError> {
        const BORROW: usize = 512;
        const CHUNK: usize = 8 << 10;
        self.st.text.clear();
        let mut start = None;
        let mut end = 0;
        loop {
            if self.run.rest.is_empty() {
                let (ev, span) = match self.pending.take() {
                    Some(p) => p,
                    None => self.read_raw()?,
                };
                let at = span.start;
                let (content, offset) = match ev {
                    QEvent::Text(t) => {
                        let t = t.into_inner();
                        if t.contains("]]>") {
                            return Err(malformed(at, "']]>' in text"));
                        }
                        (t, 0)
                    }
                    QEvent::CData(c) => (c.into_inner(), "<![CDATA[".len()),
                    QEvent::GeneralRef(r) => {
                        // A resolved reference is never line-end normalized (`&#xD;` stays CR).
                        let c = resolve_ref(&r, at)?;
                        self.run_grow(c.len_utf8(), at)?;
                        self.st.text.push(c);
                        start.get_or_insert(at);
                        end = span.end;
                        if self.st.text.len() >= CHUNK {
                            break;
                        }
                        continue;
                    }
                    other => {
                        self.pending = Some((other, span));
                        self.run.active = false;
                        break;
                    }
                };
                self.run_grow(content.len(), at)?;
                check_chars(&content, at)?;
                let content: &'a str = match content {
                    Cow::Borrowed(s) => s,
                    // Not produced by the slice reader; refuse rather than copy.
                    Cow::Owned(_) => return Err(malformed(at, "unexpected owned text")),
                };
                self.run.rest = content;
                self.run.pos = span.start;
                self.run.offset = span.start + offset;
                self.run.end = span.end;
                if content.is_empty() {
                    start.get_or_insert(span.start);
                    end = span.end;
                    continue;
                }
            }
            let rest = self.run.rest;
            let n = rest.find('\r').unwrap_or(rest.len());
            if n >= BORROW {
                if !self.st.text.is_empty() {
                    break;
                }
                let from = self.run.pos;
                let seg = rest.get(..n).unwrap_or_default();
                self.consume(n);
                return Ok(Some(Ready::Text(
                    Span {
                        start: from,
                        end: self.run.pos,
                    },
                    Some(seg),
                )));
            }
            start.get_or_insert(self.run.pos);
            self.st.text.push_str(rest.get(..n).unwrap_or_default());
            let mut used = n;
            if rest.get(n..).is_some_and(|r| r.starts_with('\r')) {
                self.st.text.push('\n');
                used += if rest.get(n + 1..).is_some_and(|r| r.starts_with('\n')) {
                    2
                } else {
                    1
                };
            }
            self.consume(used);
            end = self.run.pos;
            if self.st.text.len() >= CHUNK {
                break;
            }
        }
        Ok(start.map(|start| Ready::Text(Span { start, end }, None)))
    }

    fn consume(&mut self, n: usize) {
        self.run.rest = self.run.rest.get(n..).unwrap_or_default();
        self.run.offset += n;
        self.run.pos = if self.run.rest.is_empty() {
            self.run.end
        } else {
            self.run.offset
        };
    }

    fn run_grow(&mut self, n: usize, at: usize) -> Result<(), XmlError> {
        self.run.len += n;
        if self.run.len > self.limits.max_text_len {
            return Err(XmlError::TextTooLong {
                at,
                limit: self.limits.max_text_len,
            });
        }
        Ok(())
    }
}

fn check_decl(d: &quick_xml::events::BytesDecl<'_>, at: usize) -> Result<(), XmlError> {
    let version = d.version().map_err(|e| malformed(at, e.to_string()))?;
    if version.as_ref() != "1.0" {
        return Err(XmlError::Version { at });
    }
    if let Some(enc) = d.encoding() {
        let enc = enc.map_err(|e| malformed(at, e.to_string()))?;
        if !enc.eq_ignore_ascii_case("utf-8") {
            return Err(XmlError::Encoding { at });
        }
    }
    Ok(())
}

/// Checks a QName (`prefix:local` or `local`) and returns the prefix length.
fn check_qname(name: &str, l: &Limits, at: usize) -> Result<usize, XmlError> {
    if name.len() > l.max_name_len {
        return Err(XmlError::NameTooLong {
            at,
            limit: l.max_name_len,
        });
    }
    let (prefix, local) = match name.split_once(':') {
        Some((p, rest)) => (p, rest),
        None => ("", name),
    };
    let ok = is_ncname(local) && (prefix.is_empty() && !name.contains(':') || is_ncname(prefix));
    if !ok {
        return Err(malformed(at, "invalid name"));
    }
    Ok(if name.contains(':') { prefix.len() } else { 0 })
}

/// Approximates NCName: ASCII name characters, anything non-ASCII accepted.
fn is_ncname(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80)
}

/// Namespaces in XML 1.0 constraints on a declaration of `prefix` to `uri`.
fn check_binding(prefix: &str, uri: &str, at: usize) -> Result<(), XmlError> {
    let bad = match prefix {
        "xml" => uri != XML_NS,
        "xmlns" => true,
        "" => uri == XML_NS || uri == XMLNS_NS,
        _ => uri.is_empty() || uri == XML_NS || uri == XMLNS_NS,
    };
    if bad {
        Err(XmlError::InvalidNamespace { at })
    } else {
        Ok(())
    }
}

/// Refuses characters outside XML 1.0's `Char`; returns whether a CR is present.
fn check_chars(s: &str, at: usize) -> Result<bool, XmlError> {
    let b = s.as_bytes();
    let mut cr = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\r' => cr = true,
            b'\t' | b'\n' => {}
            0..=0x1F => return Err(XmlError::InvalidChar { at }),
            // U+FFFE and U+FFFF are EF BF BE / EF BF BF.
            0xEF if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) => {
                return Err(XmlError::InvalidChar { at });
            }
            _ => {}
        }
    }
    Ok(cr)
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Resolves the name inside `&...;`: the five predefined entities or a character reference.
fn resolve_ref(name: &str, at: usize) -> Result<char, XmlError> {
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let Some(num) = name.strip_prefix('#') else {
                return Err(XmlError::Entity { at });
            };
            let (digits, radix) = match num.strip_prefix('x') {
                Some(h) => (h, 16),
                None => (num, 10),
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return Err(malformed(at, "bad character reference"));
            }
            u32::from_str_radix(digits, radix)
                .ok()
                .and_then(char::from_u32)
                .filter(|&c| is_xml_char(c))
                .ok_or(XmlError::InvalidChar { at })?
        }
    };
    Ok(c)
}

/// Appends `s` with CR LF and lone CR turned into LF (XML 1.0 §2.11).
fn push_eol_normalized(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.find('\r') {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('\n') {
            rest = r;
        }
    }
    out.push_str(rest);
}

/// Appends the normalized value of a raw attribute value: references resolved,
/// literal whitespace (after line-end normalization) turned into spaces.
fn push_attr_value(out: &mut String, raw: &str, at: usize) -> Result<(), XmlError> {
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '<', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        rest = match rest.as_bytes()[i] {
            b'<' => return Err(malformed(at, "'<' in attribute value")),
            b'&' => {
                let semi = tail
                    .find(';')
                    .ok_or_else(|| malformed(at, "unterminated reference"))?;
                out.push(resolve_ref(&tail[..semi], at)?);
                &tail[semi + 1..]
            }
            b'\r' => {
                out.push(' ');
                tail.strip_prefix('\n').unwrap_or(tail)
            }
            _ => {
                out.push(' ');
                tail
            }
        };
    }
    out.push_str(rest);
    Ok(())
}
