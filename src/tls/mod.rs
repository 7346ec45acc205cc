//! TLS: the listener side (client-certificate checks and refusal reasons), the
//! client identity parsed from a certificate, and the upstream client side.

pub mod certs;
pub mod identity;
pub mod server;
pub mod upstream;

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
