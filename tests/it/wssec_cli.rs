//! `sealgate wssec verify | sign` as an interop engineer runs them: the
//! policy flags mean what the route options mean (the CLI compiles the same
//! stage), the other stacks' vectors get their verdicts, `--explain` shows
//! each Reference even for a message refused before its References, and the
//! signer's flags (key forms, parts, key references, UsernameToken) produce
//! messages the verifier accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::process::BIN;
use crate::support::Pki;
use sealgate::fingerprint::Fingerprint;
use sealgate::pki::{KeyAlg, Leaf, Usage};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(["wssec"])
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "{}{}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    fn refused(self, reason: &str) -> Run {
        assert_eq!(self.code, Some(1), "{}{}", self.stdout, self.stderr);
        let said = [
            format!("refused: {reason} ("),
            format!("cannot sign: {reason} :"),
        ];
        assert!(
            said.iter().any(|s| self.stderr.contains(s)),
            "want {reason}: {}",
            self.stderr
        );
        self
    }
    #[track_caller]
    fn usage(self, says: &str) -> Run {
        assert_eq!(self.code, Some(2), "{}{}", self.stdout, self.stderr);
        assert!(self.stderr.contains(says), "want {says:?}: {}", self.stderr);
        self
    }
}

fn vector(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/wss-interop")
        .join(name);
    p.to_string_lossy().into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_wcf_response_needs_each_allowance_it_uses() {
    let pin = vector("signxml/server_public.pem");
    let msg = vector("signxml/valid-wss-resp.xml");
    let at = "2012-05-25T11:37:40Z";
    let base = ["verify", "--pin", &pin, "--at", at];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a.push(&msg);
        cli(&a)
    };
    let v = with(&["--allow-sha1", "--allow-legacy-keys"]).ok();
    assert!(v.stderr.contains("CN=WSE2QuickStartServer"), "{}", v.stderr);
    with(&["--allow-legacy-keys"]).refused("wssec_sha1_not_allowed");
    with(&["--allow-sha1"]).refused("wssec_weak_key");
    // A pin is trust enough; without one, --trust is needed.
    cli(&["verify", &msg]).usage("--trust");
    // Pinned by fingerprint, as a route's fingerprint_sha256: enough for a
    // message that carries its certificate (WSE 2.0's BinarySecurityToken),
    // not for one that only names it by issuer and serial (WCF's).
    let fp = |pem: &str| {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::pem_file_iter(pem)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        Fingerprint::of(&der).to_string()
    };
    let legacy = ["--allow-sha1", "--allow-legacy-keys"];
    let wse = vector("xml-crypto/wse2-stockquote-request.xml");
    let client = fp(&vector("xml-crypto/client_public.pem"));
    let wsa: Vec<String> = ["Action", "MessageID", "ReplyTo", "To"]
        .iter()
        .map(|l| format!("{{http://schemas.xmlsoap.org/ws/2004/03/addressing}}{l}"))
        .collect();
    let mut a = vec!["verify", "--pin", &client, "--at", "2008-09-01T17:44:30Z"];
    a.extend(legacy);
    for h in &wsa {
        a.extend(["--signable", h.as_str()]);
    }
    a.push(&wse);
    cli(&a).ok();
    let server = fp(&pin);
    let mut a = vec!["verify", "--pin", &server, "--at", at];
    a.extend(legacy);
    a.push(&msg);
    cli(&a).refused("wssec_token_unavailable");
    cli(&["verify", "--pin", "AB:CD", &msg]).usage("--pin");
}

/// `verify --explain` (with `extra` flags) of the WCF response whose Body
/// was changed after signing, judged at `at`.
fn explain_changed_wcf(at: &str, extra: &[&str]) -> Run {
    let pin = vector("signxml/server_public.pem");
    let msg = vector("signxml/invalid-wss-resp---changed-content.xml");
    let mut a = vec![
        "verify",
        "--pin",
        &pin,
        "--allow-sha1",
        "--allow-legacy-keys",
        "--at",
        at,
        "--explain",
    ];
    a.extend_from_slice(extra);
    a.push(&msg);
    cli(&a)
}

