//! Admission control: who may connect and how often. IP allowlists, PROXY
//! protocol, rate limits, concurrency gates and automatic blocking. Nothing
//! here knows about HTTP requests beyond the keys it is given.

pub mod block;
pub mod concurrency;
pub mod ip;
pub mod proxy_protocol;
pub mod rate;

use crate::reason::reasons;

reasons! {
    /// A connection refused at accept, before any TLS work, as
    /// `sealgate_connections_total{result="refused",reason}` counts it.
    pub enum Refused {
        IpNotAllowed = "ip_not_allowed",
        Blocked = "blocked",
        HandshakeRate = "handshake_rate",
        TooManyConnections = "too_many_connections",
        ProxyUntrusted = "proxy_untrusted",
        ProxyMissing = "proxy_missing",
        ProxyInvalid = "proxy_invalid",
        ProxyTimeout = "proxy_timeout",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<&str> =
            super::Refused::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), super::Refused::COUNT);
    }
}
