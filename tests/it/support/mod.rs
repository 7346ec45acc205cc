//! Shared test fixtures: a fresh PKI per run (`sealgate::pki`), an in-process
//! gateway on loopback ports, real upstream servers, and TLS clients.
#![allow(dead_code)]

pub mod interop;
pub mod process;
pub mod wssec;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sealgate::pki::{Ca, Issued, KeyAlg, Leaf, Usage};
use sealgate::proxy::server::{Gateway, Options};
use sealgate::reload::{ReloadError, Reloaded, Source};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A throwaway PKI written to a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub server: Issued,
}

impl Pki {
    pub fn new() -> Pki {
        sealgate::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("Test Client CA", "sealgate tests", 30).unwrap();
        let mut s = Leaf::new("localhost", Usage::Server);
        s.dns = vec!["localhost".into()];
        s.ips = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let server = ca.issue(&s).unwrap();
        let pki = Pki { dir, ca, server };
        pki.write("ca.crt", &pki.ca.cert_pem);
        pki.write("server.crt", &pki.server.cert_pem);
        let key = pki.write("server.key", &pki.server.key_pem);
        // As an operator keeps it: a key others can read is a config warning.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    /// A client certificate from the test CA.
    pub fn client(&self, cn: &str, ou: &str, alg: KeyAlg) -> Issued {
        let mut l = Leaf::new(cn, Usage::Client);
        l.ou = Some(ou.into());
        l.o = Some("Acme".into());
        l.alg = alg;
        self.ca.issue(&l).unwrap()
    }

    /// TLS settings of a client with a fresh `CN=etl-prod, OU=ETL` certificate.
    pub fn etl_client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_tls(
            &self.ca.cert_pem,
            Some(&self.client("etl-prod", "ETL", KeyAlg::EcdsaP256)),
            alpn,
        )
    }

    pub fn issue(&self, leaf: &Leaf) -> Issued {
        self.ca.issue(leaf).unwrap()
    }

    /// The `[listener.tls]` lines for this PKI.
    pub fn listener_tls(&self, client_auth: &str) -> String {
        let ca = if client_auth == "off" {
            String::new()
        } else {
            format!("client_ca = {:?}\n", self.path("ca.crt"))
        };
        format!(
            "cert = {:?}\nkey = {:?}\nclient_auth = {client_auth:?}\n{ca}",
            self.path("server.crt"),
            self.path("server.key"),
        )
    }
}

/// A gateway running in this process, with its config file.
pub struct TestGateway {
    pub gw: Gateway,
    pub config: PathBuf,
}

impl TestGateway {
    /// Starts on `toml`, written to a file in `dir`; no file watch (tests
    /// that reload say when).
    pub async fn start(dir: &Path, toml: &str) -> TestGateway {
        Self::start_with(
            dir,
            toml,
            Options {
                watch: false,
                ..Options::default()
            },
        )
        .await
    }

    pub async fn start_with(dir: &Path, toml: &str, options: Options) -> TestGateway {
        let file = dir.join(format!("gw-{}.toml", rand_suffix()));
        std::fs::write(&file, toml).unwrap();
        let source = Source::new(file.clone());
        let compiled = source
            .compile()
            .await
            .unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
        let gw = Gateway::start(source, compiled.runtime, options)
            .await
            .unwrap();
        TestGateway { gw, config: file }
    }

    /// Rewrites the config file and reloads.
    pub async fn reload_with(&self, toml: &str) -> Result<Reloaded, ReloadError> {
        std::fs::write(&self.config, toml).unwrap();
        self.gw.reloader().reload("test").await
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.gw.addr(listener).unwrap()
    }

    pub async fn metrics(&self) -> String {
        admin_get(self.gw.admin_addr, "/metrics").await.1
    }

    /// Waits until a metric line with `needle` and value `value` shows up.
    pub async fn wait_metric(&self, needle: &str, value: &str) -> String {
        self.wait_metric_within(needle, value, Duration::from_secs(5))
            .await
    }

