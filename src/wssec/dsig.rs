//! XML-Signature: SignedInfo parsing against allowlists, streaming digests of
//! referenced elements, and SignatureValue verification with aws-lc-rs.

use std::io::{self, Write};

use aws_lc_rs::{constant_time, digest, signature};
use base64::Engine as _;

use super::c14n::{Algorithm, Canonicalizer, Method, EXC_C14N_URI};
use super::envelope::{Node, DS_NS};
use super::error::WssecError;
use super::tokens::{CertInfo, PublicKey};
use super::xml::{self, Event, Limits, Mark, Reader, Span};

pub const RSA_SHA1_URI: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const RSA_SHA256_URI: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub const RSA_SHA384_URI: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384";
pub const RSA_SHA512_URI: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
pub const ECDSA_SHA256_URI: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
pub const ECDSA_SHA384_URI: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
pub const SHA1_URI: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
pub const SHA256_URI: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA384_URI: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
pub const SHA512_URI: &str = "http://www.w3.org/2001/04/xmlenc#sha512";
pub const ENVELOPED_URI: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const MANIFEST_TYPE: &str = "http://www.w3.org/2000/09/xmldsig#Manifest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    RsaSha1,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    EcdsaSha256,
    EcdsaSha384,
}

// A certificate keeps its key parsed once per algorithm, in a slot each.
const _: () = assert!(SignatureAlgorithm::ALL.len() == super::tokens::KEY_SLOTS);

