//! Credential custody: the gateway holds an upstream's secrets and brokers
//! short-lived tokens for it, so a client proves who it is with its
//! certificate and never holds the upstream's credential.
//!
//! A `Source` (`[upstream.NAME.auth]` compiled) says how a token is had; the
//! `Broker`, which outlives configuration snapshots, caches one token per
//! (source, principal), fetches each once however many requests wait for it,
//! and backs off while an endpoint refuses or does not answer.

pub mod broker;
pub mod cli;
pub mod fetch;
pub mod jwt;
pub mod soap;
pub mod source;

pub use broker::{Broker, Token, TokenError};
pub use source::Source;
