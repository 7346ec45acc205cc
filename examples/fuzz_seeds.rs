//! Writes signed seed messages for the `verify` target (and the others).
//!
//! Usage: cargo run --example fuzz_seeds -- OUTDIR PKIDIR
//! Signs a few SOAP messages with the crate's own signer at the fixed time the
//! fuzz target verifies at, using the fixed fuzz PKI, into OUTDIR; writes the
//! leaf key and certificate (PEM) into PKIDIR for zeep_seed.py.
//!
//! Usage: cargo run --example fuzz_seeds -- --check DIR
//! Prints how the `verify` target's policy judges each file in DIR.

// A developer tool run by hand or by fuzz/seed_corpus.sh: a failure may panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/src/lib.rs"]
mod fuzz_pki;

use std::path::{Path, PathBuf};

use sealgate::wssec::dsig::DigestAlgorithm;
use sealgate::wssec::replay::MemoryReplayCache;
use sealgate::wssec::sign::{sign, KeyReference, SignOptions, SigningKey};
use sealgate::wssec::verify::verify;

const SOAP11: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
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

// No comment inside the Body: the signer refuses one there (canonicalization
// would drop it, so the upstream would read what was not signed).
const SOAP12: &str = r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Header><wsa:To xmlns:wsa="http://www.w3.org/2005/08/addressing">https://accounting.example/orders</wsa:To></env:Header><env:Body xml:lang="en"><o:createOrder xmlns:o="urn:example:orders" xmlns:unused="urn:unused"><o:account a="1" b="&lt;&amp;&quot;">ACME&#x2D;42<![CDATA[ <raw> ]]></o:account></o:createOrder></env:Body></env:Envelope>"#;

fn check(dir: &Path) {
    let policy = fuzz_pki::policy(&fuzz_pki::pki());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let msg = std::fs::read(&f).unwrap();
        let cache = MemoryReplayCache::new(16);
        let outcome = match verify(&msg, &policy, fuzz_pki::now(), &cache) {
            Ok(_) => "accepted",
            Err(e) => e.reason().as_str(),
        };
        println!("{outcome}\t{}", f.display());
    }
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if let [flag, dir] = &args[..] {
        if flag.as_os_str() == "--check" {
            return check(dir);
        }
    }
    let [out, pki_dir] = &args[..] else {
        panic!("usage: seed_corpus OUTDIR PKIDIR");
    };
    std::fs::create_dir_all(out).unwrap();
    std::fs::create_dir_all(pki_dir).unwrap();
    let pki = fuzz_pki::pki();
    std::fs::write(pki_dir.join("leaf-key.pem"), pki.leaf_key_pem).unwrap();
    std::fs::write(pki_dir.join("leaf.pem"), &pki.leaf_pem).unwrap();
    let key = SigningKey::from_pkcs8_der(&pki.leaf_key_der).unwrap();

    let mut n = 0;
    let mut write = |name: &str, body: &str, f: &dyn Fn(&mut SignOptions)| {
        let mut o = SignOptions::new(fuzz_pki::signed_at());
        f(&mut o);
        let msg = sign(body.as_bytes(), &key, &pki.leaf_der, &o).unwrap();
        std::fs::write(out.join(format!("signed-{name}.xml")), msg).unwrap();
        n += 1;
    };
    write("soap11-bst", SOAP11, &|_| {});
    write("soap12-bst", SOAP12, &|_| {});
    for (name, kr) in [
        ("issuer-serial", KeyReference::IssuerSerial),
        ("ski", KeyReference::SubjectKeyIdentifier),
        ("thumbprint", KeyReference::ThumbprintSha1),
    ] {
        write(name, SOAP11, &|o| o.key_reference = kr);
    }
    write("sha512", SOAP11, &|o| o.digest = DigestAlgorithm::Sha512);
    write("sha1", SOAP11, &|o| o.digest = DigestAlgorithm::Sha1);
    write("body-only", SOAP12, &|o| o.sign_timestamp = false);
    write("no-timestamp", SOAP11, &|o| o.timestamp = false);
    eprintln!("wrote {n} signed messages to {}", out.display());
}