impl SignatureAlgorithm {
    pub const ALL: [SignatureAlgorithm; 6] = [
        SignatureAlgorithm::RsaSha1,
        SignatureAlgorithm::RsaSha256,
        SignatureAlgorithm::RsaSha384,
        SignatureAlgorithm::RsaSha512,
        SignatureAlgorithm::EcdsaSha256,
        SignatureAlgorithm::EcdsaSha384,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha1 => RSA_SHA1_URI,
            SignatureAlgorithm::RsaSha256 => RSA_SHA256_URI,
            SignatureAlgorithm::RsaSha384 => RSA_SHA384_URI,
            SignatureAlgorithm::RsaSha512 => RSA_SHA512_URI,
            SignatureAlgorithm::EcdsaSha256 => ECDSA_SHA256_URI,
            SignatureAlgorithm::EcdsaSha384 => ECDSA_SHA384_URI,
        }
    }

    fn from_uri(uri: &str, allow_sha1: bool) -> Result<Self, WssecError> {
        Ok(match uri {
            RSA_SHA1_URI if allow_sha1 => SignatureAlgorithm::RsaSha1,
            RSA_SHA1_URI => return Err(WssecError::Sha1NotAllowed),
            RSA_SHA256_URI => SignatureAlgorithm::RsaSha256,
            RSA_SHA384_URI => SignatureAlgorithm::RsaSha384,
            RSA_SHA512_URI => SignatureAlgorithm::RsaSha512,
            ECDSA_SHA256_URI => SignatureAlgorithm::EcdsaSha256,
            ECDSA_SHA384_URI => SignatureAlgorithm::EcdsaSha384,
            other => return Err(WssecError::AlgorithmNotAllowed(other.to_owned())),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlgorithm {
    pub fn uri(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha1 => SHA1_URI,
            DigestAlgorithm::Sha256 => SHA256_URI,
            DigestAlgorithm::Sha384 => SHA384_URI,
            DigestAlgorithm::Sha512 => SHA512_URI,
        }
    }

    fn from_uri(uri: &str, allow_sha1: bool) -> Result<Self, WssecError> {
        Ok(match uri {
            SHA1_URI if allow_sha1 => DigestAlgorithm::Sha1,
            SHA1_URI => return Err(WssecError::Sha1NotAllowed),
            SHA256_URI => DigestAlgorithm::Sha256,
            SHA384_URI => DigestAlgorithm::Sha384,
            SHA512_URI => DigestAlgorithm::Sha512,
            other => return Err(WssecError::AlgorithmNotAllowed(other.to_owned())),
        })
    }

    pub fn aws(self) -> &'static digest::Algorithm {
        match self {
            DigestAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            DigestAlgorithm::Sha256 => &digest::SHA256,
            DigestAlgorithm::Sha384 => &digest::SHA384,
            DigestAlgorithm::Sha512 => &digest::SHA512,
        }
    }
}

/// One `ds:Reference`, checked against the allowlists.
#[derive(Debug, Clone)]
pub struct Reference {
    /// As written, `#id`.
    pub uri: String,
    /// The Id it names.
    pub id: String,
    /// An enveloped-signature transform precedes canonicalization.
    pub enveloped: bool,
    pub c14n: Method,
    pub digest: DigestAlgorithm,
    pub digest_value: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct SignedInfo {
    pub c14n: Method,
    pub algorithm: SignatureAlgorithm,
    pub references: Vec<Reference>,
    /// The SignedInfo element.
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct ParsedSignature<'n> {
    pub signed_info: SignedInfo,
    pub signature_value: Vec<u8>,
    /// Borrowed from the held Security header, never copied.
    pub key_info: Option<&'n Node>,
    /// The Signature element.
    pub span: Span,
}

fn bad(what: &'static str) -> WssecError {
    WssecError::MalformedSignature(what)
}

fn algorithm_attr(n: &Node) -> Result<&str, WssecError> {
    n.attr(None, "Algorithm")
        .ok_or(bad("Algorithm attribute missing"))
}

/// Parses `ds:Signature`, refusing anything outside the allowlists.
pub fn parse_signature(
    sig: &Node,
    allow_sha1: bool,
    max_references: usize,
) -> Result<ParsedSignature<'_>, WssecError> {
    let mut signed_info = None;
    let mut value = None;
    let mut key_info = None;
    for (i, c) in sig.children.iter().enumerate() {
        match (c.name.namespace.as_str(), c.name.local.as_str(), i) {
            (DS_NS, "SignedInfo", 0) => signed_info = Some(c),
            (DS_NS, "SignatureValue", 1) => value = Some(c),
            (DS_NS, "KeyInfo", 2) => key_info = Some(c),
            // Present but never read: nothing inside an Object is relied on.
            (DS_NS, "Object", _) if i >= 2 => {}
            _ => return Err(bad("unexpected element in Signature")),
        }
    }
    let signed_info = signed_info.ok_or(bad("no SignedInfo"))?;
    let value = value.ok_or(bad("no SignatureValue"))?;
    Ok(ParsedSignature {
        signed_info: parse_signed_info(signed_info, allow_sha1, max_references)?,
        signature_value: strict_base64(value)?,
        key_info,
        span: sig.span,
    })
}

fn parse_signed_info(
    si: &Node,
    allow_sha1: bool,
    max_references: usize,
) -> Result<SignedInfo, WssecError> {
    let mut kids = si.children.iter();
    let cm = kids
        .next()
        .filter(|n| n.is(DS_NS, "CanonicalizationMethod"))
        .ok_or(bad("no CanonicalizationMethod"))?;
    let sm = kids
        .next()
        .filter(|n| n.is(DS_NS, "SignatureMethod"))
        .ok_or(bad("no SignatureMethod"))?;
    let c14n = c14n_method(cm)?;
    let algorithm = signature_method(sm, allow_sha1)?;
    let mut references = Vec::new();
    for r in kids {
        if !r.is(DS_NS, "Reference") {
            return Err(bad("unexpected element in SignedInfo"));
        }
        references.push(parse_reference(r, allow_sha1)?);
        if references.len() > max_references {
            return Err(WssecError::TooManyReferences);
        }
    }
    if references.is_empty() {
        return Err(bad("no Reference"));
    }
    Ok(SignedInfo {
        c14n,
        algorithm,
        references,
        span: si.span,
    })
}

fn signature_method(sm: &Node, allow_sha1: bool) -> Result<SignatureAlgorithm, WssecError> {
    // Truncated HMACs are the classic downgrade (CVE-2009-0217): refused outright.
    if sm
        .children
        .iter()
        .any(|c| c.name.local == "HMACOutputLength")
    {
        return Err(WssecError::HmacOutputLength);
    }
    if !sm.children.is_empty() {
        return Err(bad("unexpected element in SignatureMethod"));
    }
    SignatureAlgorithm::from_uri(algorithm_attr(sm)?, allow_sha1)
}

/// A canonicalization method (CanonicalizationMethod or Transform); comments never.
fn c14n_method(n: &Node) -> Result<Method, WssecError> {
    let uri = algorithm_attr(n)?;
    let method = Method::from_uri(uri)
        .filter(|m| !m.with_comments)
        .ok_or_else(|| WssecError::TransformNotAllowed(uri.to_owned()))?;
    with_prefix_list(method, n)
}

/// Prefixes an InclusiveNamespaces PrefixList may name. Real lists name a
/// handful; each one costs a namespace lookup on every element digested.
pub const MAX_PREFIXES: usize = 64;

fn with_prefix_list(method: Method, n: &Node) -> Result<Method, WssecError> {
    let mut method = method;
    let mut seen = false;
    for c in &n.children {
        let ok = method.algorithm == Algorithm::Exclusive
            && c.is(EXC_C14N_URI, "InclusiveNamespaces")
            && !seen;
        if !ok {
            return Err(bad("unexpected element in a canonicalization method"));
        }
        seen = true;
        let list = c.attr(None, "PrefixList").unwrap_or("");
        if list.split_ascii_whitespace().count() > MAX_PREFIXES {
            return Err(WssecError::TooManyParts("InclusiveNamespaces prefixes"));
        }
        // Duplicates are dropped by `with_prefix_list`.
        method = method.with_prefix_list(list);
    }
    Ok(method)
}

fn parse_reference(r: &Node, allow_sha1: bool) -> Result<Reference, WssecError> {
    if r.attr(None, "Type") == Some(MANIFEST_TYPE) {
        return Err(WssecError::ManifestNotAllowed);
    }
    let uri = r
        .attr(None, "URI")
        .ok_or(WssecError::BadReferenceUri(String::new()))?;
    let id = bare_name(uri).ok_or_else(|| WssecError::BadReferenceUri(uri.to_owned()))?;
    let mut kids = r.children.iter().peekable();
    let mut enveloped = false;
    // Without a canonicalization transform, a node-set becomes octets by C14N 1.0.
    let mut c14n = Method::inclusive();
    if let Some(ts) = kids.next_if(|n| n.is(DS_NS, "Transforms")) {
        (enveloped, c14n) = transforms(ts)?;
    }
    let dm = kids
        .next()
        .filter(|n| n.is(DS_NS, "DigestMethod"))
        .ok_or(bad("no DigestMethod"))?;
    let dv = kids
        .next()
        .filter(|n| n.is(DS_NS, "DigestValue"))
        .ok_or(bad("no DigestValue"))?;
    if kids.next().is_some() || !dm.children.is_empty() {
        return Err(bad("unexpected element in Reference"));
    }
    Ok(Reference {
        uri: uri.to_owned(),
        id: id.to_owned(),
        enveloped,
        c14n,
        digest: DigestAlgorithm::from_uri(algorithm_attr(dm)?, allow_sha1)?,
        digest_value: strict_base64(dv)?,
    })
}

/// `#id` with an NCName-like id; XPointer (`#xpointer(...)`), empty and external URIs refused.
fn bare_name(uri: &str) -> Option<&str> {
    let id = uri.strip_prefix('#')?;
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80)
        && !id.as_bytes()[0].is_ascii_digit()
        && !matches!(id.as_bytes()[0], b'-' | b'.');
    ok.then_some(id)
}

