//! The `sealgate` command line: run, check, pki init.
#![forbid(unsafe_code)]

mod wssec_cli;

/// mimalloc instead of glibc's malloc: under keep-alive load glibc showed
/// lock contention and consolidation between the runtime's threads
/// (`__lll_lock_wait_private`, `malloc_consolidate`; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use sealgate::config::{Config, ConfigError};
use sealgate::proxy::server::{Drained, Gateway, Options};
use sealgate::reload::{Compiled, Reloader, Source};
use sealgate::runtime::Runtime;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
    about = "Mutual-TLS and WS-Security gateway for SOAP and REST integrations"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve until SIGTERM or SIGINT, then drain in-flight requests.
    /// SIGHUP, `POST /reload` on the admin endpoint and (unless --no-watch)
    /// a change to any file the configuration names reload it.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Do not reload when a configuration file changes.
        #[arg(long)]
        no_watch: bool,
        /// `json` lines (the default, or `[log] format`) or plain `text`.
        #[arg(long, value_enum)]
        log_format: Option<sealgate::config::LogFormat>,
    },
    /// Validate everything `run` would load and print a summary, with the
    /// days left on every certificate and CRL.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Exit non-zero when a certificate expires, or a CRL reaches its
        /// nextUpdate, within this window (e.g. 14d).
        #[arg(long, value_parser = humantime::parse_duration)]
        fail_within: Option<std::time::Duration>,
    },
    /// A tour on an embedded default, needing no files: a PKI made in
    /// memory, the gateway and an upstream on 127.0.0.1, and real requests
    /// that must pass or be refused, each with the metric that counted it.
    /// Exits non-zero if any case did not come out as expected.
    Demo {
        /// Keep serving afterwards and print curl commands to try by hand.
        #[arg(long)]
        serve: bool,
    },
    /// After a deployment: try against the running gateway what FILE says
    /// must be refused, and report each check as enforced, NOT ENFORCED or
    /// skipped. Exits 1 if any enforcement is missing.
    Probe {
        #[arg(long, short)]
        config: PathBuf,
        /// `https://host:port` of the gateway (default: the listener's address).
        #[arg(long)]
        target: Option<String>,
        /// A client certificate (PEM chain) the probe may present.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// A trusted signer's key and certificate, for tampered and replayed messages.
        #[arg(long, requires = "signer_cert")]
        signer_key: Option<PathBuf>,
        #[arg(long, requires = "signer_key")]
        signer_cert: Option<PathBuf>,
        /// A route that requests which must pass may reach (repeatable).
        #[arg(long)]
        allow_forward: Vec<String>,
        /// Also write the report as JSON to this file (`-`: stdout only JSON).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Ask the admin endpoint FILE names for /healthz (or /readyz with
    /// --ready); exit 0 when it answers 200. The container's HEALTHCHECK,
    /// for images with no curl.
    Health {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        ready: bool,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        timeout: std::time::Duration,
    },
    /// Fetch one token from an upstream's `[upstream.NAME.auth]`, as the
    /// gateway would, and print what came back (the token only with
    /// --show): for checking a connected app's or client's setup.
    Token {
        #[arg(long, short)]
        config: PathBuf,
        /// The upstream whose credential to fetch.
        #[arg(long)]
        upstream: String,
        /// The Salesforce user the token is for (default: the source's
        /// `username`).
        #[arg(long)]
        principal: Option<String>,
        /// Print the token itself.
        #[arg(long)]
        show: bool,
    },
    /// WS-Security on files: verify (with --explain), c14n, sign.
    Wssec {
        #[command(subcommand)]
        cmd: Box<wssec_cli::WssecCmd>,
    },
    /// Example certificates.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Write an example CA, gateway, client and signer certificates into DIR.
    Init {
        dir: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Validity of every certificate, in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Key of the CA, gateway and client certificates (some ETL tools
        /// and Java stacks still take RSA only).
        #[arg(long, value_enum, default_value = "ecdsa-p256")]
        key_alg: InitKeyAlg,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum InitKeyAlg {
    EcdsaP256,
    Rsa2048,
}

const EXIT_INVALID: u8 = 1;
const EXIT_USAGE_OR_IO: u8 = 2;
/// `run` ended with requests still in flight when the grace period ran out.
const EXIT_GRACE_EXPIRED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            config,
            no_watch,
            log_format,
        } => run(config, !no_watch, log_format),
        Cmd::Check {
            config,
            fail_within,
        } => check(config, fail_within),
        Cmd::Demo { serve } => demo(serve),
        Cmd::Health {
            config,
            ready,
            timeout,
        } => health(config, ready, timeout),
        Cmd::Probe {
            config,
            target,
            cert,
            key,
            signer_key,
            signer_cert,
            allow_forward,
            json,
        } => probe(
            sealgate::probe::ProbeOptions {
                config,
                target,
                identity: cert.zip(key),
                signer: signer_key.zip(signer_cert),
                allow_forward,
            },
            json,
        ),
        Cmd::Token {
            config,
            upstream,
            principal,
            show,
        } => token(config, &upstream, principal.as_deref(), show),
        Cmd::Wssec { cmd } => wssec_cli::run(*cmd),
        Cmd::Pki {
            cmd:
                PkiCmd::Init {
                    dir,
                    force,
                    days,
                    key_alg,
                },
        } => match sealgate::pki::init(
            &dir,
            force,
            days,
            match key_alg {
                InitKeyAlg::EcdsaP256 => sealgate::pki::KeyAlg::EcdsaP256,
                InitKeyAlg::Rsa2048 => sealgate::pki::KeyAlg::Rsa2048,
            },
        ) {
            Ok(files) => {
                println!("example PKI written (NOT FOR PRODUCTION):");
                for f in files {
                    println!("  {f}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sealgate pki init: {e}");
                ExitCode::from(EXIT_USAGE_OR_IO)
            }
        },
    }
}

/// Loads and compiles a config, printing every problem found.
fn load(source: &Source) -> Result<(Config, Runtime), ExitCode> {
    match source.compile_blocking() {
        Ok(Compiled { config, runtime }) => {
            for w in &runtime.warnings {
                eprintln!("warning: {w}");
            }
            Ok((config, runtime))
        }
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_USAGE_OR_IO))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

fn token(path: PathBuf, upstream: &str, principal: Option<&str>, show: bool) -> ExitCode {
    let (_, rt) = match load(&Source::new(path)) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(up) = rt.upstreams.get(upstream) else {
        let names: Vec<&str> = rt.upstreams.keys().map(String::as_str).collect();
        eprintln!(
            "error: no upstream {upstream:?} (the configuration has: {})",
            names.join(", ")
        );
        return ExitCode::from(EXIT_USAGE_OR_IO);
    };
    let Some(src) = &up.auth else {
        eprintln!("error: upstream {upstream:?} has no [upstream.{upstream}.auth]");
        return ExitCode::from(EXIT_USAGE_OR_IO);
    };
    let tokio = match async_runtime() {
        Ok(t) => t,
        Err(code) => return code,
    };
    match tokio.block_on(sealgate::credentials::cli::fetch_once(src, principal, show)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn check(path: PathBuf, fail_within: Option<std::time::Duration>) -> ExitCode {
    let (config, rt) = match load(&Source::new(path.clone())) {
        Ok(x) => x,
        Err(code) => return code,
    };
    println!("{}: OK", path.display());
    println!(
        "admin: http://{} (/metrics /healthz /readyz)",
        rt.admin_listen
    );
    if let Some(e) = rt.echo_listen {
        println!("echo upstream: http://{e}");
    }
    println!("listeners:");
    for l in &rt.listeners {
        println!(
            "  {} on {} (client certificates: {}, {} route(s))",
            l.name,
            l.addr,
            format!("{:?}", l.client_certs).to_lowercase(),
            l.routes.len()
        );
    }
    println!("routes:");
    for r in &config.routes {
        let m = &r.matcher;
        let mode = |s: Option<&sealgate::config::WssecStageConfig>| {
            s.map(|s| s.mode)
                .filter(|m| *m != sealgate::config::WssecMode::None)
        };
        let stages = r
            .wssec
            .as_ref()
            .map(|w| (mode(w.request.as_ref()), mode(w.response.as_ref())));
        let wssec = match stages {
            Some((Some(q), Some(a))) => format!(
                " [WS-Security: {} requests, {} responses]",
                q.as_str(),
                a.as_str()
            ),
            Some((Some(q), None)) => format!(" [WS-Security: {} requests]", q.as_str()),
            Some((None, Some(a))) => format!(" [WS-Security: {} responses]", a.as_str()),
            _ => String::new(),
        };
        println!(
            "  {} [{}] {}{}{}{} -> {}{}{wssec}",
            r.name,
            r.listener,
            m.host
                .as_deref()
                .map(|h| format!("host={h} "))
                .unwrap_or_default(),
            m.path_prefix.as_deref().unwrap_or("/"),
            if m.methods.is_empty() {
                String::new()
            } else {
                format!(" {}", m.methods.join(","))
            },
            m.soap_action
                .as_deref()
                .map(|a| format!(" SOAPAction={a}"))
                .unwrap_or_default(),
            r.upstream,
            if r.allow.is_empty() {
                if r.allow_anonymous {
                    " (anyone)".to_string()
                } else {
                    " (any verified client)".to_string()
                }
            } else {
                format!(" ({} allow rule(s))", r.allow.len())
            }
        );
    }
    println!("upstreams:");
    for (name, u) in &rt.upstreams {
        println!(
            "  {name}: {}://{}{} (connect {:?}, response {:?}, max concurrent {})",
            u.scheme,
            u.authority,
            u.base_path,
            u.connect_timeout,
            u.request_timeout,
            u.gate
                .max
                .map(|n| n.to_string())
                .unwrap_or_else(|| "unlimited".into())
        );
    }
    let window = fail_within.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let now = sealgate::tls::certs::now_unix();
    let within = |t: i64| window.is_some_and(|w| t - now <= w);
    let mut failing = 0;
    println!("certificates:");
    for c in &rt.certs {
        let days = c.days_left();
        let flag = if within(c.not_after_unix) {
            failing += 1;
            "  <-- within --fail-within"
        } else if days < 30 {
            "  <-- renew soon"
        } else {
            ""
        };
        println!(
            "  {} [{} {}]: {} (issuer {}) expires in {} day(s){}",
            c.role,
            c.held.as_str(),
            c.name,
            c.subject,
            c.issuer,
            days,
            flag
        );
    }
    if !rt.crls.is_empty() {
        println!("CRLs:");
    }
    for c in &rt.crls {
        let (next, flag) = match (c.next_update_unix, c.days_left()) {
            (Some(t), Some(days)) => {
                let flag = if within(t) {
                    failing += 1;
                    "  <-- within --fail-within"
                } else if t <= now {
                    "  <-- STALE: publish a fresh CRL"
                } else {
                    ""
                };
                (format!("next update in {days} day(s)"), flag)
            }
            _ => ("no next update".to_owned(), ""),
        };
        println!(
            "  {} [{} {}]: {} from {}, {next}{flag}",
            c.at,
            c.held.as_str(),
            c.name,
            c.issuer,
            c.source
        );
    }
    if let (Some(d), true) = (fail_within, failing > 0) {
        eprintln!(
            "error: {failing} certificate(s) or CRL(s) expire within {}",
            humantime::format_duration(d)
        );
        return ExitCode::from(EXIT_INVALID);
    }
    ExitCode::SUCCESS
}

/// The example PKI (`certs-example/`, `pki init`) has public or throwaway
/// keys: serving with it must not go unnoticed.
fn warn_example_material(rt: &Runtime) {
    const MARK: &str = "NOT FOR PRODUCTION";
    for c in rt
        .certs
        .iter()
        .filter(|c| c.subject.contains(MARK) || c.issuer.contains(MARK))
    {
        eprintln!(
            "WARNING: {} ({}) is example material ({}); its private key protects nothing — use your own PKI beyond 127.0.0.1",
            c.path.display(),
            c.held.as_str(),
            c.subject
        );
        tracing::warn!(
            target: "sealgate::audit",
            event = "example_certificate",
            role = c.held.as_str(),
            name = %c.name,
            path = %c.path.display(),
            subject = %c.subject,
            "serving with an example certificate: its private key protects nothing"
        );
    }
}

/// The multi-threaded runtime `run`, `demo` and `probe` work on.
fn async_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_USAGE_OR_IO)
        })
}

