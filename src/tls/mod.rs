//! TLS: the listener side (client-certificate checks), why a handshake was
//! refused, the client identity parsed from a certificate, PEM loading, and
//! the upstream client side. Nothing here reads the config: the runtime hands
//! it loaded material.

pub mod certs;
pub mod crl;
pub mod identity;
pub mod reason;
pub mod server;
pub mod upstream;

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