/// Allowed chains: [enveloped-signature]? then at most one C14N (exclusive or 1.0).
fn transforms(ts: &Node) -> Result<(bool, Method), WssecError> {
    let mut enveloped = false;
    let mut c14n: Option<Method> = None;
    for t in &ts.children {
        if !t.is(DS_NS, "Transform") {
            return Err(bad("unexpected element in Transforms"));
        }
        let uri = algorithm_attr(t)?;
        if uri == ENVELOPED_URI && !enveloped && c14n.is_none() && t.children.is_empty() {
            enveloped = true;
            continue;
        }
        if c14n.is_some() {
            return Err(WssecError::TransformNotAllowed(uri.to_owned()));
        }
        c14n = Some(c14n_method(t)?);
    }
    Ok((enveloped, c14n.unwrap_or_else(Method::inclusive)))
}

/// Decodes base64 text allowing only XML whitespace between characters; the
/// element must hold one text node (no child elements, no comments).
pub fn strict_base64(n: &Node) -> Result<Vec<u8>, WssecError> {
    if !n.is_text_only() {
        return Err(WssecError::BadBase64("not a single text node"));
    }
    decode_base64(&n.text)
}

pub fn decode_base64(text: &str) -> Result<Vec<u8>, WssecError> {
    // Line by line: signers wrap base64 at 64 or 76 characters, and a copy
    // a byte at a time cost more than the decoding.
    let mut compact = Vec::with_capacity(text.len());
    for line in text.as_bytes().split(|&b| xml::is_space(b)) {
        compact.extend_from_slice(line);
    }
    if compact.is_empty() {
        return Err(WssecError::BadBase64("empty"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| WssecError::BadBase64("invalid base64"))
}

/// `io::Write` into a running digest, optionally keeping the bytes (explain mode).
///
/// Canonicalization writes many short pieces (a `<`, a name, a `="`); they
/// are gathered into a buffer and digested in blocks, since every digest
/// update has a fixed cost that dominated short writes.
pub struct DigestWriter {
    ctx: digest::Context,
    pending: Vec<u8>,
    keep: Option<Vec<u8>>,
}

/// How much is gathered before the digest takes it.
const DIGEST_BLOCK: usize = 16 << 10;
/// A write this long goes to the digest as it is: the call's cost is then
/// small beside the bytes. The canonicalizer's chunks are this long.
const DIGEST_DIRECT: usize = super::c14n::WRITE_CHUNK;

impl DigestWriter {
    pub fn new(alg: DigestAlgorithm, keep: bool) -> Self {
        DigestWriter {
            ctx: digest::Context::new(alg.aws()),
            // Grows to a block only for what is that long (a Timestamp is not).
            pending: Vec::new(),
            keep: keep.then(Vec::new),
        }
    }

    /// Digests `bytes`, and keeps them if asked to.
    fn digest(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
        if let Some(k) = &mut self.keep {
            k.extend_from_slice(bytes);
        }
    }

    /// Digests what is gathered.
    fn absorb(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        self.digest(&pending);
        pending.clear();
        self.pending = pending;
    }

    /// The digest and, if kept, the canonical bytes.
    pub fn finish(mut self) -> (Vec<u8>, Option<Vec<u8>>) {
        self.absorb();
        (self.ctx.finish().as_ref().to_vec(), self.keep)
    }
}

impl Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let direct = buf.len() >= DIGEST_DIRECT;
        // What was gathered goes first, before a long piece or when full.
        if direct || self.pending.len() + buf.len() > DIGEST_BLOCK {
            self.absorb();
        }
        if direct {
            self.digest(buf);
        } else {
            self.pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What to digest: the element starting at `start` (its start tag's offset).
#[derive(Debug, Clone)]
pub struct DigestTarget {
    /// The Id the Reference names (for error messages).
    pub id: String,
    pub start: usize,
    pub method: Method,
    pub digest: DigestAlgorithm,
    /// Events inside this span are left out (the enveloped Signature).
    pub skip: Option<Span>,
    pub keep_bytes: bool,
}

impl DigestTarget {
    /// The element a Reference names, starting at `start`; `signature` is
    /// the Signature's span, left out for an enveloped-signature transform.
    pub fn of(r: &Reference, start: usize, signature: Span, keep_bytes: bool) -> DigestTarget {
        DigestTarget {
            id: r.id.clone(),
            start,
            method: r.c14n.clone(),
            digest: r.digest,
            skip: r.enveloped.then_some(signature),
            keep_bytes,
        }
    }
}

/// A computed digest and, in explain mode, the canonical bytes.
#[derive(Debug, Clone)]
pub struct DigestOutput {
    pub value: Vec<u8>,
    pub canonical: Option<Vec<u8>>,
}

struct Active {
    /// Index into the targets.
    target: usize,
    c: Canonicalizer,
    sink: DigestWriter,
    skip: Option<Span>,
}

fn event_span(ev: &Event<'_>) -> Span {
    match ev {
        Event::Start(e) => e.span(),
        Event::End(e) => e.span(),
        Event::Text(t) | Event::Comment(t) => t.span(),
    }
}

fn inside(s: Span, outer: Span) -> bool {
    s.start >= outer.start && s.end <= outer.end
}

/// Second pass, cheap: the canonical SignedInfo, in its namespace context.
/// SignedInfo sits in the Security header, so the pass stops long before the
/// Body; its SignatureValue is verified before any Reference is digested.
pub fn canonical_signed_info(
    msg: &[u8],
    limits: &Limits,
    start: usize,
    method: &Method,
) -> Result<Vec<u8>, WssecError> {
    canonical_signed_info_in(&mut Reader::new(msg, limits)?, &[], start, method)
}

/// [`canonical_signed_info`] with a reader of the whole message, from the
/// SignedInfo's mark when `marks` holds one, else from the start.
pub fn canonical_signed_info_in(
    reader: &mut Reader<'_>,
    marks: &[Mark],
    start: usize,
    method: &Method,
) -> Result<Vec<u8>, WssecError> {
    reader.begin_at(start, marks);
    let mut c: Option<Canonicalizer> = None;
    let mut out = Vec::new();
    reader.each(|ev| {
        if let Event::Start(e) = ev {
            if c.is_none() && e.span().start == start {
                c = Some(Canonicalizer::subtree(method.clone()));
            }
        }
        let Some(c) = c.as_mut() else {
            return Ok(true);
        };
        if let Event::Comment(_) = ev {
            return Err(WssecError::CommentInSignedPart("SignedInfo".into()));
        }
        c.feed(ev, &mut out).map_err(WssecError::from)?;
        Ok(!c.is_done())
    })?;
    match c {
        Some(c) if c.is_done() => Ok(out),
        _ => Err(WssecError::Internal("SignedInfo not found")),
    }
}

/// Third pass, once the signature verified: canonicalizes every target
/// straight into its digest, stopping after the last one. A comment inside
/// a target is refused: canonicalization without comments drops it, so the
/// upstream would receive bytes whose meaning differs from what was signed.
pub fn digest_targets(
    msg: &[u8],
    limits: &Limits,
    targets: &[DigestTarget],
) -> Result<Vec<DigestOutput>, WssecError> {
    digest_targets_in(&mut Reader::new(msg, limits)?, &[], targets)
}

/// [`digest_targets`] with a reader of the whole message: a target with a
/// mark in `marks` is read from there on its own, the others together in
/// one pass from the start.
pub fn digest_targets_in(
    reader: &mut Reader<'_>,
    marks: &[Mark],
    targets: &[DigestTarget],
) -> Result<Vec<DigestOutput>, WssecError> {
    let marked = |t: &DigestTarget| marks.iter().any(|m| m.start() == t.start);
    let mut outs: Vec<Option<DigestOutput>> = vec![None; targets.len()];
    for (i, t) in targets.iter().enumerate().filter(|(_, t)| marked(t)) {
        reader.begin_at(t.start, marks);
        digest_pass(reader, targets, &[i], &mut outs)?;
    }
    let rest: Vec<usize> = (0..targets.len())
        .filter(|&i| targets.get(i).is_some_and(|t| !marked(t)))
        .collect();
    if !rest.is_empty() {
        reader.rewind();
        digest_pass(reader, targets, &rest, &mut outs)?;
    }
    outs.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(WssecError::Internal("referenced element not found"))
}

/// Canonicalizes the targets `which` of `targets` straight into their
/// digests, reading on until the last of them ends.
fn digest_pass(
    reader: &mut Reader<'_>,
    targets: &[DigestTarget],
    which: &[usize],
    outs: &mut [Option<DigestOutput>],
) -> Result<(), WssecError> {
    let mut active: Vec<Active> = Vec::with_capacity(which.len());
    let mut finished = 0;
    reader.each(|ev| {
        if let Event::Start(e) = ev {
            let at = e.span().start;
            let starting = which
                .iter()
                .filter_map(|&i| targets.get(i).map(|t| (i, t)))
                .filter(|(_, t)| t.start == at);
            for (i, t) in starting {
                active.push(Active {
                    target: i,
                    c: Canonicalizer::subtree(t.method.clone()),
                    sink: DigestWriter::new(t.digest, t.keep_bytes),
                    skip: t.skip,
                });
            }
        }
        let span = event_span(ev);
        for a in active.iter_mut().filter(|a| !a.c.is_done()) {
            if a.skip.is_some_and(|s| inside(span, s)) {
                continue;
            }
            if let Event::Comment(_) = ev {
                let id = targets
                    .get(a.target)
                    .map(|t| t.id.clone())
                    .unwrap_or_default();
                return Err(WssecError::CommentInSignedPart(id));
            }
            a.c.feed(ev, &mut a.sink).map_err(WssecError::from)?;
            if a.c.is_done() {
                finished += 1;
            }
        }
        Ok(finished < which.len())
    })?;
    for a in active {
        if !a.c.is_done() {
            return Err(WssecError::Internal("referenced element not closed"));
        }
        let (value, canonical) = a.sink.finish();
        if let Some(o) = outs.get_mut(a.target) {
            *o = Some(DigestOutput { value, canonical });
        }
    }
    Ok(())
}

/// Constant-time digest comparison.
pub fn digests_equal(computed: &[u8], claimed: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(computed, claimed).is_ok()
}

/// The signature algorithm must fit the key: RSA with RSA, ECDSA-SHA256 with P-256,
/// ECDSA-SHA384 with P-384.
pub fn check_key_type(alg: SignatureAlgorithm, key: &PublicKey) -> Result<(), WssecError> {
    let ok = matches!(
        (alg, key),
        (
            SignatureAlgorithm::RsaSha1
                | SignatureAlgorithm::RsaSha256
                | SignatureAlgorithm::RsaSha384
                | SignatureAlgorithm::RsaSha512,
            PublicKey::Rsa(_)
        ) | (SignatureAlgorithm::EcdsaSha256, PublicKey::EcP256(_))
            | (SignatureAlgorithm::EcdsaSha384, PublicKey::EcP384(_))
    );
    if ok {
        Ok(())
    } else {
        Err(WssecError::AlgorithmKeyMismatch)
    }
}

/// Verifies SignatureValue over the canonical SignedInfo.
pub fn verify_signature_value(
    alg: SignatureAlgorithm,
    cert: &CertInfo,
    signed_info: &[u8],
    value: &[u8],
) -> Result<(), WssecError> {
    let key = &cert.key;
    check_key_type(alg, key)?;
    // The RSA key size was judged by the trust store (2048 bits unless the
    // policy allows legacy keys), so the parameters here accept from 1024 bits.
    let (params, raw): (&'static dyn signature::VerificationAlgorithm, &[u8]) = match (alg, key) {
        (SignatureAlgorithm::RsaSha1, PublicKey::Rsa(k)) => {
            (&signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, k)
        }
        (SignatureAlgorithm::RsaSha256, PublicKey::Rsa(k)) => (
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            k,
        ),
        (SignatureAlgorithm::RsaSha384, PublicKey::Rsa(k)) => {
            (&signature::RSA_PKCS1_2048_8192_SHA384, k)
        }
        (SignatureAlgorithm::RsaSha512, PublicKey::Rsa(k)) => (
            &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
            k,
        ),
        (SignatureAlgorithm::EcdsaSha256, PublicKey::EcP256(k)) => {
            (&signature::ECDSA_P256_SHA256_FIXED, k)
        }
        (SignatureAlgorithm::EcdsaSha384, PublicKey::EcP384(k)) => {
            (&signature::ECDSA_P384_SHA384_FIXED, k)
        }
        _ => return Err(WssecError::AlgorithmKeyMismatch),
    };
    cert.parsed
        .verify(alg as usize, params, raw, signed_info, value)
        .map_err(|_| WssecError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_reads_across_xml_whitespace_only() {
        let want = b"sealgate verifies".to_vec();
        for text in [
            "c2VhbGdhdGUgdmVyaWZpZXM=",
            "c2VhbGdh\ndGUgdmVy\r\naWZpZXM=",
            "  c2VhbGdhdGUg\tdmVyaWZpZXM=\n",
            "c 2 V h b G d h d G U g d m V y a W Z p Z X M =",
        ] {
            assert_eq!(decode_base64(text).ok(), Some(want.clone()), "{text:?}");
        }
        // A form feed is no XML whitespace; nothing at all is no value.
        for text in ["c2VhbGdh\x0cdGUgdmVyaWZpZXM=", "", " \r\n\t ", "c2V*"] {
            assert!(decode_base64(text).is_err(), "{text:?}");
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::{verify_signature_value, SignatureAlgorithm};
    use crate::pki::{Ca, KeyAlg, Leaf, Usage};
    use crate::wssec::sign::SigningKey;
    use crate::wssec::tokens::CertInfo;

    /// A key parsed once and kept with its certificate verifies as a fresh
    /// parse would: under the algorithm it was kept for, under another one
    /// (parsed afresh), and a forged value is refused either way.
    #[test]
    fn a_kept_key_verifies_as_a_fresh_one_under_every_algorithm() {
        let ca = Ca::new("Key CA", "Sealgate Test", 1).unwrap();
        let mut spec = Leaf::new("signer", Usage::Signer);
        spec.alg = KeyAlg::Rsa2048;
        let issued = ca.issue(&spec).unwrap();
        let key = SigningKey::from_pem(issued.key_pem.as_bytes()).unwrap();
        let cert = CertInfo::from_der(&issued.der).unwrap();
        let msg = b"<ds:SignedInfo/>";
        for _ in 0..2 {
            for alg in [SignatureAlgorithm::RsaSha256, SignatureAlgorithm::RsaSha512] {
                let value = key.sign(alg, msg).unwrap();
                verify_signature_value(alg, &cert, msg, &value).unwrap();
                let mut forged = value.clone();
                forged[10] ^= 1;
                let e = verify_signature_value(alg, &cert, msg, &forged).unwrap_err();
                assert_eq!(e.reason(), "wssec_bad_signature", "{e}");
                let e = verify_signature_value(alg, &cert, b"<other/>", &value).unwrap_err();
                assert_eq!(e.reason(), "wssec_bad_signature", "{e}");
                // The other algorithm's value is no signature under this one.
                let other = match alg {
                    SignatureAlgorithm::RsaSha256 => SignatureAlgorithm::RsaSha512,
                    _ => SignatureAlgorithm::RsaSha256,
                };
                assert!(verify_signature_value(other, &cert, msg, &value).is_err());
            }
        }
        // A certificate of another key, kept apart: the first key's value fails.
        let other = CertInfo::from_der(&ca.issue(&spec).unwrap().der).unwrap();
        let value = key.sign(SignatureAlgorithm::RsaSha256, msg).unwrap();
        assert!(
            verify_signature_value(SignatureAlgorithm::RsaSha256, &other, msg, &value).is_err()
        );
    }
}
