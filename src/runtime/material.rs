//! Loading every file a config names — certificate chains and keys, trust
//! anchors, CRLs, allowlists, secrets — once per snapshot, each problem
//! recorded with its TOML path and the fix. `check`, `run` and the snapshot
//! builder all go through this one loader, so a certificate error maps to the
//! same TOML key everywhere.

use crate::admission::ip::{self, Allowlist, IpSet, JsonFilter};
use crate::config::{Config, CrlSource, IpFileConfig, Problem};
use crate::tls::certs::{self, CertSummary, Role};
use crate::tls::crl::{CrlSummary, Freshness};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// CRLs loaded for one listener or stage, with what their freshness is judged by.
pub struct Crls {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    pub freshness: Freshness,
}

/// A CRL distribution point a snapshot uses: fetched in the background,
/// each copy verified against `issuers` before it is used.
#[derive(Debug, Clone)]
pub struct CrlUrlUse {
    pub url: String,
    pub refresh: std::time::Duration,
    pub timeout: std::time::Duration,
    pub issuers: Vec<CertificateDer<'static>>,
}

/// Why a certificate is loaded, and for which listener, route or upstream:
/// the `role` and `name` of its expiry gauge.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a>(pub Role, pub &'a str);

/// Loads material for one snapshot and collects what went wrong.
pub struct Loader<'c> {
    pub config: &'c Config,
    pub metrics: &'c crate::telemetry::metrics::Metrics,
    /// What outlives snapshots; compiling takes from it, never removes.
    pub state: &'c super::state::State,
    pub taken: super::state::Taken,
    /// Every certificate held or trusted, for `check` and the expiry gauge.
    pub certs: Vec<CertSummary>,
    /// Every CRL held, for `check` and the nextUpdate gauge.
    pub crls_held: Vec<CrlSummary>,
    pub crl_urls: Vec<CrlUrlUse>,
    /// The CRL copies downloaded that this snapshot uses (for its hash).
    pub downloaded: Vec<(String, Vec<u8>)>,
    /// Private key files others can read: TOML key, path, mode.
    pub readable_keys: Vec<(String, PathBuf, u32)>,
    pub problems: Vec<Problem>,
    /// Not wrong enough to refuse the config, but worth an operator's look.
    pub warnings: Vec<Problem>,
    /// Every file read, for the file watch and the config hash.
    /// Every file resolved, with the SHA-256 of its bytes when first
    /// resolved — before it is read to be used, so an edit racing the load
    /// makes the next reload differ instead of being lost.
    files: std::cell::RefCell<Vec<(PathBuf, Vec<u8>)>>,
}

impl<'c> Loader<'c> {
    pub fn new(
        config: &'c Config,
        state: &'c super::state::State,
        metrics: &'c crate::telemetry::metrics::Metrics,
    ) -> Loader<'c> {
        Loader {
            config,
            metrics,
            state,
            taken: Default::default(),
            files: Default::default(),
            crls_held: Vec::new(),
            crl_urls: Vec::new(),
            downloaded: Vec::new(),
            readable_keys: Vec::new(),
            certs: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The path of a file the config names; every file resolved is one the
    /// snapshot depends on.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let p = self.config.resolve(p);
        let mut files = self.files.borrow_mut();
        if !files.iter().any(|(f, _)| *f == p) {
            let digest = std::fs::read(&p).map(|b| sha256(&b)).unwrap_or_default();
            files.push((p.clone(), digest));
        }
        p
    }

