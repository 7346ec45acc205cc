//! Header hygiene between client and upstream: hop-by-hop headers out, spoofed
//! identity headers out, forwarding headers and the request id in.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Connection-scoped headers (RFC 9110 §7.6.1) that never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
    h.remove("proxy-connection");
}

/// Headers in which a client could claim an address, scheme or host of its own.
const CLIENT_CLAIMS: [&str; 11] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
];

/// Removes the identity header and any name that equals it once `_` reads as `-`.
pub fn strip_identity(h: &mut HeaderMap, identity: &HeaderName) {
    h.remove(identity);
    let twins: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().contains('_') && k.as_str().replace('_', "-") == identity.as_str())
        .cloned()
        .collect();
    for k in twins {
        h.remove(k);
    }
}

/// A request id from the client is kept when it is short and plain; anything
/// else (empty, long, odd bytes that could break a log line) is replaced.
pub fn well_formed_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'=')
        });
    ok.then_some(s)
}

/// A new random request id: 128 bits as 32 hex digits.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system RNG failing is not a reason to drop a request; fall back to time and a counter.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    crate::tls::identity::hex_upper(&b, "").to_ascii_lowercase()
}

/// What the pipeline knows about the client that the upstream should learn.
pub struct Forwarded<'a> {
    pub peer_ip: std::net::IpAddr,
    pub original_host: Option<&'a str>,
    pub request_id: &'a str,
    pub request_id_header: &'a HeaderName,
    pub identity_header: &'a HeaderName,
    pub identity: Option<&'a HeaderValue>,
}

/// Rewrites request headers for the upstream.
pub fn prepare_upstream(h: &mut HeaderMap, f: &Forwarded<'_>) {
    strip_hop_by_hop(h);
    // Whatever the client sent under the identity header is never passed on,
    // nor its underscore spelling, which CGI-style servers read as the same header.
    strip_identity(h, f.identity_header);
    if let Some(id) = f.identity {
        h.insert(f.identity_header.clone(), id.clone());
    }
    // The gateway is the trust boundary: the client's own claims about where it
    // came from are dropped, and the ones the gateway knows are set.
    for name in CLIENT_CLAIMS {
        h.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(&f.peer_ip.to_string()) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(host) = f.original_host.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert("x-forwarded-host", host);
    }
    if let Ok(v) = HeaderValue::from_str(f.request_id) {
        h.insert(f.request_id_header.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert!(h.get("x-keep").is_some());
    }

    #[test]
    fn identity_header_twins_are_removed() {
        let id = HeaderName::from_static("x-forwarded-client-cert");
        let mut h = HeaderMap::new();
        h.insert(
            "x_forwarded_client_cert",
            HeaderValue::from_static("forged"),
        );
        h.insert(
            "x-forwarded_client-cert",
            HeaderValue::from_static("forged"),
        );
        h.insert(
            "x-forwarded-client-cert",
            HeaderValue::from_static("forged"),
        );
        h.insert("x_other", HeaderValue::from_static("kept"));
        strip_identity(&mut h, &id);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x_other"));
    }

    #[test]
    fn request_ids() {
        assert!(well_formed_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(well_formed_request_id(&HeaderValue::from_static("a b")).is_none());
        assert!(
            well_formed_request_id(&HeaderValue::from_str(&"a".repeat(129)).unwrap()).is_none()
        );
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_request_id());
    }
}
