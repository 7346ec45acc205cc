//! WS-Security fixtures: signer certificates from the one test PKI
//! (`sealgate::pki`, made fresh per run), policies, signed messages and edits.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

pub use sealgate::pki::{Ca, Issued as Leaf, KeyAlg};
use sealgate::pki::{Leaf as LeafSpec, Usage};
use sealgate::wssec::envelope::WSU_NS;
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::sign::{
    sign, Finished, KeyReference, SignOptions, Signer, SigningKey, StreamSigner,
};
use sealgate::wssec::stream::StreamVerifier;
use sealgate::wssec::tokens::TrustStore;
use sealgate::wssec::verify::{verify, Policy, Verified, WssecError};

pub const DAY: Duration = Duration::from_secs(86_400);

/// The key algorithms signer tests use.
pub enum Alg {
    Rsa,
    P256,
    P384,
}

pub fn signing_key(leaf: &Leaf) -> SigningKey {
    SigningKey::from_pkcs8_der(&leaf.key_der).unwrap()
}

pub fn make_ca(cn: &str) -> Ca {
    Ca::new(cn, "Sealgate Test", 365).unwrap()
}

/// A signer certificate valid from `from_days` to `to_days` (relative to now).
pub fn make_leaf(ca: &Ca, cn: &str, alg: Alg, days: (i64, i64), serial: u64) -> Leaf {
    let mut l = LeafSpec::new(cn, Usage::Signer);
    l.o = Some("Sealgate Test".into());
    l.alg = match alg {
        Alg::Rsa => KeyAlg::Rsa2048,
        Alg::P256 => KeyAlg::EcdsaP256,
        Alg::P384 => KeyAlg::EcdsaP384,
    };
    (l.from_days, l.to_days) = days;
    l.serial = 0x1000 + serial;
    ca.issue(&l).unwrap()
}

pub fn current(ca: &Ca, cn: &str, alg: Alg) -> Leaf {
    make_leaf(ca, cn, alg, (-1, 30), 1)
}

/// A CRL from `ca` revoking one serial, in DER.
pub fn crl_revoking(ca: &Ca, serial: u64) -> Vec<u8> {
    ca.crl(&[serial]).unwrap().der
}

/// Policy trusting `ca`, with `signers` configured for key-identifier references.
pub fn policy(ca: &Ca, signers: &[&Leaf]) -> Policy {
    let mut t = TrustStore::new();
    t.add_anchor_der(&ca.der).unwrap();
    for s in signers {
        t.add_signer_der(&s.der).unwrap();
    }
    Policy::new(t)
}

pub const SOAP11: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:example:orders">
  <soapenv:Header/>
  <soapenv:Body>
    <urn:createOrder>
      <urn:account>ACME-42</urn:account>
      <urn:amount currency="EUR">100.00</urn:amount>
    </urn:createOrder>
  </soapenv:Body>
</soapenv:Envelope>
"#;

/// A Salesforce Outbound Message as an org sends it: SOAP 1.1, no Header,
/// `xsi:nil` SessionId, the sObject typed by an attribute value.
pub const SALESFORCE_OUTBOUND: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D5g000004Ab1cEAC</OrganizationId>
   <ActionId>04k5g000000KyZzAAK</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/60.0/00D5g000004Ab1c</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/60.0/00D5g000004Ab1c</PartnerUrl>
   <Notification>
    <Id>04l5g00000BcDeFAAV</Id>
    <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0015g00000XyZ12AAB</sf:Id>
     <sf:AccountNumber>ACME-42</sf:AccountNumber>
     <sf:Name>Café Zürich &amp; Söhne GmbH</sf:Name>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
"#;

/// Signs SOAP11 with the crate's own signer at `now`.
pub fn signed(leaf: &Leaf, now: SystemTime, kr: KeyReference) -> Vec<u8> {
    let mut o = SignOptions::new(now);
    o.key_reference = kr;
    sign(SOAP11.as_bytes(), &signing_key(leaf), &leaf.der, &o).unwrap()
}

/// Verifies buffered, and checks that the streaming path (fed in pieces of
/// several sizes, read in tiny windows) reaches the same verdict and the
/// same bytes to forward: every verification test is also one of streaming.
pub fn verify_now(msg: &[u8], p: &Policy, now: SystemTime) -> Result<Verified, WssecError> {
    let whole = verify(msg, p, now, &MemoryReplayCache::new(1000));
    if let Err(e) = &whole {
        if STREAM_UNBOUNDED.contains(&e.reason().as_str()) {
            return whole;
        }
    }
    // Byte-sized windows cost a reader each: only on small messages.
    let tiny = if msg.len() <= 64 << 10 {
        &[(1, 1), (7, 5), (64, 97)][..]
    } else {
        &[][..]
    };
    let sizes = [(4096, 1 << 16), (msg.len().max(1), 1), (65_521, 1 << 20)];
    for &(piece, window) in tiny.iter().chain(&sizes) {
        let streamed = streamed(msg, p, now, piece, window);
        match (&whole, &streamed) {
            (Ok(w), Ok((head_end, s))) => {
                let mut out = s.output.clone();
                out.extend_from_slice(&msg[*head_end..]);
                assert_eq!(
                    out, w.output,
                    "streamed ({piece}, {window}) forwards other bytes"
                );
                assert_eq!(s.signed_parts, w.signed_parts);
            }
            (Err(w), Err(s)) if w.reason() == s.reason() => {}
            (w, s) => panic!(
                "streamed ({piece}, {window}) judged otherwise: buffered {:?}, streamed {:?}",
                w.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                s.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            ),
        }
    }
    whole
}

