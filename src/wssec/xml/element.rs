//! Start and end tags: qualified names, namespace declarations and their
//! scope, attributes (normalized, duplicates refused), all held in reused
//! arenas so reading allocates nothing per node.

use super::lex::Attrs;
use super::text::{check_chars, push_attr_value};
use super::{
    malformed, Attribute, Limits, NsDecl, Phase, Reader, Ready, Span, XmlError, XMLNS_NS, XML_NS,
};

/// Range into one of the reader's (or the canonicalizer's) string arenas.
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::wssec) struct Sub {
    pub(in crate::wssec) start: usize,
    pub(in crate::wssec) end: usize,
}

impl Sub {
    pub(in crate::wssec) fn of(self, buf: &str) -> &str {
        buf.get(self.start..self.end).unwrap_or("")
    }

    pub(in crate::wssec) fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }
}

/// Resolved namespace of a name.
#[derive(Debug, Clone, Copy)]
pub(super) enum NsRef {
    None,
    Xml,
    Decl(usize),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Binding {
    pub(super) prefix: Sub,
    pub(super) uri: Sub,
    /// A keyed hash of the URI: expanded names compare by it (and by content
    /// only when it matches), so a long URI is never compared over and over.
    pub(super) key: u64,
    /// Unique per declaration in the document (`NsDecl::id`).
    pub(super) id: u64,
}

/// `NsDecl::id` of names in no namespace; `XML_ID` of the `xml` prefix.
pub const NO_NAMESPACE_ID: u64 = 0;
pub const XML_ID: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    pub(super) name: Sub,
    pub(super) prefix_len: usize,
    pub(super) ns: NsRef,
    pub(super) ns_mark: usize,
    pub(super) ns_text_mark: usize,
    pub(super) xml_mark: usize,
    pub(super) xml_text_mark: usize,
    /// An empty-element tag. Held here rather than in the event, so an event
    /// is words only and moves through memory without partial copies.
    pub(super) empty: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct AttrRec {
    pub(super) name: Sub,
    pub(super) prefix_len: usize,
    pub(super) ns: NsRef,
    pub(super) value: Sub,
}

/// Everything events borrow: kept apart from the tokenizer so an event can
/// borrow it while the reader advances only on the next call. All buffers are
/// reused, so steady-state reading allocates nothing per node.
#[derive(Default)]
pub(super) struct State {
    pub(super) frames: Vec<Frame>,
    pub(super) names: String,
    pub(super) ns: Vec<Binding>,
    pub(super) ns_text: String,
    // xml:* attributes of open elements (C14N 1.0 inherits them into subsets).
    pub(super) xml_attrs: Vec<(Sub, Sub)>,
    pub(super) xml_text: String,
    pub(super) attrs: Vec<AttrRec>,
    pub(super) attr_text: String,
    pub(super) text: String,
    /// Keys the URI hashes (random per reader, so keys cannot be aimed).
    pub(super) hasher: std::collections::hash_map::RandomState,
    pub(super) next_id: u64,
    /// Reused for the duplicate-attribute check.
    pub(super) scratch: Vec<u32>,
}

impl State {
    /// Heap capacity of the arenas, in bytes.
    pub(super) fn capacity(&self) -> usize {
        use std::mem::size_of;
        self.frames.capacity() * size_of::<Frame>()
            + self.names.capacity()
            + self.ns.capacity() * size_of::<Binding>()
            + self.ns_text.capacity()
            + self.xml_attrs.capacity() * size_of::<(Sub, Sub)>()
            + self.xml_text.capacity()
            + self.attrs.capacity() * size_of::<AttrRec>()
            + self.attr_text.capacity()
            + self.text.capacity()
            + self.scratch.capacity() * size_of::<u32>()
    }

