//! One pass over a SOAP message: checks the envelope structure, records the byte
//! spans of the parts WS-Security cares about, collects every Id, and holds the
//! (small) children of the one `wsse:Security` header. The Body is never held.

use std::collections::HashMap;

use super::error::WssecError;
use super::xml::{self, Event, Limits, Mark, Reader, Span, StartElement};

pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const WSU_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";

/// Elements held from the Security header, all held subtrees together.
const MAX_HELD_NODES: usize = 4096;
/// Bytes held from the header: text (tokens, digests, signature values),
/// attribute values, and every name and namespace URI copied — a URI
/// declared once may be named by every attribute, so each copy counts.
const MAX_HELD_TEXT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    Soap11,
    Soap12,
}

/// Bounds on what the scan keeps per message, so hostile input within the
/// size limit cannot make it hold many times its own size. Real messages carry
/// a handful of header blocks and Ids.
const MAX_HEADER_CHILDREN: usize = 256;
const MAX_IDS: usize = 10_000;
/// Of all Id values together: a message read as it streams is bounded in
/// size by nothing the scan knows, and each Id is kept to its end.
const MAX_ID_BYTES: usize = 1 << 20;
/// Places a later pass may begin at: the Body, the SignedInfo, the held
/// Security tokens and header blocks with an Id. Each holds a copy of the
/// names and namespaces in scope there, so their number and bytes are
/// bounded; an element past the bounds is read from the message's start.
const MAX_MARKS: usize = 16;
const MAX_MARK_BYTES: usize = 256 << 10;

/// A namespace-qualified name; `namespace` is `""` for no namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QName {
    pub namespace: String,
    pub local: String,
}

impl QName {
    pub fn new(namespace: &str, local: &str) -> Self {
        QName {
            namespace: namespace.to_owned(),
            local: local.to_owned(),
        }
    }

    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace == namespace && self.local == local
    }
}

impl std::fmt::Display for QName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{}}}{}", self.namespace, self.local)
    }
}

/// A direct child of the SOAP Header.
#[derive(Debug, Clone)]
pub struct HeaderChild {
    pub name: QName,
    /// The whole element, start tag to end tag.
    pub span: Span,
}

/// An attribute of a held element.
#[derive(Clone)]
pub struct NodeAttr {
    pub namespace: Option<String>,
    pub local: String,
    pub value: String,
}

/// A held element of the Security header, with its direct text.
#[derive(Clone)]
pub struct Node {
    pub name: QName,
    pub attrs: Vec<NodeAttr>,
    pub children: Vec<Node>,
    /// Direct character data, all pieces concatenated.
    pub text: String,
    /// A comment sits directly inside (it would split a text node).
    pub has_comment: bool,
    /// Content was not held (`ds:Object`: never relied on).
    pub skipped: bool,
    /// The whole element, start tag to end tag.
    pub span: Span,
}

// Text may be a password: Debug shows structure and sizes only.
impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field(
                "attrs",
                &self.attrs.iter().map(|a| &a.local).collect::<Vec<_>>(),
            )
            .field("children", &self.children)
            .field("text_len", &self.text.len())
            .field("span", &self.span)
            .finish()
    }
}

impl Node {
    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.name.is(namespace, local)
    }

    /// Attribute by namespace (`None`: unprefixed) and local name.
    pub fn attr(&self, namespace: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.namespace.as_deref() == namespace && a.local == local)
            .map(|a| a.value.as_str())
    }

    pub fn children_named<'n>(
        &'n self,
        namespace: &'n str,
        local: &'n str,
    ) -> impl Iterator<Item = &'n Node> + 'n {
        self.children.iter().filter(move |c| c.is(namespace, local))
    }

    /// The only child with this name; `Ok(None)` if absent, an error if repeated.
    pub fn single_child(
        &self,
        namespace: &str,
        local: &str,
    ) -> Result<Option<&Node>, RepeatedChild> {
        let mut it = self.children.iter().filter(|c| c.is(namespace, local));
        let first = it.next();
        if it.next().is_some() {
            return Err(RepeatedChild);
        }
        Ok(first)
    }

    /// True when the element has only text (no child elements, no comments).
    pub fn is_text_only(&self) -> bool {
        self.children.is_empty() && !self.has_comment && !self.skipped
    }

    /// The `wsu:Id` (or other Id attribute) of the element, if any.
    pub fn id(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| is_id_attribute(&a.local))
            .map(|a| a.value.as_str())
    }
}

