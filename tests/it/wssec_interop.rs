//! Interop with libxmlsec1 through python-zeep: messages zeep signs verify
//! here, and a wrapping attack that zeep's verifier accepts is refused here.
//! Needs the Debian packages python3-zeep and python3-xmlsec (see
//! tests/interop/README.md); skipped with a printed reason without them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::support::interop::{self, script, PYTHON};
use crate::support::wssec::*;
use sealgate::wssec::envelope::QName;
use sealgate::wssec::tokens::{KeySource, MapPasswordStore, Secret};
use sealgate::wssec::verify::{Policy, SignedPart};

struct Fixture {
    dir: PathBuf,
    ca: Ca,
    leaf: Leaf,
}

/// Signs every case once per test run with a fresh PKI.
fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        interop::python()?;
        let dir = std::env::temp_dir().join(format!("wssec-interop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = make_ca("Interop Signer CA");
        let leaf = current(&ca, "zeep-client", Alg::Rsa);
        std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
        let out = Command::new(PYTHON)
            .arg(script("zeep_sign.py"))
            .arg(dir.join("key.pem"))
            .arg(dir.join("cert.pem"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zeep_sign.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Fixture { dir, ca, leaf })
    })
    .as_ref()
}

fn read(f: &Fixture, name: &str) -> Vec<u8> {
    std::fs::read(f.dir.join(name)).unwrap()
}

fn pol(f: &Fixture) -> Policy {
    policy(&f.ca, &[&f.leaf])
}

#[test]
fn zeep_binary_security_token_soap11_and_soap12() {
    let Some(f) = fixture() else { return };
    let now = SystemTime::now();
    for name in ["soap11-bst.xml", "soap12-bst.xml"] {
        let msg = read(f, name);
        let v = verify_now(&msg, &pol(f), now).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            v.signed_parts,
            vec![SignedPart::Body, SignedPart::Timestamp],
            "{name}"
        );
        let s = v.signer.unwrap();
        assert_eq!(s.key_source, KeySource::BinarySecurityToken);
        assert_eq!(s.der, f.leaf.der);
        assert!(!text(&v.output).contains("wsse:Security"), "{name}");
    }
}

#[test]
fn zeep_x509_data_soap11_and_soap12() {
    let Some(f) = fixture() else { return };
    let now = SystemTime::now();
    for name in ["soap11-issuer-serial.xml", "soap12-issuer-serial.xml"] {
        let msg = read(f, name);
        let v = verify_now(&msg, &pol(f), now).unwrap_or_else(|e| panic!("{name}: {e}"));
        // libxmlsec1 1.3 leaves X509IssuerSerial empty; the embedded
        // certificate is then the key, judged by its chain like a
        // BinarySecurityToken: accepted without being a configured signer,
        // refused under a CA that did not issue it.
        assert_eq!(v.signer.unwrap().key_source, KeySource::X509Certificate);
        let v = verify_now(&msg, &policy(&f.ca, &[]), now).unwrap();
        assert_eq!(v.signer.unwrap().der, f.leaf.der);
        let stranger = make_ca("Stranger CA");
        refused(&msg, &policy(&stranger, &[]), now, "wssec_untrusted_signer");
    }
}

#[test]
fn zeep_soap12_with_a_signable_header_block_listed() {
    let Some(f) = fixture() else { return };
    let mut p = pol(f);
    p.signable_headers
        .push(QName::new("http://www.w3.org/2005/08/addressing", "To"));
    verify_now(&read(f, "soap12-bst.xml"), &p, SystemTime::now()).unwrap();
}

#[test]
fn zeep_salesforce_outbound_message_with_whitespace() {
    let Some(f) = fixture() else { return };
    let msg = read(f, "outbound-bst.xml");
    let v = verify_now(&msg, &pol(f), SystemTime::now()).unwrap();
    let out = text(&v.output);
    assert!(out.contains(
        "<notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">\n   <OrganizationId>"
    ));
    assert!(out.contains("Acme &amp; Söhne GmbH"));
}