    /// Empty, as at a document's start, with the arenas' capacity kept.
    /// Binding ids go on counting, so no id of an earlier pass recurs.
    pub(super) fn clear(&mut self) {
        self.frames.clear();
        self.names.clear();
        self.ns.clear();
        self.ns_text.clear();
        self.xml_attrs.clear();
        self.xml_text.clear();
        self.attrs.clear();
        self.attr_text.clear();
        self.text.clear();
        self.scratch.clear();
    }

    fn ns_key(&self, r: NsRef) -> u64 {
        match r {
            NsRef::None => 0,
            NsRef::Xml => 1,
            NsRef::Decl(i) => self.ns.get(i).map_or(0, |b| b.key),
        }
    }

    pub(super) fn ns_id(&self, r: NsRef) -> u64 {
        match r {
            NsRef::None => NO_NAMESPACE_ID,
            NsRef::Xml => XML_ID,
            NsRef::Decl(i) => self.ns.get(i).map_or(NO_NAMESPACE_ID, |b| b.id),
        }
    }

    /// The few-attribute case: every pair, URIs compared by key first.
    fn check_duplicates_pairwise(&self, at: usize) -> Result<(), XmlError> {
        for (i, a) in self.attrs.iter().enumerate() {
            let an = a.name.of(&self.attr_text);
            for b in &self.attrs[..i] {
                let bn = b.name.of(&self.attr_text);
                let same_expanded = a.prefix_len > 0
                    && b.prefix_len > 0
                    && self.ns_key(a.ns) == self.ns_key(b.ns)
                    && local_part(an, a.prefix_len) == local_part(bn, b.prefix_len)
                    && self.ns_uri(a.ns) == self.ns_uri(b.ns);
                if an == bn || same_expanded {
                    return Err(XmlError::DuplicateAttribute { at });
                }
            }
        }
        Ok(())
    }

    /// Refuses two attributes with one qualified name, or one expanded name
    /// (`a:x` and `b:x` with `a` and `b` bound to one URI). Sorting keeps it
    /// `n log n`; URIs are compared by key, and by content only on a match.
    fn check_duplicates(&mut self, at: usize) -> Result<(), XmlError> {
        let n = self.attrs.len();
        if n < 2 {
            return Ok(());
        }
        if n <= 8 {
            return self.check_duplicates_pairwise(at);
        }
        let mut idx = std::mem::take(&mut self.scratch);
        idx.clear();
        idx.extend(0..u32::try_from(self.attrs.len()).unwrap_or(u32::MAX));
        let st: &State = self;
        let name = |i: u32| {
            st.attrs
                .get(i as usize)
                .map_or("", |a| a.name.of(&st.attr_text))
        };
        idx.sort_unstable_by(|a, b| name(*a).cmp(name(*b)));
        let mut dup = idx.windows(2).any(|w| name(w[0]) == name(w[1]));
        if !dup {
            let expanded = |i: u32| {
                let a = st.attrs.get(i as usize);
                (
                    a.map_or(0, |a| st.ns_key(a.ns)),
                    a.map_or("", |a| local_part(a.name.of(&st.attr_text), a.prefix_len)),
                )
            };
            let uri = |i: u32| st.attrs.get(i as usize).and_then(|a| st.ns_uri(a.ns));
            idx.retain(|i| st.attrs.get(*i as usize).is_some_and(|a| a.prefix_len > 0));
            idx.sort_unstable_by(|a, b| expanded(*a).cmp(&expanded(*b)));
            dup = idx
                .windows(2)
                .any(|w| expanded(w[0]) == expanded(w[1]) && uri(w[0]) == uri(w[1]));
        }
        self.scratch = idx;
        if dup {
            Err(XmlError::DuplicateAttribute { at })
        } else {
            Ok(())
        }
    }

    pub(super) fn ns_uri(&self, r: NsRef) -> Option<&str> {
        match r {
            NsRef::None => None,
            NsRef::Xml => Some(XML_NS),
            NsRef::Decl(i) => self.ns.get(i).map(|b| b.uri.of(&self.ns_text)),
        }
    }

