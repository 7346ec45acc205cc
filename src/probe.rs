//! `sealgate probe`: after a deployment, tries against the running gateway
//! what its configuration says must be refused — a handshake without a
//! certificate, one from a CA made on the spot, an identity on a route it may
//! not use, unsigned and forged messages on verifying routes, a replay — and
//! reports each as enforced, NOT ENFORCED or skipped (and why). A refusal
//! counts only when the gateway itself answered it (its fault namespace or
//! the refusal's reason in the body), never an upstream's error. Requests a
//! gateway enforcing its config refuses carry nothing an upstream would act
//! on (safe methods on a `sealgate-probe` path; a SOAP Body of one
//! `urn:sealgate:probe` element); requests that must pass are sent only to
//! routes named with `--allow-forward`.

use crate::demo::client::{self, Answer};
use crate::pki::{Ca, Leaf, Usage};
use crate::proxy::reply::REFUSAL_HEADER;
use crate::reload::Source;
use crate::runtime::listener::Listener;
use crate::runtime::route::Route;
use crate::tls::server::ClientCerts;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// What the operator gives the probe.
pub struct ProbeOptions {
    pub config: PathBuf,
    /// `https://host:port` instead of the listener's own address.
    pub target: Option<String>,
    /// A client certificate chain and key (PEM) the probe may present.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// A signer's key and certificate (PEM) for messages that must verify.
    pub signer: Option<(PathBuf, PathBuf)>,
    /// Routes a request that must pass may be forwarded to.
    pub allow_forward: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Enforced,
    NotEnforced,
    Passed,
    Failed,
    /// The probe could not tell (an error on its side, no answer): a
    /// pipeline gating on the probe must not pass on it.
    Unknown,
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Enforced => "enforced",
            Verdict::NotEnforced => "NOT ENFORCED",
            Verdict::Passed => "passed",
            Verdict::Failed => "FAILED",
            Verdict::Unknown => "COULD NOT TELL",
            Verdict::Skipped => "skipped",
        }
    }
    /// Whether the deployment is short of what its config demands.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Verdict::NotEnforced | Verdict::Failed | Verdict::Unknown
        )
    }
}

/// One check's result.
pub struct Check {
    pub listener: String,
    pub route: Option<String>,
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "listener": self.listener,
            "route": self.route,
            "check": self.check,
            "result": match self.verdict {
                Verdict::Enforced => "enforced",
                Verdict::NotEnforced => "not_enforced",
                Verdict::Passed => "passed",
                Verdict::Failed => "failed",
                Verdict::Unknown => "unknown",
                Verdict::Skipped => "skipped",
            },
            "detail": self.detail,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("{0}")]
    Usage(String),
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ProbeError> {
    std::fs::read(path).map_err(|e| ProbeError::File {
        path: path.clone(),
        detail: e.to_string(),
    })
}

