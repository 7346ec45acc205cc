//! Canonical XML 1.0 and Exclusive XML Canonicalization 1.0, driven by the
//! events of [`super::xml::Reader`] and written straight to an `io::Write`.
//!
//! Nothing is buffered beyond the namespace declarations rendered by open output
//! elements, so a Body of any size can be digested as it streams past.

use std::io::{self, Write};

use super::xml::{Event, Limits, Reader, StartElement, XmlError, NO_NAMESPACE_ID, XML_NS};

pub const C14N_URI: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const C14N_WITH_COMMENTS_URI: &str =
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";
pub const EXC_C14N_URI: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const EXC_C14N_WITH_COMMENTS_URI: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Canonical XML 1.0.
    Inclusive,
    /// Exclusive XML Canonicalization 1.0.
    Exclusive,
}

/// A canonicalization method with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub algorithm: Algorithm,
    pub with_comments: bool,
    /// Exclusive only: the InclusiveNamespaces PrefixList; `""` stands for `#default`.
    pub inclusive_prefixes: Vec<String>,
}

impl Method {
    pub fn inclusive() -> Self {
        Method {
            algorithm: Algorithm::Inclusive,
            with_comments: false,
            inclusive_prefixes: Vec::new(),
        }
    }

    pub fn exclusive() -> Self {
        Method {
            algorithm: Algorithm::Exclusive,
            ..Method::inclusive()
        }
    }

    pub fn with_comments(mut self) -> Self {
        self.with_comments = true;
        self
    }

    /// Sets the PrefixList from its attribute value: whitespace-separated
    /// prefixes, `#default` for the default namespace; each prefix once.
    pub fn with_prefix_list(mut self, list: &str) -> Self {
        self.inclusive_prefixes.clear();
        for p in list.split_ascii_whitespace() {
            let p = if p == "#default" { "" } else { p };
            if !self.inclusive_prefixes.iter().any(|q| q == p) {
                self.inclusive_prefixes.push(p.to_owned());
            }
        }
        self
    }

    /// The method named by an XML-Signature algorithm URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri {
            C14N_URI => Some(Method::inclusive()),
            C14N_WITH_COMMENTS_URI => Some(Method::inclusive().with_comments()),
            EXC_C14N_URI => Some(Method::exclusive()),
            EXC_C14N_WITH_COMMENTS_URI => Some(Method::exclusive().with_comments()),
            _ => None,
        }
    }

    pub fn uri(&self) -> &'static str {
        match (self.algorithm, self.with_comments) {
            (Algorithm::Inclusive, false) => C14N_URI,
            (Algorithm::Inclusive, true) => C14N_WITH_COMMENTS_URI,
            (Algorithm::Exclusive, false) => EXC_C14N_URI,
            (Algorithm::Exclusive, true) => EXC_C14N_WITH_COMMENTS_URI,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum C14nError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("writing canonical output failed: {0}")]
    Io(#[from] io::Error),
    #[error("no element matched the selection")]
    NotFound,
    #[error("event fed outside the subtree being canonicalized")]
    OutsideSubtree,
}

impl C14nError {
    /// Stable machine reason, for metrics labels, logs and faults.
    pub fn reason(&self) -> super::reason::Reason {
        use super::reason::Reason as R;
        match self {
            C14nError::Xml(e) => e.reason(),
            C14nError::Io(_) => R::C14nOutput,
            C14nError::NotFound => R::C14nNotFound,
            C14nError::OutsideSubtree => R::C14nOutsideSubtree,
        }
    }
}

use super::xml::Sub;

fn push(buf: &mut String, s: &str) -> Sub {
    let start = buf.len();
    buf.push_str(s);
    Sub {
        start,
        end: buf.len(),
    }
}

/// Namespace declarations rendered by the open output elements, innermost last,
/// each with the id of the reader's binding it came from.
#[derive(Debug, Default)]
struct Rendered {
    decls: Vec<(Sub, Sub, u64)>,
    text: String,
}

