//! WS-Security on SOAP messages, free of HTTP: bytes and a policy in, a verdict
//! and bytes out. Used alike by the proxy, the CLI, tests, benches and fuzzers.

pub mod c14n;
pub mod xml;