#[test]
fn the_tampered_wcf_response_is_refused_for_its_body_digest_and_explained() {
    let run = |at: &str| explain_changed_wcf(at, &[]);
    let r = run("2012-05-21T19:20:10Z").refused("wssec_digest_mismatch");
    assert!(!r.stdout.contains("DIAGNOSTICS"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "Reference 1 URI=#_1 part=Body digest=http://www.w3.org/2000/09/xmldsig#sha1\n"
        ),
        "{}",
        r.stdout
    );
    let body = r.stdout.split("Reference 2").next().unwrap();
    assert!(body.contains("MISMATCH"), "{}", r.stdout);
    assert!(
        body.contains("You entered: 1234"),
        "canonical bytes: {body}"
    );
    let ts = r.stdout.split("Reference 2").nth(1).unwrap();
    assert!(
        ts.contains("part=Timestamp") && ts.contains(" MATCH"),
        "{ts}"
    );

    // Judged years later, the Timestamp refuses it before any Reference is
    // digested; --explain still shows them, marked as diagnostics.
    let late = run("2030-01-01T00:00:00Z").refused("wssec_message_expired");
    assert!(late.stdout.starts_with("DIAGNOSTICS:"), "{}", late.stdout);
    assert!(
        late.stdout
            .contains("Reference 1 URI=#_1 part=Body digest=http://www.w3.org/2000/09/xmldsig#sha1 (diagnostic)"),
        "{}",
        late.stdout
    );
    assert!(late.stdout.contains("MISMATCH"), "{}", late.stdout);

    // An untrusted signer: the same diagnosis.
    let pki = Pki::new();
    let ca = pki.path("ca.crt");
    let r = cli(&[
        "verify",
        "--trust",
        s(&ca),
        "--allow-sha1",
        "--allow-legacy-keys",
        "--at",
        "2012-05-21T19:20:10Z",
        "--explain",
        &vector("signxml/invalid-wss-resp---changed-content.xml"),
    ])
    .refused("wssec_token_unavailable");
    assert!(r.stdout.starts_with("DIAGNOSTICS:"), "{}", r.stdout);
    assert!(r.stdout.contains("part=Body"), "{}", r.stdout);
}

#[test]
fn explain_masks_what_redact_names() {
    let msg = vector("signxml/invalid-wss-resp---changed-content.xml");
    let run = |extra: &[&str]| {
        explain_changed_wcf("2012-05-21T19:20:10Z", extra).refused("wssec_digest_mismatch")
    };
    let r = run(&["--redact", "GetDataResult"]);
    assert!(!r.stdout.contains("1234"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("<GetDataResult>[redacted]</GetDataResult>"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("([redacted] stands for"), "{}", r.stdout);
    // The computed digest is of the real bytes, not the masked ones.
    let plain = run(&[]);
    let computed = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("  computed:"))
            .map(str::to_owned)
    };
    assert_eq!(computed(&r.stdout), computed(&plain.stdout));
    let kept = run(&["--redact", "GetDataResult", "--keep-last", "4"]);
    assert!(
        kept.stdout
            .contains("<GetDataResult>[redacted]1234</GetDataResult>"),
        "{}",
        kept.stdout
    );
    cli(&["verify", "--redact", "a b", &msg]).usage("--redact");
}

