//! `sealgate wssec verify | c14n | sign`: the WS-Security core on files, for
//! interop debugging. Exit codes: 0 ok, 1 refused, 2 usage or I/O.

use clap::Subcommand;
use sealgate::config::{
    Config, Dur, KeyReferenceConfig, Problem, SignerConfig, SignersConfig, Size,
    UsernameTokenConfig, WssecMode, WssecStageConfig,
};
use sealgate::fingerprint::Fingerprint;
use sealgate::runtime::material::Loader;
use sealgate::runtime::wssec_stage::{Direction, Stage, Work};
use sealgate::wssec::c14n::{self, Method};
use sealgate::wssec::replay::NoReplayCache;
use sealgate::wssec::tokens;
use sealgate::wssec::verify;
use sealgate::wssec::xml::Limits;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Subcommand)]
pub enum WssecCmd {
    /// Verify a signed SOAP message (stdin or FILE) under the policy a route's
    /// `[route.wssec.request] mode = "verify"` would apply; with --explain,
    /// show every Reference's digests.
    Verify {
        /// PEM trust anchors for signer certificates (may be left out with --pin).
        #[arg(long, required_unless_present = "pin")]
        trust: Option<PathBuf>,
        /// PEM signer certificates, chained to --trust, for KeyIdentifier /
        /// X509IssuerSerial references.
        #[arg(long)]
        signers: Option<PathBuf>,
        /// A signer trusted as itself with no chain: a PEM certificate, or its
        /// SHA-256 fingerprint (AB:CD:...). Repeatable.
        #[arg(long)]
        pin: Vec<String>,
        /// PEM intermediate CAs between signers and the trust anchors (repeatable).
        #[arg(long)]
        intermediates: Vec<PathBuf>,
        /// PEM CRLs (repeatable).
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Parts that must be signed: Body, Timestamp, {namespace}LocalName
        /// (default Body,Timestamp; Body alone with --no-timestamp).
        #[arg(long, value_delimiter = ',')]
        require: Option<Vec<String>>,
        /// A header block that may be signed without being required,
        /// {namespace}LocalName (repeatable).
        #[arg(long)]
        signable: Vec<String>,
        /// Accept a message without a Timestamp.
        #[arg(long)]
        no_timestamp: bool,
        /// Longest Timestamp lifetime accepted (default 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        max_ttl: Option<Duration>,
        #[arg(long, value_parser = humantime::parse_duration)]
        max_skew: Option<Duration>,
        #[arg(long)]
        allow_sha1: bool,
        /// RSA signer keys under 2048 bits.
        #[arg(long)]
        allow_legacy_keys: bool,
        /// The SOAP actor/role URI to process the Security header for.
        #[arg(long)]
        actor: Option<String>,
        /// Judge the message as if now were this time (RFC 3339), for old captures.
        #[arg(long)]
        at: Option<String>,
        /// Print each Reference's claimed and computed digest, and the canonical
        /// bytes on a mismatch; marked as diagnostics when the message was
        /// refused before its References.
        #[arg(long)]
        explain: bool,
        /// Element, attribute or field names whose values --explain masks,
        /// comma-separated, on top of the credentials always masked
        /// (Password, sessionId, Authorization, ...), as `[log] redact` does.
        #[arg(long, value_delimiter = ',')]
        redact: Vec<String>,
        /// Keep the last N characters of values masked by --redact.
        #[arg(long, default_value_t = 0)]
        keep_last: usize,
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
    /// Add a WS-Security header (Timestamp, BinarySecurityToken, Signature,
    /// UsernameToken) to a SOAP message, as `mode = "sign"` does.
    Sign {
        /// PEM private key (PKCS#8, PKCS#1 or SEC1; RSA or ECDSA P-256).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// PEM signing certificate (the key's).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// What the signature covers: Body (always), Timestamp (left out: no
        /// Timestamp is written), header blocks as {namespace}LocalName.
        #[arg(long, value_delimiter = ',', default_value = "Body,Timestamp")]
        parts: Vec<String>,
        /// How the Signature names its key.
        #[arg(long, value_parser = ["bst", "issuer-serial", "ski", "thumbprint"])]
        key_ref: Option<String>,
        /// Timestamp lifetime (default 5m, at most 24h).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Add a UsernameToken for this user (with --password-file or --password-env).
        #[arg(long)]
        username: Option<String>,
        /// File holding the UsernameToken password (trailing newline ignored).
        #[arg(long, requires = "username", conflicts_with = "password_env")]
        password_file: Option<PathBuf>,
        /// Environment variable holding the UsernameToken password.
        #[arg(long, requires = "username")]
        password_env: Option<String>,
        /// PasswordDigest with Nonce and Created rather than PasswordText.
        #[arg(long, requires = "username")]
        digest: bool,
        /// Replace a Security header the message already has (default: refuse it).
        #[arg(long)]
        replace_security: bool,
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

pub fn run(cmd: WssecCmd) -> ExitCode {
    match cmd {
        WssecCmd::Verify {
            trust,
            signers,
            pin,
            intermediates,
            crl,
            require,
            signable,
            no_timestamp,
            max_ttl,
            max_skew,
            allow_sha1,
            allow_legacy_keys,
            actor,
            at,
            explain,
            redact,
            keep_last,
            output,
            file,
        } => {
            let redactor = match sealgate::redact::Redactor::new(&redact, keep_last) {
                Ok(r) => r,
                Err(e) => return fail(format!("--redact: {e}")),
            };
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
            // Chained signers first, then pins: the flag of each entry, for errors.
            let mut list = Vec::new();
            let mut origins = Vec::new();
            if let Some(p) = signers {
                list.push(SignerConfig {
                    cert: Some(p),
                    pinned: false,
                    fingerprint_sha256: None,
                });
                origins.push("--signers");
            }
            for p in pin {
                let as_file = Path::new(&p).exists() || Fingerprint::parse(&p).is_err();
                list.push(SignerConfig {
                    cert: as_file.then(|| PathBuf::from(&p)),
                    pinned: as_file,
                    fingerprint_sha256: (!as_file).then_some(p),
                });
                origins.push("--pin");
            }
            let c = WssecStageConfig {
                mode: WssecMode::Verify,
                max_body: Some(body_ceiling(&msg)),
                trust,
                intermediates,
                signers: (!list.is_empty()).then_some(SignersConfig::List(list)),
                crls: crl
                    .into_iter()
                    .map(sealgate::config::CrlSource::File)
                    .collect(),
                require_signed: require,
                signable_headers: signable,
                require_timestamp: Some(!no_timestamp),
                max_clock_skew: max_skew.map(Dur),
                max_ttl: max_ttl.map(Dur),
                allow_sha1: Some(allow_sha1),
                allow_legacy_keys: Some(allow_legacy_keys),
                actor,
                ..Default::default()
            };
            let stage = match compile(&c, &origins) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let Work::Verify(v) = &stage.work else {
                return fail("internal: not a verifying stage");
            };
            let outcome = if explain {
                let ex = verify::explain(&msg, &v.policy, now);
                print_explanation(&ex, &redactor);
                ex.outcome
            } else {
                verify::verify(&msg, &v.policy, now, &NoReplayCache)
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
                        if signed.is_empty() {
                            "nothing".into()
                        } else {
                            signed.join(", ")
                        }
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
            parts,
            key_ref,
            ttl,
            username,
            password_file,
            password_env,
            digest,
            replace_security,
            output,
            file,
        } => {
            let mut timestamp = false;
            let mut sign_headers = Vec::new();
            for p in parts.iter().map(|p| p.trim()) {
                match p {
                    "Body" => {}
                    "Timestamp" => timestamp = true,
                    other => sign_headers.push(other.to_owned()),
                }
            }
            if key.is_some() && !parts.iter().any(|p| p.trim() == "Body") {
                return fail("--parts: the Body is always signed; list it (Body,Timestamp,...)");
            }
            if username.is_some() && password_file.is_none() && password_env.is_none() {
                return fail("--username needs --password-file FILE or --password-env NAME");
            }
            // A file past what is held whole is signed as it is read, then
            // copied after its new head: memory stays small for any size.
            let streamed = file
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .is_some_and(|m| m.len() > HELD);
            let msg = match &file {
                Some(_) if streamed => Vec::new(),
                _ => match read_input(&file) {
                    Ok(m) => m,
                    Err(e) => return fail(e),
                },
            };
            let c = WssecStageConfig {
                mode: WssecMode::Sign,
                max_body: Some(body_ceiling(&msg)),
                key,
                cert,
                key_reference: key_ref.as_deref().map(|k| match k {
                    "issuer-serial" => KeyReferenceConfig::IssuerSerial,
                    "ski" => KeyReferenceConfig::Ski,
                    "thumbprint" => KeyReferenceConfig::Thumbprint,
                    _ => KeyReferenceConfig::Bst,
                }),
                ttl: ttl.map(Dur),
                timestamp: Some(timestamp),
                sign_headers,
                replace_security: Some(replace_security),
                username_token: username.map(|user| UsernameTokenConfig {
                    user,
                    password_env,
                    password_file,
                    digest,
                }),
                ..Default::default()
            };
            let stage = match compile(&c, &[]) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let (Some(path), true) = (&file, streamed) {
                return sign_streamed(&stage, path, &output);
            }
            match stage.apply(&msg, SystemTime::now(), None) {
                Ok(signed) => match write_output(&output, &signed.output) {
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

/// The stage a route with these settings would run, compiled by the same
/// code; problems and warnings printed against the flag they came from.
fn compile(c: &WssecStageConfig, signer_flags: &[&'static str]) -> Result<Stage, ExitCode> {
    let config: Config = match toml::from_str("") {
        Ok(c) => c,
        Err(e) => return Err(fail(format!("internal: {e}"))),
    };
    let state = sealgate::runtime::state::State::new();
    let metrics = sealgate::telemetry::metrics::Metrics::new();
    let mut ld = Loader::new(&config, &state, &metrics);
    let replay = Arc::new(sealgate::store::Replay::new(1));
    let stage = Stage::compile(&mut ld, c, "cli", "cli", Direction::Request, &replay);
    for w in &ld.warnings {
        eprintln!("warning: {}", on_flag(w, signer_flags));
    }
    match stage {
        Some(Some(s)) if ld.problems.is_empty() => Ok(s),
        _ => {
            for p in &ld.problems {
                eprintln!("error: {}", on_flag(p, signer_flags));
            }
            Err(ExitCode::from(USAGE))
        }
    }
}

/// A problem recorded at a stage key (`cli.max_ttl`) told as the flag that set it.
fn on_flag(p: &Problem, signer_flags: &[&'static str]) -> String {
    let key = p.path.strip_prefix("cli").unwrap_or(&p.path);
    let key = key.strip_prefix('.').unwrap_or(key);
    let head = key.split(['.', '[']).next().unwrap_or_default();
    let flag = match head {
        "" => return p.message.clone(),
        "signers" => key
            .strip_prefix("signers[")
            .and_then(|r| r.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| signer_flags.get(i))
            .map_or("--pin".to_owned(), |f| (*f).to_owned()),
        "crls" => "--crl".into(),
        "require_signed" => "--require".into(),
        "signable_headers" => "--signable".into(),
        "require_timestamp" => "--no-timestamp".into(),
        "max_clock_skew" => "--max-skew".into(),
        "sign_headers" | "timestamp" => "--parts".into(),
        "key_reference" => "--key-ref".into(),
        "username_token" if key.ends_with(".user") => "--username".into(),
        "username_token" => "--password-file/--password-env".into(),
        other => format!("--{}", other.replace('_', "-")),
    };
    // Messages that name a sibling key by its TOML path name the flag instead.
    let mut message = p.message.clone();
    for (key, flag) in [
        ("cli.cert", "--cert"),
        ("cli.key", "--key"),
        ("cli.trust", "--trust"),
    ] {
        message = message.replace(key, flag);
    }
    format!("{flag}: {message}")
}

/// What the CLI reads whole to sign; a larger file is signed as it streams.
const HELD: u64 = 16 << 20;

/// The stage's body ceiling, raised for a large file (the CLI reads it whole anyway).
fn body_ceiling(msg: &[u8]) -> Size {
    Size((msg.len() as u64).max(HELD))
}

/// Signs `path` as the gateway signs a streamed request: read once to
/// digest its Body, then its new head written and the rest copied after it.
fn sign_streamed(stage: &Stage, path: &Path, output: &Option<PathBuf>) -> ExitCode {
    use sealgate::wssec::sign::Finished;
    use std::io::{Seek, SeekFrom};
    let Work::Sign(sign) = &stage.work else {
        return fail("internal: not a signing stage");
    };
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    // Compared by device and inode: a hard link to the input is the input.
    let same = |o: &PathBuf| id(o).is_some() && id(o) == id(path);
    if output.as_ref().is_some_and(same) {
        return fail(
            "--output must not be the input file: it is read again after the head is written",
        );
    }
    let cannot = |e: std::io::Error| fail(format!("cannot read {}: {e}", path.display()));
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return cannot(e),
    };
    let size = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => return cannot(e),
    };
    let mut signer = sign.streamer();
    let mut buf = vec![0u8; 1 << 20];
    let head = loop {
        // One pass over the file, or two when the signer asks again.
        if let Err(e) = f.seek(SeekFrom::Start(0)) {
            return cannot(e);
        }
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return cannot(e),
            };
            if let Err(e) = signer.feed(&buf[..n]) {
                eprintln!("cannot sign: {} : {e}", e.reason());
                return ExitCode::from(REFUSED);
            }
        }
        match signer.finish(SystemTime::now()) {
            Ok(Finished::Signed(h)) => break h,
            Ok(Finished::Again(next)) => signer = *next,
            Err(e) => {
                eprintln!("cannot sign: {} : {e}", e.reason());
                return ExitCode::from(REFUSED);
            }
        }
    };
    // What follows the head is copied as it was signed: a file that changed
    // size between the two reads is refused rather than copied.
    let changed = f.metadata().map_or(true, |m| m.len() != size);
    if changed || f.seek(SeekFrom::Start(head.body_from as u64)).is_err() {
        return fail(format!("{} changed while it was signed", path.display()));
    }
    let rest = size.saturating_sub(head.body_from as u64);
    let written = match output {
        Some(p) => std::fs::File::create(p)
            .and_then(|o| copy_after(&head.head, &mut f, rest, o))
            .map_err(|e| format!("cannot write {}: {e}", p.display())),
        None => copy_after(&head.head, &mut f, rest, std::io::stdout().lock())
            .map_err(|e| format!("cannot write stdout: {e}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `head`, then exactly `n` bytes of `rest`.
fn copy_after(
    head: &[u8],
    rest: &mut std::fs::File,
    n: u64,
    out: impl Write,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    out.write_all(head)?;
    if std::io::copy(&mut rest.take(n), &mut out)? != n {
        return Err(std::io::Error::other("the input file became shorter"));
    }
    out.flush()
}

/// Message content (canonical bytes) goes out through `redact`: explain
/// output is pasted into tickets.
fn print_explanation(ex: &verify::Explanation, redact: &sealgate::redact::Redactor) {
    if ex.diagnostic {
        println!("DIAGNOSTICS: the message was refused before its References were checked.");
        println!("The digests below were computed afterwards, without checking the signer,");
        println!(
            "its trust or the Timestamp: they show what each Reference covers, not a verdict."
        );
    }
    let mark = if ex.diagnostic { " (diagnostic)" } else { "" };
    for (i, r) in ex.references.iter().enumerate() {
        let place = match (&r.part, &r.computed) {
            (Some(p), _) => format!("{p:?}"),
            (None, None) => "(no element with this Id in the message)".into(),
            (None, Some(_)) => "(not at an allowed place)".into(),
        };
        println!(
            "Reference {} URI={} part={place} digest={}{mark}",
            i + 1,
            r.uri,
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
            print_masked(c, redact);
        }
    }
    if let Some(si) = &ex.signed_info_canonical {
        println!("canonical SignedInfo ({} bytes){mark}:", si.len());
        print_masked(si, redact);
    }
}

fn print_masked(bytes: &[u8], redact: &sealgate::redact::Redactor) {
    let shown = redact.bytes(bytes);
    println!("{}", String::from_utf8_lossy(&shown));
    if matches!(shown, std::borrow::Cow::Owned(_)) {
        println!("  ([redacted] stands for values the digest covered but this output masks)");
    }
}