/// Refusals for the size of a held message, or of one text node in it: a
/// streamed message is bounded by the spool instead, its text by nothing.
const STREAM_UNBOUNDED: &[&str] = &["xml_too_large", "xml_text_too_long", "wssec_work_limit"];

/// The streaming verifier over `msg` in pieces of `piece` bytes; on
/// success, where the held part ends and the verdict.
pub fn streamed(
    msg: &[u8],
    p: &Policy,
    now: SystemTime,
    piece: usize,
    window: usize,
) -> Result<(usize, Verified), WssecError> {
    let mut v = StreamVerifier::new(p).with_window(window);
    for c in msg.chunks(piece) {
        v.feed(c)?;
    }
    let s = v.finish(now, &MemoryReplayCache::new(1000), &|_| Ok(()))?;
    Ok((s.body_from, s.verified))
}

/// The streaming signer over `msg` in pieces of `piece` bytes, reading in
/// windows of about `window`: the signed head, then the rest as it came.
pub fn sign_streamed(
    msg: &[u8],
    signer: Option<&Signer>,
    o: &SignOptions,
    piece: usize,
    window: usize,
) -> Result<Vec<u8>, WssecError> {
    let mut s = StreamSigner::new(signer, o).with_window(window);
    let h = loop {
        for c in msg.chunks(piece) {
            s.feed(c)?;
        }
        match s.finish(o.created)? {
            Finished::Signed(h) => break h,
            Finished::Again(next) => s = *next,
        }
    };
    let mut out = h.head;
    out.extend_from_slice(&msg[h.body_from..]);
    Ok(out)
}

#[track_caller]
pub fn refused(msg: &[u8], p: &Policy, now: SystemTime, reason: &str) -> WssecError {
    match verify_now(msg, p, now) {
        Ok(_) => panic!(
            "accepted, expected {reason}:\n{}",
            String::from_utf8_lossy(msg)
        ),
        Err(e) => {
            assert_eq!(e.reason(), reason, "{e}");
            e
        }
    }
}

/// Replaces exactly one occurrence of `from`.
#[track_caller]
pub fn edit(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = std::str::from_utf8(msg).unwrap();
    assert_eq!(
        s.matches(from).count(),
        1,
        "{from:?} must occur once in:\n{s}"
    );
    s.replacen(from, to, 1).into_bytes()
}

pub fn text(msg: &[u8]) -> &str {
    std::str::from_utf8(msg).unwrap()
}

/// The element `<prefix:local ...>...</prefix:local>` (first occurrence) as a string.
#[track_caller]
pub fn element<'a>(msg: &'a str, qname: &str) -> &'a str {
    let start = msg
        .find(&format!("<{qname} "))
        .or_else(|| msg.find(&format!("<{qname}>")))
        .unwrap_or_else(|| panic!("no <{qname}> in\n{msg}"));
    let close = format!("</{qname}>");
    let end = msg[start..].find(&close).unwrap() + start + close.len();
    &msg[start..end]
}

/// The Id the signer gave an element, e.g. `signer_id(msg, "Body")` is
/// `Body-3f9c...` (its Ids are random).
pub fn signer_id(msg: &str, base: &str) -> String {
    let mark = format!(":Id=\"{base}-");
    let at = msg
        .find(&mark)
        .unwrap_or_else(|| panic!("no {base} Id in {msg}"));
    let value = &msg[at + ":Id=\"".len()..];
    value[..value.find('"').unwrap()].to_owned()
}

/// The output with the signer's additions taken out: the Security header it
/// wrote, the wsu:Id (and its declaration) it put on Body or a header block,
/// and a Header it created or opened up. Must give back the input exactly.
pub fn strip_additions(input: &str, out: &str) -> String {
    let open = "<wsse:Security xmlns:wsse=";
    let start = out.find(open).expect("no Security header written");
    let end = out[start..].find("</wsse:Security>").unwrap() + start + "</wsse:Security>".len();
    let mut s = format!("{}{}", &out[..start], &out[end..]);
    for base in [":Id=\"Body-", ":Id=\"Header-"] {
        while let Some(at) = s.find(base) {
            let attr_start = s[..at].rfind(' ').unwrap();
            let value_end = s[at + base.len()..].find('"').unwrap() + at + base.len() + 1;
            let prefix = &s[attr_start + 1..at];
            let decl = format!(" xmlns:{prefix}=\"{WSU_NS}\"");
            // The declaration goes too if the signer wrote it (one more than the input has).
            let added = s.matches(&decl).count() > input.matches(&decl).count();
            let from = if added && s[..attr_start].ends_with(&decl) {
                attr_start - decl.len()
            } else {
                attr_start
            };
            s.replace_range(from..value_end, "");
        }
    }
    s
}

/// `strip_additions(out)` is the input, allowing the Header the signer
/// created (`<p:Header></p:Header>` removed) or opened (`<p:Header/>`).
#[track_caller]
pub fn assert_only_additions(input: &str, out: &[u8], what: &str) {
    let s = strip_additions(input, text(out));
    if s == input {
        return;
    }
    let mut at = 0;
    while let Some(i) = s[at..].find("Header></") {
        let i = at + i;
        let open_start = s[..i].rfind('<').unwrap();
        let name = &s[open_start + 1..i + "Header".len()];
        let pair = format!("<{name}></{name}>");
        if s[open_start..].starts_with(&pair) {
            let removed = format!("{}{}", &s[..open_start], &s[open_start + pair.len()..]);
            let closed = format!(
                "{}<{name}/>{}",
                &s[..open_start],
                &s[open_start + pair.len()..]
            );
            if removed == input || closed == input {
                return;
            }
        }
        at = i + 1;
    }
    panic!("{what}: the output changed the caller's bytes\ninput:\n{input}\nstripped output:\n{s}");
}
