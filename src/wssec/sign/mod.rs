//! The signer: adds a WS-Security header — Timestamp, BinarySecurityToken,
//! UsernameToken, Signature over Body, Timestamp and chosen header blocks,
//! exclusive C14N, SHA-256 — spliced into the caller's bytes, so everything
//! else reaches the upstream unchanged. Prefixes are taken from the scope in
//! force (a fresh one where one is taken), and every output is verified by
//! the crate's own verifier before it leaves.

mod key;
mod layout;
mod stream;

pub use key::SigningKey;
pub use stream::{Finished, SignedHead, StreamSigner};

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use base64::Engine as _;

use super::c14n::{canonicalize_element, Canonicalizer, Method, EXC_C14N_URI};
use super::dsig::{
    digest_targets, DigestAlgorithm, DigestTarget, DigestWriter, SignatureAlgorithm,
};
use super::envelope::{
    self, is_id_attribute, QName, SoapVersion, StreamScan, DS_NS, WSSE_NS, WSU_NS,
};
use super::error::WssecError;
use super::tokens::{
    format_datetime, CertInfo, TrustStore, BASE64_ENCODING, PASSWORD_DIGEST, PASSWORD_TEXT,
    SKI_TYPE, THUMBPRINT_TYPE, X509V3_TYPE,
};
use super::verify::{CheckedBy, Part, Policy, Signed};
use super::xml::{Event, Limits, Reader, StartElement};
use layout::{Edit, Target};

/// A signing key with its certificate, read and checked against each other
/// once: what every message a route signs shares.
pub struct Signer {
    key: SigningKey,
    cert: Certified,
}

impl Signer {
    /// See [`SigningKey::signs_quickly`].
    pub fn signs_quickly(&self) -> bool {
        self.key.signs_quickly()
    }

    pub fn new(key: SigningKey, cert_der: &[u8]) -> Result<Signer, WssecError> {
        let cert = Certified::new(&key, cert_der, &SignatureAlgorithm::ALL)?;
        Ok(Signer { key, cert })
    }

    pub fn cert(&self) -> &CertInfo {
        &self.cert.info
    }

    fn keyed(&self) -> Keyed<'_> {
        Keyed {
            key: &self.key,
            cert: &self.cert,
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key)
            .field("subject", &self.cert.info.subject.to_string())
            .finish()
    }
}

/// The signing certificate, read once, with the trust its self-check uses.
struct Certified {
    info: CertInfo,
    /// The certificate pinned as itself: the form of the output is checked,
    /// not the certificate's dates (a caller may sign with an expired one on
    /// purpose, as tests of verifiers do). Boxed: it is large, and only the
    /// self-check reads it.
    check: Box<TrustStore>,
}

impl Certified {
    /// Checks the key against the certificate, and that a signature it makes
    /// with each of `algs` it can use verifies under the certificate's key:
    /// the self-check of each message compares the SignedInfo and value it
    /// signed instead of verifying again.
    fn new(
        key: &SigningKey,
        der: &[u8],
        algs: &[SignatureAlgorithm],
    ) -> Result<Certified, WssecError> {
        let info = CertInfo::from_der(der)?;
        if !key.matches(&info) {
            return Err(WssecError::Config(
                "the private key does not match the signing certificate".into(),
            ));
        }
        let probe = b"sealgate signing key check";
        for &alg in algs {
            let value = match key.sign(alg, probe) {
                Ok(v) => v,
                // Not one this key signs with; a message asking for it is
                // refused when it is signed.
                Err(WssecError::AlgorithmKeyMismatch) => continue,
                Err(e) => return Err(e),
            };
            super::dsig::verify_signature_value(alg, &info, probe, &value)
                .map_err(|e| WssecError::SelfCheck(Box::new(e)))?;
        }
        let mut check = TrustStore::new();
        check.add_pinned_der(der)?;
        check.allow_legacy_keys = true;
        check.ignore_validity = true;
        Ok(Certified {
            info,
            check: Box::new(check),
        })
    }
}