impl Rendered {
    /// Value and binding id most recently rendered for `prefix` before `upto`
    /// (`""` and no id if none).
    fn lookup(&self, prefix: &str, upto: usize) -> (&str, u64) {
        self.decls[..upto.min(self.decls.len())]
            .iter()
            .rev()
            .find(|(p, _, _)| p.of(&self.text) == prefix)
            .map_or(("", NO_NAMESPACE_ID), |(_, u, id)| (u.of(&self.text), *id))
    }

    /// Renders `prefix` -> `uri` (reader binding `id`) on the element whose
    /// declarations start at `mark`, unless an output ancestor already
    /// rendered the same binding. An empty default (`xmlns=""`) is thus output
    /// only when it undoes a rendered one. The same binding is recognised by
    /// its id; URIs are compared only between different bindings, so a long
    /// URI in scope costs its length once, not once per element.
    fn consider(&mut self, prefix: &str, uri: &str, id: u64, mark: usize) {
        if prefix == "xml" {
            return;
        }
        let own = self.decls.get(mark..).unwrap_or_default();
        if own.iter().any(|(p, _, _)| p.of(&self.text) == prefix) {
            return;
        }
        let (rendered, rendered_id) = self.lookup(prefix, mark);
        if (id != NO_NAMESPACE_ID && rendered_id == id) || rendered == uri {
            return;
        }
        let p = push(&mut self.text, prefix);
        let u = push(&mut self.text, uri);
        self.decls.push((p, u, id));
    }
}

/// Where an output attribute comes from.
#[derive(Debug, Clone, Copy)]
enum Src {
    Own(usize),
    /// An `xml:*` attribute inherited from an ancestor outside the subset.
    Inherited(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Document,
    Subtree,
}

/// Canonicalizes a stream of reader events, writing as it goes.
///
/// For a subtree (what a same-document Reference selects), feed the `Start`
/// event of the selected element and every event after it until
/// [`Canonicalizer::is_done`]; the namespace and `xml:*` context of its ancestors
/// comes with that `Start` event. For a whole document, feed every event.
#[derive(Debug)]
pub struct Canonicalizer {
    method: Method,
    scope: Scope,
    depth: usize,
    started: bool,
    done: bool,
    rendered: Rendered,
    // (declaration count, text length) of `rendered` when each open element started.
    marks: Vec<(usize, usize)>,
    order: Vec<Src>,
    inherited: Vec<(Sub, Sub)>,
    inherited_text: String,
    /// Output not handed to the sink yet. Tags and short text are gathered
    /// here and written about `WRITE_CHUNK` bytes at a time: a tag is a dozen
    /// small pieces, and each write through `io::Write` costs more than
    /// copying a piece. Written out at once after the apex's start tag (a
    /// caller may read it from there), before anything written past it, and
    /// at the apex's end, so a caller holds the whole output once
    /// [`Canonicalizer::is_done`]. Bounded by the chunk and the reader's
    /// limits on a tag.
    pending: Vec<u8>,
}

/// How much output is gathered before it is written to the sink.
pub(super) const WRITE_CHUNK: usize = 1024;

impl Canonicalizer {
    /// Canonicalizes a whole document: comments outside the root (with comments)
    /// get their separating newlines; whitespace outside the root is dropped.
    pub fn document(method: Method) -> Self {
        Self::new(method, Scope::Document)
    }

    /// Canonicalizes one element and its descendants (an XPath document subset
    /// `ancestor-or-self` of the element, as a bare-name `#id` Reference selects).
    pub fn subtree(method: Method) -> Self {
        Self::new(method, Scope::Subtree)
    }

    fn new(method: Method, scope: Scope) -> Self {
        Canonicalizer {
            method,
            scope,
            depth: 0,
            started: false,
            done: false,
            rendered: Rendered::default(),
            marks: Vec::new(),
            order: Vec::new(),
            inherited: Vec::new(),
            inherited_text: String::new(),
            pending: Vec::new(),
        }
    }

    /// True once the subtree's (or root's) end tag has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The namespace the output says `prefix` is bound to where the
    /// canonicalization stands (after the last start tag fed), if any.
    pub fn rendered_uri(&self, prefix: &str) -> Option<&str> {
        let r = &self.rendered;
        r.decls
            .iter()
            .rev()
            .find(|(p, _, _)| p.of(&r.text) == prefix)
            .map(|(_, u, _)| u.of(&r.text))
    }

