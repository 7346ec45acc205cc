//! `sealgate wssec verify | c14n | sign`: the WS-Security core on files, for
//! interop debugging. Exit codes: 0 ok, 1 refused, 2 usage or I/O.

use clap::Subcommand;
use sealgate::runtime::wssec_stage::part;
use sealgate::tls::certs;
use sealgate::wssec::c14n::{self, Method};
use sealgate::wssec::replay::NoReplayCache;
use sealgate::wssec::sign::{self, KeyReference, SignOptions, SigningKey};
use sealgate::wssec::tokens::{self, TrustStore};
use sealgate::wssec::verify::{self, Policy};
use sealgate::wssec::xml::Limits;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Subcommand)]
pub enum WssecCmd {
    /// Verify a signed SOAP message (stdin or FILE); with --explain, show every Reference's digests.
    Verify {
        /// PEM trust anchors for signer certificates (repeatable).
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
        /// PEM signer certificates, for KeyIdentifier / X509IssuerSerial references.
        #[arg(long)]
        signers: Option<PathBuf>,
        /// PEM intermediate CAs between signers and the trust anchors (repeatable).
        #[arg(long)]
        intermediates: Vec<PathBuf>,
        /// PEM CRLs (repeatable).
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Parts that must be signed: Body, Timestamp, {namespace}LocalName.
        #[arg(long, value_delimiter = ',', default_value = "Body,Timestamp")]
        require: Vec<String>,
        #[arg(long)]
        allow_sha1: bool,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        max_skew: Duration,
        /// Judge the message as if now were this time (RFC 3339), for old captures.
        #[arg(long)]
        at: Option<String>,
        /// Print each Reference's claimed and computed digest, and the canonical bytes on a mismatch.
        #[arg(long)]
        explain: bool,
        /// Write the verified message (Security header removed) here.
        #[arg(long, short)]
        output: Option<PathBuf>,
        file: Option<PathBuf>,
    },
    /// Print the canonical form of a document or of one element in it.
    C14n {
        /// Exclusive XML Canonicalization 1.0 (default: Canonical XML 1.0).
        #[arg(long)]
        exclusive: bool,
        #[arg(long)]
        with_comments: bool,
        /// InclusiveNamespaces PrefixList for exclusive C14N, e.g. "soap #default".
        #[arg(long)]
        prefix_list: Option<String>,
        /// Canonicalize the first element with this local name (e.g. Body).
        #[arg(long, conflicts_with = "id")]
        element: Option<String>,
        /// Canonicalize the element carrying this Id (wsu:Id, Id, ID or id).
        #[arg(long)]
        id: Option<String>,
        file: Option<PathBuf>,
    },
    /// Add a WS-Security header (Timestamp, BinarySecurityToken, Signature) to a SOAP message.
    Sign {
        /// PKCS#8 PEM private key (RSA or ECDSA).
        #[arg(long)]
        key: PathBuf,
        /// PEM signer certificate.
        #[arg(long)]
        cert: PathBuf,
        /// How the Signature names its key.
        #[arg(long, default_value = "bst", value_parser = ["bst", "issuer-serial", "ski", "thumbprint"])]
        key_ref: String,
        /// Timestamp lifetime.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long, short)]
        output: Option<PathBuf>,
        file: Option<PathBuf>,
    },
}

const REFUSED: u8 = 1;
const USAGE: u8 = 2;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(USAGE)
}

fn read_input(file: &Option<PathBuf>) -> Result<Vec<u8>, String> {
    match file {
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(v)
        }
    }
}

