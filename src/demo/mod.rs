//! `sealgate demo`: the gateway on an embedded default, needing no files. It
//! makes a PKI in memory, starts an upstream and the gateway on 127.0.0.1
//! (free ports), and sends real requests over real sockets — what must pass
//! and what must be refused — printing for each the outcome, the metric that
//! counted it and where an operator would look next. `--serve` keeps it
//! running with curl commands to try by hand.

pub(crate) mod client;
mod setup;

use crate::proxy::server::{Gateway, Options};
use crate::reload::Source;
use bytes::Bytes;
use client::{Answer, Series};
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("making the demo PKI: {0}")]
    Pki(#[from] crate::pki::Error),
    #[error("writing the demo files: {0}")]
    Io(#[from] std::io::Error),
    #[error("the demo configuration did not load: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("starting the gateway: {0}")]
    Start(#[from] crate::proxy::server::StartError),
    #[error("{0}")]
    Setup(String),
}

/// Everything a case needs.
struct Env {
    edge: SocketAddr,
    admin: SocketAddr,
    m: setup::Material,
    seen: setup::Seen,
}

/// One row of the table.
struct Row {
    case: &'static str,
    outcome: String,
    expected: bool,
    series: Series,
    delta: f64,
    next: &'static str,
}

/// Runs the tour; `Ok(true)` when every case came out as expected. With
/// `serve`, keeps the gateway up until SIGINT or SIGTERM afterwards.
pub async fn run(serve: bool) -> Result<bool, DemoError> {
    crate::tls::install_crypto_provider();
    let m = setup::Material::new()?;
    let dir = setup::Scratch::new()?;
    setup::write_files(&m, &dir)?;
    let (upstream, seen) = setup::upstream().await?;
    let config = dir.write("demo.toml", setup::config(&dir.0, upstream).as_bytes())?;
    let source = Source::new(config);
    let compiled = source.compile().await?;
    let gw = Gateway::start(
        source,
        compiled.runtime,
        Options {
            watch: false,
            ..Options::default()
        },
    )
    .await?;
    let edge = gw
        .addr("demo")
        .ok_or_else(|| DemoError::Setup("the demo listener is not bound".into()))?;
    let env = Env {
        edge,
        admin: gw.admin_addr,
        m,
        seen,
    };
    println!("sealgate demo: a gateway on https://localhost:{} (admin http://{}), an upstream on {upstream},", edge.port(), env.admin);
    println!("a demo CA, a CRL, and four routes: api (any trusted client), reports (CN=etl-reporting only),");
    println!("bulk (1 request a minute per client, bursts of 2), ledger (SOAP, WS-Security signature verified).\n");
    let rows = cases(&env).await?;
    let all = print(&rows);
    if serve {
        let signed = sign(&env, setup::LEDGER_POST)?;
        dir.write("signed.xml", &signed)?;
        print_curl(&dir.0, edge, env.admin);
        let _log = crate::telemetry::logging::init();
        wait_for_signal().await;
    }
    let _ = gw.shutdown().await;
    drop(dir);
    Ok(all)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print(rows: &[Row]) -> bool {
    let ok = rows.iter().filter(|r| r.expected).count();
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:>2}. {:<4} {:<50} {}",
            i + 1,
            if r.expected { "ok" } else { "FAIL" },
            r.case,
            r.outcome
        );
        println!("          counted: {} +{}", r.series, r.delta);
        println!("          next:    {}", r.next);
    }
    println!(
        "\n{ok} of {} cases came out as expected{}",
        rows.len(),
        if ok == rows.len() {
            "."
        } else {
            " — the rows marked FAIL did not."
        }
    );
    ok == rows.len()
}