/// A key and its checked certificate, as one message's signing borrows them.
#[derive(Clone, Copy)]
struct Keyed<'a> {
    key: &'a SigningKey,
    cert: &'a Certified,
}

/// How the Signature names its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReference {
    BinarySecurityToken,
    IssuerSerial,
    SubjectKeyIdentifier,
    ThumbprintSha1,
}

/// A UsernameToken to add. Debug hides the secret.
#[derive(Clone)]
pub struct UsernameToken {
    pub username: String,
    pub password: super::tokens::Secret,
    /// PasswordDigest (with Nonce and Created) rather than PasswordText.
    pub digest: bool,
}

impl std::fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsernameToken")
            .field("username", &self.username)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The longest Timestamp lifetime the signer writes: beyond it no verifier's
/// cap would accept the message anyway.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// 9999-12-31T23:59:59Z, the last instant a Timestamp can name.
const LAST_INSTANT: Duration = Duration::from_secs(253_402_300_799);

#[derive(Debug, Clone)]
pub struct SignOptions {
    pub created: SystemTime,
    pub ttl: Duration,
    /// `None`: the key's default.
    pub signature: Option<SignatureAlgorithm>,
    pub digest: DigestAlgorithm,
    pub key_reference: KeyReference,
    /// Add a Timestamp.
    pub timestamp: bool,
    /// Reference the Body / the Timestamp (both by default).
    pub sign_body: bool,
    pub sign_timestamp: bool,
    /// Header blocks (direct children of Header) to sign as well.
    pub sign_headers: Vec<QName>,
    /// A message that already has a Security header for this receiver gets
    /// a new one in its place (else it is refused).
    pub replace_security: bool,
    pub username_token: Option<UsernameToken>,
    pub limits: Limits,
}

