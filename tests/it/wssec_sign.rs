//! The signer, proven on every input shape it must handle: each message it
//! signs verifies in sealgate's own verifier, in libxmlsec1 (python-zeep) and
//! in Apache WSS4J; the caller's bytes reach the output unchanged but for
//! the added Security header, Header wrapper and Body Id; the Body's canonical
//! content keeps its meaning; and every single-byte change inside a signed
//! part is refused.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::support::interop;
use crate::support::wssec::*;
use sealgate::pki::{Leaf as LeafSpec, Usage};
use sealgate::wssec::c14n::{canonicalize_element, Method};
use sealgate::wssec::envelope::{QName, SOAP11_NS, SOAP12_NS, WSU_NS};
use sealgate::wssec::sign::{
    secure, sign, KeyReference, SignOptions, Signer, SigningKey, UsernameToken,
};
use sealgate::wssec::tokens::{KeySource, MapPasswordStore, Secret};
use sealgate::wssec::verify::{Part, Policy, SignedPart, WssecError};
use sealgate::wssec::xml::Limits;

const WSA: &str = "http://www.w3.org/2005/08/addressing";

/// Every input shape the signer must get right, by name.
const FORMS: &[(&str, &str)] = &[
    ("soap11-self-closing-header", SOAP11),
    (
        "soap11-no-header",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><m:ping xmlns:m="urn:example:m">hi</m:ping></soapenv:Body></soapenv:Envelope>"#,
    ),
    (
        "soap12-existing-header",
        r#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Header>
    <wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">https://erp.example/orders</wsa:To>
    <wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing">urn:createOrder</wsa:Action>
  </env:Header>
  <env:Body>
    <o:createOrder xmlns:o="urn:example:orders"><o:account>ACME-42</o:account></o:createOrder>
  </env:Body>
</env:Envelope>"#,
    ),
    (
        "default-namespace-body-under-prefixed-envelope",
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><Body xmlns="http://schemas.xmlsoap.org/soap/envelope/"><ping xmlns="urn:example:m">x</ping></Body></s:Envelope>"#,
    ),
    (
        "default-namespace-envelope-soap12",
        r#"<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"><Body><ping xmlns="urn:example:m"><n>1</n></ping></Body></Envelope>"#,
    ),
    (
        "body-declares-its-own-prefix",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><t:Body xmlns:t="http://schemas.xmlsoap.org/soap/envelope/"><m:x xmlns:m="urn:example:m">1</m:x></t:Body></soapenv:Envelope>"#,
    ),
    (
        "body-declares-wsu",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><m:x xmlns:m="urn:example:m">1</m:x></soapenv:Body></soapenv:Envelope>"#,
    ),
    (
        "body-has-wsu-id",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><soapenv:Body wsu:Id="id-7"><m:x xmlns:m="urn:example:m">1</m:x></soapenv:Body></soapenv:Envelope>"#,
    ),
    (
        "body-has-plain-id",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body Id="b1"><m:x xmlns:m="urn:example:m">1</m:x></soapenv:Body></soapenv:Envelope>"#,
    ),
    (
        "body-binds-wsu-elsewhere",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body xmlns:wsu="urn:example:not-utility"><wsu:thing wsu:kind="a">1</wsu:thing></soapenv:Body></soapenv:Envelope>"#,
    ),
    (
        "envelope-uses-wsu-for-soap",
        r#"<wsu:Envelope xmlns:wsu="http://schemas.xmlsoap.org/soap/envelope/"><wsu:Body><m:x xmlns:m="urn:example:m">1</m:x></wsu:Body></wsu:Envelope>"#,
    ),
    (
        "whitespace-comments-non-ascii",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<!-- before the envelope -->\r\n\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">\r\n\
         \t<soapenv:Header>\r\n\t\t<!-- an empty header -->\r\n\t</soapenv:Header>\r\n\
         \t<soapenv:Body>\r\n\
         \t\t<m:note xmlns:m=\"urn:example:m\" lang=\"de\">Café Zürich — 東京 &amp; &#x20AC;5 <![CDATA[<raw> & ]]></m:note>\r\n\
         \t</soapenv:Body>\r\n</soapenv:Envelope>\r\n<!-- after -->\r\n",
    ),
    (
        "prefix-used-only-in-attribute-values",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:q="urn:example:types" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><upsert xmlns="urn:example:x"><item xsi:type="q:Contact">Ada</item></upsert></soapenv:Body></soapenv:Envelope>"#,
    ),
    ("salesforce-outbound-message", SALESFORCE_OUTBOUND),
    (
        "security-header-for-another-actor",
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header><wsse:Security soapenv:actor="urn:example:other" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken><wsse:Username>hop</wsse:Username></wsse:UsernameToken></wsse:Security></soapenv:Header><soapenv:Body><m:x xmlns:m="urn:example:m">1</m:x></soapenv:Body></soapenv:Envelope>"#,
    ),
];