fn probe(o: sealgate::probe::ProbeOptions, json: Option<PathBuf>) -> ExitCode {
    let tokio = match async_runtime() {
        Ok(t) => t,
        Err(code) => return code,
    };
    let checks = match tokio.block_on(sealgate::probe::run(&o)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sealgate probe: {e}");
            return ExitCode::from(EXIT_USAGE_OR_IO);
        }
    };
    let only_json = json.as_deref() == Some(std::path::Path::new("-"));
    let missing = checks.iter().filter(|c| c.verdict.is_failure()).count();
    let report = serde_json::json!({
        "config": o.config.display().to_string(),
        "checks": checks.iter().map(|c| c.json()).collect::<Vec<_>>(),
        "not_enforced": missing,
    });
    if only_json {
        println!("{report:#}");
    } else {
        for c in &checks {
            let at = match &c.route {
                Some(r) => format!("listener {} route {}", c.listener, r),
                None => format!("listener {}", c.listener),
            };
            println!(
                "{:<13} {at}: {} — {}",
                c.verdict.as_str(),
                c.check,
                c.detail
            );
        }
        println!(
            "\n{} check(s): {} enforced or passed, {missing} NOT ENFORCED or failed, {} skipped",
            checks.len(),
            checks
                .iter()
                .filter(|c| matches!(
                    c.verdict,
                    sealgate::probe::Verdict::Enforced | sealgate::probe::Verdict::Passed
                ))
                .count(),
            checks
                .iter()
                .filter(|c| c.verdict == sealgate::probe::Verdict::Skipped)
                .count()
        );
        if let Some(path) = &json {
            if let Err(e) = std::fs::write(path, format!("{report:#}\n")) {
                eprintln!("sealgate probe: {}: {e}", path.display());
                return ExitCode::from(EXIT_USAGE_OR_IO);
            }
        }
    }
    if missing > 0 {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}

