//! sealgate: a streaming mutual-TLS reverse proxy for SOAP and REST integrations.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod dn;
pub mod echo;
pub mod fingerprint;
pub mod hex;
pub mod hygiene;
pub mod path;
pub mod pki;
pub mod probe;
pub mod proxy;
pub(crate) mod reason;
pub mod redact;
pub mod refusal;
pub mod reload;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod wssec;