    /// Innermost binding of `prefix`, whether or not it is an undeclaration.
    pub(super) fn find(&self, prefix: &str) -> Option<usize> {
        // Lengths first: most bindings in scope differ from `prefix` in it.
        self.ns
            .iter()
            .rposition(|b| b.prefix.len() == prefix.len() && b.prefix.of(&self.ns_text) == prefix)
    }

    pub(super) fn resolve(&self, prefix: &str, at: usize) -> Result<NsRef, XmlError> {
        if prefix.as_bytes() == *b"xml" {
            return Ok(NsRef::Xml);
        }
        match self.find(prefix) {
            Some(i) if !self.ns[i].uri.of(&self.ns_text).is_empty() => Ok(NsRef::Decl(i)),
            _ if prefix.is_empty() => Ok(NsRef::None),
            _ => Err(XmlError::UndeclaredPrefix { at }),
        }
    }

    /// A copy for a later pass of a state outside any start tag: names,
    /// namespaces and `xml:*` attributes, no tag's attributes or scratch.
    pub(super) fn snapshot(&self) -> State {
        self.copy_upto(
            self.frames.len(),
            self.names.len(),
            self.ns.len(),
            self.ns_text.len(),
            self.xml_attrs.len(),
            self.xml_text.len(),
        )
    }

    /// A copy of the state as it was before the innermost open element's
    /// start tag (the whole state outside any element), holding only that:
    /// what [`Reader::resume`](super::Reader::resume) reads the tag again in.
    pub(super) fn before_top(&self) -> State {
        match self.frames.last() {
            Some(f) => self.copy_upto(
                self.frames.len() - 1,
                f.name.start,
                f.ns_mark,
                f.ns_text_mark,
                f.xml_mark,
                f.xml_text_mark,
            ),
            None => self.snapshot(),
        }
    }

    /// The first `frames` frames and the arenas up to the given lengths.
    fn copy_upto(
        &self,
        frames: usize,
        names: usize,
        ns: usize,
        ns_text: usize,
        xml: usize,
        xml_text: usize,
    ) -> State {
        State {
            frames: self.frames.get(..frames).unwrap_or_default().to_vec(),
            names: self.names.get(..names).unwrap_or_default().to_owned(),
            ns: self.ns.get(..ns).unwrap_or_default().to_vec(),
            ns_text: self.ns_text.get(..ns_text).unwrap_or_default().to_owned(),
            xml_attrs: self.xml_attrs.get(..xml).unwrap_or_default().to_vec(),
            xml_text: self.xml_text.get(..xml_text).unwrap_or_default().to_owned(),
            attrs: Vec::new(),
            attr_text: String::new(),
            text: String::new(),
            hasher: self.hasher.clone(),
            next_id: self.next_id,
            scratch: Vec::new(),
        }
    }

    /// Bytes [`State::before_top`] would copy.
    pub(super) fn before_top_len(&self) -> usize {
        use std::mem::size_of;
        let Some((f, outer)) = self.frames.split_last() else {
            return self.capacity();
        };
        std::mem::size_of_val(outer)
            + f.name.start
            + f.ns_mark * size_of::<Binding>()
            + f.ns_text_mark
            + f.xml_mark * size_of::<(Sub, Sub)>()
            + f.xml_text_mark
    }

    /// Takes `snap` as the state, keeping this state's buffers.
    pub(super) fn restore(&mut self, snap: &State) {
        self.frames.clone_from(&snap.frames);
        self.names.clone_from(&snap.names);
        self.ns.clone_from(&snap.ns);
        self.ns_text.clone_from(&snap.ns_text);
        self.xml_attrs.clone_from(&snap.xml_attrs);
        self.xml_text.clone_from(&snap.xml_text);
        self.attrs.clone_from(&snap.attrs);
        self.attr_text.clone_from(&snap.attr_text);
        self.text.clear();
        self.scratch.clear();
        self.hasher = snap.hasher.clone();
        // Ids go on from the larger count, so none handed out before recurs.
        self.next_id = self.next_id.max(snap.next_id);
    }

