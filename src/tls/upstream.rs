//! TLS towards an upstream: which roots to trust and, optionally, the gateway's
//! own client certificate (Salesforce's mutual-TLS port wants one).

use super::certs::{self, CertError, CertSummary};
use crate::config::{Config, Problem, UpstreamConfig};
use std::sync::Arc;

pub fn client_config(
    config: &Config,
    u: &UpstreamConfig,
    path: &str,
    summaries: &mut Vec<CertSummary>,
) -> Result<rustls::ClientConfig, Problem> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::new(path, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match u.ca.as_deref() {
        // A plain-http upstream never uses the roots; don't demand system CAs for it.
        None if u.url.starts_with("http://") => {}
        None | Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Problem::new(
                    format!("{path}.ca"),
                    "no system CA certificates found (install the ca-certificates package) — or set ca = \"path/to/upstream-ca.crt\"",
                ));
            }
        }
        Some(file) => {
            let p = config.resolve(std::path::Path::new(file));
            for der in certs::load_certs(&p)
                .map_err(|e| Problem::new(format!("{path}.ca"), e.to_string()))?
            {
                summaries.push(
                    certs::check_validity(&format!("{path}.ca"), &p, &der)
                        .map_err(|e| Problem::new(format!("{path}.ca"), e.to_string()))?,
                );
                roots.add(der).map_err(|e| {
                    Problem::new(
                        format!("{path}.ca"),
                        format!(
                            "{} holds a certificate that is not a usable trust anchor: {e}",
                            p.display()
                        ),
                    )
                })?;
            }
        }
    }
    let builder = builder.with_root_certificates(roots);
    let mut cc = match (&u.client_cert, &u.client_key) {
        (Some(c), Some(k)) => {
            let (key_path, cert_path) = (config.resolve(k), config.resolve(c));
            let (certified, mut s) =
                certs::load_identity(&format!("{path}.client_cert"), &cert_path, &key_path)
                    .map_err(|e| {
                        let key = match &e {
                            CertError::KeyMismatch { .. } | CertError::Unusable { .. } => {
                                "client_key"
                            }
                            CertError::Read { path, .. } if *path == key_path => "client_key",
                            CertError::Empty {
                                what: "PRIVATE KEY",
                                ..
                            } => "client_key",
                            _ => "client_cert",
                        };
                        Problem::new(format!("{path}.{key}"), e.to_string())
                    })?;
            summaries.append(&mut s);
            builder.with_client_cert_resolver(Arc::new(OneClientCert(Arc::new(certified))))
        }
        _ => builder.with_no_client_auth(),
    };
    // ALPN (h2, http/1.1) is set by the connector that wraps this config.
    cc.alpn_protocols.clear();
    Ok(cc)
}

/// The gateway's one client certificate for this upstream.
#[derive(Debug)]
struct OneClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}