/// An element expected once appears more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedChild;

/// The one `wsse:Security` header and its held children.
#[derive(Debug, Clone)]
pub struct Security {
    pub span: Span,
    pub timestamp: Option<Node>,
    pub tokens: Vec<Node>,
    pub signature: Option<Node>,
    pub username_token: Option<Node>,
}

/// What one pass over the message found.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub soap: SoapVersion,
    pub envelope: Span,
    pub header: Option<Span>,
    /// The Header's start tag alone (where a signer inserts its header).
    pub header_start_tag: Option<Span>,
    pub header_children: Vec<HeaderChild>,
    pub body: Span,
    /// The Body's start tag alone (where a signer adds `wsu:Id`).
    pub body_start_tag: Span,
    /// The Body's qualified name as written (its prefix is the envelope's).
    pub body_qname: String,
    pub security: Option<Security>,
    /// Every Id value, mapped to the start offset of the element carrying it.
    pub ids: HashMap<String, usize>,
    /// Where later passes may begin (see [`Mark`]).
    pub marks: Vec<Mark>,
}

/// `Id`, `ID`, `id` in any namespace: `wsu:Id`, `xml:id`, XML-DSig `Id`, SAML `ID`.
pub fn is_id_attribute(local: &str) -> bool {
    matches!(local, "Id" | "ID" | "id")
}

fn bad(what: &'static str) -> WssecError {
    WssecError::BadEnvelope(what)
}

/// Where in the SOAP structure the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    BeforeHeader,
    InHeader,
    AfterHeader,
    InBody,
    AfterBody,
}

/// Builds held subtrees of the Security header within the budget.
#[derive(Default)]
struct Holder {
    stack: Vec<Node>,
    nodes: usize,
    text: usize,
    // Depth of a skipped subtree (ds:Object) being passed over, 0 if none.
    skip_depth: usize,
}

impl Holder {
    fn budget(&mut self, nodes: usize, text: usize) -> Result<(), WssecError> {
        self.nodes += nodes;
        self.text += text;
        if self.nodes > MAX_HELD_NODES || self.text > MAX_HELD_TEXT {
            return Err(WssecError::SecurityHeaderTooLarge);
        }
        Ok(())
    }

    fn start(&mut self, e: &StartElement<'_>) -> Result<(), WssecError> {
        if self.skip_depth > 0 {
            self.skip_depth += 1;
            return Ok(());
        }
        // Counted before anything is copied.
        let held: usize = e
            .attributes()
            .map(|a| a.namespace.map_or(0, str::len) + a.local_name.len() + a.value.len())
            .sum::<usize>()
            + e.namespace().map_or(0, str::len)
            + e.local_name().len();
        self.budget(1, held)?;
        let attrs: Vec<NodeAttr> = e
            .attributes()
            .map(|a| NodeAttr {
                namespace: a.namespace.map(str::to_owned),
                local: a.local_name.to_owned(),
                value: a.value.to_owned(),
            })
            .collect();
        let name = QName::new(e.namespace().unwrap_or(""), e.local_name());
        // Object content is never relied on, so it is never held.
        let skipped = name.is(DS_NS, "Object");
        if skipped {
            self.skip_depth = 1;
        }
        self.stack.push(Node {
            name,
            attrs,
            children: Vec::new(),
            text: String::new(),
            has_comment: false,
            skipped,
            span: e.span(),
        });
        Ok(())
    }

