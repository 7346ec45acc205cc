//! The header names the gateway never lets through as a client sent them:
//! connection-scoped ones and the client's own claims about where it is.
//! `proxy::headers` strips them; `config` refuses an identity or request-id
//! header named after one of them.

/// Connection-scoped headers (RFC 9110 §7.6.1) that never cross a proxy
/// (`TE` apart from `TE: trailers`, which gRPC needs on HTTP/2).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers in which a client could claim an address, scheme, host or
/// certificate of its own.
pub const CLIENT_CLAIMS: [&str; 12] = [
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
    // Envoy's client-certificate header: stripped even when the gateway's
    // identity header has another name, so an upstream reading it is never fooled.
    "x-forwarded-client-cert",
];

/// Headers requests are routed, framed or authenticated by.
pub const ROUTING: [&str; 6] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "soapaction",
    "authorization",
];