fn write_output(path: &Option<PathBuf>, bytes: &[u8]) -> Result<(), String> {
    match path {
        Some(p) => {
            std::fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => std::io::stdout()
            .write_all(bytes)
            .map_err(|e| format!("cannot write stdout: {e}")),
    }
}

fn pem_ders(p: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    certs::load_certs(p).map_err(|e| e.to_string())
}

pub fn run(cmd: WssecCmd) -> ExitCode {
    match cmd {
        WssecCmd::Verify {
            trust,
            signers,
            intermediates,
            crl,
            require,
            allow_sha1,
            max_skew,
            at,
            explain,
            output,
            file,
        } => {
            let mut store = TrustStore::new();
            for t in &trust {
                let ders = match pem_ders(t) {
                    Ok(d) => d,
                    Err(e) => return fail(e),
                };
                for d in ders {
                    if let Err(e) = store.add_anchor_der(&d) {
                        return fail(format!("{}: not a usable trust anchor: {e}", t.display()));
                    }
                }
            }
            for p in &intermediates {
                match pem_ders(p) {
                    Ok(ders) => ders.iter().for_each(|d| store.add_intermediate_der(d)),
                    Err(e) => return fail(e),
                }
            }
            if let Some(s) = &signers {
                match pem_ders(s) {
                    Ok(ders) => {
                        for d in ders {
                            if let Err(e) = store.add_signer_der(&d) {
                                return fail(format!("{}: {e}", s.display()));
                            }
                        }
                    }
                    Err(e) => return fail(e),
                }
            }
            for c in &crl {
                match certs::load_crls(c) {
                    Ok(list) => {
                        for l in list {
                            if let Err(e) = store.add_crl_der(&l) {
                                return fail(format!("{}: {e}", c.display()));
                            }
                        }
                    }
                    Err(e) => return fail(e),
                }
            }
            let mut policy = Policy::new(store);
            policy.require_signed = match require.iter().map(|s| part(s)).collect() {
                Ok(p) => p,
                Err(e) => return fail(format!("--require: {e}")),
            };
            policy.allow_sha1 = allow_sha1;
            policy.max_clock_skew = max_skew;
            let now = match at {
                None => SystemTime::now(),
                Some(t) => match tokens::parse_datetime(&t) {
                    Some(t) => t,
                    None => {
                        return fail(format!(
                            "--at {t:?}: write a UTC time like 2026-11-22T10:00:00Z"
                        ))
                    }
                },
            };
            let msg = match read_input(&file) {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            let outcome = if explain {
                let ex = verify::explain(&msg, &policy, now);
                print_explanation(&ex);
                ex.outcome
            } else {
                verify::verify(&msg, &policy, now, &NoReplayCache)
            };
            match outcome {
                Ok(v) => {
                    let signed: Vec<String> =
                        v.signed_parts.iter().map(|p| format!("{p:?}")).collect();
                    eprintln!(
                        "verified: signer {} (issuer {}), signed {}",
                        v.signer
                            .as_ref()
                            .map(|s| s.subject.to_string())
                            .unwrap_or_else(|| "-".into()),
                        v.signer
                            .as_ref()
                            .map(|s| s.issuer.to_string())
                            .unwrap_or_else(|| "-".into()),
                        signed.join(", ")
                    );
                    if output.is_some() {
                        if let Err(e) = write_output(&output, &v.output) {
                            return fail(e);
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("refused: {} ({}): {e}", e.reason(), e.fault_code());
                    ExitCode::from(REFUSED)
                }
            }
        }
        WssecCmd::C14n {
            exclusive,
            with_comments,
            prefix_list,
            element,
            id,
            file,
        } => {
            let mut method = if exclusive {
                Method::exclusive()
            } else {
                Method::inclusive()
            };
            if with_comments {
                method = method.with_comments();
            }
            if let Some(p) = &prefix_list {
                if !exclusive {
                    return fail("--prefix-list applies to --exclusive only");
                }
                method = method.with_prefix_list(p);
            }
            let msg = match read_input(&file) {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            let limits = Limits::default();
            let mut out = Vec::new();
            let r = match (&element, &id) {
                (None, None) => c14n::canonicalize_document(&msg, &limits, &method, &mut out),
                (Some(name), _) => c14n::canonicalize_element(
                    &msg,
                    &limits,
                    &method,
                    |e| e.local_name() == name,
                    &mut out,
                ),
                (None, Some(want)) => c14n::canonicalize_element(
                    &msg,
                    &limits,
                    &method,
                    |e| {
                        e.attributes()
                            .any(|a| matches!(a.local_name, "Id" | "ID" | "id") && a.value == *want)
                    },
                    &mut out,
                ),
            };
            match r {
                Ok(()) => match write_output(&None, &out) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                Err(e) => {
                    eprintln!("refused: {} : {e}", e.reason());
                    ExitCode::from(REFUSED)
                }
            }
        }
        WssecCmd::Sign {
            key,
            cert,
            key_ref,
            ttl,
            output,
            file,
        } => {
            let key_der = match certs::load_key(&key) {
                Ok(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
                Ok(_) => {
                    return fail(format!(
                        "{}: the key must be PKCS#8 (convert with: openssl pkcs8 -topk8 -nocrypt -in KEY)",
                        key.display()
                    ))
                }
                Err(e) => return fail(e),
            };
            let signing = match SigningKey::from_pkcs8_der(&key_der) {
                Ok(k) => k,
                Err(e) => return fail(format!("{}: {e}", key.display())),
            };
            let cert_der = match pem_ders(&cert) {
                Ok(mut d) if !d.is_empty() => d.remove(0),
                Ok(_) => return fail(format!("{}: no certificate", cert.display())),
                Err(e) => return fail(e),
            };
            let mut opts = SignOptions::new(SystemTime::now());
            opts.ttl = ttl;
            opts.key_reference = match key_ref.as_str() {
                "issuer-serial" => KeyReference::IssuerSerial,
                "ski" => KeyReference::SubjectKeyIdentifier,
                "thumbprint" => KeyReference::ThumbprintSha1,
                _ => KeyReference::BinarySecurityToken,
            };
            let msg = match read_input(&file) {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            match sign::sign(&msg, &signing, &cert_der, &opts) {
                Ok(signed) => match write_output(&output, &signed) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                Err(e) => {
                    eprintln!("cannot sign: {} : {e}", e.reason());
                    ExitCode::from(REFUSED)
                }
            }
        }
    }
}

fn print_explanation(ex: &verify::Explanation) {
    for (i, r) in ex.references.iter().enumerate() {
        println!(
            "Reference {} URI={} part={} digest={}",
            i + 1,
            r.uri,
            r.part
                .as_ref()
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "(not at an allowed place)".into()),
            r.digest_algorithm
        );
        println!("  claimed:  {}", r.claimed);
        println!(
            "  computed: {}  {}",
            r.computed.as_deref().unwrap_or("(not computed)"),
            if r.matches { "MATCH" } else { "MISMATCH" }
        );
        if let Some(c) = &r.canonical {
            println!("  canonical bytes digested ({} bytes):", c.len());
            println!("{}", String::from_utf8_lossy(c));
        }
    }
    if let Some(si) = &ex.signed_info_canonical {
        println!("canonical SignedInfo ({} bytes):", si.len());
        println!("{}", String::from_utf8_lossy(si));
    }
}