/// Every key size and key-reference form, each over every form.
const SIGNERS: &[(&str, KeyAlg, KeyReference)] = &[
    (
        "rsa2048-bst",
        KeyAlg::Rsa2048,
        KeyReference::BinarySecurityToken,
    ),
    (
        "rsa2048-issuer-serial",
        KeyAlg::Rsa2048,
        KeyReference::IssuerSerial,
    ),
    (
        "rsa3072-ski",
        KeyAlg::Rsa3072,
        KeyReference::SubjectKeyIdentifier,
    ),
    (
        "rsa4096-thumbprint",
        KeyAlg::Rsa4096,
        KeyReference::ThumbprintSha1,
    ),
    (
        "p256-bst",
        KeyAlg::EcdsaP256,
        KeyReference::BinarySecurityToken,
    ),
    (
        "p256-issuer-serial",
        KeyAlg::EcdsaP256,
        KeyReference::IssuerSerial,
    ),
    (
        "p256-ski",
        KeyAlg::EcdsaP256,
        KeyReference::SubjectKeyIdentifier,
    ),
];

struct Signed {
    form: &'static str,
    signer: usize,
    /// Signed by the streaming signer.
    streamed: bool,
    input: &'static str,
    output: Vec<u8>,
    file: PathBuf,
}

/// (piece, window) sizes the streaming signer reads the corpus in.
const STREAM_CUTS: &[(usize, usize)] = &[(1, 1), (3, 5), (64, 1), (7, 4096), (1 << 20, 1 << 16)];

struct Corpus {
    dir: PathBuf,
    ca: Ca,
    ca_pem: PathBuf,
    /// One certificate per distinct key algorithm, and all in one file.
    leaves: Vec<Leaf>,
    cert_files: Vec<PathBuf>,
    all_certs: PathBuf,
    signed: Vec<Signed>,
    now: SystemTime,
}

fn key_index(alg: KeyAlg) -> usize {
    [
        KeyAlg::Rsa2048,
        KeyAlg::Rsa3072,
        KeyAlg::Rsa4096,
        KeyAlg::EcdsaP256,
    ]
    .iter()
    .position(|a| *a == alg)
    .unwrap()
}

fn signer_leaf(ca: &Ca, cn: &str, alg: KeyAlg) -> Leaf {
    let mut l = LeafSpec::new(cn, Usage::Signer);
    l.o = Some("Sealgate Test".into());
    l.alg = alg;
    l.from_days = -1;
    l.to_days = 30;
    ca.issue(&l).unwrap()
}

/// Signs every form with every signer once per run, into files for the peers.
fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sealgate-sign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = make_ca("Signer Interop CA");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, &ca.cert_pem).unwrap();
        let leaves: Vec<Leaf> = ["rsa2048", "rsa3072", "rsa4096", "p256"]
            .iter()
            .zip([
                KeyAlg::Rsa2048,
                KeyAlg::Rsa3072,
                KeyAlg::Rsa4096,
                KeyAlg::EcdsaP256,
            ])
            .map(|(cn, alg)| signer_leaf(&ca, &format!("signer-{cn}"), alg))
            .collect();
        let cert_files: Vec<PathBuf> = leaves
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = dir.join(format!("signer-{i}.pem"));
                std::fs::write(&p, &l.cert_pem).unwrap();
                p
            })
            .collect();
        let all_certs = dir.join("signers.pem");
        let all: String = leaves.iter().map(|l| l.cert_pem.clone()).collect();
        std::fs::write(&all_certs, all).unwrap();
        let now = SystemTime::now();
        let mut signed = Vec::new();
        for (form, input) in FORMS {
            for (i, (label, alg, kr)) in SIGNERS.iter().enumerate() {
                let leaf = &leaves[key_index(*alg)];
                let mut o = SignOptions::new(now);
                o.key_reference = *kr;
                let key = signing_key(leaf);
                let output = sign(input.as_bytes(), &key, &leaf.der, &o)
                    .unwrap_or_else(|e| panic!("{form} with {label}: {e}"));
                let file = dir.join(format!("{form}.{label}.xml"));
                std::fs::write(&file, &output).unwrap();
                signed.push(Signed {
                    form,
                    signer: i,
                    streamed: false,
                    input,
                    output,
                    file,
                });
                // The streaming signer too, its pieces and windows cut
                // everywhere from one byte up.
                let (piece, window) = STREAM_CUTS[(signed.len() / 2) % STREAM_CUTS.len()];
                let signer = Signer::new(key, &leaf.der).unwrap();
                let output = sign_streamed(input.as_bytes(), Some(&signer), &o, piece, window)
                    .unwrap_or_else(|e| panic!("{form} with {label}, streamed: {e}"));
                let file = dir.join(format!("{form}.{label}.streamed.xml"));
                std::fs::write(&file, &output).unwrap();
                signed.push(Signed {
                    form,
                    signer: i,
                    streamed: true,
                    input,
                    output,
                    file,
                });
            }
        }
        Corpus {
            dir,
            ca,
            ca_pem,
            leaves,
            cert_files,
            all_certs,
            signed,
            now,
        }
    })
}