    /// The files resolved so far, sorted, with their digests.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut f = self.files.borrow().clone();
        f.sort();
        f
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
                self.readable_keys
                    .push((at.to_owned(), path.to_path_buf(), mode));
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
        held: Held<'_>,
        at: &str,
        (cert_key, cert): (&str, &Path),
        (key_key, key): (&str, &Path),
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let (cert_path, key_path) = (self.resolve(cert), self.resolve(key));
        let role = format!("{at}.{cert_key}");
        self.key_permissions(&format!("{at}.{key_key}"), &key_path);
        match certs::load_identity(&role, &cert_path, &key_path) {
            Ok((certified, summaries)) => {
                self.hold(held, summaries);
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

    fn hold(&mut self, held: Held<'_>, summaries: Vec<CertSummary>) {
        self.certs.extend(summaries.into_iter().map(|mut s| {
            (s.held, s.name) = (held.0, held.1.to_owned());
            s
        }));
    }

    /// Certificates from a PEM file, each one within its validity, as DER:
    /// trust anchors, intermediates, pinned certificates alike.
    pub fn certificates(
        &mut self,
        held: Held<'_>,
        at: &str,
        path: &Path,
    ) -> Option<Vec<CertificateDer<'static>>> {
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
                Ok(s) => self.hold(held, vec![s]),
                Err(e) => {
                    ok = false;
                    self.problem(at, e.to_string());
                }
            }
        }
        ok.then_some(all)
    }

    /// Trust anchors from a PEM bundle, as a rustls root store.
    pub fn roots(
        &mut self,
        held: Held<'_>,
        at: &str,
        path: &Path,
    ) -> Option<rustls::RootCertStore> {
        let anchors = self.certificates(held, at, path)?;
        self.root_store(at, path, anchors)
    }

    /// Anchors loaded from `path` as a rustls root store.
    pub fn root_store(
        &mut self,
        at: &str,
        path: &Path,
        anchors: Vec<CertificateDer<'static>>,
    ) -> Option<rustls::RootCertStore> {
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

    /// CRLs from each listed file or URL (`{at}[i]` names one that fails),
    /// each signed by one of `issuers`; with the nextUpdate of each, judged
    /// with `grace`.
    pub fn crls(
        &mut self,
        held: Held<'_>,
        at: &str,
        sources: &[CrlSource],
        issuers: &[CertificateDer<'static>],
        grace: std::time::Duration,
    ) -> Option<Crls> {
        let mut out = Crls {
            ders: Vec::new(),
            freshness: Freshness::new(
                grace,
                Some(
                    self.metrics
                        .crl_stale_tolerated
                        .with_label_values(&[held.0.as_str(), held.1]),
                ),
            ),
        };
        let mut ok = true;
        for (i, src) in sources.iter().enumerate() {
            let key = format!("{at}[{i}]");
            let (name, loaded) = match src {
                CrlSource::File(f) => {
                    let p = self.resolve(f);
                    (
                        p.display().to_string(),
                        certs::load_crls(&p).map_err(|e| e.to_string()),
                    )
                }
                CrlSource::Url(u) => {
                    if u.refresh.0 < std::time::Duration::from_secs(1) || u.timeout.0.is_zero() {
                        self.problem(
                            key.clone(),
                            "refresh must be at least 1s and timeout more than 0",
                        );
                    }
                    self.crl_urls.push(CrlUrlUse {
                        url: u.url.clone(),
                        refresh: u.refresh.0,
                        timeout: u.timeout.0,
                        issuers: issuers.to_vec(),
                    });
                    let got = match self.state.crl_download(&u.url) {
                        _ if u.url.split('/').nth(2).is_some_and(|a| a.contains('@')) => Err(format!(
                            "{}: credentials in a CRL URL are not supported (CRLs are public, and URLs are logged)",
                            u.url
                        )),
                        Some(Ok(copies)) => {
                            let der = crate::reload::crl_fetch::choose(&copies, &u.url, issuers);
                            self.downloaded.push((u.url.clone(), der.clone()));
                            certs::parse_crls(&der, Path::new(&u.url)).map_err(|e| e.to_string())
                        }
                        Some(Err(e)) => Err(format!("cannot fetch the CRL from {}: {e}", u.url)),
                        None => Err(format!("the CRL from {} has not been fetched", u.url)),
                    };
                    (u.url.clone(), got)
                }
            };
            let ders = match loaded {
                Ok(d) => d,
                Err(e) => {
                    ok = false;
                    self.problem(key, e);
                    continue;
                }
            };
            for der in ders {
                match crate::tls::crl::check(der.as_ref(), &name, issuers) {
                    Ok(c) => {
                        if let Some(next) = c.next_update_unix {
                            let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
                            if next.saturating_add(grace) <= certs::now_unix() {
                                self.warn(
                                    key.clone(),
                                    format!(
                                        "{name}: the CRL of {} passed its nextUpdate {} day(s) ago; certificates it covers are refused (crl_stale) until a fresh one is loaded",
                                        c.issuer,
                                        (certs::now_unix() - next) / 86_400
                                    ),
                                );
                            }
                        }
                        out.freshness.add(&c);
                        self.crls_held.push(CrlSummary {
                            held: held.0,
                            name: held.1.to_owned(),
                            at: key.clone(),
                            source: name.clone(),
                            issuer: c.issuer,
                            this_update_unix: c.this_update_unix,
                            next_update_unix: c.next_update_unix,
                        });
                        out.ders.push(der);
                    }
                    Err(e) => {
                        ok = false;
                        self.problem(key.clone(), e.to_string());
                    }
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
        let mut says_none = false;
        for (i, f) in files.iter().enumerate() {
            let filter = match f {
                IpFileConfig::Path(_) => JsonFilter::default(),
                IpFileConfig::Filtered(x) => JsonFilter {
                    direction: x.direction.clone(),
                    regions: x.regions.clone(),
                },
            };
            let p = self.resolve(f.path());
            match ip::load_file(&p, &filter) {
                Ok(more) if more.is_empty() && ip::says_none(&p) => says_none = true,
                Ok(more) if more.is_empty() => {
                    nets = None;
                    self.problem(
                        format!("{at}.allow_ips_files[{i}]"),
                        format!(
                            "{} holds no address{}; a file that comes out empty is refused, so a truncated or failed download cannot lock every client out (or, on reload, the old list keeps serving). To admit nobody on purpose, write `{}` alone in it",
                            p.display(),
                            if matches!(f, IpFileConfig::Filtered(_)) { " after its filter" } else { "" },
                            ip::NONE
                        ),
                    );
                }
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
        if nets.is_empty() && !says_none {
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
                self.key_permissions(at, &p);
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

    /// A secret the config names by `${VAR}` in `key` or by a file in
    /// `{key}_file` (at `{at}.…`), never written in it: a literal is refused.
    pub fn secret_ref(
        &mut self,
        at: &str,
        key: &str,
        what: &str,
        value: Option<&str>,
        file: Option<&Path>,
    ) -> Option<Vec<u8>> {
        match (value, file) {
            (Some(v), None) => match env_name(v) {
                Some(var) => self.secret(&format!("{at}.{key}"), what, Some(var), None),
                None => {
                    self.problem(
                        format!("{at}.{key}"),
                        format!("a secret is never written in the config: write \"${{VAR}}\" to read {what} from the environment, or use {key}_file"),
                    );
                    None
                }
            },
            (None, Some(f)) => self.secret(&format!("{at}.{key}_file"), what, None, Some(f)),
            (Some(_), Some(_)) => {
                self.problem(
                    format!("{at}.{key}"),
                    format!("set {key} or {key}_file, not both"),
                );
                None
            }
            (None, None) => {
                self.problem(
                    format!("{at}.{key}"),
                    format!("{what} is needed: {key} = \"${{VAR}}\" or {key}_file"),
                );
                None
            }
        }
    }

    /// A setting that may come from the environment: `${VAR}`, or itself.
    pub fn expand(&mut self, at: &str, value: &str) -> Option<String> {
        let Some(var) = env_name(value) else {
            return Some(value.to_owned());
        };
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                self.problem(
                    at,
                    format!("environment variable {var} is not set or empty"),
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

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// `VAR` of `${VAR}`, when the whole value is one.
pub fn env_name(value: &str) -> Option<&str> {
    let var = value.strip_prefix("${")?.strip_suffix('}')?;
    let mut chars = var.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(var)
}
