//! Replies the gateway writes itself: SOAP 1.1/1.2 faults on SOAP routes,
//! `application/problem+json` elsewhere. Each carries the request id and a
//! stable reason.

use super::body::full;
use crate::runtime::upstream::ProxyBody;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// A request the gateway refused or could not complete.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub status: StatusCode,
    /// Pipeline stage for `sealgate_rejections_total{stage}`.
    pub stage: &'static str,
    /// Stable snake_case reason used in metrics, logs and the reply.
    pub reason: &'static str,
    /// One sentence for the caller.
    pub message: &'static str,
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    pub const fn new(
        status: StatusCode,
        stage: &'static str,
        reason: &'static str,
        message: &'static str,
    ) -> Refusal {
        Refusal {
            status,
            stage,
            reason,
            message,
            retry_after_secs: None,
        }
    }
}

/// How to write an error for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Soap11,
    Soap12,
    Problem,
}

/// SOAP routes answer in the request's SOAP version (1.2 is `application/soap+xml`).
/// Without a route, a request that plainly is SOAP still gets a fault.
pub fn flavor(soap_route: bool, h: &HeaderMap) -> Flavor {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/soap+xml") {
        Flavor::Soap12
    } else if soap_route || h.contains_key("soapaction") {
        Flavor::Soap11
    } else {
        Flavor::Problem
    }
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Renders a refusal. `fault_code` overrides the SOAP fault code (WS-Security
/// uses its own, e.g. `wsse:InvalidSecurity`).
pub fn render(r: &Refusal, flavor: Flavor, request_id: &str) -> Response<ProxyBody> {
    let sender = r.status.is_client_error();
    let (ctype, body) = match flavor {
        Flavor::Soap11 => (
            "text/xml; charset=utf-8",
            format!(
                concat!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">"#,
                    "<soap:Body><soap:Fault><faultcode>soap:{code}</faultcode>",
                    "<faultstring>{msg}</faultstring><faultactor>sealgate</faultactor>",
                    r#"<detail><sg:error xmlns:sg="urn:sealgate:fault">"#,
                    "<sg:reason>{reason}</sg:reason><sg:requestId>{id}</sg:requestId>",
                    "</sg:error></detail></soap:Fault></soap:Body></soap:Envelope>"
                ),
                code = if sender { "Client" } else { "Server" },
                msg = xml_escape(r.message),
                reason = r.reason,
                id = xml_escape(request_id)
            ),
        ),
        Flavor::Soap12 => (
            "application/soap+xml; charset=utf-8",
            format!(
                concat!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                    r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">"#,
                    "<env:Body><env:Fault><env:Code><env:Value>env:{code}</env:Value></env:Code>",
                    r#"<env:Reason><env:Text xml:lang="en">{msg}</env:Text></env:Reason>"#,
                    r#"<env:Detail><sg:error xmlns:sg="urn:sealgate:fault">"#,
                    "<sg:reason>{reason}</sg:reason><sg:requestId>{id}</sg:requestId>",
                    "</sg:error></env:Detail></env:Fault></env:Body></env:Envelope>"
                ),
                code = if sender { "Sender" } else { "Receiver" },
                msg = xml_escape(r.message),
                reason = r.reason,
                id = xml_escape(request_id)
            ),
        ),
        Flavor::Problem => (
            "application/problem+json",
            serde_json::json!({
                "type": format!("urn:sealgate:error:{}", r.reason),
                "title": r.status.canonical_reason().unwrap_or("Error"),
                "status": r.status.as_u16(),
                "detail": r.message,
                "reason": r.reason,
                "request_id": request_id,
            })
            .to_string(),
        ),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = r.retry_after_secs {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// The refusals the proxy pipeline produces, in one place.
pub mod refusals {
    use super::Refusal;
    use http::StatusCode as S;

    pub const NO_ROUTE: Refusal = Refusal::new(
        S::NOT_FOUND,
        "route",
        "no_route",
        "No route matches this request.",
    );
    pub const IP_NOT_ALLOWED: Refusal = Refusal::new(
        S::FORBIDDEN,
        "ip",
        "ip_not_allowed",
        "This client address may not use this route.",
    );
    pub const RATE_LIMITED: Refusal = Refusal::new(
        S::TOO_MANY_REQUESTS,
        "rate",
        "rate_limited",
        "Too many requests; retry after the time given.",
    );
    pub const ROUTE_BUSY: Refusal = Refusal::new(
        S::SERVICE_UNAVAILABLE,
        "concurrency",
        "route_busy",
        "This route is at its concurrency limit; retry later.",
    );
    pub const NO_CLIENT_IDENTITY: Refusal = Refusal::new(
        S::FORBIDDEN,
        "identity",
        "no_client_identity",
        "This route requires a client certificate.",
    );
    pub const IDENTITY_NOT_ALLOWED: Refusal = Refusal::new(
        S::FORBIDDEN,
        "identity",
        "identity_not_allowed",
        "The client certificate is not allowed on this route.",
    );
    pub const TOO_MANY_HEADERS: Refusal = Refusal::new(
        S::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "size",
        "too_many_headers",
        "The request has too many header fields.",
    );
    pub const BODY_TOO_LARGE: Refusal = Refusal::new(
        S::PAYLOAD_TOO_LARGE,
        "size",
        "body_too_large",
        "The request body is larger than this route allows.",
    );
    pub const BAD_REQUEST: Refusal = Refusal::new(
        S::BAD_REQUEST,
        "route",
        "bad_request",
        "The request could not be forwarded as sent.",
    );
    pub const UPSTREAM_BUSY: Refusal = Refusal::new(
        S::SERVICE_UNAVAILABLE,
        "upstream",
        "upstream_busy",
        "The upstream is at its concurrency limit; retry later.",
    );
    pub const UPSTREAM_UNREACHABLE: Refusal = Refusal::new(
        S::BAD_GATEWAY,
        "upstream",
        "upstream_unreachable",
        "The upstream could not be reached.",
    );
    pub const UPSTREAM_TLS: Refusal = Refusal::new(
        S::BAD_GATEWAY,
        "upstream",
        "upstream_tls_failed",
        "The TLS handshake with the upstream failed.",
    );
    pub const UPSTREAM_ERROR: Refusal = Refusal::new(
        S::BAD_GATEWAY,
        "upstream",
        "upstream_error",
        "The upstream closed the connection or sent an invalid response.",
    );
    pub const UPSTREAM_CONNECT_TIMEOUT: Refusal = Refusal::new(
        S::GATEWAY_TIMEOUT,
        "upstream",
        "upstream_connect_timeout",
        "Connecting to the upstream timed out.",
    );
    pub const UPSTREAM_TIMEOUT: Refusal = Refusal::new(
        S::GATEWAY_TIMEOUT,
        "upstream",
        "upstream_timeout",
        "The upstream did not answer in time.",
    );
    pub const CLIENT_BODY_ERROR: Refusal = Refusal::new(
        S::BAD_REQUEST,
        "size",
        "client_body_error",
        "The request body could not be read from the client.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_version_follows_content_type() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/soap+xml; action=x"),
        );
        assert_eq!(flavor(true, &h), Flavor::Soap12);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        assert_eq!(flavor(true, &h), Flavor::Soap11);
        assert_eq!(flavor(false, &h), Flavor::Problem);
    }
}