fn pem_certs(path: &PathBuf) -> Result<Vec<Vec<u8>>, ProbeError> {
    use rustls::pki_types::pem::PemObject;
    let bytes = read(path)?;
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(ProbeError::File {
            path: path.clone(),
            detail: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn pem_key(path: &PathBuf) -> Result<Vec<u8>, ProbeError> {
    use rustls::pki_types::pem::PemObject;
    let bytes = read(path)?;
    rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&bytes)
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| ProbeError::File {
            path: path.clone(),
            detail: format!("not a PKCS#8 private key: {e}"),
        })
}

/// Where one listener is reached.
struct Target {
    addr: SocketAddr,
    name: String,
    server_der: Vec<u8>,
}

/// Runs every check; the caller prints them and gates on `is_failure`.
pub async fn run(o: &ProbeOptions) -> Result<Vec<Check>, ProbeError> {
    crate::tls::install_crypto_provider();
    let source = Source::new(o.config.clone());
    let compiled = source.compile().await?;
    let (config, rt) = (compiled.config, compiled.runtime);
    if o.target.is_some() && rt.listeners.len() != 1 {
        return Err(ProbeError::Usage(
            "--target needs a configuration with one listener".into(),
        ));
    }
    let identity = match &o.identity {
        Some((c, k)) => Some((pem_certs(c)?, pem_key(k)?)),
        None => None,
    };
    let signer = match &o.signer {
        Some((k, c)) => Some((
            crate::wssec::sign::SigningKey::from_pem(&read(k)?).map_err(|e| ProbeError::File {
                path: k.clone(),
                detail: e.to_string(),
            })?,
            pem_certs(c)?.remove(0),
        )),
        None => None,
    };
    let stranger = Ca::new("sealgate probe CA (made on the spot)", "sealgate probe", 1)
        .and_then(|ca| ca.issue(&Leaf::new("sealgate-probe", Usage::Client)))
        .map_err(|e| ProbeError::Usage(format!("making the probe's own CA: {e}")))?;
    let mut out = Vec::new();
    // Details quote what the gateway answered: masked as its logs are.
    let redact = config.log.redactor().unwrap_or_default();
    for (l, lc) in rt.listeners.iter().zip(&config.listeners) {
        let server = pem_certs(&config.resolve(&lc.tls.cert))?.remove(0);
        let target = target_of(l, o.target.as_deref(), server)?;
        let anon =
            client::tls_pinned(target.server_der.clone(), None).map_err(ProbeError::Usage)?;
        let foreign = client::tls_pinned(
            target.server_der.clone(),
            Some((vec![stranger.der.clone()], stranger.key_der.clone())),
        )
        .map_err(ProbeError::Usage)?;
        let mine = match &identity {
            Some((chain, key)) => Some(
                client::tls_pinned(
                    target.server_der.clone(),
                    Some((chain.clone(), key.clone())),
                )
                .map_err(ProbeError::Usage)?,
            ),
            None => None,
        };
        let check = |check, route: Option<&Route>, verdict, detail: String| Check {
            listener: l.name.clone(),
            route: route.map(|r| r.name.clone()),
            check,
            verdict,
            detail: redact.text(&detail).into_owned(),
        };

        // The handshake: a certificate is required, and only from trusted CAs.
        if l.client_certs == ClientCerts::Required {
            let (v, d) = handshake_refused(&target, anon).await;
            out.push(check("handshake without a client certificate", None, v, d));
        } else {
            out.push(check(
                "handshake without a client certificate",
                None,
                Verdict::Skipped,
                format!(
                    "the configuration lets it through (client_auth = {:?})",
                    l.client_certs
                ),
            ));
        }
        if l.client_certs != ClientCerts::Off {
            let (v, d) = handshake_refused(&target, foreign.clone()).await;
            out.push(check(
                "handshake with a certificate from an unknown CA",
                None,
                v,
                d,
            ));
        }

        if let (Some(cfg), true) = (&mine, l.client_certs != ClientCerts::Off) {
            let (v, d) = handshake_accepted(&target, cfg.clone()).await;
            out.push(check("handshake with the given certificate", None, v, d));
        }

        for r in l.routes.iter() {
            // What must pass: the given identity on a route it may use,
            // only where the operator lets a request reach the upstream.
            if let (Some((chain, _)), Some(cfg), false) = (&identity, &mine, r.verifies_requests())
            {
                let may = crate::tls::identity::PeerIdentity::from_der(&chain[0])
                    .is_ok_and(|id| r.authz.authorize(Some(&id)).is_ok());
                let name = "request with the given identity passes";
                if !may {
                    // Nothing must pass here; the refusal is checked below.
                } else if !o.allow_forward.contains(&r.name) {
                    out.push(check(
                        name,
                        Some(r),
                        Verdict::Skipped,
                        "a request that passes reaches the upstream: name the route with --allow-forward".into(),
                    ));
                } else if let Some(req) = harmless_request(r) {
                    let got = client::send_to(target.addr, &target.name, cfg.clone(), req).await;
                    let (v, d) = passed_gateway(&got);
                    out.push(check(name, Some(r), v, d));
                } else {
                    out.push(check(
                        name,
                        Some(r),
                        Verdict::Skipped,
                        "the route takes no GET; the probe sends nothing else to it".into(),
                    ));
                }
            }
            // Routes the given identity may not use.
            match (&identity, &mine) {
                (Some((chain, _)), Some(cfg)) if !r.authz.rules.is_empty() => {
                    let id = crate::tls::identity::PeerIdentity::from_der(&chain[0])
                        .map_err(|e| ProbeError::Usage(format!("--cert: {e}")))?;
                    if r.authz.authorize(Some(&id)).is_ok() {
                        out.push(check(
                            "identity not allowed on the route",
                            Some(r),
                            Verdict::Skipped,
                            format!("{} may use this route", id.display_name()),
                        ));
                    } else if !r.allow_ips.is_open() {
                        out.push(check(
                            "identity not allowed on the route",
                            Some(r),
                            Verdict::Skipped,
                            "the route's allow_ips would decide first; probe from an allowed address".into(),
                        ));
                    } else if let Some(req) = harmless_request(r) {
                        let got =
                            client::send_to(target.addr, &target.name, cfg.clone(), req).await;
                        let (v, d) = refused_by_gateway(&got, &["identity_not_allowed"]);
                        out.push(check("identity not allowed on the route", Some(r), v, d));
                    } else {
                        out.push(check(
                            "identity not allowed on the route",
                            Some(r),
                            Verdict::Skipped,
                            "the route takes no GET; the probe sends nothing else to it".into(),
                        ));
                    }
                }
                _ => {}
            }
            if !r.verifies_requests() {
                continue;
            }
            let allowed = match &identity {
                Some((chain, _)) => crate::tls::identity::PeerIdentity::from_der(&chain[0])
                    .is_ok_and(|id| r.authz.authorize(Some(&id)).is_ok()),
                None => r.authz.authorize(None).is_ok(),
            };
            let why_not = if !allowed {
                Some("the probe's identity may not use this route, so a refusal would say nothing about verification: give --cert/--key of one that may")
            } else if !r.allow_ips.is_open() {
                Some("the route's allow_ips would decide first; probe from an allowed address")
            } else if r.matcher.soap_action().is_some() && !o.allow_forward.contains(&r.name) {
                Some("the route matches on a SOAPAction, which an upstream may act on whatever the Body: name it with --allow-forward")
            } else {
                None
            };
            if let Some(why) = why_not {
                out.push(check(
                    "unsigned and forged messages refused",
                    Some(r),
                    Verdict::Skipped,
                    why.into(),
                ));
                continue;
            }
            let reach = match (&mine, l.client_certs) {
                (Some(cfg), _) => cfg.clone(),
                (None, ClientCerts::Required) => {
                    out.push(check(
                        "unsigned and forged messages refused",
                        Some(r),
                        Verdict::Skipped,
                        "the listener requires a client certificate: give one with --cert/--key"
                            .into(),
                    ));
                    continue;
                }
                (None, _) => client::tls_pinned(target.server_der.clone(), None)
                    .map_err(ProbeError::Usage)?,
            };
            let send = |body: Vec<u8>| {
                let reach = reach.clone();
                let (addr, name) = (target.addr, target.name.clone());
                let req = soap_request(r, body);
                async move {
                    match req {
                        Some(req) => client::send_to(addr, &name, reach, req).await,
                        None => Err("cannot build the request".into()),
                    }
                }
            };
            let got = send(PROBE_MESSAGE.as_bytes().to_vec()).await;
            let (v, d) = refused_by_gateway(&got, WSS_FAULT);
            out.push(check("unsigned message refused", Some(r), v, d));
            // Signed by a key of the probe's own CA: no trust path.
            let forged = crate::wssec::sign::SigningKey::from_pkcs8_der(&stranger.key_der)
                .ok()
                .and_then(|k| {
                    crate::wssec::sign::sign(
                        PROBE_MESSAGE.as_bytes(),
                        &k,
                        &stranger.der,
                        &crate::wssec::sign::SignOptions::new(SystemTime::now()),
                    )
                    .ok()
                });
            match forged {
                Some(m) => {
                    let got = send(m).await;
                    let (v, d) = refused_by_gateway(&got, WSS_FAULT);
                    out.push(check(
                        "message signed by an untrusted key refused",
                        Some(r),
                        v,
                        d,
                    ));
                }
                None => out.push(check(
                    "message signed by an untrusted key refused",
                    Some(r),
                    Verdict::Skipped,
                    "could not sign the probe message".into(),
                )),
            }
            match &signer {
                Some((key, cert)) => {
                    let signed = crate::wssec::sign::sign(
                        PROBE_MESSAGE.as_bytes(),
                        key,
                        cert,
                        &crate::wssec::sign::SignOptions::new(SystemTime::now()),
                    )
                    .map_err(|e| ProbeError::Usage(format!("--signer-key: {e}")))?;
                    let tampered = String::from_utf8_lossy(&signed)
                        .replacen(PROBE_MARK, "sealgate-probe-tampered", 1)
                        .into_bytes();
                    let got = send(tampered).await;
                    let (v, d) = refused_by_gateway(&got, WSS_FAULT);
                    out.push(check("tampered message refused", Some(r), v, d));
                    if o.allow_forward.contains(&r.name) {
                        let first = send(signed.clone()).await;
                        let passed = first.as_ref().is_ok_and(|a| a.status.is_success());
                        out.push(check(
                            "signed message accepted",
                            Some(r),
                            if passed {
                                Verdict::Passed
                            } else {
                                Verdict::Failed
                            },
                            describe(&first),
                        ));
                        if passed {
                            let again = send(signed).await;
                            let (v, d) = refused_by_gateway(&again, WSS_FAULT);
                            out.push(check("replayed message refused", Some(r), v, d));
                        } else {
                            out.push(check(
                                "replayed message refused",
                                Some(r),
                                Verdict::Skipped,
                                "the first message was not accepted, so there is nothing to replay"
                                    .into(),
                            ));
                        }
                    } else {
                        out.push(check(
                            "replayed message refused",
                            Some(r),
                            Verdict::Skipped,
                            "a replay needs one accepted message, which reaches the upstream: name the route with --allow-forward".into(),
                        ));
                    }
                }
                None => out.push(check(
                    "tampered and replayed messages refused",
                    Some(r),
                    Verdict::Skipped,
                    "needs a trusted signer: give --signer-key and --signer-cert".into(),
                )),
            }
        }
    }
    Ok(out)
}

fn target_of(
    l: &Listener,
    target: Option<&str>,
    server_der: Vec<u8>,
) -> Result<Target, ProbeError> {
    match target {
        Some(t) => {
            let uri: http::Uri = t
                .parse()
                .map_err(|e| ProbeError::Usage(format!("--target {t}: {e}")))?;
            let host = uri
                .host()
                .ok_or_else(|| ProbeError::Usage(format!("--target {t}: no host")))?
                .trim_matches(|c| c == '[' || c == ']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ProbeError::Usage(format!("--target {t}: cannot resolve {host}")))?;
            Ok(Target {
                addr,
                name: host,
                server_der,
            })
        }
        None => {
            let mut addr = l.addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Ok(Target {
                addr,
                name: "localhost".into(),
                server_der,
            })
        }
    }
}

/// The Body of every probe message: no application reads it.
const PROBE_MARK: &str = "sealgate-probe";
const PROBE_MESSAGE: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header></soapenv:Header><soapenv:Body><sgp:Probe xmlns:sgp="urn:sealgate:probe">sealgate-probe</sgp:Probe></soapenv:Body></soapenv:Envelope>"#;

/// A GET of `{prefix}/sealgate-probe`: a safe method, and a path
/// no application serves, should a gateway not enforce the route's rules.
fn harmless_request(r: &Route) -> Option<Request<Full<Bytes>>> {
    let m = &r.matcher;
    // GET only: a refusal of a HEAD has no body to tell the gateway's
    // answer from an upstream's.
    if !(m.methods().is_empty() || m.methods().contains(&Method::GET)) {
        return None;
    }
    let method = Method::GET;
    let prefix = m.path_prefix().trim_end_matches('/');
    let mut b = Request::builder()
        .method(method)
        .uri(format!("{prefix}/sealgate-probe"))
        .header("host", m.host().unwrap_or("localhost"));
    if let Some(a) = m.soap_action() {
        b = b.header("soapaction", a);
    }
    b.body(Full::new(Bytes::new())).ok()
}

/// The probe message POSTed to a verifying route.
fn soap_request(r: &Route, body: Vec<u8>) -> Option<Request<Full<Bytes>>> {
    let m = &r.matcher;
    let prefix = m.path_prefix();
    let path = if prefix.ends_with('/') {
        format!("{prefix}sealgate-probe")
    } else {
        prefix.to_owned()
    };
    Request::post(path)
        .header("host", m.host().unwrap_or("localhost"))
        .header("content-type", "text/xml; charset=utf-8")
        .header(
            "soapaction",
            m.soap_action().unwrap_or("\"urn:sealgate:probe\""),
        )
        .body(Full::new(Bytes::from(body)))
        .ok()
}

fn describe(r: &Result<Answer, String>) -> String {
    match r {
        Ok(a) => format!("answered {}", a.status),
        Err(e) => e.clone(),
    }
}

/// A handshake the gateway must accept (the request after it is the same
/// malformed path as below: nothing is forwarded).
async fn handshake_accepted(t: &Target, cfg: Arc<rustls::ClientConfig>) -> (Verdict, String) {
    match handshake(t, cfg).await {
        Handshake::Refused(e) => (Verdict::Failed, e),
        Handshake::Error(e) => (Verdict::Unknown, e),
        Handshake::Accepted(status) => (Verdict::Passed, format!("accepted (then {status})")),
    }
}

/// A request that must reach the upstream: any answer without the gateway's
/// refusal header passes, whatever the upstream made of it.
fn passed_gateway(r: &Result<Answer, String>) -> (Verdict, String) {
    match r {
        Ok(a) => match a.headers.get(REFUSAL_HEADER) {
            Some(reason) => (
                Verdict::Failed,
                format!(
                    "refused by the gateway with {} ({})",
                    a.status,
                    String::from_utf8_lossy(reason.as_bytes())
                ),
            ),
            None => (
                Verdict::Passed,
                format!("forwarded; the upstream answered {}", a.status),
            ),
        },
        Err(e) => (Verdict::Unknown, e.clone()),
    }
}

/// A handshake the gateway must refuse (the probe sends a malformed path
/// after it, so an accepted one forwards nothing).
async fn handshake_refused(t: &Target, cfg: Arc<rustls::ClientConfig>) -> (Verdict, String) {
    match handshake(t, cfg).await {
        Handshake::Refused(e) => (Verdict::Enforced, e),
        Handshake::Error(e) => (Verdict::Unknown, e),
        Handshake::Accepted(status) => (
            Verdict::NotEnforced,
            format!("the handshake succeeded (then {status})"),
        ),
    }
}

/// How a handshake with `cfg` went.
enum Handshake {
    /// The gateway sent a TLS alert.
    Refused(String),
    /// It completed; the status the (malformed) request after it got.
    Accepted(http::StatusCode),
    /// The probe cannot tell.
    Error(String),
}

/// A handshake, with a malformed path after it so an accepted one forwards nothing.
async fn handshake(t: &Target, cfg: Arc<rustls::ClientConfig>) -> Handshake {
    let req = Request::get("/sealgate-probe/%2e%2e/x")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()));
    let Ok(req) = req else {
        return Handshake::Error("cannot build the request".into());
    };
    match client::send_to(t.addr, &t.name, cfg, req).await {
        Err(e) if e.starts_with("handshake refused") => Handshake::Refused(e),
        Err(e) => Handshake::Error(e),
        Ok(a) => Handshake::Accepted(a.status),
    }
}

/// What only the gateway's own WS-Security faults carry: its fault detail
/// and a WSS fault code (other refusals — identity, rate, upstream — have
/// SOAP's own codes and say nothing about verification).
const WSS_FAULT: &[&str] = &["urn:sealgate:fault", ">wsse:"];

/// A request the gateway itself must refuse: an error status with every one
/// of `marks` in the body (its WSS fault, or the refusal's reason), so an
/// upstream's own error is never taken for enforcement.
fn refused_by_gateway(r: &Result<Answer, String>, marks: &[&str]) -> (Verdict, String) {
    match r {
        Ok(a) if a.status.is_success() => (Verdict::NotEnforced, format!("answered {}", a.status)),
        Ok(a)
            if a.headers.contains_key(REFUSAL_HEADER)
                && marks
                    .iter()
                    .all(|m| String::from_utf8_lossy(&a.body).contains(m)) =>
        {
            (
                Verdict::Enforced,
                format!("refused by the gateway with {}", a.status),
            )
        }
        Ok(a) => (
            Verdict::NotEnforced,
            format!(
                "answered {}, not by the gateway: the request went through",
                a.status
            ),
        ),
        Err(e) => (Verdict::Unknown, e.clone()),
    }
}