fn print_curl(dir: &std::path::Path, edge: SocketAddr, admin: SocketAddr) {
    let d = dir.display();
    let url = format!("https://localhost:{}", edge.port());
    let who =
        |name: &str| format!("--cacert {d}/ca.crt --cert {d}/{name}.crt --key {d}/{name}.key");
    println!("\nServing until Ctrl-C. The files are in {d} (removed on exit). Try:\n");
    println!("  curl {} {url}/api/hello", who("etl-prod"));
    println!(
        "  curl {} {url}/api/hello      # refused at the handshake: revoked",
        who("revoked")
    );
    println!(
        "  curl {} {url}/reports/q3     # 403 identity_not_allowed",
        who("etl-prod")
    );
    println!(
        "  for i in 1 2 3; do curl -si {} {url}/bulk/export | head -1; done   # the third: 429",
        who("etl-prod")
    );
    println!(
        "  curl {} -H 'content-type: text/xml' -H 'soapaction: \"\"' --data-binary @{d}/signed.xml {url}/soap/ledger   # once: again is a replay",
        who("etl-prod")
    );
    println!("  curl -s http://{admin}/metrics | grep -E 'handshakes|rejections|wssec'");
    println!("\nThe gateway's JSON log follows.\n");
}

/// `LEDGER_POST`-like `msg` signed now by the demo signer.
fn sign(env: &Env, msg: &str) -> Result<Vec<u8>, DemoError> {
    use crate::wssec::sign::{sign, SignOptions, SigningKey};
    let key = SigningKey::from_pkcs8_der(&env.m.signer.key_der)
        .map_err(|e| DemoError::Setup(format!("demo signer key: {e}")))?;
    sign(
        msg.as_bytes(),
        &key,
        &env.m.signer.der,
        &SignOptions::new(SystemTime::now()),
    )
    .map_err(|e| DemoError::Setup(format!("signing the demo message: {e}")))
}

fn get(path: &str) -> Result<Request<Full<Bytes>>, DemoError> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .map_err(|e| DemoError::Setup(e.to_string()))
}

fn soap(body: Vec<u8>) -> Result<Request<Full<Bytes>>, DemoError> {
    Request::post("/soap/ledger")
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| DemoError::Setup(e.to_string()))
}

/// The outcome as a table cell.
fn describe(r: &Result<Answer, String>) -> String {
    match r {
        Ok(a) => {
            let retry = a
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(", Retry-After: {v}"))
                .unwrap_or_default();
            format!("{}{retry}", a.status)
        }
        Err(e) => e.clone(),
    }
}

