//! TLS towards an upstream: which roots to trust and, optionally, the gateway's
//! own client certificate (Salesforce's mutual-TLS port wants one).

use std::sync::Arc;

/// The upstream TLS config could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the upstream TLS settings: {0}")]
pub struct ClientTlsError(String);

/// The rustls client config of one upstream.
pub fn client_config(
    roots: rustls::RootCertStore,
    identity: Option<Arc<rustls::sign::CertifiedKey>>,
) -> Result<rustls::ClientConfig, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientTlsError(e.to_string()))?
        .with_root_certificates(roots);
    let mut cc = match identity {
        Some(id) => builder.with_client_cert_resolver(Arc::new(OneClientCert(id))),
        None => builder.with_no_client_auth(),
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
