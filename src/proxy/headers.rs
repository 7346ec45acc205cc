//! Header hygiene between client and upstream: hop-by-hop headers out (and
//! every header `Connection` names), spoofed identity and origin headers out —
//! under any spelling a CGI-style server would read as the same name, and in
//! trailers too — and the gateway's own forwarding headers and request id in.

use crate::tls::identity::PeerIdentity;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::hygiene::{CLIENT_CLAIMS, HOP_BY_HOP};

/// The names a `Connection` header lists (lower case, as header names are).
pub fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Whether `TE` asks for nothing but trailers (the one value HTTP/2 allows).
fn te_is_trailers(h: &HeaderMap) -> bool {
    let mut values = h.get_all(header::TE).iter().peekable();
    values.peek().is_some()
        && values.all(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .all(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        })
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
/// `TE: trailers` survives when `keep_te_trailers`.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_te_trailers: bool) {
    let named = connection_named(h);
    let keep_te = keep_te_trailers && te_is_trailers(h);
    for n in named.iter().map(HeaderName::as_str).chain(HOP_BY_HOP) {
        if n == "te" && keep_te {
            continue;
        }
        h.remove(n);
    }
    if keep_te {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    } else {
        h.remove(header::TE);
    }
}

/// Removes every header a client may not send upstream: origin claims, the
/// identity header, and each of them spelled with `_` for `-`.
/// Headers that describe a body's exact bytes, dropped when a WS-Security
/// stage replaces the body: they would describe the old one.
const OF_THE_BYTES: [&str; 6] = [
    "content-length",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
    "etag",
];

/// The body was rewritten (a Security header added or removed).
/// The body length the headers declare, if they declare one that parses.
pub fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

pub fn body_replaced(h: &mut HeaderMap) {
    for name in OF_THE_BYTES {
        h.remove(name);
    }
}

pub fn strip_client_claims(h: &mut HeaderMap, identity: &HeaderName) {
    strip_where(h, |name| {
        name == identity.as_str() || CLIENT_CLAIMS.contains(&name)
    });
}

/// Removes every header `forbidden` names, also when spelled with `_` for
/// `-` (CGI-style servers read `x_api_key` as `x-api-key`).
pub fn strip_where(h: &mut HeaderMap, forbidden: impl Fn(&str) -> bool) {
    let mut gone: Vec<HeaderName> = Vec::new();
    for k in h.keys() {
        let name = k.as_str();
        let hit = if name.contains('_') {
            forbidden(&name.replace('_', "-"))
        } else {
            forbidden(name)
        };
        if hit {
            gone.push(k.clone());
        }
    }
    for k in gone {
        h.remove(k);
    }
}

/// Request trailers get the same treatment as request headers.
/// Headers that carry a client's own credential for an upstream (and, with
/// `_` for `-`, what CGI-style servers read as the same).
pub const CLIENT_CREDENTIALS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    // Salesforce's session header (Bulk API 1.0).
    "x-sfdc-session",
    // Salesforce's Pub/Sub API (gRPC) session.
    "accesstoken",
];

pub fn scrub_trailers(t: &mut HeaderMap, identity: &HeaderName) {
    strip_hop_by_hop(t, false);
    strip_client_claims(t, identity);
    // Credentials have no place in trailers (RFC 9110 §6.5.1).
    strip_where(t, |n| CLIENT_CREDENTIALS.contains(&n));
    t.remove(header::HOST);
    t.remove(header::CONTENT_LENGTH);
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

/// What the pipeline knows about the client that the upstream should learn.
pub struct ForwardContext<'a> {
    pub peer_ip: &'a HeaderValue,
    pub original_host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
    pub request_id_header: &'a HeaderName,
    pub identity_header: &'a HeaderName,
    pub identity: Option<&'a HeaderValue>,
}

/// Rewrites request headers for the upstream.
pub fn prepare_upstream(h: &mut HeaderMap, f: &ForwardContext<'_>) {
    strip_hop_by_hop(h, true);
    // The gateway is the trust boundary: the client's own claims about who
    // and where it is are dropped, and the ones the gateway knows are set.
    strip_client_claims(h, f.identity_header);
    if let Some(id) = f.identity {
        h.insert(f.identity_header.clone(), id.clone());
    }
    h.insert("x-forwarded-for", f.peer_ip.clone());
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(host) = f.original_host.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert("x-forwarded-host", host);
    }
    h.insert(f.request_id_header.clone(), f.request_id.clone());
}

/// Renders the identity for the upstream header, in the `x-forwarded-client-cert`
/// style Envoy uses: `Hash=..;Subject="..";URI="..";DNS=".."`. Every value is
/// quoted with `\` and `"` escaped and control bytes percent-encoded, so no
/// certificate field can add fields or elements of its own.
pub fn identity_value(id: &PeerIdentity) -> String {
    fn quoted(v: &str) -> String {
        let mut o = String::with_capacity(v.len() + 2);
        o.push('"');
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    o.push('\\');
                    o.push(c);
                }
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    o.push_str(&format!("%{:02X}", c as u32))
                }
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }
    let mut s = format!(
        "Hash={};Subject={}",
        id.fingerprint.hex(),
        quoted(&id.subject.to_string())
    );
    for u in &id.san_uri {
        s.push_str(";URI=");
        s.push_str(&quoted(u));
    }
    for d in &id.san_dns {
        s.push_str(";DNS=");
        s.push_str(&quoted(d));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed_and_te_trailers_kept() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret-Hop, te"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut h1 = h.clone();
        strip_hop_by_hop(&mut h, true);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-keep").is_some());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        strip_hop_by_hop(&mut h1, false);
        assert!(h1.get(header::TE).is_none());
        let mut gz = HeaderMap::new();
        gz.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        strip_hop_by_hop(&mut gz, true);
        assert!(gz.get(header::TE).is_none());
    }

    #[test]
    fn claims_and_their_underscore_twins_are_removed() {
        let id = HeaderName::from_static("x-client-identity");
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x_client_identity", "forged"),
            ("x-client_identity", "forged"),
            ("x-client-identity", "forged"),
            ("x_forwarded_for", "10.0.0.1"),
            ("x-forwarded-client-cert", "Hash=forged"),
            ("x_forwarded_client_cert", "Hash=forged"),
            ("true_client_ip", "1.2.3.4"),
            ("x_other", "kept"),
        ] {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        strip_client_claims(&mut h, &id);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x_other"));
    }

    #[test]
    fn request_ids() {
        assert!(well_formed_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(well_formed_request_id(&HeaderValue::from_static("a b")).is_none());
        assert!(
            well_formed_request_id(&HeaderValue::from_str(&"a".repeat(129)).unwrap()).is_none()
        );
        let id = crate::hex::random_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, crate::hex::random_id());
    }
}