fn leaf_of<'a>(c: &'a Corpus, s: &Signed) -> &'a Leaf {
    &c.leaves[key_index(SIGNERS[s.signer].1)]
}

fn corpus_policy(c: &Corpus) -> Policy {
    let leaves: Vec<&Leaf> = c.leaves.iter().collect();
    policy(&c.ca, &leaves)
}

/// The Body's canonical content (exclusive C14N, after its start tag): what
/// the upstream's application reads. The signer must not change its meaning.
fn body_content_c14n(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    canonicalize_element(
        msg,
        &Limits::default(),
        &Method::exclusive(),
        |e| e.local_name() == "Body" && matches!(e.namespace(), Some(SOAP11_NS) | Some(SOAP12_NS)),
        &mut out,
    )
    .unwrap();
    // The start tag ends at the first `>` outside a quoted attribute value
    // (C14N leaves `>` unescaped in attribute values).
    let mut quoted = false;
    let gt = out
        .iter()
        .position(|&b| {
            quoted ^= b == b'"';
            b == b'>' && !quoted
        })
        .unwrap();
    out.split_off(gt + 1)
}

#[test]
fn every_form_and_key_verifies_here_and_keeps_the_callers_bytes() {
    let c = corpus();
    let p = corpus_policy(c);
    assert_eq!(c.signed.len(), FORMS.len() * SIGNERS.len() * 2);
    for s in &c.signed {
        let how = if s.streamed { ", streamed" } else { "" };
        let what = format!("{} with {}{how}", s.form, SIGNERS[s.signer].0);
        let v = verify_now(&s.output, &p, c.now).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            v.signed_parts,
            vec![SignedPart::Body, SignedPart::Timestamp],
            "{what}"
        );
        let signer = v.signer.unwrap();
        assert_eq!(signer.der, leaf_of(c, s).der, "{what}");
        let expected_source = match SIGNERS[s.signer].2 {
            KeyReference::BinarySecurityToken => KeySource::BinarySecurityToken,
            KeyReference::IssuerSerial => KeySource::IssuerSerial,
            KeyReference::SubjectKeyIdentifier => KeySource::SubjectKeyIdentifier,
            KeyReference::ThumbprintSha1 => KeySource::ThumbprintSha1,
        };
        assert_eq!(signer.key_source, expected_source, "{what}");
        assert_only_additions(s.input, &s.output, &what);
        assert_eq!(
            body_content_c14n(&s.output),
            body_content_c14n(s.input.as_bytes()),
            "{what}: the Body's content changed meaning"
        );
        assert_eq!(
            text(&s.output).matches(" xmlns:wsse=").count(),
            text(s.input.as_bytes()).matches(" xmlns:wsse=").count() + 1,
            "{what}: one Security header added"
        );
    }
}

#[test]
fn every_signed_form_verifies_in_libxmlsec1() {
    if interop::python().is_none() {
        return;
    }
    let c = corpus();
    let mut pairs: Vec<(PathBuf, PathBuf)> = c
        .signed
        .iter()
        .map(|s| {
            (
                c.cert_files[key_index(SIGNERS[s.signer].1)].clone(),
                s.file.clone(),
            )
        })
        .collect();
    // The peer must be able to say no: one tampered message among them.
    let tampered = c.dir.join("tampered-for-xmlsec.xml");
    std::fs::write(&tampered, edit(&c.signed[0].output, "ACME-42", "ACME-43")).unwrap();
    pairs.push((c.cert_files[0].clone(), tampered));
    let verdicts = interop::xmlsec_verify(&pairs);
    let (last, all) = verdicts.split_last().unwrap();
    assert!(!last.accepted, "libxmlsec1 accepted a tampered Body");
    let refused: Vec<String> = all
        .iter()
        .zip(&c.signed)
        .filter(|(v, _)| !v.accepted)
        .map(|(v, s)| format!("{}: {}", s.file.display(), v.detail))
        .collect();
    assert!(
        refused.is_empty(),
        "libxmlsec1 refused:\n{}",
        refused.join("\n")
    );
}

#[test]
fn every_signed_form_verifies_in_wss4j() {
    let c = corpus();
    let mut files: Vec<PathBuf> = c.signed.iter().map(|s| s.file.clone()).collect();
    let tampered = c.dir.join("tampered-for-wss4j.xml");
    std::fs::write(&tampered, edit(&c.signed[0].output, "ACME-42", "ACME-43")).unwrap();
    files.push(tampered);
    let Some(verdicts) = interop::wss4j_verify(&c.ca_pem, &c.all_certs, &files) else {
        return;
    };
    let (last, all) = verdicts.split_last().unwrap();
    assert!(!last.accepted, "WSS4J accepted a tampered Body");
    let mut wrong = Vec::new();
    for (v, s) in all.iter().zip(&c.signed) {
        let covers = v.detail.contains("signed=") && {
            let list = v.detail.split("signed=").nth(1).unwrap_or("");
            let parts: Vec<&str> = list
                .split_whitespace()
                .next()
                .unwrap_or("")
                .split(',')
                .collect();
            parts.contains(&"Body") && parts.contains(&"Timestamp")
        };
        if !(v.accepted && covers && v.detail.contains("timestamp")) {
            wrong.push(format!("{}: {}", s.file.display(), v.detail));
        }
    }
    assert!(
        wrong.is_empty(),
        "WSS4J refused or missed parts:\n{}",
        wrong.join("\n")
    );
}

