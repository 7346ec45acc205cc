//! The proxy: accepting connections (`server`) and serving them on one
//! runtime per core (`workers`), one connection's admission,
//! TLS and HTTP (`conn`), one request's phases (`request`, with the
//! WS-Security parts in `wssec` and the log line in `record`), header
//! hygiene, bodies that stream within bounds, and the replies the gateway
//! writes itself.

pub mod body;
pub mod conn;
pub mod credentials;
pub mod headers;
pub mod record;
pub mod reply;
pub mod request;
pub mod server;
mod streamed;
pub mod workers;
pub mod wssec;