    /// Closes the innermost element; returns it when it was the outermost held one.
    fn end(&mut self, end: usize) -> Option<Node> {
        if self.skip_depth > 1 {
            self.skip_depth -= 1;
            return None;
        }
        self.skip_depth = 0;
        let mut node = self.stack.pop()?;
        node.span.end = end;
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(node);
                None
            }
            None => Some(node),
        }
    }

    fn text(&mut self, t: &str) -> Result<(), WssecError> {
        if self.skip_depth > 0 {
            return Ok(());
        }
        self.budget(0, t.len())?;
        if let Some(top) = self.stack.last_mut() {
            top.text.push_str(t);
        }
        Ok(())
    }

    fn comment(&mut self) {
        if self.skip_depth == 0 {
            if let Some(top) = self.stack.last_mut() {
                top.has_comment = true;
            }
        }
    }
}

struct Scanner {
    soap_ns: &'static str,
    soap: SoapVersion,
    depth: usize,
    stage: Stage,
    envelope_start: usize,
    header: Option<Span>,
    header_start_tag: Option<Span>,
    header_children: Vec<HeaderChild>,
    body: Option<Span>,
    body_start_tag: Span,
    body_qname: String,
    security: Option<Security>,
    in_security: bool,
    holder: Holder,
    ids: HashMap<String, usize>,
    id_bytes: usize,
    marks: Vec<Mark>,
    mark_bytes: usize,
    /// The actor (SOAP 1.1) or role (SOAP 1.2) this receiver answers to,
    /// beside the defaults (none, `next`, `ultimateReceiver`).
    actor: Option<String>,
}

/// SOAP 1.1's `next` actor and SOAP 1.2's `next` and `ultimateReceiver` roles.
const ACTOR_NEXT_11: &str = "http://schemas.xmlsoap.org/soap/actor/next";
const ROLE_NEXT_12: &str = "http://www.w3.org/2003/05/soap-envelope/role/next";
const ROLE_ULTIMATE_12: &str = "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver";

/// Reads the whole message once and returns what verification needs; the
/// Security header considered is the one for the default receiver.
pub fn scan(msg: &[u8], limits: &Limits) -> Result<Scanned, WssecError> {
    scan_for(msg, limits, None)
}

/// Like [`scan`], for a receiver that also answers to `actor` (a SOAP 1.1
/// actor or 1.2 role URI). Security headers for other actors are left alone.
pub fn scan_for(msg: &[u8], limits: &Limits, actor: Option<&str>) -> Result<Scanned, WssecError> {
    scan_with(&mut Reader::new(msg, limits)?, actor)
}

/// [`scan_for`] with a reader of the whole message, read from its start
/// (and left for the later passes to rewind).
pub fn scan_with(reader: &mut Reader<'_>, actor: Option<&str>) -> Result<Scanned, WssecError> {
    reader.rewind();
    let mut scan = StreamScan::new(actor);
    reader.each(|ev| scan.event(ev).map(|()| true))?;
    scan.finish()
}

/// The scan fed event by event, for a message read in windows as it
/// arrives (the same rules as [`scan_for`], which feeds it one document).
pub struct StreamScan {
    sc: Option<Scanner>,
    actor: Option<String>,
    envelope_end: usize,
}

impl StreamScan {
    pub fn new(actor: Option<&str>) -> Self {
        StreamScan {
            sc: None,
            actor: actor.map(str::to_owned),
            envelope_end: 0,
        }
    }

    pub fn event(&mut self, ev: &Event<'_>) -> Result<(), WssecError> {
        match (ev, self.sc.as_mut()) {
            (Event::Start(e), None) => {
                let mut root = Scanner::root(e)?;
                root.actor = self.actor.take();
                self.sc = Some(root);
            }
            (Event::Start(e), Some(s)) => s.start(e)?,
            (Event::End(e), Some(s)) => {
                s.end(e.span().end)?;
                if s.depth == 0 {
                    self.envelope_end = e.span().end;
                }
            }
            (Event::Text(t), Some(s)) => s.text(t.text())?,
            (Event::Comment(_), Some(s)) => s.holder.comment(),
            _ => {}
        }
        Ok(())
    }