/// Byte ranges of the signed parts of a signed message: Body, Timestamp,
/// SignedInfo and the named extra elements.
fn signed_spans(msg: &str, body: &str, extra: &[&str]) -> Vec<(String, std::ops::Range<usize>)> {
    let mut names = vec![body, "wsu:Timestamp", "ds:SignedInfo"];
    names.extend_from_slice(extra);
    names
        .into_iter()
        .map(|n| {
            let e = element(msg, n);
            let start = msg.find(e).unwrap();
            (n.to_owned(), start..start + e.len())
        })
        .collect()
}

#[track_caller]
fn every_byte_change_refused(msg: &[u8], p: &Policy, now: SystemTime, body: &str, extra: &[&str]) {
    verify_now(msg, p, now).expect("the unchanged message must verify");
    let s = text(msg);
    let mut accepted = Vec::new();
    let mut tried = 0;
    for (name, span) in signed_spans(s, body, extra) {
        for i in span {
            let mut m = msg.to_vec();
            m[i] = if m[i] == b'X' { b'Y' } else { b'X' };
            tried += 1;
            if verify_now(&m, p, now).is_ok() {
                accepted.push(format!("{name} byte {i} ({:?})", msg[i] as char));
            }
        }
    }
    assert!(tried > 500, "only {tried} positions tried");
    assert!(accepted.is_empty(), "changes accepted: {accepted:?}");
}

#[test]
fn each_single_byte_change_in_a_signed_part_is_refused() {
    let ca = make_ca("Mutation CA");
    let rsa = signer_leaf(&ca, "mutation-rsa", KeyAlg::Rsa2048);
    let ec = signer_leaf(&ca, "mutation-ec", KeyAlg::EcdsaP256);
    let now = SystemTime::now();

    let mut o = SignOptions::new(now);
    let msg = sign(SOAP11.as_bytes(), &signing_key(&ec), &ec.der, &o).unwrap();
    every_byte_change_refused(&msg, &policy(&ca, &[]), now, "soapenv:Body", &[]);

    let (_, values) = FORMS
        .iter()
        .find(|f| f.0 == "prefix-used-only-in-attribute-values")
        .unwrap();
    o.key_reference = KeyReference::IssuerSerial;
    let msg = sign(values.as_bytes(), &signing_key(&rsa), &rsa.der, &o).unwrap();
    every_byte_change_refused(&msg, &policy(&ca, &[&rsa]), now, "soapenv:Body", &[]);

    let (_, soap12) = FORMS
        .iter()
        .find(|f| f.0 == "soap12-existing-header")
        .unwrap();
    let mut o = SignOptions::new(now);
    o.sign_headers = vec![QName::new(WSA, "To")];
    let msg = sign(soap12.as_bytes(), &signing_key(&ec), &ec.der, &o).unwrap();
    let mut p = policy(&ca, &[]);
    p.require_signed.push(Part::Header(QName::new(WSA, "To")));
    every_byte_change_refused(&msg, &p, now, "env:Body", &["wsa:To"]);
}

#[test]
fn a_prefix_used_only_in_attribute_values_is_in_the_prefix_list() {
    let c = corpus();
    let s = c
        .signed
        .iter()
        .find(|s| s.form == "prefix-used-only-in-attribute-values")
        .unwrap();
    let out = text(&s.output);
    assert!(out.contains("PrefixList=\"q\""), "{out}");
    // Re-binding `q` outside the signed Body changes what `q:Contact` means:
    // the signature must break, here and in libxmlsec1.
    let rebound = edit(
        &s.output,
        "xmlns:q=\"urn:example:types\"",
        "xmlns:q=\"urn:example:evil\"",
    );
    refused(&rebound, &corpus_policy(c), c.now, "wssec_digest_mismatch");
    if interop::python().is_some() {
        let f = c.dir.join("rebound.xml");
        std::fs::write(&f, &rebound).unwrap();
        let cert = c.cert_files[key_index(SIGNERS[s.signer].1)].clone();
        assert!(!interop::xmlsec_verify(&[(cert, f)])[0].accepted);
    }
}