    /// As `wait_metric`, failing unless the value shows up within `limit`.
    pub async fn wait_metric_within(&self, needle: &str, value: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.metrics().await;
            if m.lines()
                .any(|l| l.starts_with(needle) && l.ends_with(&format!(" {value}")))
            {
                return m;
            }
            if Instant::now() > deadline {
                panic!("metric {needle} = {value} not found in:\n{m}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs one `#[ignore]`d test of this binary alone in a child process, so
/// what it measures about its own process (resident memory) is not shared
/// with tests running beside it. Returns the child's output.
pub fn isolated(test: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ISOLATED, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{test} failed in its own process:\n{text}"
    );
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
    text
}

const ISOLATED: &str = "SEALGATE_TEST_ISOLATED";

/// True inside the child process `isolated` starts; such tests do nothing elsewhere.
pub fn is_isolated() -> bool {
    std::env::var_os(ISOLATED).is_some()
}

pub fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// GET on the admin endpoint over plain HTTP.
pub async fn admin_get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    admin_call(addr, http::Method::GET, path).await
}

/// POST (no body) on the admin endpoint: `/reload`.
pub async fn admin_post(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    admin_call(addr, http::Method::POST, path).await
}

async fn admin_call(addr: SocketAddr, method: http::Method, path: &str) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Default config section for the admin endpoint on an ephemeral port.
pub const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

// ---------- upstream servers ----------

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<BoxBodyT>> + Send>>
        + Send
        + Sync,
>;
pub type BoxBodyT = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> BoxBodyT {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A plain-HTTP upstream on 127.0.0.1 answering with `handler`.
pub async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<BoxBodyT>> + Send + 'static,
{
    serve_upstream(Arc::new(move |r| Box::pin(handler(r))), None).await
}

/// Accepts on a fresh loopback port and serves `h` (over TLS with `tls`).
async fn serve_upstream(h: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let sock = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = sock.accept().await else {
                continue;
            };
            let (h, tls) = (h.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |r| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(r).await) }
                });
                let auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => auto.serve_connection(TokioIo::new(tcp), svc).await,
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => auto.serve_connection(TokioIo::new(stream), svc).await,
                        Err(_) => return,
                    },
                };
            });
        }
    });
    addr
}

/// An upstream that answers with the request headers it received, as JSON.
pub async fn header_echo_upstream() -> SocketAddr {
    upstream(|req: Request<Incoming>| async move {
        let mut map = serde_json::Map::new();
        for (k, v) in req.headers() {
            map.insert(
                k.as_str().into(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            );
        }
        map.insert("__path".into(), req.uri().to_string().into());
        let n = count_body(req.into_body()).await;
        map.insert("__body_bytes".into(), n.into());
        Response::new(full(serde_json::Value::Object(map).to_string()))
    })
    .await
}

pub async fn count_body<B>(mut body: B) -> u64
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => break,
        }
    }
    n
}

/// A body of `total` bytes of a repeating pattern, produced as it is read.
pub struct Pattern {
    left: u64,
    chunk: Bytes,
}