#[test]
fn zeep_large_body() {
    let Some(f) = fixture() else { return };
    let msg = read(f, "large-bst.xml");
    assert!(msg.len() > 400_000, "{}", msg.len());
    verify_now(&msg, &pol(f), SystemTime::now()).unwrap();
    let tampered = edit(&msg, "SKU-003999", "SKU-003998");
    refused(
        &tampered,
        &pol(f),
        SystemTime::now(),
        "wssec_digest_mismatch",
    );
}

#[test]
fn zeep_sha1_defaults_need_policy() {
    let Some(f) = fixture() else { return };
    let msg = read(f, "soap11-sha1.xml");
    let now = SystemTime::now();
    let e = refused(&msg, &pol(f), now, "wssec_sha1_not_allowed");
    assert_eq!(e.fault_code(), "wsse:UnsupportedAlgorithm");
    let mut p = pol(f);
    p.allow_sha1 = true;
    verify_now(&msg, &p, now).unwrap();
}

#[test]
fn zeep_username_token_digest_with_signature() {
    let Some(f) = fixture() else { return };
    let msg = read(f, "soap11-username-bst.xml");
    let mut p = pol(f);
    let mut store = MapPasswordStore::new();
    store.insert("etl", Secret::new("s3cret-pw"));
    p.passwords = Some(Arc::new(store));
    p.require_username_token = true;
    let v = verify_now(&msg, &p, SystemTime::now()).unwrap();
    assert_eq!(v.username.as_deref(), Some("etl"));
    let mut wrong = MapPasswordStore::new();
    wrong.insert("etl", Secret::new("other"));
    p.passwords = Some(Arc::new(wrong));
    refused(&msg, &p, SystemTime::now(), "wssec_authentication_failed");
}

fn xmlsec_accepts(f: &Fixture, msg: &[u8], name: &str) -> bool {
    let path = f.dir.join(name);
    std::fs::write(&path, msg).unwrap();
    interop::xmlsec_verify(&[(f.dir.join("cert.pem"), path)])[0].accepted
}

/// The reason this module exists: zeep (libxmlsec1) checks that *an* element
/// with the referenced Id is signed; the receiver processes a different Body.
#[test]
fn libxmlsec1_accepts_body_wrapping_that_verify_refuses() {
    let Some(f) = fixture() else { return };
    let msg = read(f, "soap11-bst.xml");
    assert!(
        xmlsec_accepts(f, &msg, "genuine.xml"),
        "zeep must accept its own message"
    );

    let s = text(&msg);
    let body = element(s, "soapenv:Body");
    let evil = "<soapenv:Body><urn:createOrder><urn:account>MALLORY</urn:account>\
                <urn:amount currency=\"EUR\">999999.00</urn:amount></urn:createOrder></soapenv:Body>";
    let wrapped = s.replacen(body, evil, 1).replacen(
        "</soapenv:Header>",
        &format!("<w:Wrapper xmlns:w=\"urn:attacker\">{body}</w:Wrapper></soapenv:Header>"),
        1,
    );
    assert!(
        xmlsec_accepts(f, wrapped.as_bytes(), "wrapped.xml"),
        "libxmlsec1 via zeep was expected to accept the wrapped message"
    );
    let e = refused(
        wrapped.as_bytes(),
        &pol(f),
        SystemTime::now(),
        "wssec_reference_not_allowed",
    );
    assert_eq!(e.fault_code(), "wsse:FailedCheck");

    // A tampered Body is caught by both.
    let tampered = edit(&msg, "100.00", "900.00");
    assert!(!xmlsec_accepts(f, &tampered, "tampered.xml"));
    refused(
        &tampered,
        &pol(f),
        SystemTime::now(),
        "wssec_digest_mismatch",
    );
}