    pub(super) fn pop(&mut self) {
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
    pub(super) st: &'r State,
    pub(super) frame: &'r Frame,
    pub(super) depth: usize,
    pub(super) span: Span,
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
        self.frame.empty
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
                namespace_id: st.ns_id(a.ns),
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
    /// This start tag as a place a later pass over the same input may
    /// begin at ([`Reader::resume`](super::Reader::resume)): the state as
    /// it was before the tag, which that pass reads again.
    pub fn mark(&self) -> super::Mark {
        super::Mark {
            st: self.st.before_top(),
            span: self.span,
        }
    }
    /// Bytes [`mark`](Self::mark) would hold (the names and namespaces in
    /// scope), for a caller that bounds what it keeps.
    pub fn mark_len(&self) -> usize {
        self.st.before_top_len()
    }
    /// `NsDecl::id` of the binding the element's own name resolved to.
    pub fn namespace_id(&self) -> u64 {
        self.st.ns_id(self.frame.ns)
    }
    /// The binding of `prefix` here, with its id (`""`: the default namespace).
    pub fn lookup_binding(&self, prefix: &str) -> Option<NsDecl<'r>> {
        let st = self.st;
        st.find(prefix)
            .and_then(|i| st.ns.get(i))
            .map(|b| decl(st, b))
            .filter(|d| !d.uri.is_empty())
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

pub(super) fn decl<'r>(st: &'r State, b: &Binding) -> NsDecl<'r> {
    NsDecl {
        prefix: b.prefix.of(&st.ns_text),
        uri: b.uri.of(&st.ns_text),
        id: b.id,
    }
}

pub(super) fn local_part(name: &str, prefix_len: usize) -> &str {
    if prefix_len == 0 {
        name
    } else {
        name.get(prefix_len + 1..).unwrap_or("")
    }
}

/// An end tag (or the implied end of an empty-element tag).
#[derive(Clone, Copy)]
pub struct EndElement<'r> {
    pub(super) st: &'r State,
    pub(super) frame: &'r Frame,
    pub(super) depth: usize,
    pub(super) span: Span,
}

impl<'r> EndElement<'r> {
    element_accessors!();
}

// Debug output names elements and sizes only: content may carry secrets
// (a UsernameToken password, say) and must never reach a log line.
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

impl<'a> Reader<'a> {
    pub(super) fn start(
        &mut self,
        qname: &'a str,
        attrs: &'a str,
        span: Span,
        empty: bool,
    ) -> Result<Ready<'a>, XmlError> {
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
        // Name characters exclude every character `check_chars` refuses.
        let prefix_len = check_qname(qname, l, at)?;
        if qname.get(..prefix_len) == Some("xmlns") {
            return Err(XmlError::InvalidNamespace { at });
        }

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
            empty,
        };
        // Pushed now, completed once this element's declarations are known.
        st.frames.push(frame);
        st.attrs.clear();
        st.attr_text.clear();

        let mut count = 0usize;
        for a in Attrs::new(attrs, at) {
            let (key, value) = a?;
            count += 1;
            if count > l.max_attributes {
                return Err(XmlError::TooManyAttributes {
                    at,
                    limit: l.max_attributes,
                });
            }
            let plen = check_qname(key, l, at)?;
            if value.len() > l.max_attr_value_len {
                return Err(XmlError::AttributeTooLong {
                    at,
                    limit: l.max_attr_value_len,
                });
            }
            check_chars(value, at)?;
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
                push_attr_value(&mut st.ns_text, value, at)?;
                let uri = Sub {
                    start: u0,
                    end: st.ns_text.len(),
                };
                check_binding(p, uri.of(&st.ns_text), at)?;
                st.next_id += 1;
                let b = Binding {
                    prefix: Sub { start: p0, end: u0 },
                    uri,
                    key: std::hash::BuildHasher::hash_one(&st.hasher, uri.of(&st.ns_text)),
                    id: st.next_id,
                };
                st.ns.push(b);
            } else {
                let n0 = st.attr_text.len();
                st.attr_text.push_str(key);
                let v0 = st.attr_text.len();
                push_attr_value(&mut st.attr_text, value, at)?;
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
        st.check_duplicates(at)?;
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
        Ok(Ready::Start(span))
    }
}