    /// Gives what was rendered the binding ids of another reader of the same
    /// message, whose events come next: `id_of(prefix, uri)` is that
    /// reader's binding, if it has one with that URI. A binding it lacks
    /// gets no id, and is compared by URI: slower, never wrong.
    pub fn rebind(&mut self, id_of: impl Fn(&str, &str) -> Option<u64>) {
        let text = &self.rendered.text;
        for d in &mut self.rendered.decls {
            d.2 = id_of(d.0.of(text), d.1.of(text)).unwrap_or(NO_NAMESPACE_ID);
        }
    }

    /// Heap capacity of the internal buffers, in bytes. Diagnostic: bounded by
    /// the reader's limits on depth and namespaces, never by text size.
    pub fn buffered_capacity(&self) -> usize {
        use std::mem::size_of;
        self.rendered.decls.capacity() * size_of::<(Sub, Sub, u64)>()
            + self.rendered.text.capacity()
            + self.marks.capacity() * size_of::<(usize, usize)>()
            + self.order.capacity() * size_of::<Src>()
            + self.inherited.capacity() * size_of::<(Sub, Sub)>()
            + self.inherited_text.capacity()
            + self.pending.capacity()
    }

    /// Feeds the start tag of an element, as a `Start` event would.
    pub fn start_with<W: Write + ?Sized>(
        &mut self,
        e: &StartElement<'_>,
        out: &mut W,
    ) -> Result<(), C14nError> {
        if self.done || (self.depth == 0 && self.started) {
            return Err(C14nError::OutsideSubtree);
        }
        let apex = !self.started;
        self.started = true;
        let mut pending = std::mem::take(&mut self.pending);
        self.start(e, apex, &mut pending);
        self.pending = pending;
        self.write_out(out, apex)?;
        self.depth += 1;
        Ok(())
    }

    /// Writes what is gathered if there is a chunk of it, or if `now`.
    fn write_out<W: Write + ?Sized>(&mut self, out: &mut W, now: bool) -> io::Result<()> {
        if self.pending.is_empty() || !(now || self.pending.len() >= WRITE_CHUNK) {
            return Ok(());
        }
        let written = out.write_all(&self.pending);
        self.pending.clear();
        written
    }