/// Runs `exchange`, then waits (briefly) for `series` to count it.
async fn row<F>(
    env: &Env,
    case: &'static str,
    series: Series,
    next: &'static str,
    exchange: F,
) -> Result<Row, DemoError>
where
    F: std::future::Future<Output = (String, bool)>,
{
    let before = series.value(&client::scrape(env.admin).await.map_err(DemoError::Setup)?);
    let (outcome, as_expected) = exchange.await;
    // Handshake refusals are counted as the gateway closes the connection,
    // which the client may see first.
    let deadline = Instant::now() + Duration::from_secs(10);
    let delta = loop {
        let now = series.value(&client::scrape(env.admin).await.map_err(DemoError::Setup)?);
        if now > before || Instant::now() > deadline {
            break now - before;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(Row {
        case,
        outcome,
        expected: as_expected && delta >= 1.0,
        series,
        delta,
        next,
    })
}

const HANDSHAKE_NEXT: &str = "the \"TLS handshake refused\" log line names the presented certificate's subject, issuer, serial and fingerprint";

async fn cases(env: &Env) -> Result<Vec<Row>, DemoError> {
    let m = &env.m;
    let tls = |who: Option<&crate::pki::Issued>| {
        client::tls(
            &m.ca.der,
            who.map(|i| (i.der.as_slice(), i.key_der.as_slice())),
        )
        .map_err(DemoError::Setup)
    };
    let etl = tls(Some(&m.etl))?;
    let mut rows = Vec::new();

    rows.push(
        row(
            env,
            "trusted client CN=etl-prod",
            Series {
                name: "sealgate_requests_total",
                labels: &[("route", "api"), ("status_class", "2xx")],
            },
            "the \"request\" log line: client, fingerprint, route, durations; the upstream got x-forwarded-client-cert",
            async {
                let r = send(env, etl.clone(), get("/api/orders")?).await;
                Ok::<_, DemoError>((describe(&r), r.as_ref().is_ok_and(|a| a.status == 200)))
            }
            .then_ok(),
        )
        .await?,
    );

    type Labels = &'static [(&'static str, &'static str)];
    let refused: [(&'static str, &crate::pki::Issued, Labels); 3] = [
        (
            "client of an unknown CA",
            &m.stranger,
            &[
                ("listener", "demo"),
                ("result", "refused"),
                ("reason", "unknown_issuer"),
            ],
        ),
        (
            "expired client certificate",
            &m.expired,
            &[
                ("listener", "demo"),
                ("result", "refused"),
                ("reason", "expired"),
            ],
        ),
        (
            "revoked client certificate (in the CRL)",
            &m.revoked,
            &[
                ("listener", "demo"),
                ("result", "refused"),
                ("reason", "revoked"),
            ],
        ),
    ];
    for (case, who, labels) in refused {
        let cfg = tls(Some(who))?;
        rows.push(
            row(
                env,
                case,
                Series {
                    name: "sealgate_tls_handshakes_total",
                    labels,
                },
                HANDSHAKE_NEXT,
                async {
                    let r = send(env, cfg, get("/api/orders")?).await;
                    let outcome = match &r {
                        Err(e) if e.starts_with("handshake refused") => {
                            "refused at the TLS handshake".to_owned()
                        }
                        _ => describe(&r),
                    };
                    Ok::<_, DemoError>((outcome, r.is_err()))
                }
                .then_ok(),
            )
            .await?,
        );
    }

    rows.push(
        row(
            env,
            "identity not allowed on route \"reports\"",
            Series {
                name: "sealgate_rejections_total",
                labels: &[("route", "reports"), ("stage", "identity"), ("reason", "identity_not_allowed")],
            },
            "the \"request\" log line has reason=identity_not_allowed; the route's allow rules are in `sealgate check`",
            async {
                let r = send(env, etl.clone(), get("/reports/q3")?).await;
                Ok::<_, DemoError>((describe(&r), r.as_ref().is_ok_and(|a| a.status == 403)))
            }
            .then_ok(),
        )
        .await?,
    );

    rows.push(
        row(
            env,
            "rate limit on \"bulk\" (third request in a minute)",
            Series {
                name: "sealgate_rejections_total",
                labels: &[
                    ("route", "bulk"),
                    ("stage", "rate"),
                    ("reason", "rate_limited"),
                ],
            },
            "Retry-After is the limiter's real wait; the limit is the route's rate_limit",
            async {
                let mut last = Err("not sent".to_owned());
                for _ in 0..3 {
                    last = send(env, etl.clone(), get("/bulk/export")?).await;
                }
                let limited = last.as_ref().is_ok_and(|a| {
                    a.status == 429 && a.headers.contains_key(http::header::RETRY_AFTER)
                });
                Ok::<_, DemoError>((describe(&last), limited))
            }
            .then_ok(),
        )
        .await?,
    );

    rows.push(
        row(
            env,
            "unsigned SOAP to \"ledger\"",
            Series {
                name: "sealgate_wssec_verifications_total",
                labels: &[("route", "ledger"), ("direction", "request"), ("reason", "wssec_no_security_header")],
            },
            "the SOAP fault says the message was refused; the reason is in the metric and the log, not told to the caller",
            refused_soap(env, etl.clone(), setup::LEDGER_POST.as_bytes().to_vec()).then_ok(),
        )
        .await?,
    );

    let signed = sign(env, setup::LEDGER_POST)?;
    let seen = env.seen.clone();
    rows.push(
        row(
            env,
            "signed SOAP to \"ledger\"",
            Series {
                name: "sealgate_wssec_verifications_total",
                labels: &[("route", "ledger"), ("direction", "request"), ("reason", "ok")],
            },
            "the upstream got the verified message without its Security header (forward_security_header keeps it)",
            async {
                forget(env);
                let r = send(env, etl.clone(), soap(signed.clone())?).await;
                let forwarded = seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let stripped = forwarded.as_ref().is_some_and(|(_, body)| {
                    crate::wssec::envelope::scan(body, &crate::wssec::xml::Limits::default())
                        .is_ok_and(|s| s.security.is_none())
                        && String::from_utf8_lossy(body).contains("4000-SALES")
                });
                let outcome = match (&r, stripped) {
                    (Ok(a), true) => format!("{}, forwarded without the Security header", a.status),
                    (Ok(a), false) => format!("{}, but the upstream did not get the message stripped", a.status),
                    (Err(e), _) => e.clone(),
                };
                Ok::<_, DemoError>((outcome, r.as_ref().is_ok_and(|a| a.status == 200) && stripped))
            }
            .then_ok(),
        )
        .await?,
    );

    // Signature wrapping: the signed Body moved into a header, another in its place.
    let text = String::from_utf8_lossy(&signed).into_owned();
    let wrapped = match (text.find("<soapenv:Body"), text.find("</soapenv:Body>")) {
        (Some(a), Some(b)) => {
            let body = &text[a..b + "</soapenv:Body>".len()];
            text.replacen(body, setup::EVIL_BODY, 1).replacen(
                "</soapenv:Header>",
                &format!("<w:Wrapper xmlns:w=\"urn:attacker\">{body}</w:Wrapper></soapenv:Header>"),
                1,
            )
        }
        _ => {
            return Err(DemoError::Setup(
                "the signed demo message has no Body".into(),
            ))
        }
    };
    rows.push(
        row(
            env,
            "signature wrapping (signed Body moved aside)",
            Series {
                name: "sealgate_wssec_verifications_total",
                labels: &[("route", "ledger"), ("direction", "request"), ("reason", "wssec_reference_not_allowed")],
            },
            "a Reference may point only at the Body, the Timestamp or listed header blocks — never at a copy hidden elsewhere",
            refused_soap(env, etl.clone(), wrapped.into_bytes()).then_ok(),
        )
        .await?,
    );

    rows.push(
        row(
            env,
            "replay of the signed message",
            Series {
                name: "sealgate_wssec_verifications_total",
                labels: &[("route", "ledger"), ("direction", "request"), ("reason", "wssec_replay")],
            },
            "the replay cache remembers each message until its Timestamp expires (replay_cache_entries)",
            refused_soap(env, etl.clone(), signed.clone()).then_ok(),
        )
        .await?,
    );
    Ok(rows)
}

/// Clears what the upstream saw, before a case that asks.
fn forget(env: &Env) {
    *env.seen.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// A SOAP message that must be refused with a fault and reach no upstream.
async fn refused_soap(
    env: &Env,
    cfg: Arc<rustls::ClientConfig>,
    body: Vec<u8>,
) -> Result<(String, bool), DemoError> {
    forget(env);
    let r = send(env, cfg, soap(body)?).await;
    let forwarded = env
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .is_some();
    Ok(match &r {
        Ok(a) if a.status != 200 && !forwarded => (
            format!("{} SOAP fault, nothing forwarded", a.status.as_u16()),
            true,
        ),
        Ok(a) if forwarded => (format!("{}, and the upstream got it", a.status), false),
        _ => (describe(&r), false),
    })
}

async fn send(
    env: &Env,
    cfg: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Result<Answer, String> {
    client::send(env.edge, cfg, req).await
}

/// A case body that can fail to set up: its setup error becomes the outcome.
trait ThenOk: std::future::Future<Output = Result<(String, bool), DemoError>> + Sized {
    async fn then_ok(self) -> (String, bool) {
        self.await.unwrap_or_else(|e| (e.to_string(), false))
    }
}

impl<F: std::future::Future<Output = Result<(String, bool), DemoError>>> ThenOk for F {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_case_not_as_expected_fails_the_tour() {
        let series = Series {
            name: "sealgate_requests_total",
            labels: &[],
        };
        let row = |expected| Row {
            case: "c",
            outcome: "200 OK".into(),
            expected,
            series,
            delta: 1.0,
            next: "n",
        };
        assert!(print(&[row(true), row(true)]));
        assert!(!print(&[row(true), row(false)]));
    }
}
