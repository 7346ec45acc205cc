//! What the demo stands on: a PKI made in memory (written to a private
//! temporary directory only so `--serve` can hand the files to curl), an
//! upstream that remembers what reached it, and the gateway's config.

use crate::pki::{self, Ca, Issued, KeyAlg, Leaf, Usage};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The demo's certificates.
pub struct Material {
    pub ca: Ca,
    pub gateway: Issued,
    /// `CN=etl-prod, OU=ETL`: trusted, allowed on the API routes.
    pub etl: Issued,
    /// Issued by a CA the gateway does not trust.
    pub stranger: Issued,
    pub expired: Issued,
    /// Listed in the gateway's CRL.
    pub revoked: Issued,
    /// Signs the SOAP messages the ledger route verifies.
    pub signer: Issued,
    pub crl: pki::Crl,
}

impl Material {
    pub fn new() -> Result<Material, pki::Error> {
        let org = "sealgate demo (NOT FOR PRODUCTION)";
        let ca = Ca::new("sealgate demo CA", org, 2)?;
        let mut gw = Leaf::new("localhost", Usage::Server);
        gw.dns = vec!["localhost".into()];
        gw.ips = vec![[127, 0, 0, 1].into()];
        gw.to_days = 2;
        let client = |cn: &str| {
            let mut l = Leaf::new(cn, Usage::Client);
            l.ou = Some("ETL".into());
            l.o = Some("Acme".into());
            l.to_days = 2;
            l
        };
        let stranger_ca = Ca::new("Somebody Else's CA", "elsewhere", 2)?;
        let mut expired = client("etl-expired");
        expired.from_days = -30;
        expired.to_days = -1;
        let revoked = ca.issue(&client("etl-stolen-laptop"))?;
        let mut signer = Leaf::new("ledger-signer", Usage::Signer);
        signer.o = Some("Acme".into());
        signer.alg = KeyAlg::Rsa2048;
        signer.to_days = 2;
        Ok(Material {
            gateway: ca.issue(&gw)?,
            etl: ca.issue(&client("etl-prod"))?,
            stranger: stranger_ca.issue(&client("etl-prod"))?,
            expired: ca.issue(&expired)?,
            crl: ca.crl_between(&[revoked.serial], -1, 2)?,
            revoked,
            signer: ca.issue(&signer)?,
            ca,
        })
    }
}

/// A directory only its owner can enter, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> std::io::Result<Scratch> {
        let mut b = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut b);
        let dir = std::env::temp_dir().join(format!("sealgate-demo-{}", crate::hex::lower(&b)));
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&dir)?;
        Ok(Scratch(dir))
    }

    /// Writes `name`, readable by its owner only.
    pub fn write(&self, name: &str, body: &[u8]) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.0.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)?;
        std::io::Write::write_all(&mut f, body)?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the certificate files the config and curl need.
pub fn write_files(m: &Material, dir: &Scratch) -> std::io::Result<()> {
    for (name, body) in [
        ("ca.crt", m.ca.cert_pem.as_str()),
        ("ca.crl", m.crl.pem.as_str()),
        ("gateway.crt", m.gateway.cert_pem.as_str()),
        ("gateway.key", m.gateway.key_pem.as_str()),
        ("etl-prod.crt", m.etl.cert_pem.as_str()),
        ("etl-prod.key", m.etl.key_pem.as_str()),
        ("stranger.crt", m.stranger.cert_pem.as_str()),
        ("stranger.key", m.stranger.key_pem.as_str()),
        ("expired.crt", m.expired.cert_pem.as_str()),
        ("expired.key", m.expired.key_pem.as_str()),
        ("revoked.crt", m.revoked.cert_pem.as_str()),
        ("revoked.key", m.revoked.key_pem.as_str()),
    ] {
        dir.write(name, body.as_bytes())?;
    }
    Ok(())
}

/// The gateway's configuration: one listener, four routes to the upstream.
pub fn config(dir: &Path, upstream: SocketAddr) -> String {
    let p = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    format!(
        r#"# The demo's gateway (sealgate demo writes this; it is removed on exit).
[admin]
listen = "127.0.0.1:0"

[server]
grace_period = "2s"

[[listener]]
name = "demo"
listen = "127.0.0.1:0"
[listener.tls]
cert = {gw_crt}
key = {gw_key}
client_auth = "required"
client_ca = {ca}
crls = [{crl}]

# Any certificate the demo CA issued (and did not revoke).
[[route]]
name = "api"
listener = "demo"
upstream = "app"
match = {{ path_prefix = "/api/" }}

# Only the reporting tool's identity.
[[route]]
name = "reports"
listener = "demo"
upstream = "app"
match = {{ path_prefix = "/reports/" }}
allow = [{{ cn = "etl-reporting", ou = "ETL" }}]

# Bulk exports: one request a minute per client, bursts of two.
[[route]]
name = "bulk"
listener = "demo"
upstream = "app"
match = {{ path_prefix = "/bulk/" }}
rate_limit = {{ key = "client", per_minute = 1, burst = 2 }}

# SOAP to the ledger: signed by a certificate of the demo CA, or refused.
[[route]]
name = "ledger"
listener = "demo"
upstream = "app"
match = {{ path_prefix = "/soap/ledger", methods = ["POST"] }}
[route.wssec.request]
mode = "verify"
trust = {ca}

[upstream.app]
url = "http://{upstream}"
"#,
        gw_crt = p("gateway.crt"),
        gw_key = p("gateway.key"),
        ca = p("ca.crt"),
        crl = p("ca.crl"),
    )
}

/// What the upstream saw last: path and body.
pub type Seen = Arc<Mutex<Option<(String, Bytes)>>>;

/// An upstream on 127.0.0.1 that answers 200 with a line of JSON and
/// remembers the last request, so the demo can show what was forwarded.
pub async fn upstream() -> std::io::Result<(SocketAddr, Seen)> {
    let sock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = sock.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let answer = serde_json::json!({
                            "upstream": "sealgate demo application",
                            "path": path,
                            "body_bytes": body.len(),
                        });
                        *kept.lock().unwrap_or_else(PoisonError::into_inner) = Some((path, body));
                        let mut r = Response::new(Full::new(Bytes::from(format!("{answer}\n"))));
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, seen))
}

/// The SOAP message the ledger route receives (before signing).
pub const LEDGER_POST: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:acct="urn:example:ledger"><soapenv:Header></soapenv:Header><soapenv:Body><acct:PostEntry><acct:account>4000-SALES</acct:account><acct:amount currency="EUR">1250.00</acct:amount></acct:PostEntry></soapenv:Body></soapenv:Envelope>"#;

/// The attacker's Body in the wrapping case.
pub const EVIL_BODY: &str = r#"<soapenv:Body><acct:PostEntry><acct:account>9999-MALLORY</acct:account><acct:amount currency="EUR">999999.00</acct:amount></acct:PostEntry></soapenv:Body>"#;
