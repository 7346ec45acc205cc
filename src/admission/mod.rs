//! Admission control: who may connect and how often. IP allowlists, PROXY
//! protocol, rate limits, concurrency gates and automatic blocking. Nothing
//! here knows about HTTP requests beyond the keys it is given.

pub mod block;
pub mod concurrency;
pub mod ip;
pub mod proxy_protocol;
pub mod rate;
