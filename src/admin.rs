//! The admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`,
//! `/blocked`, and `POST /reload`. Plain HTTP, meant for 127.0.0.1 or a
//! private network only.

use crate::reload::{Live, Reloader};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct AdminState {
    ready: AtomicBool,
    live: Arc<Live>,
    reloader: Reloader,
}

impl AdminState {
    pub fn new(live: Arc<Live>, reloader: Reloader) -> AdminState {
        AdminState {
            ready: AtomicBool::new(false),
            live,
            reloader,
        }
    }
    /// Ready while serving; not ready before start and from the moment a drain
    /// begins — `drain_delay` before the listeners close — so a load balancer
    /// stops sending new connections first.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

pub async fn serve(sock: TcpListener, state: Arc<AdminState>) {
    loop {
        let (tcp, _) = match sock.accept().await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn answer(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() == "/reload" {
        return Ok(if req.method() == Method::POST {
            reload(&state).await
        } else {
            text(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload\n")
        });
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(state.live.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/blocked" => blocked(&state).await,
        "/readyz" if state.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz, /blocked or POST /reload\n",
        ),
    })
}

/// Reloads and answers with the outcome as JSON: 200 when the new
/// configuration is live (or nothing had changed), 422 with every problem
/// when it was refused and the previous one still serves.
async fn reload(state: &AdminState) -> Response<Full<Bytes>> {
    let (status, body) = match state.reloader.reload("admin").await {
        Ok(r) => (
            StatusCode::OK,
            serde_json::json!({
                "result": "ok",
                "changed": r.changed,
                "sha256": r.sha256,
                "generation": r.generation,
            }),
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({
                "result": "error",
                "problems": e.problems(),
                "serving_sha256": state.live.current().hash,
            }),
        ),
    };
    let mut r = json(&body);
    *r.status_mut() = status;
    r
}

fn json(body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The clients blocked right now, with the evidence, as JSON: across the
/// fleet when the blocks are shared (and why not, when the store does not answer).
async fn blocked(state: &AdminState) -> Response<Full<Bytes>> {
    let rt = state.live.current();
    let (list, store_error) = match &rt.blocker {
        Some(b) => b.active().await,
        None => (Vec::new(), None),
    };
    let now = std::time::Instant::now();
    let list: Vec<serde_json::Value> = list
        .into_iter()
        .map(|(who, b)| {
            serde_json::json!({
                "kind": who.kind(),
                "client": who.to_string(),
                "failures": b.failures,
                "reasons": b.reasons,
                "blocked_until_unix": b.until_unix,
                "remaining_secs": b.until.saturating_duration_since(now).as_secs(),
            })
        })
        .collect();
    let mut body = serde_json::json!({
        "enabled": rt.blocker.is_some(),
        "shared": rt.store().is_some(),
        "blocked": list,
    });
    if let Some(e) = store_error {
        body["store_error"] = serde_json::Value::String(e.to_string());
    }
    json(&body)
}

/// The status the admin endpoint at `listen` answers for `path`, asked over
/// plain blocking HTTP/1.0 within `timeout` (`sealgate health`: no runtime,
/// no client library for one line). A wildcard address is asked on loopback.
pub fn health(
    listen: std::net::SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let mut s = std::net::TcpStream::connect_timeout(&SocketAddr::new(ip, listen.port()), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let line = std::str::from_utf8(&head[..n]).unwrap_or("");
    line.strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}
