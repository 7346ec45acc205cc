//! The demo's side of the wire: a mutual-TLS HTTP/1.1 client, a plain-HTTP
//! scrape of `/metrics`, and counting one series in what it returns.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one demo exchange may take before it counts as failed.
const EXCHANGE: Duration = Duration::from_secs(10);

/// What came back for one request.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// TLS settings of a client trusting `ca_der` for the gateway, presenting
/// `identity` (certificate DER, PKCS#8 key DER) when given.
pub fn tls(
    ca_der: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| format!("demo CA: {e}"))?;
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.to_vec())],
                PrivateKeyDer::Pkcs8(key.to_vec().into()),
            )
            .map_err(|e| format!("client certificate: {e}"))?,
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// TLS settings of a client that accepts exactly the server certificate
/// `server_der` (the one a deployed config names), presenting `identity`
/// (certificate chain DER, PKCS#8 key DER) when given.
pub fn tls_pinned(
    server_der: Vec<u8>,
    identity: Option<(Vec<Vec<u8>>, Vec<u8>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            der: server_der,
            algorithms: provider.signature_verification_algorithms,
        }));
    let cfg = match identity {
        Some((chain, key)) => b
            .with_client_auth_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(key.into()),
            )
            .map_err(|e| format!("client certificate: {e}"))?,
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Trusts one server certificate, as itself.
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented another certificate than the configuration names".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One request over a new mutual-TLS connection to `localhost`. `Err` says
/// where it ended (the handshake refused, or the connection closed without
/// an answer).
pub async fn send(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Result<Answer, String> {
    send_to(addr, "localhost", cfg, req).await
}

/// As `send`, naming the server `name` (SNI).
pub async fn send_to(
    addr: SocketAddr,
    name: &str,
    cfg: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Result<Answer, String> {
    match tokio::time::timeout(EXCHANGE, exchange(addr, name, cfg, req)).await {
        Ok(r) => r,
        Err(_) => Err("no answer in time".into()),
    }
}

async fn exchange(
    addr: SocketAddr,
    name: &str,
    cfg: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Result<Answer, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| ended(&e, "handshake"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ended(&e, "handshake"))?;
    let conn = tokio::spawn(conn);
    // TLS 1.3 sends the server's verdict on the client certificate after
    // the client thinks the handshake is done: it shows as a closed
    // connection on the first request.
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            // The connection's own error (a TLS alert) is where the reason is;
            // the request only learns that it was cancelled.
            let own = match tokio::time::timeout(Duration::from_secs(2), conn).await {
                Ok(Ok(Err(ce))) => Some(ended(&ce, "request")),
                _ => None,
            };
            return Err(match own {
                Some(why) if why.starts_with("handshake refused") => why,
                _ => ended(&e, "request"),
            });
        }
    };
    let (parts, body) = resp.into_parts();
    // Read to the end: an answer cut short is not an answer.
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Why an exchange ended, from the error's source chain: `handshake refused
/// (ALERT)` only when the server sent a TLS alert — the gateway refusing
/// the client — never for the client's own errors (the server's certificate
/// not the one expected, a plain-HTTP port) or a connection that just closed.
fn ended(e: &(dyn std::error::Error + 'static), during: &str) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match tls {
            Some(rustls::Error::AlertReceived(alert)) => {
                return format!("handshake refused ({alert:?})");
            }
            Some(other) => return format!("TLS error on our side: {other}"),
            None => cur = err.source(),
        }
    }
    format!("connection ended during the {during}: {e}")
}

/// `GET /metrics` on the admin endpoint.
pub async fn scrape(admin: SocketAddr) -> Result<String, String> {
    let get = async {
        let tcp = TcpStream::connect(admin)
            .await
            .map_err(|e| format!("admin endpoint: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get("/metrics")
            .header("host", "admin")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(EXCHANGE, get)
        .await
        .unwrap_or_else(|_| Err("admin endpoint: no answer in time".into()))
}

/// One metric series: a name and the labels it must carry (others may be there too).
#[derive(Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
}

impl Series {
    /// The sum over every line of this series in a scrape.
    pub fn value(&self, scrape: &str) -> f64 {
        scrape
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let rest = series.strip_prefix(self.name)?;
                let labels = match rest {
                    "" => "",
                    r => r.strip_prefix('{')?.strip_suffix('}')?,
                };
                self.labels
                    .iter()
                    .all(|(k, v)| labels.split(',').any(|p| p == format!("{k}=\"{v}\"")))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        write!(f, "{}{{{}}}", self.name, labels.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_summed_over_the_lines_carrying_its_labels() {
        let scrape = "# HELP x\nsealgate_x_total{a=\"1\",b=\"2\"} 3\nsealgate_x_total{a=\"1\",b=\"3\"} 4\nsealgate_x_total{a=\"2\",b=\"2\"} 5\nsealgate_xy_total{a=\"1\"} 9\n";
        let s = Series {
            name: "sealgate_x_total",
            labels: &[("a", "1")],
        };
        assert_eq!(s.value(scrape), 7.0);
        let s = Series {
            name: "sealgate_x_total",
            labels: &[("a", "1"), ("b", "3")],
        };
        assert_eq!(s.value(scrape), 4.0);
        assert_eq!(s.to_string(), "sealgate_x_total{a=\"1\",b=\"3\"}");
    }
}