#[test]
fn a_missing_reference_is_shown_as_such() {
    let sg = signer();
    let out = sg.pki.path("out.xml");
    cli(&[
        "sign",
        "--key",
        s(&sg.key),
        "--cert",
        s(&sg.cert),
        s(&sg.msg),
        "-o",
        s(&out),
    ])
    .ok();
    let signed = std::fs::read_to_string(&out).unwrap();
    let id = crate::support::wssec::signer_id(&signed, "Body");
    let moved = sg.pki.write(
        "moved.xml",
        &signed.replace(&format!("wsu:Id=\"{id}\""), "wsu:Id=\"Body-moved\""),
    );
    let r = cli(&["verify", "--trust", s(&sg.ca), "--explain", s(&moved)])
        .refused("wssec_reference_not_found");
    assert!(r.stdout.starts_with("DIAGNOSTICS:"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            &format!("Reference 1 URI=#{id} part=(no element with this Id in the message) digest=http://www.w3.org/2001/04/xmlenc#sha256 (diagnostic)")
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("part=Timestamp"), "{}", r.stdout);
    assert!(
        r.stdout.contains("  computed: (not computed)  MISMATCH"),
        "{}",
        r.stdout
    );
}

#[test]
fn route_policy_flags_for_the_other_stacks() {
    // e-Kasa: Body only, no Timestamp, an embedded certificate chained to its CA.
    let msg = vector("signxml/soap-request.xml");
    let ca = vector("signxml/soap-ca.pem");
    let at = "2020-01-01T00:00:00Z";
    cli(&["verify", "--trust", &ca, "--at", at, &msg]).refused("wssec_no_timestamp");
    let v = cli(&["verify", "--trust", &ca, "--no-timestamp", "--at", at, &msg]).ok();
    assert!(v.stderr.contains("signed Body\n"), "{}", v.stderr);

    // SoapUI/WSS4J: a 12 h Timestamp and four signed WS-Addressing headers.
    let pin = vector("xml-crypto/client_public.pem");
    let msg = vector("xml-crypto/valid_signature_with_unused_prefixes.xml");
    let at = "2019-03-18T16:28:00Z";
    let wsa = |l: &str| format!("{{http://www.w3.org/2005/08/addressing}}{l}");
    let (a, f, m, t) = (wsa("Action"), wsa("From"), wsa("MessageID"), wsa("To"));
    let mut args = vec![
        "verify",
        "--pin",
        &pin,
        "--allow-sha1",
        "--allow-legacy-keys",
        "--at",
        at,
    ];
    for h in [&a, &f, &m, &t] {
        args.extend(["--signable", h.as_str()]);
    }
    let mut short = args.clone();
    short.push(&msg);
    cli(&short).refused("wssec_ttl_too_long");
    args.extend(["--max-ttl", "12h", &msg]);
    cli(&args).ok();
    cli(&["verify", "--pin", &pin, "--signable", "To", &msg]).usage("--signable");
}

struct Signer {
    pki: Pki,
    key: PathBuf,
    cert: PathBuf,
    ca: PathBuf,
    msg: PathBuf,
}

fn signer() -> Signer {
    let pki = Pki::new();
    let mut leaf = Leaf::new("cli-signer", Usage::Signer);
    leaf.alg = KeyAlg::Rsa2048;
    let issued = pki.issue(&leaf);
    let key = pki.write("signer.key", &issued.key_pem);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cert = pki.write("signer.crt", &issued.cert_pem);
    let ca = pki.path("ca.crt");
    let msg = pki.write(
        "m.xml",
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><r:Route xmlns:r="urn:route">ledger</r:Route></soap:Header><soap:Body><x:Pay xmlns:x="urn:x">10</x:Pay></soap:Body></soap:Envelope>"#,
    );
    Signer {
        pki,
        key,
        cert,
        ca,
        msg,
    }
}

#[test]
fn sign_flags_produce_what_the_verifier_requires() {
    let sg = signer();
    let out = sg.pki.path("out.xml");
    let (k, c, ca, m, o) = (s(&sg.key), s(&sg.cert), s(&sg.ca), s(&sg.msg), s(&out));
    let route = "{urn:route}Route";
    let parts = format!("Body,Timestamp,{route}");
    for key_ref in ["bst", "issuer-serial", "ski", "thumbprint"] {
        cli(&[
            "sign",
            "--key",
            k,
            "--cert",
            c,
            "--key-ref",
            key_ref,
            "--parts",
            &parts,
            "--ttl",
            "2m",
            m,
            "-o",
            o,
        ])
        .ok();
        let signed = std::fs::read_to_string(&out).unwrap();
        // Key references other than the BST name a certificate the verifier holds.
        let mut v = vec!["verify", "--trust", ca, "--require"];
        let require = format!("Body,Timestamp,{route}");
        v.push(&require);
        if key_ref != "bst" {
            v.extend(["--signers", c]);
            assert!(!signed.contains("BinarySecurityToken"), "{key_ref}");
        }
        v.push(o);
        cli(&v).ok();
        // A header the verifier requires but the signer left out is refused.
        if key_ref == "bst" {
            cli(&["sign", "--key", k, "--cert", c, m, "-o", o]).ok();
            cli(&["verify", "--trust", ca, "--require", &require, o])
                .refused("wssec_header_not_signed");
        }
    }

    // Body alone: no Timestamp is written; the verifier must be told so.
    cli(&[
        "sign", "--key", k, "--cert", c, "--parts", "Body", m, "-o", o,
    ])
    .ok();
    assert!(!std::fs::read_to_string(&out).unwrap().contains("Timestamp"));
    cli(&["verify", "--trust", ca, o]).refused("wssec_no_timestamp");
    cli(&["verify", "--trust", ca, "--no-timestamp", o]).ok();
    cli(&["sign", "--key", k, "--cert", c, "--parts", "Timestamp", m])
        .usage("Body is always signed");
    cli(&[
        "sign", "--key", k, "--cert", c, "--parts", "Body", "--ttl", "1m", m,
    ])
    .usage("--ttl");
    cli(&[
        "sign",
        "--key",
        k,
        "--cert",
        c,
        "--parts",
        "Body,{urn:route}Missing",
        m,
    ])
    .refused("wssec_missing_header_block");

    // A message that is signed already is refused unless replaced.
    cli(&["sign", "--key", k, "--cert", c, m, "-o", o]).ok();
    let again = sg.pki.path("again.xml");
    cli(&["sign", "--key", k, "--cert", c, o]).refused("wssec_already_secured");
    cli(&[
        "sign",
        "--key",
        k,
        "--cert",
        c,
        "--replace-security",
        o,
        "-o",
        s(&again),
    ])
    .ok();
    let twice = std::fs::read_to_string(&again).unwrap();
    assert_eq!(twice.matches("<wsse:Security ").count(), 1, "{twice}");
    cli(&["verify", "--trust", ca, s(&again)]).ok();
}

#[test]
fn sign_reads_every_key_form_and_explains_bad_ones() {
    let sg = signer();
    let (c, ca, m) = (s(&sg.cert), s(&sg.ca), s(&sg.msg));
    // openssl's traditional form: PKCS#1 for RSA.
    let out = Command::new("openssl")
        .args(["pkey", "-traditional", "-in", s(&sg.key)])
        .output()
        .expect("openssl");
    assert!(out.status.success());
    let pkcs1 = String::from_utf8(out.stdout).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"), "{pkcs1}");
    let k1 = sg.pki.write("pkcs1.key", &pkcs1);
    let signed = sg.pki.path("pkcs1.xml");
    let r = cli(&["sign", "--key", s(&k1), "--cert", c, m, "-o", s(&signed)]).ok();
    // Written with the default mode (0644): said, not refused.
    assert!(
        r.stderr.contains("warning: --key:") && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    cli(&["verify", "--trust", ca, s(&signed)]).ok();

    let other = sg.pki.issue(&Leaf::new("someone-else", Usage::Signer));
    let other_key = sg.pki.write("other.key", &other.key_pem);
    cli(&["sign", "--key", s(&other_key), "--cert", c, m]).usage("--key");
    let enc = sg
        .pki
        .issue(&Leaf::new("encryption", Usage::EncryptionOnly));
    let enc_key = sg.pki.write("enc.key", &enc.key_pem);
    let enc_cert = sg.pki.write("enc.crt", &enc.cert_pem);
    cli(&["sign", "--key", s(&enc_key), "--cert", s(&enc_cert), m]).usage("digitalSignature");
    let junk = sg.pki.write("junk.key", "not a key\n");
    cli(&["sign", "--key", s(&junk), "--cert", c, m]).usage("--key");
    cli(&["sign", "--key", s(&sg.key), m]).usage("--cert");
    cli(&[
        "sign",
        "--key",
        s(&sg.key),
        "--cert",
        c,
        "--ttl",
        "500000000000years",
        m,
    ])
    .usage("--ttl");
    cli(&["sign", "--key", s(&sg.key), "--cert", c, "--ttl", "25h", m]).usage("--ttl");
    cli(&["sign", "--key", "/no/such.key", "--cert", c, m]).usage("/no/such.key");
}

#[test]
fn sign_adds_a_username_token_alone_or_beside_the_signature() {
    let sg = signer();
    let (k, c, ca, m) = (s(&sg.key), s(&sg.cert), s(&sg.ca), s(&sg.msg));
    let pw = sg.pki.write("pw", "s3cret-of-the-etl\n");
    let out = sg.pki.path("ut.xml");
    cli(&[
        "sign",
        "--username",
        "etl",
        "--password-file",
        s(&pw),
        m,
        "-o",
        s(&out),
    ])
    .ok();
    let ut = std::fs::read_to_string(&out).unwrap();
    assert!(ut.contains("<wsse:Username>etl</wsse:Username>"), "{ut}");
    assert!(
        ut.contains("#PasswordText\">s3cret-of-the-etl</wsse:Password>"),
        "{ut}"
    );
    assert!(!ut.contains("Signature"), "{ut}");

    cli(&[
        "sign",
        "--key",
        k,
        "--cert",
        c,
        "--username",
        "etl",
        "--password-file",
        s(&pw),
        "--digest",
        m,
        "-o",
        s(&out),
    ])
    .ok();
    let both = std::fs::read_to_string(&out).unwrap();
    assert!(
        both.contains("#PasswordDigest\">") && both.contains("<wsse:Nonce"),
        "{both}"
    );
    assert!(!both.contains("s3cret"), "{both}");
    cli(&["verify", "--trust", ca, s(&out)]).ok();

    cli(&["sign", "--username", "etl", m]).usage("--password-file");
    cli(&["sign", "--password-file", s(&pw), m]).usage("--username");
    let r = Command::new(BIN)
        .args([
            "wssec",
            "sign",
            "--username",
            "etl",
            "--password-env",
            "SEALGATE_NO_SUCH_VAR",
            m,
        ])
        .env_remove("SEALGATE_NO_SUCH_VAR")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("SEALGATE_NO_SUCH_VAR"));
}

#[test]
fn a_file_too_large_to_hold_is_signed_as_it_streams() {
    let sg = signer();
    let (k, c, ca) = (s(&sg.key), s(&sg.cert), s(&sg.ca));
    // Past the 16 MiB the CLI reads whole.
    let lines = "<x:line>ACME-42 ledger line &amp; more</x:line>\n".repeat(450_000);
    let big = sg.pki.write(
        "big.xml",
        &format!(r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><r:Route xmlns:r="urn:route">ledger</r:Route></soap:Header><soap:Body><x:Pay xmlns:x="urn:x">{lines}</x:Pay></soap:Body></soap:Envelope>"#),
    );
    assert!(std::fs::metadata(&big).unwrap().len() > 16 << 20);
    let out = sg.pki.path("big.signed.xml");
    let parts = "Body,Timestamp,{urn:route}Route";
    cli(&[
        "sign",
        "--key",
        k,
        "--cert",
        c,
        "--parts",
        parts,
        s(&big),
        "-o",
        s(&out),
    ])
    .ok();
    let signed = std::fs::read_to_string(&out).unwrap();
    assert!(signed.ends_with(&format!("{lines}</x:Pay></soap:Body></soap:Envelope>")));
    cli(&["verify", "--trust", ca, "--require", parts, s(&out)]).ok();
    // Changed in its last line: refused.
    let at = signed.rfind("ACME-42").unwrap() + 5;
    let mut bad = signed.into_bytes();
    bad[at] = b'3';
    let tampered = sg
        .pki
        .write("big.tampered.xml", std::str::from_utf8(&bad).unwrap());
    cli(&["verify", "--trust", ca, "--require", parts, s(&tampered)])
        .refused("wssec_digest_mismatch");
    // Written over its own input it would be read after being cut short.
    cli(&["sign", "--key", k, "--cert", c, s(&big), "-o", s(&big)]).usage("must not be the input");
    // Broken at its end: nothing is written.
    let broken = sg.pki.write(
        "big.broken.xml",
        &std::fs::read_to_string(&big)
            .unwrap()
            .replace("</soap:Envelope>", "</soap:Envelop>"),
    );
    let none = sg.pki.path("none.xml");
    let r = cli(&["sign", "--key", k, "--cert", c, s(&broken), "-o", s(&none)]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!none.exists(), "a refused message left an output file");
}