    /// True right after the Body's start tag was fed.
    pub fn body_opened(&self) -> bool {
        self.sc
            .as_ref()
            .is_some_and(|s| s.stage == Stage::InBody && s.depth == 2)
    }

    /// The Security header for this receiver, once the Header has closed.
    pub fn security(&self) -> Option<&Security> {
        self.sc.as_ref().and_then(|s| s.security.as_ref())
    }

    /// Every Id seen so far, mapped to the start of its element.
    pub fn ids(&self) -> Option<&HashMap<String, usize>> {
        self.sc.as_ref().map(|s| &s.ids)
    }

    /// Where later passes may begin, so far.
    pub fn marks(&self) -> &[Mark] {
        self.sc.as_ref().map_or(&[], |s| &s.marks)
    }

    pub fn finish(self) -> Result<Scanned, WssecError> {
        let sc = self.sc.ok_or(bad("no envelope"))?;
        sc.finish(self.envelope_end)
    }
}

impl Scanner {
    fn root(e: &StartElement<'_>) -> Result<Scanner, WssecError> {
        let (soap_ns, soap) = match e.namespace() {
            Some(SOAP11_NS) => (SOAP11_NS, SoapVersion::Soap11),
            Some(SOAP12_NS) => (SOAP12_NS, SoapVersion::Soap12),
            _ => return Err(bad("root is not a SOAP Envelope")),
        };
        if e.local_name() != "Envelope" {
            return Err(bad("root is not a SOAP Envelope"));
        }
        let mut s = Scanner {
            soap_ns,
            soap,
            depth: 1,
            stage: Stage::BeforeHeader,
            envelope_start: e.span().start,
            header: None,
            header_start_tag: None,
            header_children: Vec::new(),
            body: None,
            body_start_tag: Span::default(),
            body_qname: String::new(),
            security: None,
            in_security: false,
            holder: Holder::default(),
            ids: HashMap::new(),
            id_bytes: 0,
            marks: Vec::new(),
            mark_bytes: 0,
            actor: None,
        };
        s.collect_ids(e)?;
        Ok(s)
    }