impl SignOptions {
    pub fn new(created: SystemTime) -> Self {
        SignOptions {
            created,
            ttl: Duration::from_secs(300),
            signature: None,
            digest: DigestAlgorithm::Sha256,
            key_reference: KeyReference::BinarySecurityToken,
            timestamp: true,
            sign_body: true,
            sign_timestamp: true,
            sign_headers: Vec::new(),
            replace_security: false,
            username_token: None,
            limits: Limits::default(),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Ids the signer hands out, unique in the message and among themselves,
/// and random: two identical messages signed in the same second get
/// different SignedInfos, so a receiver's replay cache (sealgate's, WSS4J's)
/// tells them apart.
struct Ids<'a> {
    taken: Vec<&'a HashMap<String, usize>>,
    given: Vec<String>,
}

impl Ids<'_> {
    fn fresh(&mut self, base: &str) -> Result<String, WssecError> {
        for _ in 0..8 {
            let mut r = [0u8; 8];
            aws_lc_rs::rand::fill(&mut r)
                .map_err(|_| WssecError::Internal("no random bytes for an Id"))?;
            let id = format!("{base}-{}", crate::hex::lower(&r));
            let free = self.taken.iter().all(|t| !t.contains_key(&id));
            if free && !self.given.contains(&id) {
                self.given.push(id.clone());
                return Ok(id);
            }
        }
        Err(WssecError::Internal("no free Id"))
    }
}

/// The Id a referenced element gets: its own `wsu:Id`, or a new one added with
/// a prefix that is free where the element stands.
fn id_for(
    msg: &[u8],
    t: &Target,
    base: &str,
    ids: &mut Ids<'_>,
    edits: &mut Vec<Edit>,
) -> Result<String, WssecError> {
    if let Some(id) = &t.wsu_id {
        return Ok(id.clone());
    }
    let id = ids.fresh(base)?;
    edits.push(id_edit(msg, t, &id));
    Ok(id)
}

/// Begins an element's canonical form at its start tag `start` as the
/// signer writes it: `edits` (the Id it gains) applied to `head`, the
/// message up to that tag's end. The tag's canonical bytes go to `sink` and
/// are returned; the element's content is fed next, from the message's own
/// reader.
fn begin_edited(
    head: &[u8],
    edits: &[Edit],
    start: &StartElement<'_>,
    method: Method,
    limits: &Limits,
    sink: &mut DigestWriter,
) -> Result<(Canonicalizer, Vec<u8>), WssecError> {
    let pseudo = layout::apply(head, edits)?;
    let mut c = Canonicalizer::subtree(method);
    let mut r = Reader::new(&pseudo, limits)?;
    let at = start.span().start;
    while let Some(ev) = r.next()? {
        if matches!(&ev, Event::Start(e) if e.span().start == at) {
            let mut tag = Vec::new();
            c.feed(&ev, &mut tag)?;
            sink.write_all(&tag)
                .map_err(|_| WssecError::Internal("digest write"))?;
            // Its content comes from another reader: bindings by that one's ids.
            c.rebind(|p, uri| {
                start
                    .lookup_binding(p)
                    .filter(|d| d.uri == uri)
                    .map(|d| d.id)
            });
            return Ok((c, tag));
        }
    }
    Err(WssecError::Internal("the Body was not found again"))
}

/// Adds `wsu:Id="id"` to the target's start tag.
fn id_edit(msg: &[u8], t: &Target, id: &str) -> Edit {
    let (prefix, declare) = layout::wsu_prefix(&t.scope);
    let decl = if declare {
        format!(" xmlns:{prefix}=\"{WSU_NS}\"")
    } else {
        String::new()
    };
    Edit {
        at: layout::attribute_point(msg, t.start_tag),
        delete: 0,
        insert: format!("{decl} {prefix}:Id=\"{id}\""),
    }
}

fn key_reference(kind: KeyReference, cert: &CertInfo, bst_id: &str) -> Result<String, WssecError> {
    Ok(match kind {
        KeyReference::BinarySecurityToken => {
            format!("<wsse:Reference URI=\"#{bst_id}\" ValueType=\"{X509V3_TYPE}\"/>")
        }
        KeyReference::IssuerSerial => format!(
            "<ds:X509Data><ds:X509IssuerSerial><ds:X509IssuerName>{}</ds:X509IssuerName>\
             <ds:X509SerialNumber>{}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data>",
            escape(&cert.issuer.to_string()),
            cert.serial_decimal
        ),
        KeyReference::SubjectKeyIdentifier => format!(
            "<wsse:KeyIdentifier EncodingType=\"{BASE64_ENCODING}\" ValueType=\"{SKI_TYPE}\">{}</wsse:KeyIdentifier>",
            b64(cert.ski.as_deref().ok_or_else(|| WssecError::Config(
                "the signing certificate has no SubjectKeyIdentifier to reference; use another key reference".into()
            ))?)
        ),
        KeyReference::ThumbprintSha1 => format!(
            "<wsse:KeyIdentifier EncodingType=\"{BASE64_ENCODING}\" ValueType=\"{THUMBPRINT_TYPE}\">{}</wsse:KeyIdentifier>",
            b64(&cert.sha1)
        ),
    })
}

fn username_token(ut: &UsernameToken, id: &str, created: SystemTime) -> Result<String, WssecError> {
    let user = escape(&ut.username);
    if !ut.digest {
        let text = std::str::from_utf8(ut.password.expose())
            .map_err(|_| WssecError::Config("a PasswordText secret must be UTF-8".into()))?;
        return Ok(format!(
            "<wsse:UsernameToken wsu:Id=\"{id}\"><wsse:Username>{user}</wsse:Username>\
             <wsse:Password Type=\"{PASSWORD_TEXT}\">{}</wsse:Password></wsse:UsernameToken>",
            escape(text)
        ));
    }
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| WssecError::Internal("no randomness"))?;
    let created = format_datetime(created);
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&nonce);
    ctx.update(created.as_bytes());
    ctx.update(ut.password.expose());
    Ok(format!(
        "<wsse:UsernameToken wsu:Id=\"{id}\"><wsse:Username>{user}</wsse:Username>\
         <wsse:Password Type=\"{PASSWORD_DIGEST}\">{}</wsse:Password>\
         <wsse:Nonce EncodingType=\"{BASE64_ENCODING}\">{}</wsse:Nonce>\
         <wsu:Created>{created}</wsu:Created></wsse:UsernameToken>",
        b64(ctx.finish().as_ref()),
        b64(&nonce)
    ))
}