fn health(path: PathBuf, ready: bool, timeout: std::time::Duration) -> ExitCode {
    let config = match sealgate::config::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE_OR_IO);
        }
    };
    let path = if ready { "/readyz" } else { "/healthz" };
    match sealgate::admin::health(config.admin.listen, path, timeout) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{path}: {status}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn demo(serve: bool) -> ExitCode {
    let tokio = match async_runtime() {
        Ok(t) => t,
        Err(code) => return code,
    };
    match tokio.block_on(sealgate::demo::run(serve)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_INVALID),
        Err(e) => {
            eprintln!("sealgate demo: {e}");
            ExitCode::from(EXIT_USAGE_OR_IO)
        }
    }
}

fn run(path: PathBuf, watch: bool, log_format: Option<sealgate::config::LogFormat>) -> ExitCode {
    // Logging first (from the config's [log], read on its own), so what
    // loading says — a CRL download failing, say — is logged and audited.
    let settings = match sealgate::config::Config::load(&path) {
        Ok(config) => sealgate::telemetry::logging::LogSettings::from_config(&config, log_format),
        Err(_) => sealgate::telemetry::logging::LogSettings {
            format: log_format.unwrap_or_default(),
            ..Default::default()
        },
    };
    let _log = match sealgate::telemetry::logging::init_with(&settings) {
        Ok(g) => g,
        Err(e) => {
            eprintln!(
                "error: log.audit_file: cannot open {}: {e}",
                settings
                    .audit_file
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"))
                    .display()
            );
            return ExitCode::from(EXIT_USAGE_OR_IO);
        }
    };
    let source = Source::new(path);
    let (_config, rt) = match load(&source) {
        Ok(x) => x,
        Err(code) => return code,
    };
    for w in &rt.warnings {
        tracing::warn!(target: "sealgate", path = %w.path, "{}", w.message);
    }
    warn_example_material(&rt);
    let tokio = match async_runtime() {
        Ok(t) => t,
        Err(code) => return code,
    };
    tokio.block_on(async move {
        // Handlers first: a signal that arrives once the listeners are
        // announced must find them installed.
        let signals = Signals::install();
        let options = Options {
            watch,
            ..Options::default()
        };
        let gw = match Gateway::start(source, rt, options).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE_OR_IO);
            }
        };
        let signal = signals.wait(gw.reloader()).await;
        tracing::info!(target: "sealgate", signal, "shutting down: not ready, then no new connections, then draining in-flight requests");
        match gw.shutdown().await {
            Drained::Clean => ExitCode::SUCCESS,
            Drained::GraceExpired => ExitCode::from(EXIT_GRACE_EXPIRED),
        }
    })
}

/// SIGTERM and SIGINT end the process (after the drain); SIGHUP reloads.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// Reloads on SIGHUP until SIGTERM or SIGINT.
    async fn wait(self, reloader: Reloader) -> &'static str {
        let (Some(mut term), Some(mut int), Some(mut hup)) = (self.term, self.int, self.hup) else {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        };
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
                _ = hup.recv() => {
                    // The reload task logs the outcome as an audit event; a
                    // slow one (CRL downloads) must not hold up SIGTERM.
                    let r = reloader.clone();
                    tokio::spawn(async move { let _ = r.reload("SIGHUP").await; });
                }
            }
        }
    }
}