impl Pattern {
    pub fn new(total: u64) -> Pattern {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        Pattern {
            left: total,
            chunk: Bytes::from(chunk),
        }
    }
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

// ---------- TLS clients ----------

pub fn client_tls(ca_pem: &str, id: Option<&Issued>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match id {
        Some(i) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(i.cert_pem.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(i.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

pub async fn tls_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// TLS over an already connected stream (after a PROXY header, say).
pub async fn tls_on(
    tcp: TcpStream,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// Whether a TLS client gets a 200 for `GET /` (the handshake and the
/// identity check after it both passed).
pub async fn attempt(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match tls_connect(addr, cfg).await {
        Err(_) => false,
        Ok(mut s) => {
            let _ = s
                .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await;
            let mut buf = [0u8; 512];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
                Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
            )
        }
    }
}

/// The metric line of handshakes refused on listener "edge" for `reason`.
pub fn refused_handshakes(reason: &str) -> String {
    format!(
        "sealgate_tls_handshakes_total{{listener=\"edge\",reason=\"{reason}\",result=\"refused\"}}"
    )
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one request over a new HTTP/1.1 connection.
pub async fn send<B>(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    req: Request<B>,
) -> Result<Reply, String>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let tls = tls_connect(addr, cfg).await.map_err(|e| e.to_string())?;
    send_over(tls, req).await
}

/// Sends one request over an established TLS stream.
pub async fn send_over<B>(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    req: Request<B>,
) -> Result<Reply, String>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = s.send_request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The standard gateway config: one listener "edge" and the given routes and upstreams.
pub fn config(pki: &Pki, client_auth: &str, rest: &str) -> String {
    format!(
        "{ADMIN}\n[server]\ngrace_period = \"5s\"\n\n[[listener]]\nname = \"edge\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\n{}\n{rest}",
        pki.listener_tls(client_auth)
    )
}

// ---------- TLS upstreams and HTTP/2 clients ----------

/// An upstream over TLS with the test PKI's server certificate (localhost),
/// offering `h2` and `http/1.1`, answering with `handler`. The gateway
/// reaches it as `https://localhost:PORT` with `ca` = the PKI's `ca.crt`.
pub async fn tls_upstream<F, Fut>(pki: &Pki, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<BoxBodyT>> + Send + 'static,
{
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let mut sc = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
    serve_upstream(Arc::new(move |r| Box::pin(handler(r))), Some(acceptor)).await
}

/// The `[upstream.NAME]` table for a `tls_upstream`.
pub fn tls_upstream_cfg(pki: &Pki, name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[upstream.{name}]\nurl = \"https://localhost:{}\"\nca = {:?}\n{extra}\n",
        addr.port(),
        pki.path("ca.crt")
    )
}

/// An HTTP/2 connection to the gateway (ALPN `h2`), with its initial stream
/// window: a client that never reads a response body never widens it.
pub async fn h2_connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    window: u32,
) -> hyper::client::conn::http2::SendRequest<BoxBodyT> {
    let tls = tls_connect(addr, cfg).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (s, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .initial_connection_window_size(window.max(65_535))
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    s
}

/// A `[[route]]` on the "edge" listener to upstream `up`, with extra lines.
pub fn route(name: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\nlistener = \"edge\"\nupstream = \"up\"\nmatch = {{ path_prefix = \"{prefix}\" }}\n{extra}\n"
    )
}

/// Counts a metric line (all labels given, in Prometheus' sorted order) or 0.
pub fn metric_value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A body whose frames come from a channel, for uploads and responses that
/// trickle, pause or never end.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

/// A channel body and its sender.
pub fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    ChannelBody,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (tx, ChannelBody(rx))
}

// ---------- WS-Security signers ----------

/// A signing certificate from the test CA (`O=Acme`).
pub fn signer(pki: &Pki, cn: &str) -> Issued {
    let mut l = Leaf::new(cn, Usage::Signer);
    l.o = Some("Acme".into());
    pki.issue(&l)
}

/// `msg` signed now by `who` (BinarySecurityToken, Body and Timestamp).
pub fn signed(msg: &str, who: &Issued) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use sealgate::wssec::sign::{sign, SignOptions, SigningKey};
    let key =
        rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(who.key_pem.as_bytes()).unwrap();
    let key = SigningKey::from_pkcs8_der(key.secret_pkcs8_der()).unwrap();
    sign(
        msg.as_bytes(),
        &key,
        &who.der,
        &SignOptions::new(std::time::SystemTime::now()),
    )
    .unwrap()
}

/// Reads one HTTP/1.1 response (head and a `content-length` body) off a raw stream.
pub async fn read_response<S: tokio::io::AsyncReadExt + Unpin>(s: &mut S) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                return got;
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}
