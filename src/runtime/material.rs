//! Loading every file a config names — certificate chains and keys, trust
//! anchors, CRLs, allowlists, secrets — once per snapshot, each problem
//! recorded with its TOML path and the fix. `check`, `run` and the snapshot
//! builder all go through this one loader, so a certificate error maps to the
//! same TOML key everywhere.

use crate::admission::ip::{self, Allowlist, IpSet, JsonFilter};
use crate::config::{Config, IpFileConfig, Problem};
use crate::tls::certs::{self, CertSummary};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads material for one snapshot and collects what went wrong.
pub struct Loader<'c> {
    pub config: &'c Config,
    /// Every certificate held or trusted, for `check` and the expiry gauge.
    pub certs: Vec<CertSummary>,
    pub problems: Vec<Problem>,
    /// Not wrong enough to refuse the config, but worth an operator's look.
    pub warnings: Vec<Problem>,
}

impl<'c> Loader<'c> {
    pub fn new(config: &'c Config) -> Loader<'c> {
        Loader {
            config,
            certs: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.config.resolve(p)
    }

    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }

    /// A private key file others than its owner can read is a warning: the
    /// gateway still starts, as nginx does, but says so.
    fn key_permissions(&mut self, at: &str, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o044 != 0 {
                self.warn(
                    at,
                    format!(
                        "{} is readable by {} (mode {mode:04o}); make it readable by its owner only: chmod 600 {}",
                        path.display(),
                        if mode & 0o004 != 0 { "everyone" } else { "its group" },
                        path.display()
                    ),
                );
            }
        }
    }