    fn collect_ids(&mut self, e: &StartElement<'_>) -> Result<(), WssecError> {
        for a in e.attributes() {
            if is_id_attribute(a.local_name) {
                if self.ids.len() >= MAX_IDS {
                    return Err(WssecError::TooManyParts("Id attributes"));
                }
                self.id_bytes += a.value.len();
                if self.id_bytes > MAX_ID_BYTES {
                    return Err(WssecError::TooManyParts("bytes of Id values"));
                }
                // Two attributes with one value on one element count as a duplicate too.
                if self
                    .ids
                    .insert(a.value.to_owned(), e.span().start)
                    .is_some()
                {
                    return Err(WssecError::DuplicateId(a.value.to_owned()));
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, e: &StartElement<'_>) -> Result<(), WssecError> {
        self.collect_ids(e)?;
        self.depth += 1;
        match self.depth {
            2 => self.envelope_child(e)?,
            3 if self.stage == Stage::InHeader => self.header_child(e)?,
            4 if self.in_security => self.security_child(e)?,
            _ if !self.holder.stack.is_empty() => {
                if self.depth == 5
                    && e.namespace() == Some(DS_NS)
                    && e.local_name() == "SignedInfo"
                    && self.holder.stack.len() == 1
                    && self.holder.stack.iter().all(|n| n.is(DS_NS, "Signature"))
                {
                    self.mark(e);
                }
                self.holder.start(e)?
            }
            _ => {}
        }
        Ok(())
    }

    fn mark(&mut self, e: &StartElement<'_>) {
        let len = e.mark_len();
        if self.marks.len() < MAX_MARKS && self.mark_bytes + len <= MAX_MARK_BYTES {
            self.mark_bytes += len;
            self.marks.push(e.mark());
        }
    }

    fn envelope_child(&mut self, e: &StartElement<'_>) -> Result<(), WssecError> {
        if e.namespace() != Some(self.soap_ns) {
            return Err(bad("element other than Header or Body in Envelope"));
        }
        match (e.local_name(), self.stage) {
            ("Header", Stage::BeforeHeader) => {
                self.stage = Stage::InHeader;
                self.header = Some(e.span());
                self.header_start_tag = Some(e.span());
            }
            ("Body", Stage::BeforeHeader | Stage::AfterHeader) => {
                self.stage = Stage::InBody;
                self.body = Some(e.span());
                self.body_start_tag = e.span();
                self.body_qname = e.name().to_owned();
                self.mark(e);
            }
            ("Header", _) => return Err(bad("Header repeated or after Body")),
            ("Body", _) => return Err(bad("second Body")),
            _ => return Err(bad("element other than Header or Body in Envelope")),
        }
        Ok(())
    }

    fn header_child(&mut self, e: &StartElement<'_>) -> Result<(), WssecError> {
        if self.header_children.len() >= MAX_HEADER_CHILDREN {
            return Err(WssecError::TooManyParts("SOAP header blocks"));
        }
        // Each block's name is a copy too, counted before it is made.
        let ns = e.namespace().unwrap_or("");
        self.holder.budget(0, ns.len() + e.local_name().len())?;
        let name = QName::new(ns, e.local_name());
        if name.is(WSSE_NS, "Security") && self.for_this_receiver(e) {
            if self.security.is_some() {
                return Err(WssecError::TwoSecurityHeaders);
            }
            self.in_security = true;
            self.security = Some(Security {
                span: e.span(),
                timestamp: None,
                tokens: Vec::new(),
                signature: None,
                username_token: None,
            });
        }
        if !self.in_security && e.attributes().any(|a| is_id_attribute(a.local_name)) {
            self.mark(e);
        }
        self.header_children.push(HeaderChild {
            name,
            span: e.span(),
        });
        Ok(())
    }

    /// Whether a Security header targets this receiver: no actor/role, the
    /// `next` one (SOAP 1.2: also `ultimateReceiver`), or the configured one.
    fn for_this_receiver(&self, e: &StartElement<'_>) -> bool {
        let (attr, defaults): (&str, &[&str]) = match self.soap {
            SoapVersion::Soap11 => ("actor", &[ACTOR_NEXT_11]),
            SoapVersion::Soap12 => ("role", &[ROLE_NEXT_12, ROLE_ULTIMATE_12]),
        };
        match e.attribute_value(Some(self.soap_ns), attr) {
            None => true,
            Some(a) => {
                let a = a.trim();
                a.is_empty() || defaults.contains(&a) || self.actor.as_deref() == Some(a)
            }
        }
    }

    fn security_child(&mut self, e: &StartElement<'_>) -> Result<(), WssecError> {
        let ns = e.namespace().unwrap_or("");
        let held = matches!(
            (ns, e.local_name()),
            (WSU_NS, "Timestamp")
                | (WSSE_NS, "BinarySecurityToken" | "UsernameToken")
                | (DS_NS, "Signature")
        );
        if ns == XENC_NS {
            return Err(WssecError::UnsupportedToken("encryption"));
        }
        if held {
            if ns != DS_NS {
                self.mark(e);
            }
            self.holder.start(e)?;
        }
        Ok(())
    }

    fn end(&mut self, end: usize) -> Result<(), WssecError> {
        if !self.holder.stack.is_empty() {
            if let Some(node) = self.holder.end(end) {
                self.place(node)?;
            }
        }
        match self.depth {
            2 => match self.stage {
                Stage::InHeader => {
                    self.stage = Stage::AfterHeader;
                    if let Some(h) = &mut self.header {
                        h.end = end;
                    }
                }
                Stage::InBody => {
                    self.stage = Stage::AfterBody;
                    if let Some(b) = &mut self.body {
                        b.end = end;
                    }
                }
                _ => {}
            },
            3 if self.stage == Stage::InHeader => {
                if let Some(c) = self.header_children.last_mut() {
                    c.span.end = end;
                }
                if self.in_security {
                    self.in_security = false;
                    if let Some(s) = &mut self.security {
                        s.span.end = end;
                    }
                }
            }
            _ => {}
        }
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }

    /// Files a completed direct child of the Security header.
    fn place(&mut self, node: Node) -> Result<(), WssecError> {
        let Some(sec) = self.security.as_mut() else {
            return Ok(());
        };
        if node.is(WSU_NS, "Timestamp") {
            if sec.timestamp.is_some() {
                return Err(WssecError::TwoTimestamps);
            }
            sec.timestamp = Some(node);
        } else if node.is(DS_NS, "Signature") {
            if sec.signature.is_some() {
                return Err(WssecError::TwoSignatures);
            }
            sec.signature = Some(node);
        } else if node.is(WSSE_NS, "UsernameToken") {
            if sec.username_token.is_some() {
                return Err(WssecError::TwoUsernameTokens);
            }
            sec.username_token = Some(node);
        } else {
            sec.tokens.push(node);
        }
        Ok(())
    }

    fn text(&mut self, t: &str) -> Result<(), WssecError> {
        // Envelope, Header and Security hold elements only.
        let structural = self.depth == 1
            || (self.depth == 2 && self.stage == Stage::InHeader)
            || (self.depth == 3 && self.in_security);
        if structural && !t.bytes().all(xml::is_space) {
            return Err(bad("text between SOAP structure elements"));
        }
        if !self.holder.stack.is_empty() {
            self.holder.text(t)?;
        }
        Ok(())
    }

    fn finish(self, envelope_end: usize) -> Result<Scanned, WssecError> {
        let body = self.body.ok_or(bad("no Body"))?;
        Ok(Scanned {
            soap: self.soap,
            envelope: Span {
                start: self.envelope_start,
                end: envelope_end,
            },
            header: self.header,
            header_start_tag: self.header_start_tag,
            header_children: self.header_children,
            body,
            body_start_tag: self.body_start_tag,
            body_qname: self.body_qname,
            security: self.security,
            ids: self.ids,
            marks: self.marks,
        })
    }
}

/// An element's qualified name from its start tag's bytes.
pub fn tag_name(tag: &[u8]) -> String {
    let name: Vec<u8> = tag
        .iter()
        .skip(1)
        .take_while(|&&b| !xml::is_space(b) && b != b'/' && b != b'>')
        .copied()
        .collect();
    String::from_utf8_lossy(&name).into_owned()
}

/// Where a new first child of the SOAP Header goes: at `at`, `delete` bytes
/// replaced by `open` + the child + `close` (a Header made in the
/// Envelope's namespace when there is none, a `<p:Header/>` opened).
pub struct HeaderSlot {
    pub at: usize,
    pub delete: usize,
    pub open: String,
    pub close: String,
}

/// The slot for a new first Header child of `msg`, as `scan` found it.
pub fn header_slot(msg: &[u8], scan: &Scanned) -> HeaderSlot {
    match (scan.header, scan.header_start_tag) {
        (Some(h), Some(st)) if h.end == st.end => {
            // `<p:Header/>`: its `/>` becomes `>` ... `</p:Header>`.
            let name = tag_name(msg.get(st.start..st.end).unwrap_or_default());
            HeaderSlot {
                at: st.end.saturating_sub(2),
                delete: 2,
                open: ">".to_owned(),
                close: format!("</{name}>"),
            }
        }
        (Some(_), Some(st)) => HeaderSlot {
            at: st.end,
            delete: 0,
            open: String::new(),
            close: String::new(),
        },
        _ => {
            // The Envelope's own prefix is in scope for its children.
            let envelope = tag_name(msg.get(scan.envelope.start..).unwrap_or_default());
            let p = match envelope.split_once(':') {
                Some((prefix, _)) => format!("{prefix}:"),
                None => String::new(),
            };
            HeaderSlot {
                at: scan.body.start,
                delete: 0,
                open: format!("<{p}Header>"),
                close: format!("</{p}Header>"),
            }
        }
    }
}
