//! WS-Security on SOAP messages, free of HTTP: bytes and a policy in, a verdict
//! and bytes out. Used alike by the proxy, the CLI, tests, benches and fuzzers.
//!
//! `xml` is the hardened reader, `c14n` canonicalization on its events,
//! `envelope` the SOAP structure with byte spans, `dsig` XML-Signature,
//! `tokens` keys, timestamps and UsernameTokens, `replay` the replay cache,
//! `error` and `reason` why a message was refused,
//! `verify` the entry point, `sign` the signer.

pub mod c14n;
pub mod dsig;
pub mod envelope;
pub mod error;
mod pass;
pub mod reason;
pub mod replay;
pub mod sign;
pub mod stream;
pub mod tokens;
pub mod verify;
pub mod xml;