#[test]
fn signed_as_it_streams_a_value_prefix_is_covered_in_one_pass_or_two() {
    let c = corpus();
    let leaf = &c.leaves[0];
    let signer = Signer::new(signing_key(leaf), &leaf.der).unwrap();
    let o = SignOptions::new(c.now);
    let sign = |m: &str| sign_streamed(m.as_bytes(), Some(&signer), &o, 64, 16);
    let env = |body: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:q="urn:example:types"><s:Body>{body}</s:Body></s:Envelope>"#
        )
    };
    // Bound above the Body: listed, so signed; re-binding it breaks the signature.
    let out = sign(&env(r#"<item xsi:type="q:Contact">Ada</item>"#)).unwrap();
    assert!(
        text(&out).contains("PrefixList=\"q s xsi\""),
        "{}",
        text(&out)
    );
    verify_now(&out, &corpus_policy(c), c.now).unwrap();
    let rebound = edit(
        &out,
        "xmlns:q=\"urn:example:types\"",
        "xmlns:q=\"urn:example:evil\"",
    );
    refused(&rebound, &corpus_policy(c), c.now, "wssec_digest_mismatch");
    // Declared inside the Body where it is also used by a name: rendered, signed.
    let inner = r#"<t:item xmlns:t="urn:example:t" xsi:type="t:Contact">Ada</t:item>"#;
    verify_now(&sign(&env(inner)).unwrap(), &corpus_policy(c), c.now).unwrap();
    // Declared inside the Body and named only in a value: the canonical form
    // would leave the declaration out, so a second pass lists it (as the
    // buffered signer does); re-binding it then breaks the signature.
    let hidden = r#"<item xmlns:t="urn:example:t" xsi:type="t:Contact">Ada</item>"#;
    let out = sign(&env(hidden)).unwrap();
    assert!(
        text(&out).contains("PrefixList=\"q s t xsi\""),
        "{}",
        text(&out)
    );
    verify_now(&out, &corpus_policy(c), c.now).unwrap();
    let rebound = edit(
        &out,
        "xmlns:t=\"urn:example:t\"",
        "xmlns:t=\"urn:example:evil\"",
    );
    refused(&rebound, &corpus_policy(c), c.now, "wssec_digest_mismatch");
}

fn signed_form(form: &str) -> &'static Signed {
    corpus()
        .signed
        .iter()
        .find(|s| s.form == form && s.signer == 0 && !s.streamed)
        .unwrap()
}

#[test]
fn the_header_is_made_in_the_envelopes_own_namespace_and_prefix() {
    let t = |f| text(&signed_form(f).output);
    assert!(t("soap11-no-header").contains("<soapenv:Header><wsse:Security "));
    assert!(
        t("default-namespace-body-under-prefixed-envelope").contains("<s:Header><wsse:Security ")
    );
    assert!(t("default-namespace-envelope-soap12").contains("<Header><wsse:Security "));
    assert!(t("envelope-uses-wsu-for-soap").contains("<wsu:Header><wsse:Security "));
    // A self-closing Header is opened up, not nested.
    let out = t("soap11-self-closing-header");
    assert!(out.contains("<soapenv:Header><wsse:Security "), "{out}");
    assert!(out.contains("</wsse:Security></soapenv:Header>"), "{out}");
    assert_eq!(out.matches("Header").count(), 2, "{out}");
    // mustUnderstand in the envelope's own SOAP namespace, as that version spells it.
    assert!(out.contains(&format!(
        "xmlns:soapmu=\"{SOAP11_NS}\" soapmu:mustUnderstand=\"1\""
    )));
    let out = t("soap12-existing-header");
    assert!(out.contains(&format!(
        "xmlns:soapmu=\"{SOAP12_NS}\" soapmu:mustUnderstand=\"true\""
    )));
    assert!(
        out.contains("<env:Header><wsse:Security ")
            && out.contains("</wsse:Security>\n    <wsa:To"),
        "first in the Header, the existing blocks kept in place: {out}"
    );
}

#[test]
fn body_ids_are_reused_only_when_they_are_wsu_ids_and_prefixes_never_clash() {
    let t = |f| text(&signed_form(f).output);
    let out = t("body-declares-wsu");
    let body = element(out, "soapenv:Body");
    let tag = &body[..body.find('>').unwrap()];
    assert_eq!(tag.matches("xmlns:wsu=").count(), 1, "{tag}");
    assert!(tag.contains(" wsu:Id=\"Body-"), "{tag}");

    let out = t("body-has-wsu-id");
    assert!(out.contains("<ds:Reference URI=\"#id-7\">"), "{out}");
    assert!(!out.contains("\"Body-"), "{out}");

    let out = t("body-has-plain-id");
    let tag = element(out, "soapenv:Body");
    assert!(
        tag.starts_with("<soapenv:Body Id=\"b1\" xmlns:wsu=\""),
        "{tag}"
    );
    assert!(out.contains("<ds:Reference URI=\"#Body-"), "{out}");

    // wsu taken for another namespace: a fresh prefix, wsu's meaning untouched.
    let out = t("body-binds-wsu-elsewhere");
    let body = element(out, "soapenv:Body");
    let tag = &body[..body.find('>').unwrap()];
    assert!(
        tag.contains("xmlns:wsu=\"urn:example:not-utility\""),
        "{tag}"
    );
    assert!(!tag.contains(" wsu:Id="), "{tag}");
    assert!(tag.contains(&format!("=\"{WSU_NS}\"")), "{tag}");

    let out = t("envelope-uses-wsu-for-soap");
    let body = element(out, "wsu:Body");
    let tag = &body[..body.find('>').unwrap()];
    assert!(!tag.contains(" wsu:Id="), "{tag}");
}