fn has_id(e: &StartElement<'_>, id: &str) -> bool {
    e.attributes()
        .any(|a| is_id_attribute(a.local_name) && a.value == id)
}

/// Signs a message: Body and the Timestamp it adds (and `sign_headers`),
/// with a key and its certificate read for this message alone (a route
/// signing many compiles a [`Signer`] once).
pub fn sign(
    msg: &[u8],
    key: &SigningKey,
    cert_der: &[u8],
    opts: &SignOptions,
) -> Result<Vec<u8>, WssecError> {
    let alg = opts.signature.unwrap_or_else(|| key.default_algorithm());
    let cert = Certified::new(key, cert_der, &[alg])?;
    secure_with(msg, Some(Keyed { key, cert: &cert }), opts, None)
}

/// Adds a Security header: a Timestamp and a UsernameToken as the options
/// say, and a Signature when a signer is given.
pub fn secure(
    msg: &[u8],
    signer: Option<&Signer>,
    opts: &SignOptions,
) -> Result<Vec<u8>, WssecError> {
    secure_with(msg, signer.map(Signer::keyed), opts, None)
}

/// A Body signed as it streamed past: `msg` then holds it empty, and its
/// Id, PrefixList and digest were settled before its content was read.
struct StreamedBody<'a> {
    id: &'a str,
    /// What was added to the Body's start tag to give it `id`, if anything.
    id_insert: Option<&'a str>,
    prefixes: &'a [String],
    /// None when no signature covers the Body.
    digest: Option<&'a [u8]>,
    /// Every Id of the whole message (the fresh ones must differ).
    ids: &'a HashMap<String, usize>,
}

