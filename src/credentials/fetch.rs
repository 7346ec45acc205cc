//! One token request: a form POSTed to the token endpoint and its JSON
//! answer read, within one deadline and a bounded answer.

use crate::wssec::tokens::Secret;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::time::Duration;

/// The HTTP client of one token endpoint.
pub type TokenClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Most bytes of a token endpoint's answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// Most characters of an `error_description` kept for the log.
const MAX_DESCRIPTION: usize = 300;

/// What a token endpoint granted.
pub struct Fetched {
    pub access_token: Secret,
    /// `Bearer TOKEN`, made once for every request that carries it.
    pub bearer: HeaderValue,
    pub instance_url: Option<String>,
    /// Salesforce's identity URL (`.../id/ORG/USER`).
    pub id: Option<String>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

impl Fetched {
    /// `ORG` of Salesforce's identity URL `https://login…/id/ORG/USER`
    /// (Pub/Sub's `tenantid`).
    pub fn org_id(&self) -> Option<String> {
        org_id(self.id.as_deref()?)
    }
}

fn org_id(id: &str) -> Option<String> {
    let rest = &id[id.find("/id/")? + 4..];
    let org = rest.split('/').next()?;
    (!org.is_empty() && org.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| org.to_owned())
}

/// An error and what caused it (`client error (Connect): dns error: ...`):
/// the outer one alone rarely says what to fix.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let said = c.to_string();
        if !out.ends_with(&said) {
            out.push_str(": ");
            out.push_str(&said);
        }
        cur = c.source();
    }
    out
}

/// Why no token came back; never carries a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("the token endpoint refused ({status} {error}): {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
    },
    #[error("the token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the token endpoint is unavailable: {0}")]
    Unavailable(String),
    #[error("the token endpoint's answer is not a token: {0}")]
    BadAnswer(String),
}

/// Every `result` of `sealgate_token_fetches_total`.
pub const RESULTS: [&str; 7] = [
    "ok",
    "invalid_grant",
    "invalid_client",
    "refused",
    "unavailable",
    "timeout",
    "bad_answer",
];

impl FetchError {
    /// The `result` label of `sealgate_token_fetches_total`.
    pub fn result(&self) -> &'static str {
        match self {
            FetchError::Refused { error, .. } if error == "invalid_grant" => "invalid_grant",
            FetchError::Refused { error, .. } if error == "invalid_client" => "invalid_client",
            FetchError::Refused { .. } => "refused",
            FetchError::Timeout(_) => "timeout",
            FetchError::Unavailable(_) => "unavailable",
            FetchError::BadAnswer(_) => "bad_answer",
        }
    }
}

/// Text from the endpoint, fit for one log field.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// POSTs `form` (with `basic` as the Authorization value, when given) and
/// reads the token out of the answer.
pub async fn post_form(
    client: &TokenClient,
    url: &Uri,
    basic: Option<&Secret>,
    form: String,
    limit: Duration,
) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(limit, exchange(client, url, basic, form)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(limit)),
    }
}

async fn exchange(
    client: &TokenClient,
    url: &Uri,
    basic: Option<&Secret>,
    form: String,
) -> Result<Fetched, FetchError> {
    let mut req = Request::post(url.clone())
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| FetchError::Unavailable(e.to_string()))?;
    if let Some(b) = basic {
        let mut v = HeaderValue::from_bytes(b.expose())
            .map_err(|_| FetchError::Unavailable("client credentials not header-safe".into()))?;
        v.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    let resp = client
        .request(req)
        .await
        .map_err(|e| FetchError::Unavailable(printable(&causes(&e), MAX_DESCRIPTION)))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| FetchError::BadAnswer(printable(&e.to_string(), MAX_DESCRIPTION)))?
        .to_bytes();
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if status.is_server_error() {
        let said = json
            .as_ref()
            .and_then(|j| text(j, "error_description").or_else(|| text(j, "error")))
            .map(|d| format!(": {}", printable(&d, MAX_DESCRIPTION)))
            .unwrap_or_default();
        return Err(FetchError::Unavailable(format!(
            "HTTP {}{said}",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        if let Some(error) = json.as_ref().and_then(|j| text(j, "error")) {
            let description = json
                .as_ref()
                .and_then(|j| text(j, "error_description"))
                .unwrap_or_default();
            return Err(FetchError::Refused {
                status: status.as_u16(),
                error: printable(&error, 64),
                description: printable(&description, MAX_DESCRIPTION),
            });
        }
        return Err(FetchError::Refused {
            status: status.as_u16(),
            error: "http_error".into(),
            description: String::new(),
        });
    }
    let Some(json) = json else {
        return Err(FetchError::BadAnswer("not JSON".into()));
    };
    let token = text(&json, "access_token").unwrap_or_default();
    // The token goes into a header: visible ASCII, no spaces.
    let unusable = || {
        FetchError::BadAnswer(
            "no usable access_token (empty, too long or not visible ASCII)".into(),
        )
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) || token.len() > 8192 {
        return Err(unusable());
    }
    let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unusable())?;
    bearer.set_sensitive(true);
    let expires_in = match json.get("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| FetchError::BadAnswer("expires_in is not a number".into()))?,
        ),
    };
    if expires_in == Some(0) {
        return Err(FetchError::BadAnswer("expires_in is 0".into()));
    }
    if let Some(t) = text(&json, "token_type") {
        if !t.eq_ignore_ascii_case("bearer") {
            return Err(FetchError::BadAnswer(format!(
                "token_type {:?}: only Bearer tokens are presented",
                printable(&t, 32)
            )));
        }
    }
    let instance_url = text(&json, "instance_url");
    Ok(Fetched {
        access_token: Secret::new(token.into_bytes()),
        bearer,
        instance_url,
        id: text(&json, "id"),
        expires_in,
        scope: text(&json, "scope").map(|s| printable(&s, MAX_DESCRIPTION)),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_org_comes_from_the_identity_url() {
        assert_eq!(
            super::org_id("https://login.salesforce.com/id/00D5g000004ABCDEAZ/0055g00000XYZ12AAB")
                .as_deref(),
            Some("00D5g000004ABCDEAZ")
        );
        assert_eq!(super::org_id("https://x/id//005"), None);
        assert_eq!(super::org_id("nonsense"), None);
    }
}
