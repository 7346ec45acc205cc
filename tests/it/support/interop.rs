//! The real WS-Security peers tests drive: python-zeep with libxmlsec1 and
//! Apache WSS4J (Debian libwss4j-java on Java 17), see tests/interop/README.md.
//! Each is found once per run; without it a test skips with a printed
//! reason, except under CI, which installs them and must not pass by skipping.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const PYTHON: &str = "/usr/bin/python3";
const JAVA_LIBS: &str = "/usr/share/java";
/// What the WSS4J verifier needs on its class path.
const WSS4J_JARS: [&str; 6] = [
    "wss4j.jar",
    "xmlsec.jar",
    "commons-logging.jar",
    "commons-codec.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// `Some(())` when the peer is usable; prints why not (or panics under CI).
fn available(peer: &str, ready: &Result<(), String>) -> Option<()> {
    match ready {
        Ok(()) => Some(()),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("interop peer {peer} missing in CI: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {peer} interop: {why}");
            None
        }
    }
}

/// python-zeep and python-xmlsec for the system interpreter.
pub fn python() -> Option<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let out = Command::new(PYTHON)
            .args(["-c", "import xmlsec, zeep.wsse.signature"])
            .output()
            .map_err(|e| format!("{PYTHON} not runnable: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "python3-xmlsec/python3-zeep missing: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    });
    available("python-zeep", ready)
}

/// A verdict of a peer on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: bool,
    /// The rest of the peer's line: what it signed, or why it refused.
    pub detail: String,
}

/// Parses `ACCEPTED FILE detail` / `REJECTED FILE: detail` lines, one per file.
fn verdicts(files: &[PathBuf], stdout: &str, stderr: &str) -> Vec<Verdict> {
    files
        .iter()
        .map(|f| {
            let name = f.display().to_string();
            let line = stdout
                .lines()
                .find(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|n| n.trim_end_matches(':') == name)
                })
                .unwrap_or_else(|| panic!("no verdict for {name}:\n{stdout}\n{stderr}"));
            Verdict {
                accepted: line.starts_with("ACCEPTED "),
                detail: line.split_once(&name).map(|x| x.1).unwrap_or("").into(),
            }
        })
        .collect()
}

/// libxmlsec1 through `zeep.wsse.signature.verify_envelope`, one process for
/// every (certificate, message) pair.
pub fn xmlsec_verify(pairs: &[(PathBuf, PathBuf)]) -> Vec<Verdict> {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script("xmlsec_verify.py"));
    for (cert, file) in pairs {
        cmd.arg(cert).arg(file);
    }
    let out = cmd.output().unwrap();
    let files: Vec<PathBuf> = pairs.iter().map(|p| p.1.clone()).collect();
    verdicts(
        &files,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

/// The WSS4J verifier compiled once per run; its class path.
pub fn wss4j() -> Option<&'static str> {
    static READY: OnceLock<Result<String, String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let jars: Vec<String> = WSS4J_JARS
            .iter()
            .map(|j| format!("{JAVA_LIBS}/{j}"))
            .collect();
        if let Some(missing) = jars.iter().find(|j| !Path::new(j).exists()) {
            return Err(format!("{missing} missing (Debian libwss4j-java)"));
        }
        let dir = std::env::temp_dir().join(format!("sealgate-wss4j-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let cp = jars.join(":");
        let out = Command::new("javac")
            .args(["-nowarn", "-cp", &cp, "-d"])
            .arg(&dir)
            .arg(script("Wss4jVerify.java"))
            .output()
            .map_err(|e| format!("javac not runnable (openjdk-17-jdk-headless): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "javac failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(format!("{}:{cp}", dir.display()))
    });
    available("WSS4J", &ready.as_ref().map(|_| ()).map_err(Clone::clone))?;
    ready.as_ref().ok().map(String::as_str)
}

/// WSS4J's `processSecurityHeader` on each file: `ca` in its truststore,
/// `signers` (a PEM file of one or more certificates) in its keystore.
pub fn wss4j_verify(ca: &Path, signers: &Path, files: &[PathBuf]) -> Option<Vec<Verdict>> {
    let cp = wss4j()?;
    let out = Command::new("java")
        .args(["-cp", cp, "Wss4jVerify"])
        .arg(ca)
        .arg(signers)
        .args(files)
        .output()
        .unwrap();
    Some(verdicts(
        files,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    ))
}