fn secure_with(
    msg: &[u8],
    signer: Option<Keyed<'_>>,
    opts: &SignOptions,
    streamed: Option<&StreamedBody<'_>>,
) -> Result<Vec<u8>, WssecError> {
    if opts.timestamp && (opts.ttl.is_zero() || opts.ttl > MAX_TTL) {
        return Err(WssecError::Config(format!(
            "a Timestamp lifetime must be above zero and at most {}",
            humantime::format_duration(MAX_TTL)
        )));
    }
    // An xsd:dateTime with a four-digit year names 1970..=9999 here.
    let in_range = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .is_ok_and(|d| d <= LAST_INSTANT)
    };
    let expires = opts
        .created
        .checked_add(opts.ttl)
        .filter(|e| in_range(*e) && in_range(opts.created))
        .ok_or_else(|| {
            WssecError::Config(
                "the Timestamp must be created after 1970 and expire before the year 10000".into(),
            )
        })?;
    let mut edits = Vec::new();
    // The Body's Id, and its digest in the same read as the scan, for a Body
    // with no prefix named in an attribute value (a PrefixList is known only
    // once the whole Body has been read; the common case needs none).
    let mut body_id = None;
    let speculate = signer.is_some() && opts.sign_body && streamed.is_none();
    let (scan, ctx) = {
        let none = HashMap::new();
        let mut open = |head: &[u8], e: &StartElement<'_>, t: &Target, seen: &StreamScan| {
            if seen.security().is_some() && !opts.replace_security {
                // Refused once the read ends, with nothing digested.
                return Ok(None);
            }
            let mut ids = Ids {
                taken: vec![seen.ids().unwrap_or(&none)],
                given: Vec::new(),
            };
            let id = id_for(head, t, "Body", &mut ids, &mut edits)?;
            body_id = Some(id);
            let mut sink = DigestWriter::new(opts.digest, false);
            let method = Method::exclusive().with_prefix_list("");
            let (c, _) = begin_edited(head, &edits, e, method, &opts.limits, &mut sink)?;
            Ok(Some((c, sink)))
        };
        let open: Option<&mut layout::OpenBody<'_>> =
            if speculate { Some(&mut open) } else { None };
        layout::context(msg, &opts.limits, &opts.sign_headers, open)?
    };
    let mut ids = Ids {
        taken: vec![&scan.ids],
        given: Vec::new(),
    };
    if let Some(id) = &body_id {
        // A fresh Id the Body's content turned out to use would name two elements.
        if scan.ids.get(id).is_some_and(|&at| at != scan.body.start) {
            return Err(WssecError::DuplicateId(id.clone()));
        }
        ids.given.push(id.clone());
    }
    if let Some(s) = streamed {
        ids.taken.push(s.ids);
        ids.given.push(s.id.to_owned());
    }

    // Where the Security header goes: in place of an old one, first in an
    // existing Header, or in a new Header in the Envelope's own namespace.
    let (sec_at, sec_delete, open, close) = match &scan.security {
        Some(_) if !opts.replace_security => return Err(WssecError::AlreadySecured),
        Some(old) => (
            old.span.start,
            old.span.end - old.span.start,
            String::new(),
            String::new(),
        ),
        None => {
            let slot = envelope::header_slot(msg, &scan);
            (slot.at, slot.delete, slot.open, slot.close)
        }
    };

    // Each Reference, and where its element is read to digest it.
    let mut refs: Vec<(String, Method, Source)> = Vec::new();
    if let (Some(_), true, Some(s)) = (signer, opts.sign_body, streamed) {
        // Exactly the start tag that was digested.
        match (&ctx.body.wsu_id, s.id_insert) {
            (None, Some(insert)) => edits.push(Edit {
                at: layout::attribute_point(msg, ctx.body.start_tag),
                delete: 0,
                insert: insert.to_owned(),
            }),
            (Some(id), None) if id == s.id => {}
            _ => return Err(WssecError::Internal("the Body's Id changed")),
        }
        let digest = s
            .digest
            .ok_or(WssecError::Internal("the streamed Body was not digested"))?;
        refs.push((
            s.id.to_owned(),
            Method::exclusive().with_prefix_list(&s.prefixes.join(" ")),
            Source::Digested(digest),
        ));
    } else if signer.is_some() && opts.sign_body {
        // Settled when the context's read reached the Body (`speculate`).
        let id = body_id.ok_or(WssecError::Internal("the Body's Id was not settled"))?;
        let list: Vec<&str> = ctx.value_prefixes.iter().map(String::as_str).collect();
        let source = match &ctx.body_digest {
            Some(d) if list.is_empty() => Source::Digested(d),
            _ => Source::Message(ctx.body.start_tag.start),
        };
        refs.push((
            id,
            Method::exclusive().with_prefix_list(&list.join(" ")),
            source,
        ));
    }
    if signer.is_some() {
        for t in &ctx.headers {
            let id = id_for(msg, t, "Header", &mut ids, &mut edits)?;
            refs.push((id, Method::exclusive(), Source::Message(t.start_tag.start)));
        }
    }

    let (soap_ns, must_understand) = match scan.soap {
        SoapVersion::Soap11 => (envelope::SOAP11_NS, "1"),
        SoapVersion::Soap12 => (envelope::SOAP12_NS, "true"),
    };
    let mut parts = String::new();
    if opts.timestamp {
        let ts_id = ids.fresh("TS")?;
        parts.push_str(&format!(
            "<wsu:Timestamp wsu:Id=\"{ts_id}\"><wsu:Created>{}</wsu:Created><wsu:Expires>{}</wsu:Expires></wsu:Timestamp>",
            format_datetime(opts.created),
            format_datetime(expires)
        ));
        if signer.is_some() && opts.sign_timestamp {
            refs.push((ts_id, Method::exclusive(), Source::Security));
        }
    }
    let bst_id = ids.fresh("X509")?;
    if let (Some(s), KeyReference::BinarySecurityToken) = (signer, opts.key_reference) {
        parts.push_str(&format!(
            "<wsse:BinarySecurityToken EncodingType=\"{BASE64_ENCODING}\" ValueType=\"{X509V3_TYPE}\" wsu:Id=\"{bst_id}\">{}</wsse:BinarySecurityToken>",
            b64(&s.cert.info.der)
        ));
    }
    if let Some(ut) = &opts.username_token {
        parts.push_str(&username_token(ut, &ids.fresh("UT")?, opts.created)?);
    }
    // The Security element declares every prefix its content uses, so it
    // reads the same wherever it is put: what it holds is canonicalized from
    // it alone, not from the whole message.
    let security = |sig: &str| {
        format!(
            "<wsse:Security xmlns:wsse=\"{WSSE_NS}\" xmlns:wsu=\"{WSU_NS}\" xmlns:soapmu=\"{soap_ns}\" soapmu:mustUnderstand=\"{must_understand}\">{parts}{sig}</wsse:Security>"
        )
    };
    let with = |edits: &[Edit], sig: &str| {
        let mut all = edits.to_vec();
        all.push(Edit {
            at: sec_at,
            delete: sec_delete,
            insert: format!("{open}{}{close}", security(sig)),
        });
        layout::apply(msg, &all)
    };
    let Some(signer) = signer else {
        let out = with(&edits, "")?;
        envelope::scan(&out, &opts.limits)?;
        return Ok(out);
    };

    let digests = digest_references(msg, &edits, &security(""), &refs, opts)?;
    let alg = opts
        .signature
        .unwrap_or_else(|| signer.key.default_algorithm());
    let mut references = String::new();
    for ((id, method, _), digest) in refs.iter().zip(&digests) {
        let transform = if method.inclusive_prefixes.is_empty() {
            format!("<ds:Transform Algorithm=\"{EXC_C14N_URI}\"/>")
        } else {
            format!(
                "<ds:Transform Algorithm=\"{EXC_C14N_URI}\"><ec:InclusiveNamespaces xmlns:ec=\"{EXC_C14N_URI}\" PrefixList=\"{}\"/></ds:Transform>",
                method.inclusive_prefixes.join(" ")
            )
        };
        references.push_str(&format!(
            "<ds:Reference URI=\"#{id}\"><ds:Transforms>{transform}</ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue></ds:Reference>",
            opts.digest.uri(),
            b64(digest)
        ));
    }
    let signed_info = format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N_URI}\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/>{references}</ds:SignedInfo>",
        alg.uri()
    );
    let key_info = key_reference(opts.key_reference, &signer.cert.info, &bst_id)?;
    let signature = |value: &str| {
        format!(
            "<ds:Signature xmlns:ds=\"{DS_NS}\">{signed_info}<ds:SignatureValue>{value}</ds:SignatureValue>\
             <ds:KeyInfo><wsse:SecurityTokenReference>{key_info}</wsse:SecurityTokenReference></ds:KeyInfo></ds:Signature>"
        )
    };
    let mut si_c14n = Vec::new();
    canonicalize_element(
        security(&signature("")).as_bytes(),
        &opts.limits,
        &Method::exclusive(),
        |e| e.local_name() == "SignedInfo" && e.namespace() == Some(DS_NS),
        &mut si_c14n,
    )?;
    let value = signer.key.sign(alg, &si_c14n)?;
    let out = with(&edits, &signature(&b64(&value)))?;
    let body_digest = streamed.and_then(|s| s.digest).filter(|_| opts.sign_body);
    let signed = Signed {
        signed_info: &si_c14n,
        value: &value,
        valid: true,
        by: CheckedBy::Signer,
    };
    self_check(&out, signer.cert, opts, body_digest, signed)?;
    Ok(out)
}

