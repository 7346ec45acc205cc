//! The proxy: accepting connections, the per-request pipeline, header hygiene,
//! bodies that stream with limits, and the replies the gateway itself writes.

pub mod body;
pub mod headers;
pub mod path;
pub mod pipeline;
pub mod reply;
pub mod server;