/// Checks a QName (`prefix:local` or `local`) and returns the prefix length.
pub(super) fn check_qname(name: &str, l: &Limits, at: usize) -> Result<usize, XmlError> {
    if name.len() > l.max_name_len {
        return Err(XmlError::NameTooLong {
            at,
            limit: l.max_name_len,
        });
    }
    ascii_qname(name.as_bytes())
        .unwrap_or_else(|| qname_by_chars(name))
        .ok_or_else(|| malformed(at, "invalid name"))
}

/// A QName read by characters: the prefix length, or `None` if it is not
/// `NCName` or `NCName:NCName`.
fn qname_by_chars(name: &str) -> Option<usize> {
    match name.bytes().position(|b| b == b':') {
        Some(i) => (is_ncname(name.get(..i).unwrap_or(""))
            && is_ncname(name.get(i + 1..).unwrap_or("")))
        .then_some(i),
        None => is_ncname(name).then_some(0),
    }
}

/// What an ASCII byte may be in a name: 2 starts (and continues) an
/// NCName, 1 only continues one, 0 neither.
const ASCII_NAME: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphabetic() || b == b'_' {
            2
        } else if b.is_ascii_digit() || b == b'-' || b == b'.' {
            1
        } else {
            0
        };
        c += 1;
    }
    t
};

/// An ASCII QName read in one pass (the common case): `Some` of the prefix
/// length, or of `None` if it is not `NCName` or `NCName:NCName`; `None` for
/// a name with a non-ASCII byte, to be read by characters.
fn ascii_qname(b: &[u8]) -> Option<Option<usize>> {
    let mut colon = None;
    let mut starting = true;
    for (i, &c) in b.iter().enumerate() {
        if c == b':' {
            if starting || colon.is_some() {
                return Some(None);
            }
            colon = Some(i);
            starting = true;
            continue;
        }
        let class = *ASCII_NAME.get(usize::from(c))?;
        if class < if starting { 2 } else { 1 } {
            return Some(None);
        }
        starting = false;
    }
    Some((!starting).then_some(colon.unwrap_or(0)))
}

/// XML 1.0 (fifth edition) `NameStartChar`, without `:` (an NCName's).
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 `NameChar`, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// An NCName (Namespaces in XML 1.0), checked as a conforming parser does.
pub(super) fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// Namespaces in XML 1.0 constraints on a declaration of `prefix` to `uri`.
pub(super) fn check_binding(prefix: &str, uri: &str, at: usize) -> Result<(), XmlError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass ASCII reading of a QName says what the reading by
    /// characters says, for every name of up to four bytes from the
    /// characters that matter (letters, digits, `_ - . :`, others).
    #[test]
    fn ascii_qnames_read_in_one_pass_as_by_characters() {
        let alphabet = b"aZ_09-.:/ #";
        let mut names = vec![String::new()];
        for len in 1..=4 {
            let mut n = vec![0usize; len];
            loop {
                names.push(n.iter().map(|&i| char::from(alphabet[i])).collect());
                let Some(k) = n.iter().rposition(|&i| i + 1 < alphabet.len()) else {
                    break;
                };
                n[k] += 1;
                n[k + 1..].iter_mut().for_each(|i| *i = 0);
            }
        }
        for name in &names {
            assert_eq!(
                ascii_qname(name.as_bytes()),
                Some(qname_by_chars(name)),
                "{name:?}"
            );
        }
        assert_eq!(ascii_qname("é".as_bytes()), None);
    }
}