    /// A WS-Security signing key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn signing_key(&mut self, at: &str, path: &Path) -> Option<crate::wssec::sign::SigningKey> {
        let p = self.resolve(path);
        let pem = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) => {
                self.problem(at, format!("cannot read {}: {e}", p.display()));
                return None;
            }
        };
        self.key_permissions(at, &p);
        match crate::wssec::sign::SigningKey::from_pem(&pem) {
            Ok(k) => Some(k),
            Err(e) => {
                self.problem(at, format!("{}: {e}", p.display()));
                None
            }
        }
    }

    /// A certificate chain and its key (`{at}.{cert_key}`, `{at}.{key_key}`):
    /// every certificate within its validity, the key the chain's own.
    pub fn identity(
        &mut self,
        at: &str,
        (cert_key, cert): (&str, &Path),
        (key_key, key): (&str, &Path),
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let (cert_path, key_path) = (self.resolve(cert), self.resolve(key));
        let role = format!("{at}.{cert_key}");
        self.key_permissions(&format!("{at}.{key_key}"), &key_path);
        match certs::load_identity(&role, &cert_path, &key_path) {
            Ok((certified, mut summaries)) => {
                self.certs.append(&mut summaries);
                Some(Arc::new(certified))
            }
            Err(e) => {
                let key = if e.concerns_key(&key_path) {
                    key_key
                } else {
                    cert_key
                };
                self.problem(format!("{at}.{key}"), e.to_string());
                None
            }
        }
    }

    /// Certificates from a PEM file, each one within its validity.
    fn valid_certs(&mut self, at: &str, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
        let p = self.resolve(path);
        let all = match certs::load_certs(&p) {
            Ok(c) => c,
            Err(e) => {
                self.problem(at, e.to_string());
                return None;
            }
        };
        let mut ok = true;
        for der in &all {
            match certs::check_validity(at, &p, der) {
                Ok(s) => self.certs.push(s),
                Err(e) => {
                    ok = false;
                    self.problem(at, e.to_string());
                }
            }
        }
        ok.then_some(all)
    }

    /// Trust anchors from a PEM bundle, as a rustls root store.
    pub fn roots(&mut self, at: &str, path: &Path) -> Option<rustls::RootCertStore> {
        let anchors = self.valid_certs(at, path)?;
        let mut roots = rustls::RootCertStore::empty();
        for (i, der) in anchors.into_iter().enumerate() {
            if let Err(e) = roots.add(der) {
                let shown = self.resolve(path);
                self.problem(
                    at,
                    format!(
                        "certificate #{} in {} is not a usable trust anchor: {e}",
                        i + 1,
                        shown.display()
                    ),
                );
                return None;
            }
        }
        Some(roots)
    }

    /// Trust anchors from a PEM bundle, as DER (for webpki-based checks).
    pub fn anchors(&mut self, at: &str, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
        self.valid_certs(at, path)
    }

    /// Certificates that are not anchors (intermediates, pinned signers).
    pub fn certificates(&mut self, at: &str, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
        self.valid_certs(at, path)
    }

    /// The operating system's roots (the `ca = "system"` of an upstream).
    pub fn system_roots(&mut self, at: &str) -> Option<rustls::RootCertStore> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            self.problem(
                at,
                "no system CA certificates found (install the ca-certificates package) — or set ca = \"path/to/upstream-ca.crt\"",
            );
            return None;
        }
        Some(roots)
    }

    /// CRLs from each listed PEM file (`{at}[i]` names a file that fails).
    pub fn crls(
        &mut self,
        at: &str,
        files: &[PathBuf],
    ) -> Option<Vec<CertificateRevocationListDer<'static>>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, f) in files.iter().enumerate() {
            match certs::load_crls(&self.resolve(f)) {
                Ok(mut c) => out.append(&mut c),
                Err(e) => {
                    ok = false;
                    self.problem(format!("{at}[{i}]"), e.to_string());
                }
            }
        }
        ok.then_some(out)
    }

    /// CIDRs written in the config (`{at}[i]` names a bad one).
    pub fn nets(&mut self, at: &str, list: &[String]) -> Option<Vec<ipnet::IpNet>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            match ip::parse_net(s) {
                Ok(n) => out.push(n),
                Err(e) => {
                    ok = false;
                    self.problem(format!("{at}[{i}]"), e.to_string());
                }
            }
        }
        ok.then_some(out)
    }

    /// An allowlist from inline CIDRs and CIDR files (`{at}.allow_ips`,
    /// `{at}.allow_ips_files[i]`); open when neither is set.
    pub fn allowlist(
        &mut self,
        at: &str,
        inline: &[String],
        files: &[IpFileConfig],
    ) -> Option<Allowlist> {
        if inline.is_empty() && files.is_empty() {
            return Some(Allowlist::open());
        }
        let mut nets = self.nets(&format!("{at}.allow_ips"), inline);
        for (i, f) in files.iter().enumerate() {
            let filter = match f {
                IpFileConfig::Path(_) => JsonFilter::default(),
                IpFileConfig::Filtered(x) => JsonFilter {
                    direction: x.direction.clone(),
                    regions: x.regions.clone(),
                },
            };
            match ip::load_file(&self.resolve(f.path()), &filter) {
                Ok(mut more) => {
                    if let Some(n) = nets.as_mut() {
                        n.append(&mut more);
                    }
                }
                Err(e) => {
                    nets = None;
                    self.problem(format!("{at}.allow_ips_files[{i}]"), e.to_string());
                }
            }
        }
        let nets = nets?;
        if nets.is_empty() {
            self.problem(
                format!("{at}.allow_ips"),
                "the allowlist is configured but holds no address, so it would refuse everyone; add CIDRs or remove the keys",
            );
            return None;
        }
        Some(Allowlist::only(IpSet::from_nets(&nets)))
    }

    /// A secret from an environment variable or a file (trailing newline
    /// dropped), never from the config itself. `what` names it in messages.
    pub fn secret(
        &mut self,
        at: &str,
        what: &str,
        env: Option<&str>,
        file: Option<&Path>,
    ) -> Option<Vec<u8>> {
        match (env, file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(v.into_bytes()),
                _ => {
                    self.problem(
                        at,
                        format!("environment variable {var} ({what}) is not set or empty"),
                    );
                    None
                }
            },
            (None, Some(f)) => {
                let p = self.resolve(f);
                match std::fs::read(&p) {
                    Ok(mut bytes) => {
                        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            bytes.pop();
                        }
                        if bytes.is_empty() {
                            self.problem(at, format!("{} ({what}) is empty", p.display()));
                            return None;
                        }
                        Some(bytes)
                    }
                    Err(e) => {
                        self.problem(at, format!("cannot read {} ({what}): {e}", p.display()));
                        None
                    }
                }
            }
            _ => {
                self.problem(
                    at,
                    format!("{what} needs exactly one of password_env or password_file"),
                );
                None
            }
        }
    }

    /// Problems in first-seen order, each once.
    pub fn into_problems(self) -> Vec<Problem> {
        let mut seen = std::collections::HashSet::new();
        self.problems
            .into_iter()
            .filter(|p| seen.insert((p.path.clone(), p.message.clone())))
            .collect()
    }
}