/// Where a Reference's element is read to digest it.
enum Source<'a> {
    /// In the message, its start tag at this offset of the caller's bytes.
    Message(usize),
    /// In the Security header being written.
    Security,
    /// A Body digested as it streamed past.
    Digested(&'a [u8]),
}

/// Each Reference's digest, in order: those in the message in one pass over
/// it with the signer's Ids added, those in the Security header from it alone.
fn digest_references(
    msg: &[u8],
    edits: &[Edit],
    security: &str,
    refs: &[(String, Method, Source<'_>)],
    opts: &SignOptions,
) -> Result<Vec<Vec<u8>>, WssecError> {
    let targets: Vec<DigestTarget> = refs
        .iter()
        .filter_map(|(id, method, source)| match source {
            Source::Message(at) => Some(DigestTarget {
                id: id.clone(),
                start: layout::shifted(edits, *at),
                method: method.clone(),
                digest: opts.digest,
                skip: None,
                keep_bytes: false,
            }),
            _ => None,
        })
        .collect();
    let mut in_message = if targets.is_empty() {
        Vec::new()
    } else {
        digest_targets(&layout::apply(msg, edits)?, &opts.limits, &targets)?
    }
    .into_iter();
    refs.iter()
        .map(|(id, method, source)| match source {
            Source::Message(_) => in_message
                .next()
                .map(|d| d.value)
                .ok_or(WssecError::Internal("digest missing")),
            Source::Security => {
                let mut w = DigestWriter::new(opts.digest, false);
                let doc = security.as_bytes();
                canonicalize_element(doc, &opts.limits, method, |e| has_id(e, id), &mut w)?;
                Ok(w.finish().0)
            }
            Source::Digested(d) => Ok(d.to_vec()),
        })
        .collect()
}

/// The output must verify in the crate's own verifier, trusting the signing
/// certificate as itself, for exactly the parts signed: a signer that could
/// emit what no verifier accepts is caught here, not upstream. The verifier
/// reads everything as it would from a sender, except that the SignedInfo it
/// canonicalizes and the SignatureValue it decodes are compared with
/// `signed`, what was just signed, in place of the public-key check (the key
/// was checked against the certificate, and to make signatures that verify
/// under it, when it was read).
fn self_check(
    out: &[u8],
    cert: &Certified,
    opts: &SignOptions,
    body_digest: Option<&[u8]>,
    signed: Signed<'_>,
) -> Result<(), WssecError> {
    let mut p = Policy::new((*cert.check).clone());
    p.limits = opts.limits.clone();
    p.allow_sha1 = opts.digest == DigestAlgorithm::Sha1;
    p.require_timestamp = opts.timestamp;
    p.max_ttl = opts.ttl.max(Duration::from_secs(1));
    p.max_work = None;
    let mut parts = Vec::new();
    if opts.sign_body {
        parts.push(Part::Body);
    }
    if opts.timestamp && opts.sign_timestamp {
        parts.push(Part::Timestamp);
    }
    parts.extend(opts.sign_headers.iter().cloned().map(Part::Header));
    if opts.timestamp && !opts.sign_timestamp {
        // The verifier insists on a signed Timestamp when one is required.
        p.require_timestamp = false;
    }
    p.require_signed = parts;
    p.signable_headers = opts.sign_headers.clone();
    super::verify::judge_own_output(out, &p, opts.created, body_digest, signed)
        .map(|_| ())
        .map_err(|e| WssecError::SelfCheck(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Leaf, Usage};
    use crate::wssec::replay::NoReplayCache;

    const MSG: &[u8] = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:Post xmlns:m="urn:acct">1</m:Post></s:Body></s:Envelope>"#;

    fn signer_of(ca: &Ca, alg: crate::pki::KeyAlg) -> Signer {
        let mut spec = Leaf::new("signer", Usage::Signer);
        spec.alg = alg;
        let leaf = ca.issue(&spec).unwrap();
        Signer::new(
            SigningKey::from_pkcs8_der(&leaf.key_der).unwrap(),
            &leaf.der,
        )
        .unwrap()
    }

    fn signer() -> Signer {
        let ca = Ca::new("Self-check CA", "Sealgate Test", 1).unwrap();
        signer_of(&ca, crate::pki::KeyAlg::EcdsaP256)
    }

    /// Each algorithm a key signs with is proved when the Signer is made,
    /// so what the self-check no longer verifies still verifies for a
    /// receiver that checks the signature.
    #[test]
    fn every_algorithm_a_signer_offers_verifies_for_a_receiver() {
        let ca = Ca::new("Algorithms CA", "Sealgate Test", 1).unwrap();
        let mut trust = TrustStore::new();
        trust.add_anchors_pem(ca.cert_pem.as_bytes()).unwrap();
        let policy = Policy::new(trust);
        let now = SystemTime::now();
        let rsa = [
            SignatureAlgorithm::RsaSha256,
            SignatureAlgorithm::RsaSha384,
            SignatureAlgorithm::RsaSha512,
        ];
        for (key, algs, refused) in [
            (
                crate::pki::KeyAlg::Rsa2048,
                &rsa[..],
                SignatureAlgorithm::EcdsaSha256,
            ),
            (
                crate::pki::KeyAlg::EcdsaP256,
                &[SignatureAlgorithm::EcdsaSha256][..],
                SignatureAlgorithm::RsaSha256,
            ),
        ] {
            let s = signer_of(&ca, key);
            for &alg in algs {
                let mut opts = SignOptions::new(now);
                opts.signature = Some(alg);
                let out = secure(MSG, Some(&s), &opts).unwrap();
                let method = format!("<ds:SignatureMethod Algorithm=\"{}\"/>", alg.uri());
                assert!(
                    out.windows(method.len()).any(|w| w == method.as_bytes()),
                    "{alg:?}"
                );
                crate::wssec::verify::verify(&out, &policy, now, &NoReplayCache)
                    .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            }
            let mut opts = SignOptions::new(now);
            opts.signature = Some(refused);
            let e = secure(MSG, Some(&s), &opts).unwrap_err();
            assert_eq!(e.reason(), "wssec_algorithm_key_mismatch", "{e}");
        }
    }

    /// The canonical SignedInfo and raw SignatureValue of a signed message,
    /// read back as a verifier reads them.
    fn signed_parts(out: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut si = Vec::new();
        canonicalize_element(
            out,
            &Limits::default(),
            &Method::exclusive(),
            |e| e.local_name() == "SignedInfo" && e.namespace() == Some(DS_NS),
            &mut si,
        )
        .unwrap();
        let text = std::str::from_utf8(out).unwrap();
        let value = text
            .split("<ds:SignatureValue>")
            .nth(1)
            .and_then(|r| r.split("</ds:SignatureValue>").next())
            .unwrap();
        let value =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, value).unwrap();
        (si, value)
    }

    #[test]
    fn the_self_check_holds_the_output_to_what_was_signed() {
        let s = signer();
        let opts = SignOptions::new(SystemTime::now());
        let out = secure(MSG, Some(&s), &opts).unwrap();
        let (si, value) = signed_parts(&out);
        let check = |si: &[u8], value: &[u8]| {
            let signed = Signed {
                signed_info: si,
                value,
                valid: true,
                by: CheckedBy::Signer,
            };
            self_check(&out, &s.cert, &opts, None, signed)
        };
        check(&si, &value).unwrap();
        // A SignedInfo or value other than the one written is caught, where
        // a signer writing one thing and signing another would be.
        let mut other_si = si.clone();
        other_si.push(b' ');
        let e = check(&other_si, &value).unwrap_err();
        assert_eq!(e.reason(), "wssec_sign_self_check", "{e}");
        let mut other_value = value.clone();
        other_value[0] ^= 1;
        let e = check(&si, &other_value).unwrap_err();
        assert_eq!(e.reason(), "wssec_sign_self_check", "{e}");
    }

    #[test]
    fn a_signer_is_refused_a_certificate_of_another_key() {
        let ca = Ca::new("Mismatch CA", "Sealgate Test", 1).unwrap();
        let a = ca.issue(&Leaf::new("a", Usage::Signer)).unwrap();
        let b = ca.issue(&Leaf::new("b", Usage::Signer)).unwrap();
        let e = Signer::new(SigningKey::from_pkcs8_der(&a.key_der).unwrap(), &b.der).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = Signer::new(
            SigningKey::from_pkcs8_der(&a.key_der).unwrap(),
            b"not a certificate",
        )
        .unwrap_err();
        assert_eq!(e.reason(), "wssec_bad_token", "{e}");
    }
}
