//! Credential custody: the gateway holds an upstream's secrets and brokers
//! short-lived tokens for it, so a client proves who it is with its
//! certificate and never holds the upstream's credential.

pub mod jwt;