#[test]
fn another_actors_security_header_is_kept_and_ours_added() {
    let s = signed_form("security-header-for-another-actor");
    let out = text(&s.output);
    assert!(out.contains("<wsse:Security soapenv:actor=\"urn:example:other\""));
    assert!(out.contains("<wsse:Username>hop</wsse:Username>"));
    assert_eq!(out.matches("</wsse:Security>").count(), 2);
}

#[test]
fn an_existing_security_header_is_refused_unless_replaced() {
    let c = corpus();
    let leaf = &c.leaves[key_index(KeyAlg::EcdsaP256)];
    let key = signing_key(leaf);
    let once = &signed_form("soap11-no-header").output;
    let o = SignOptions::new(c.now);
    let e = sign(once, &key, &leaf.der, &o).unwrap_err();
    assert!(
        e.to_string().contains("already has a Security header"),
        "{e}"
    );

    let mut o = SignOptions::new(c.now + Duration::from_secs(1));
    o.replace_security = true;
    let twice = sign(once, &key, &leaf.der, &o).unwrap();
    let out = text(&twice);
    assert_eq!(out.matches("<wsse:Security ").count(), 1, "{out}");
    assert_eq!(out.matches("<ds:Signature ").count(), 1, "{out}");
    assert!(!out.contains("BEGIN"), "{out}");
    // The old Body Id stays and is reused; the new signature is by the new key.
    let old_id = signer_id(text(once), "Body");
    assert!(
        out.contains(&format!("<ds:Reference URI=\"#{old_id}\">")),
        "{out}"
    );
    let v = verify_now(&twice, &corpus_policy(c), c.now + Duration::from_secs(1)).unwrap();
    assert_eq!(v.signer.unwrap().der, leaf.der);
}

/// The signer reads a message once for its envelope scan, its layout and
/// the Body's digest. A message with several faults is refused for the
/// envelope's (found by the scan, which reads to the end) before the
/// layout's, as when the scan read alone, and alike whether the message is
/// held whole or signed as it streams.
#[test]
fn the_envelopes_faults_are_refused_before_the_layouts_held_or_streamed() {
    let c = corpus();
    let leaf = &c.leaves[key_index(KeyAlg::EcdsaP256)];
    let signer = Signer::new(signing_key(leaf), &leaf.der).unwrap();
    let mut o = SignOptions::new(c.now);
    o.sign_headers = vec![QName::new(WSA, "To")];
    let s = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsa="http://www.w3.org/2005/08/addressing">"#;
    let to = "<wsa:To>https://erp.example/orders</wsa:To>";
    let sec = r#"<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"/>"#;
    let cases = [
        // A comment in the Body (the layout's), then a second Body (the scan's).
        (
            format!(
                "{s}<s:Header>{to}</s:Header><s:Body><!-- x --></s:Body><s:Body/></s:Envelope>"
            ),
            "wssec_bad_envelope",
        ),
        // A comment in the Body, then bytes after the Envelope.
        (
            format!("{s}<s:Header>{to}</s:Header><s:Body><!-- x --></s:Body></s:Envelope><junk/>"),
            "xml_malformed",
        ),
        // A comment in a signed header block, and no Body.
        (
            format!("{s}<s:Header><wsa:To><!-- x -->a</wsa:To></s:Header></s:Envelope>"),
            "wssec_bad_envelope",
        ),
        // A signed header block twice, then two Security headers.
        (
            format!("{s}<s:Header>{to}{to}{sec}{sec}</s:Header><s:Body/></s:Envelope>"),
            "wssec_two_security_headers",
        ),
    ];
    for (msg, reason) in &cases {
        let held = secure(msg.as_bytes(), Some(&signer), &o).unwrap_err();
        assert_eq!(held.reason(), *reason, "held: {held}\n{msg}");
        let streamed = sign_streamed(msg.as_bytes(), Some(&signer), &o, 7, 16).unwrap_err();
        assert_eq!(streamed.reason(), *reason, "streamed: {streamed}\n{msg}");
    }
    // One fault alone is refused for itself.
    let comment = format!("{s}<s:Header>{to}</s:Header><s:Body><!-- x --></s:Body></s:Envelope>");
    let e = secure(comment.as_bytes(), Some(&signer), &o).unwrap_err();
    assert_eq!(e.reason(), "wssec_comment_in_signed_part", "{e}");
    let twice = format!("{s}<s:Header>{to}{to}</s:Header><s:Body/></s:Envelope>");
    let e = secure(twice.as_bytes(), Some(&signer), &o).unwrap_err();
    assert_eq!(e.reason(), "wssec_duplicate_header_block", "{e}");
}

