//! Replies the gateway writes itself: SOAP 1.1/1.2 faults on SOAP routes,
//! `application/problem+json` elsewhere. Each carries the request id and a
//! stable reason (WS-Security's only in the fault code: the detail is logged).

use super::body::full;
use crate::refusal::{Kind, Refusal};
use crate::runtime::upstream::ProxyBody;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

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
        .unwrap_or("");
    if crate::runtime::route::is_soap12(ct) {
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

/// Marks every answer the gateway gave itself, with the refusal's reason —
/// `wssec` for WS-Security faults, whose reason stays in the logs — so a
/// client or `sealgate probe` can tell it from an upstream's error. Removed
/// from upstream answers.
pub const REFUSAL_HEADER: &str = "x-sealgate-refusal";

/// Renders a refusal: WS-Security ones carry their WSS fault code (and SOAP's
/// HTTP binding status), the others their reason.
pub fn render(r: &Refusal, flavor: Flavor, request_id: &str) -> Response<ProxyBody> {
    let (fault, message, public_reason) = match r.kind {
        Kind::Proxy(p) => (None, p.message(), Some(p.as_str())),
        Kind::Wssec(w) => (Some(w.fault_code()), wss_fault_string(w.fault_code()), None),
    };
    let sender = r.status().is_client_error() || fault.is_some();
    let reason = public_reason
        .map(|p| format!("<sg:reason>{p}</sg:reason>"))
        .unwrap_or_default();
    let wss_ns = format!(r#" xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}""#);
    let status = match (fault, flavor) {
        (Some(_), Flavor::Soap12) => StatusCode::BAD_REQUEST,
        (Some(_), _) => StatusCode::INTERNAL_SERVER_ERROR,
        (None, _) => r.status(),
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
                ns = if fault.is_some() { wss_ns.as_str() } else { "" },
                code = fault.unwrap_or(if sender { "soap:Client" } else { "soap:Server" }),
                msg = xml_escape(message),
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
                ns = if fault.is_some() { wss_ns.as_str() } else { "" },
                code = if sender { "Sender" } else { "Receiver" },
                sub = fault
                    .map(|f| format!("<env:Subcode><env:Value>{f}</env:Value></env:Subcode>"))
                    .unwrap_or_default(),
                msg = xml_escape(message),
                reason = reason,
                id = xml_escape(request_id)
            ),
        ),
        Flavor::Problem => (
            "application/problem+json",
            {
                let shown = public_reason.unwrap_or("refused");
                serde_json::json!({
                    "type": format!("urn:sealgate:error:{shown}"),
                    "title": status.canonical_reason().unwrap_or("Error"),
                    "status": status.as_u16(),
                    "detail": message,
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
    h.insert(
        REFUSAL_HEADER,
        HeaderValue::from_static(public_reason.unwrap_or("wssec")),
    );
    resp
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
