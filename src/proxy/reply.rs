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
    /// A WS-Security fault code (e.g. `wsse:FailedCheck`) replacing the SOAP one.
    pub fault: Option<&'static str>,
    /// Whether the reason is told to the caller. WS-Security failures keep
    /// theirs for the log and the metrics, as WSS4J does.
    pub public_reason: bool,
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
            fault: None,
            public_reason: true,
        }
    }

    /// A WS-Security failure: SOAP fault with the WSS code, reason kept private.
    pub const fn wssec(reason: &'static str, fault: &'static str) -> Refusal {
        Refusal {
            // SOAP's own HTTP bindings: 500 for a 1.1 fault, 400 for a 1.2 Sender fault.
            status: StatusCode::INTERNAL_SERVER_ERROR,
            stage: "wssec",
            reason,
            message: wss_fault_string(fault),
            retry_after_secs: None,
            fault: Some(fault),
            public_reason: false,
        }
    }
}

/// The fault strings the WS-Security 1.1 specification gives each fault code.
const fn wss_fault_string(code: &str) -> &'static str {
    match code.as_bytes() {
        b"wsse:UnsupportedSecurityToken" => "An unsupported token was provided",
        b"wsse:UnsupportedAlgorithm" => "An unsupported signature or encryption algorithm was used",
        b"wsse:InvalidSecurityToken" => "An invalid security token was provided",
        b"wsse:FailedAuthentication" => {
            "The security token could not be authenticated or authorized"
        }
        b"wsse:FailedCheck" => "The signature or decryption was invalid",
        b"wsse:SecurityTokenUnavailable" => "Referenced security token could not be retrieved",
        b"wsu:MessageExpired" => "The message has expired",
        _ => "An error was discovered processing the <wsse:Security> header",
    }
}

const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const WSU_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";

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
    let sender = r.status.is_client_error() || r.fault.is_some();
    let reason = if r.public_reason {
        format!("<sg:reason>{}</sg:reason>", r.reason)
    } else {
        String::new()
    };
    let wss_ns = format!(r#" xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}""#);
    let status = match (r.fault, flavor) {
        (Some(_), Flavor::Soap12) => StatusCode::BAD_REQUEST,
        (Some(_), _) => StatusCode::INTERNAL_SERVER_ERROR,
        (None, _) => r.status,
    };
    let (ctype, body) = match flavor {
        Flavor::Soap11 => (
            "text/xml; charset=utf-8",
            format!(
                concat!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"{ns}>"#,
                    "<soap:Body><soap:Fault><faultcode>{code}</faultcode>",
                    "<faultstring>{msg}</faultstring><faultactor>sealgate</faultactor>",
                    r#"<detail><sg:error xmlns:sg="urn:sealgate:fault">"#,
                    "{reason}<sg:requestId>{id}</sg:requestId>",
                    "</sg:error></detail></soap:Fault></soap:Body></soap:Envelope>"
                ),
                ns = if r.fault.is_some() { wss_ns.as_str() } else { "" },
                code = r
                    .fault
                    .unwrap_or(if sender { "soap:Client" } else { "soap:Server" }),
                msg = xml_escape(r.message),
                reason = reason,
                id = xml_escape(request_id)
            ),
        ),
        Flavor::Soap12 => (
            "application/soap+xml; charset=utf-8",
            format!(
                concat!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                    r#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"{ns}>"#,
                    "<env:Body><env:Fault><env:Code><env:Value>env:{code}</env:Value>{sub}</env:Code>",
                    r#"<env:Reason><env:Text xml:lang="en">{msg}</env:Text></env:Reason>"#,
                    r#"<env:Detail><sg:error xmlns:sg="urn:sealgate:fault">"#,
                    "{reason}<sg:requestId>{id}</sg:requestId>",
                    "</sg:error></env:Detail></env:Fault></env:Body></env:Envelope>"
                ),
                ns = if r.fault.is_some() { wss_ns.as_str() } else { "" },
                code = if sender { "Sender" } else { "Receiver" },
                sub = r
                    .fault
                    .map(|f| format!("<env:Subcode><env:Value>{f}</env:Value></env:Subcode>"))
                    .unwrap_or_default(),
                msg = xml_escape(r.message),
                reason = reason,
                id = xml_escape(request_id)
            ),
        ),
        Flavor::Problem => (
            "application/problem+json",
            {
                let shown = if r.public_reason { r.reason } else { "refused" };
                serde_json::json!({
                    "type": format!("urn:sealgate:error:{shown}"),
                    "title": status.canonical_reason().unwrap_or("Error"),
                    "status": status.as_u16(),
                    "detail": r.message,
                    "reason": shown,
                    "request_id": request_id,
                })
                .to_string()
            },
        ),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
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

    pub const BAD_PATH: Refusal = Refusal::new(
        S::BAD_REQUEST,
        "route",
        "bad_path",
        "The path has dot segments, encoded slashes, backslashes or empty segments; send it normalised.",
    );
    pub const AMBIGUOUS_SOAP_ACTION: Refusal = Refusal::new(
        S::BAD_REQUEST,
        "route",
        "ambiguous_soap_action",
        "Send one SOAPAction, and for SOAP 1.2 let it agree with the Content-Type's action.",
    );
    pub const NO_ROUTE: Refusal = Refusal::new(
        S::NOT_FOUND,
        "route",
        "no_route",
        "No route matches this request.",
    );
    pub const BLOCKED: Refusal = Refusal::new(
        S::FORBIDDEN,
        "ip",
        "blocked",
        "This client is blocked for a while after repeated authentication failures.",
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
    pub const UNSUPPORTED_ENCODING: Refusal = Refusal::new(
        S::UNSUPPORTED_MEDIA_TYPE,
        "wssec",
        "unsupported_encoding",
        "Signed messages must be sent unencoded (no Content-Encoding) in UTF-8.",
    );
    pub const BODY_READ_TIMEOUT: Refusal = Refusal::new(
        S::REQUEST_TIMEOUT,
        "size",
        "body_read_timeout",
        "The request body did not arrive in time.",
    );
    pub const WSSEC_UNAVAILABLE: Refusal = Refusal::new(
        S::SERVICE_UNAVAILABLE,
        "wssec",
        "wssec_unavailable",
        "The gateway cannot verify messages right now; retry later.",
    );
    pub const INTERNAL: Refusal = Refusal::new(
        S::INTERNAL_SERVER_ERROR,
        "wssec",
        "internal_error",
        "The gateway could not process this request.",
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