    pub fn feed<W: Write + ?Sized>(
        &mut self,
        event: &Event<'_>,
        out: &mut W,
    ) -> Result<(), C14nError> {
        match event {
            Event::Start(e) => self.start_with(e, out)?,
            Event::End(e) => {
                if self.depth == 0 {
                    return Err(C14nError::OutsideSubtree);
                }
                let p = &mut self.pending;
                p.extend_from_slice(b"</");
                p.extend_from_slice(e.name().as_bytes());
                p.push(b'>');
                if let Some((n, t)) = self.marks.pop() {
                    self.rendered.decls.truncate(n);
                    self.rendered.text.truncate(t);
                }
                self.depth -= 1;
                self.done = self.depth == 0;
                self.write_out(out, self.done)?;
            }
            Event::Text(t) => {
                if self.depth > 0 && t.text().len() <= SHORT_TEXT {
                    escape_into(&mut self.pending, t.text(), false);
                    self.write_out(out, false)?;
                } else if self.depth > 0 {
                    self.write_out(out, true)?;
                    write_escaped(out, t.text(), false)?;
                } else if self.scope == Scope::Subtree {
                    return Err(C14nError::OutsideSubtree);
                }
            }
            Event::Comment(c) => {
                if self.depth == 0 && self.scope == Scope::Subtree {
                    return Err(C14nError::OutsideSubtree);
                }
                if self.method.with_comments {
                    self.write_out(out, true)?;
                    // Outside the root, a newline separates a comment from the root.
                    if self.depth == 0 && self.started {
                        out.write_all(b"\n")?;
                    }
                    out.write_all(b"<!--")?;
                    out.write_all(c.text().as_bytes())?;
                    out.write_all(b"-->")?;
                    if self.depth == 0 && !self.started {
                        out.write_all(b"\n")?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Renders the start tag into `out`.
    fn start(&mut self, e: &StartElement<'_>, apex: bool, out: &mut Vec<u8>) {
        let mark = self.rendered.decls.len();
        self.marks.push((mark, self.rendered.text.len()));
        let r = &mut self.rendered;
        match self.method.algorithm {
            // Every namespace in scope; below the apex only changes can differ
            // from what the output parent rendered.
            Algorithm::Inclusive if apex => {
                for d in e.in_scope_namespaces() {
                    r.consider(d.prefix, d.uri, d.id, mark);
                }
            }
            Algorithm::Inclusive => {
                for d in e.namespace_decls() {
                    r.consider(d.prefix, d.uri, d.id, mark);
                }
            }
            // Visibly utilized prefixes, plus the PrefixList treated inclusively.
            Algorithm::Exclusive => {
                r.consider(
                    e.prefix(),
                    e.namespace().unwrap_or(""),
                    e.namespace_id(),
                    mark,
                );
                for a in e.attributes() {
                    if !a.prefix.is_empty() {
                        r.consider(a.prefix, a.namespace.unwrap_or(""), a.namespace_id, mark);
                    }
                }
                let listed = &self.method.inclusive_prefixes;
                if apex {
                    for p in listed {
                        match e.lookup_binding(p) {
                            Some(d) => r.consider(p, d.uri, d.id, mark),
                            // An undeclared default still undoes a rendered one.
                            None if p.is_empty() => r.consider("", "", NO_NAMESPACE_ID, mark),
                            None => {}
                        }
                    }
                } else {
                    // Below the apex a listed binding can differ from the
                    // one rendered above only where it is declared: looking
                    // up every listed prefix on every element would cost
                    // the list times the scope per element.
                    for d in e.namespace_decls() {
                        if listed.iter().any(|p| p == d.prefix) {
                            let id = if d.uri.is_empty() {
                                NO_NAMESPACE_ID
                            } else {
                                d.id
                            };
                            r.consider(d.prefix, d.uri, id, mark);
                        }
                    }
                }
            }
        }
        let text = &r.text;
        let own = r.decls.get_mut(mark..).unwrap_or_default();
        own.sort_unstable_by(|a, b| a.0.of(text).cmp(b.0.of(text)));

        out.extend_from_slice(b"<");
        out.extend_from_slice(e.name().as_bytes());
        for (p, u, _) in own.iter() {
            let p = p.of(text);
            out.extend_from_slice(if p.is_empty() { b" xmlns" } else { b" xmlns:" });
            out.extend_from_slice(p.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, u.of(text), true);
            out.extend_from_slice(b"\"");
        }

        self.order.clear();
        self.order.extend((0..e.attribute_count()).map(Src::Own));
        // C14N 1.0 carries xml:* attributes of omitted ancestors onto the apex.
        if apex && self.method.algorithm == Algorithm::Inclusive {
            self.inherited.clear();
            self.inherited_text.clear();
            for (local, value) in e.inherited_xml_attributes() {
                if e.attribute_value(Some(XML_NS), local).is_none() {
                    let l = push(&mut self.inherited_text, local);
                    let v = push(&mut self.inherited_text, value);
                    self.order.push(Src::Inherited(self.inherited.len()));
                    self.inherited.push((l, v));
                }
            }
        }
        let (inh, itext) = (&self.inherited, &self.inherited_text);
        // (namespace URI, local name, qualified name, value); no namespace sorts first.
        let attr = |s: Src| -> (&str, &str, &str, &str) {
            match s {
                Src::Own(i) => e.attribute(i).map_or(("", "", "", ""), |a| {
                    (a.namespace.unwrap_or(""), a.local_name, a.name, a.value)
                }),
                Src::Inherited(j) => inh.get(j).map_or(("", "", "", ""), |(l, v)| {
                    (XML_NS, l.of(itext), l.of(itext), v.of(itext))
                }),
            }
        };
        self.order.sort_unstable_by(|&a, &b| {
            let (a, b) = (attr(a), attr(b));
            (a.0, a.1).cmp(&(b.0, b.1))
        });
        for &s in &self.order {
            let (_, _, name, value) = attr(s);
            out.extend_from_slice(b" ");
            if let Src::Inherited(_) = s {
                out.extend_from_slice(b"xml:");
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, value, true);
            out.extend_from_slice(b"\"");
        }
        out.push(b'>');
    }
}

/// Text up to this long is escaped into the output gathered; longer text is
/// written in its pieces, so what is gathered never holds more.
const SHORT_TEXT: usize = 512;

/// Writes text (`attr == false`) or an attribute value with the C14N escapes.
fn write_escaped<W: Write + ?Sized>(out: &mut W, s: &str, attr: bool) -> io::Result<()> {
    escape(s, attr, |piece| out.write_all(piece))
}

/// [`write_escaped`] into the output gathered.
fn escape_into(out: &mut Vec<u8>, s: &str, attr: bool) {
    let done: Result<(), std::convert::Infallible> = escape(s, attr, |piece| {
        out.extend_from_slice(piece);
        Ok(())
    });
    let Ok(()) = done;
}

/// The C14N escapes, by the index the tables below give a byte.
const ESCAPES: [&[u8]; 8] = [
    b"", b"&amp;", b"&lt;", b"&gt;", b"&quot;", b"&#x9;", b"&#xA;", b"&#xD;",
];

/// For each byte, its index in `ESCAPES` (0: written as it is). Text escapes
/// `& < >` and CR; an attribute value `& < "`, TAB, LF and CR.
const fn escape_table(attr: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    t[b'&' as usize] = 1;
    t[b'<' as usize] = 2;
    t[b'\r' as usize] = 7;
    if attr {
        t[b'"' as usize] = 4;
        t[b'\t' as usize] = 5;
        t[b'\n' as usize] = 6;
    } else {
        t[b'>' as usize] = 3;
    }
    t
}
const TEXT_ESCAPES: [u8; 256] = escape_table(false);
const ATTR_ESCAPES: [u8; 256] = escape_table(true);

/// Hands `emit` the escaped form of `s` in pieces, unescaped runs straight
/// from the input.
fn escape<E>(s: &str, attr: bool, mut emit: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
    let table = if attr { &ATTR_ESCAPES } else { &TEXT_ESCAPES };
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let k = table[usize::from(c)];
        if k == 0 {
            continue;
        }
        emit(bytes.get(last..i).unwrap_or_default())?;
        emit(ESCAPES[usize::from(k)])?;
        last = i + 1;
    }
    emit(bytes.get(last..).unwrap_or_default())
}

/// Canonicalizes a whole document.
pub fn canonicalize_document<W: Write + ?Sized>(
    input: &[u8],
    limits: &Limits,
    method: &Method,
    out: &mut W,
) -> Result<(), C14nError> {
    let mut reader = Reader::new(input, limits)?;
    let mut c = Canonicalizer::document(method.clone());
    reader.each(|ev| c.feed(ev, out).map(|()| true))
}

/// Canonicalizes the first element for which `select` is true, with its
/// descendants. The rest of the document is still read, so a malformed message
/// is refused even when the selected part is fine.
pub fn canonicalize_element<W, F>(
    input: &[u8],
    limits: &Limits,
    method: &Method,
    mut select: F,
    out: &mut W,
) -> Result<(), C14nError>
where
    W: Write + ?Sized,
    F: FnMut(&StartElement<'_>) -> bool,
{
    let mut reader = Reader::new(input, limits)?;
    let mut c: Option<Canonicalizer> = None;
    reader.each(|ev| {
        match &mut c {
            Some(c) if !c.is_done() => c.feed(ev, out)?,
            Some(_) => {}
            None => {
                let hit = matches!(ev, Event::Start(s) if select(s));
                if hit {
                    let mut sub = Canonicalizer::subtree(method.clone());
                    sub.feed(ev, out)?;
                    c = Some(sub);
                }
            }
        }
        Ok::<_, C14nError>(true)
    })?;
    c.map(|_| ()).ok_or(C14nError::NotFound)
}
