//! The admin endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
//! Plain HTTP, meant for 127.0.0.1 or a private network only.

use crate::runtime::Runtime;
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
    rt: Arc<Runtime>,
}

impl AdminState {
    pub fn new(rt: Arc<Runtime>) -> AdminState {
        AdminState {
            ready: AtomicBool::new(false),
            rt,
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
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(state.rt.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/blocked" => blocked(&state),
        "/readyz" if state.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    })
}

/// The clients blocked right now, with the evidence, as JSON.
fn blocked(state: &AdminState) -> Response<Full<Bytes>> {
    let list: Vec<serde_json::Value> = state
        .rt
        .blocker
        .as_ref()
        .map(|b| b.active())
        .unwrap_or_default()
        .into_iter()
        .map(|(who, b)| {
            serde_json::json!({
                "kind": who.kind(),
                "client": who.to_string(),
                "failures": b.failures,
                "reasons": b.reasons,
                "blocked_until_unix": b.until_unix,
                "remaining_secs": b.until.saturating_duration_since(std::time::Instant::now()).as_secs(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "enabled": state.rt.blocker.is_some(),
        "blocked": list,
    });
    let mut r = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
