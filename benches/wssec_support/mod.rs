//! Benchmark messages, shared by benches/wssec_verify.rs and
//! examples/write_bench_messages.rs: a throwaway CA and RSA-2048 signer from
//! the project's PKI factory (`sealgate::pki`), and SOAP 1.1 messages of a chosen size signed by the crate's
//! signer (RSA-SHA256, SHA-256 digests, exclusive c14n, BinarySecurityToken,
//! Body and Timestamp signed).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealgate::pki::{Ca, KeyAlg, Leaf, Usage};
use sealgate::wssec::sign::{sign, SignOptions, SigningKey};
use sealgate::wssec::tokens::TrustStore;
use sealgate::wssec::verify::Policy;

/// (file name, approximate size in bytes) of each benchmark message.
pub const SIZES: [(&str, usize); 2] = [("msg-5KB.xml", 5 << 10), ("msg-1MB.xml", 1 << 20)];

pub struct BenchSet {
    pub ca_der: Vec<u8>,
    pub leaf_pem: String,
    /// PKCS#8 PEM of the signer's key (for a peer that signs the same messages).
    pub leaf_key_pem: String,
    pub signed_at: SystemTime,
    /// (file name, signed message), in `SIZES` order.
    pub messages: Vec<(String, Vec<u8>)>,
}

/// A SOAP 1.1 order with enough line items to make the envelope about `size` bytes.
pub fn envelope(size: usize) -> String {
    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:urn=\"urn:example:orders\">\n  <soapenv:Header/>\n  <soapenv:Body>\n    <urn:createOrder>\n      <urn:account>ACME-42</urn:account>";
    let tail = "\n    </urn:createOrder>\n  </soapenv:Body>\n</soapenv:Envelope>\n";
    // The Security header adds about 2.6 KB (certificate, signature, timestamp).
    let budget = size.saturating_sub(head.len() + tail.len() + 2600);
    let mut body = String::with_capacity(size);
    let mut i = 0;
    while body.len() < budget {
        write!(
            body,
            "\n      <urn:line n=\"{i}\"><urn:sku>SKU-{i:06}</urn:sku><urn:text>Zürich &amp; Co &lt;{i}&gt; — qty {}</urn:text></urn:line>",
            i % 17
        )
        .unwrap();
        i += 1;
    }
    format!("{head}{body}{tail}")
}

/// Makes the PKI and signs every message at `signed_at`.
pub fn make(signed_at: SystemTime) -> BenchSet {
    let ca = Ca::new("Bench CA", "Sealgate Bench", 365).unwrap();
    let mut leaf = Leaf::new("bench-client", Usage::Signer);
    leaf.alg = KeyAlg::Rsa2048;
    leaf.to_days = 30;
    let leaf = ca.issue(&leaf).unwrap();
    let signing_key = SigningKey::from_pkcs8_der(&leaf.key_der).unwrap();

    let opts = SignOptions::new(signed_at);
    let messages = SIZES
        .iter()
        .map(|&(name, size)| {
            let msg = sign(envelope(size).as_bytes(), &signing_key, &leaf.der, &opts).unwrap();
            (name.to_owned(), msg)
        })
        .collect();
    BenchSet {
        ca_der: ca.der,
        leaf_pem: leaf.cert_pem,
        leaf_key_pem: leaf.key_pem,
        signed_at,
        messages,
    }
}

/// `now` for verification: one second after signing, inside the Timestamp window.
pub fn verify_time(set: &BenchSet) -> SystemTime {
    set.signed_at + Duration::from_secs(1)
}

/// The default route policy (Body and Timestamp signed) trusting the bench CA.
pub fn policy(set: &BenchSet) -> Policy {
    let mut t = TrustStore::new();
    t.add_anchor_der(&set.ca_der).unwrap();
    Policy::new(t)
}

/// Writes ca.der, signer.pem (the leaf certificate, for xmlsec), signer-key.pem,
/// signed_at (Unix seconds), the messages, and each unsigned as
/// `unsigned-NAME` into `dir`.
pub fn write(set: &BenchSet, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.der"), &set.ca_der).unwrap();
    std::fs::write(dir.join("signer.pem"), &set.leaf_pem).unwrap();
    let secs = set.signed_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    std::fs::write(dir.join("signed_at"), secs.to_string()).unwrap();
    std::fs::write(dir.join("signer-key.pem"), &set.leaf_key_pem).unwrap();
    for (name, msg) in &set.messages {
        std::fs::write(dir.join(name), msg).unwrap();
    }
    for &(name, size) in &SIZES {
        std::fs::write(dir.join(format!("unsigned-{name}")), envelope(size)).unwrap();
    }
}

/// Reads what `write` wrote (the leaf PEM is not needed to verify).
pub fn read(dir: &Path) -> BenchSet {
    let secs: u64 = std::fs::read_to_string(dir.join("signed_at"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    BenchSet {
        ca_der: std::fs::read(dir.join("ca.der")).unwrap(),
        leaf_pem: std::fs::read_to_string(dir.join("signer.pem")).unwrap(),
        leaf_key_pem: std::fs::read_to_string(dir.join("signer-key.pem")).unwrap(),
        signed_at: UNIX_EPOCH + Duration::from_secs(secs),
        messages: SIZES
            .iter()
            .map(|&(name, _)| (name.to_owned(), std::fs::read(dir.join(name)).unwrap()))
            .collect(),
    }
}