#[test]
fn listed_header_blocks_are_signed_and_must_be_there_once() {
    let c = corpus();
    let leaf = &c.leaves[key_index(KeyAlg::EcdsaP256)];
    let key = signing_key(leaf);
    let (_, soap12) = FORMS
        .iter()
        .find(|f| f.0 == "soap12-existing-header")
        .unwrap();
    let mut o = SignOptions::new(c.now);
    o.sign_headers = vec![QName::new(WSA, "To"), QName::new(WSA, "Action")];
    let out = sign(soap12.as_bytes(), &key, &leaf.der, &o).unwrap();
    let mut p = corpus_policy(c);
    p.require_signed.push(Part::Header(QName::new(WSA, "To")));
    p.require_signed
        .push(Part::Header(QName::new(WSA, "Action")));
    let v = verify_now(&out, &p, c.now).unwrap();
    assert_eq!(v.signed_parts.len(), 4, "{:?}", v.signed_parts);
    assert_only_additions(soap12, &out, "signed headers");
    refused(
        &edit(
            &out,
            "https://erp.example/orders",
            "https://evil.example/orders",
        ),
        &p,
        c.now,
        "wssec_digest_mismatch",
    );
    if interop::python().is_some() {
        let f = c.dir.join("soap12-headers-signed.xml");
        std::fs::write(&f, &out).unwrap();
        let cert = c.cert_files[key_index(KeyAlg::EcdsaP256)].clone();
        let v = interop::xmlsec_verify(&[(cert, f.clone())]);
        assert!(v[0].accepted, "{:?}", v[0]);
        if let Some(v) = interop::wss4j_verify(&c.ca_pem, &c.all_certs, &[f]) {
            assert!(
                v[0].accepted && v[0].detail.contains("To") && v[0].detail.contains("Action"),
                "{:?}",
                v[0]
            );
        }
    }

    o.sign_headers = vec![QName::new(WSA, "ReplyTo")];
    let e = sign(soap12.as_bytes(), &key, &leaf.der, &o).unwrap_err();
    assert!(e.to_string().contains("ReplyTo"), "{e}");
    let twice = soap12.replacen(
        "</env:Header>",
        "<wsa:To xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">x</wsa:To></env:Header>",
        1,
    );
    o.sign_headers = vec![QName::new(WSA, "To")];
    let e = sign(twice.as_bytes(), &key, &leaf.der, &o).unwrap_err();
    assert!(e.to_string().contains("To"), "{e}");
}

fn passwords(user: &str, pw: &str) -> Arc<MapPasswordStore> {
    let mut store = MapPasswordStore::new();
    store.insert(user, Secret::new(pw));
    Arc::new(store)
}

#[test]
fn a_username_token_alone_as_text_or_digest_and_beside_a_signature() {
    let c = corpus();
    for digest in [false, true] {
        let mut o = SignOptions::new(c.now);
        o.username_token = Some(UsernameToken {
            username: "erp-batch".into(),
            password: Secret::new("pä$$ <word>"),
            digest,
        });
        let debug = format!("{:?}", o);
        assert!(!debug.contains("word"), "secret in Debug: {debug}");
        let out = secure(SOAP11.as_bytes(), None, &o).unwrap();
        let s = text(&out);
        assert_eq!(s.contains("#PasswordDigest"), digest, "{s}");
        assert_eq!(s.contains("pä$$ &lt;word&gt;"), !digest, "{s}");
        assert!(!s.contains("<ds:Signature"), "{s}");
        assert!(s.contains("<wsu:Timestamp "), "{s}");
        assert_only_additions(SOAP11, &out, "username token");

        let mut p = Policy::new(sealgate::wssec::tokens::TrustStore::new());
        p.require_signed.clear();
        p.require_username_token = true;
        p.passwords = Some(passwords("erp-batch", "pä$$ <word>"));
        let v = verify_now(&out, &p, c.now).unwrap_or_else(|e| panic!("digest={digest}: {e}"));
        assert_eq!(v.username.as_deref(), Some("erp-batch"));
        p.passwords = Some(passwords("erp-batch", "other"));
        refused(&out, &p, c.now, "wssec_authentication_failed");

        // With a signature: both checked.
        let leaf = &c.leaves[key_index(KeyAlg::Rsa2048)];
        let out = sign(SOAP11.as_bytes(), &signing_key(leaf), &leaf.der, &o).unwrap();
        let mut p = corpus_policy(c);
        p.require_username_token = true;
        p.passwords = Some(passwords("erp-batch", "pä$$ <word>"));
        let v = verify_now(&out, &p, c.now).unwrap();
        assert_eq!(v.username.as_deref(), Some("erp-batch"));
        assert!(v.signer.is_some());
    }
}

#[test]
fn lifetimes_the_verifier_would_refuse_are_refused_not_written() {
    let c = corpus();
    let leaf = &c.leaves[key_index(KeyAlg::EcdsaP256)];
    let key = signing_key(leaf);
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(24 * 3600 + 1),
        Duration::from_secs(500_000_000_000 * 365 * 86_400),
        Duration::MAX,
    ] {
        let mut o = SignOptions::new(c.now);
        o.ttl = ttl;
        let e = sign(SOAP11.as_bytes(), &key, &leaf.der, &o).unwrap_err();
        assert!(matches!(e, WssecError::Config(_)), "{ttl:?}: {e}");
        assert!(e.to_string().contains("lifetime"), "{e}");
    }
    let mut o = SignOptions::new(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799));
    o.ttl = Duration::from_secs(60);
    let e = sign(SOAP11.as_bytes(), &key, &leaf.der, &o).unwrap_err();
    assert!(e.to_string().contains("10000"), "{e}");
    let mut o = SignOptions::new(c.now);
    o.ttl = Duration::from_secs(24 * 3600);
    sign(SOAP11.as_bytes(), &key, &leaf.der, &o).unwrap();
}

#[test]
fn the_key_must_match_the_certificate_and_input_must_be_soap() {
    let c = corpus();
    let rsa = &c.leaves[key_index(KeyAlg::Rsa2048)];
    let ec = &c.leaves[key_index(KeyAlg::EcdsaP256)];
    let o = SignOptions::new(c.now);
    let e = sign(SOAP11.as_bytes(), &signing_key(rsa), &ec.der, &o).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let other = &c.leaves[key_index(KeyAlg::Rsa3072)];
    let e = sign(SOAP11.as_bytes(), &signing_key(rsa), &other.der, &o).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");

    for (bad, reason) in [
        (&b"<notsoap/>"[..], "wssec_bad_envelope"),
        (
            b"<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"/>",
            "wssec_bad_envelope",
        ),
        (b"not xml at all", "xml_malformed"),
        // A comment in the Body is not covered by the signature, yet the
        // upstream reads it: refused as the verifier refuses it.
        (
            SOAP11
                .replace("<urn:createOrder>", "<urn:createOrder><!-- x -->")
                .as_bytes(),
            "wssec_comment_in_signed_part",
        ),
    ] {
        let e = sign(bad, &signing_key(rsa), &rsa.der, &o).unwrap_err();
        assert_eq!(e.reason(), reason, "{e}");
    }
}

#[test]
fn keys_are_read_from_pkcs8_pkcs1_and_sec1_pem() {
    let c = corpus();
    for alg in [KeyAlg::Rsa2048, KeyAlg::EcdsaP256] {
        let leaf = &c.leaves[key_index(alg)];
        let pkcs8 = SigningKey::from_pem(leaf.key_pem.as_bytes()).unwrap();
        let o = SignOptions::new(c.now);
        sign(SOAP11.as_bytes(), &pkcs8, &leaf.der, &o).unwrap();
        // openssl's "traditional" form: PKCS#1 for RSA, SEC1 for EC.
        let path = c.dir.join(format!("key-{}.pem", key_index(alg)));
        std::fs::write(&path, &leaf.key_pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-traditional", "-in"])
            .arg(&path)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = String::from_utf8(out.stdout).unwrap();
        let label = if alg == KeyAlg::Rsa2048 {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        assert!(pem.contains(label), "{pem}");
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        let out = sign(SOAP11.as_bytes(), &key, &leaf.der, &o).unwrap();
        verify_now(&out, &corpus_policy(c), c.now).unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE"), "{key:?}");
    }
    let e = SigningKey::from_pem(c.leaves[0].cert_pem.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("no private key"), "{e}");
}

#[test]
fn identical_messages_signed_in_the_same_second_are_not_replays_of_each_other() {
    // The signer's Ids are random, so the SignedInfos differ even for
    // deterministic RSA signatures over the same Body at the same instant.
    let c = corpus();
    let leaf = &c.leaves[key_index(KeyAlg::Rsa2048)];
    let key = signing_key(leaf);
    let o = SignOptions::new(c.now);
    let a = sign(SOAP11.as_bytes(), &key, &leaf.der, &o).unwrap();
    let b = sign(SOAP11.as_bytes(), &key, &leaf.der, &o).unwrap();
    assert_ne!(a, b);
    // Roomy: the cache is split over 16 shards, so 16 entries is one a shard.
    let cache = sealgate::wssec::replay::MemoryReplayCache::new(1024);
    let p = corpus_policy(c);
    for m in [&a, &b] {
        sealgate::wssec::verify::verify(m, &p, c.now, &cache).unwrap();
    }
    let again = sealgate::wssec::verify::verify(&a, &p, c.now, &cache).unwrap_err();
    assert_eq!(again.reason(), "wssec_replay");
}
