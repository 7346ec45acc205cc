//! `[upstream.NAME.auth]` compiled: how a token for that upstream is had.

use super::fetch::{self, FetchError, Fetched, TokenClient};
use super::jwt;
use crate::config::{AuthConfig, ClientAuthMethod, ClientCredentialsConfig, SalesforceJwtConfig};
use crate::runtime::material::{Held, Loader};
use crate::tls::certs::Role;
use crate::wssec::sign::SigningKey;
use crate::wssec::tokens::Secret;
use http::{HeaderName, HeaderValue, Uri};
use std::time::{Duration, SystemTime};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// A JWT bearer assertion's life: Salesforce takes at most 3 minutes.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(150);
/// A client assertion's life (RFC 7523 client authentication).
const CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The principal of a token that is for the client application itself.
pub const APPLICATION: &str = "-";

pub struct Source {
    pub upstream: String,
    /// Changes with any setting or secret of the source, so a cached token
    /// of the old one is never handed out for the new one.
    pub id: String,
    pub kind: Kind,
}

pub enum Kind {
    Fetched(Box<Fetcher>),
    /// A header the same for every request: a bearer token or an API key.
    Static {
        header: HeaderName,
        value: HeaderValue,
    },
}

/// A token endpoint and how to ask it.
pub struct Fetcher {
    pub flow: Flow,
    pub token_url: Uri,
    pub timeout: Duration,
    client: TokenClient,
    /// Fetched again after this long however the token fares.
    pub max_age: Option<Duration>,
    /// Fetched again this long before the token's `expires_in` ends.
    pub refresh_margin: Duration,
    /// The principal when a route maps none.
    pub default_principal: Option<String>,
    /// Requests go to the token's `instance_url`.
    pub use_instance_url: bool,
    /// Hosts an `instance_url` may name (`*.` a domain's subdomains).
    pub instance_hosts: Vec<String>,
}

/// Where Salesforce instances live (My Domain, sandboxes, Government Cloud).
pub const SALESFORCE_HOSTS: [&str; 4] = [
    "*.salesforce.com",
    "*.force.com",
    "*.salesforce.mil",
    "*.cloudforce.com",
];

pub enum Flow {
    SalesforceJwt {
        consumer_key: String,
        audience: String,
        key: SigningKey,
    },
    ClientCredentials {
        client_id: String,
        auth: ClientAuth,
        scopes: Vec<String>,
    },
}

pub enum ClientAuth {
    /// The whole `Authorization: Basic …` value.
    Basic(Secret),
    Post(Secret),
    PrivateKeyJwt {
        key: SigningKey,
        key_id: Option<String>,
    },
}

impl Source {
    /// Tokens of this source are Salesforce sessions, each for the user (the
    /// principal) a route maps its callers to.
    pub fn is_salesforce(&self) -> bool {
        matches!(&self.kind, Kind::Fetched(f) if matches!(f.flow, Flow::SalesforceJwt { .. }))
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Static { .. } => "static",
            Kind::Fetched(f) => match f.flow {
                Flow::SalesforceJwt { .. } => "salesforce_jwt_bearer",
                Flow::ClientCredentials { .. } => "client_credentials",
            },
        }
    }
}

impl Fetcher {
    /// One request to the token endpoint for `principal`.
    pub async fn fetch(&self, principal: &str) -> Result<Fetched, FetchError> {
        let (form, basic) = self.form(principal)?;
        let got =
            fetch::post_form(&self.client, &self.token_url, basic, form, self.timeout).await?;
        if let Some(u) = &got.instance_url {
            // Requests may be sent there with the token: only to a host
            // the configuration allows, over https.
            if !self.instance_allowed(u) {
                return Err(FetchError::BadAnswer(format!(
                    "instance_url {:?} is not an https:// URL of an allowed host (instance_hosts)",
                    u.chars().take(120).collect::<String>()
                )));
            }
        }
        Ok(got)
    }

    pub fn instance_allowed(&self, url: &str) -> bool {
        instance_allowed(url, &self.instance_hosts, &self.token_url)
    }

    /// The request's form, and its Authorization value (`client_secret_basic`).
    fn form(&self, principal: &str) -> Result<(String, Option<&Secret>), FetchError> {
        let now = SystemTime::now();
        let mut form = form_urlencoded::Serializer::new(String::new());
        let mut basic = None;
        let bad_key = |e: jwt::JwtError| FetchError::Unavailable(e.to_string());
        match &self.flow {
            Flow::SalesforceJwt {
                consumer_key,
                audience,
                key,
            } => {
                let assertion = jwt::sign(
                    key,
                    None,
                    &jwt::Claims {
                        iss: consumer_key,
                        sub: principal,
                        aud: audience,
                        lifetime: ASSERTION_LIFETIME,
                        jti: None,
                    },
                    now,
                )
                .map_err(bad_key)?;
                form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
                form.append_pair("assertion", &assertion);
            }
            Flow::ClientCredentials {
                client_id,
                auth,
                scopes,
            } => {
                form.append_pair("grant_type", "client_credentials");
                if !scopes.is_empty() {
                    form.append_pair("scope", &scopes.join(" "));
                }
                match auth {
                    ClientAuth::Basic(header) => basic = Some(header),
                    ClientAuth::Post(secret) => {
                        form.append_pair("client_id", client_id);
                        form.append_pair(
                            "client_secret",
                            &String::from_utf8_lossy(secret.expose()),
                        );
                    }
                    ClientAuth::PrivateKeyJwt { key, key_id } => {
                        let aud = self.token_url.to_string();
                        let assertion = jwt::sign(
                            key,
                            key_id.as_deref(),
                            &jwt::Claims {
                                iss: client_id,
                                sub: client_id,
                                aud: &aud,
                                lifetime: CLIENT_ASSERTION_LIFETIME,
                                jti: Some(crate::hex::random_id()),
                            },
                            now,
                        )
                        .map_err(bad_key)?;
                        form.append_pair("client_id", client_id);
                        form.append_pair(
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        );
                        form.append_pair("client_assertion", &assertion);
                    }
                }
            }
        }
        Ok((form.finish(), basic))
    }
}

/// `https://HOST[:port][/]`, HOST among `hosts` (`*.` for a domain's
/// subdomains); no user part, path or query. Loopback (plain http too) only
/// when the token endpoint is on loopback as well (a local test peer).
pub fn instance_allowed(url: &str, hosts: &[String], token_url: &Uri) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    let (Some(authority), Some(host)) = (uri.authority(), uri.host()) else {
        return false;
    };
    let bare = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if authority.as_str().contains('@') || !bare {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let loopback = crate::runtime::upstream::is_loopback;
    if loopback(&host) {
        return token_url.host().is_some_and(loopback)
            && matches!(uri.scheme_str(), Some("http" | "https"));
    }
    uri.scheme_str() == Some("https")
        && hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == *pattern,
            })
}

/// An endpoint URL: https, or plain http on loopback (a local token
/// service or test peer, never a network hop).
fn endpoint(ld: &mut Loader<'_>, at: &str, url: &str) -> Option<Uri> {
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            ld.problem(at, format!("not a URL: {e}"));
            return None;
        }
    };
    let loopback = uri
        .host()
        .is_some_and(crate::runtime::upstream::is_loopback);
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => Some(uri),
        (Some("http"), Some(_)) if loopback => Some(uri),
        (Some("http"), Some(_)) => {
            ld.problem(at, "must be https:// (plain http only on loopback)");
            None
        }
        _ => {
            ld.problem(at, "must be an https:// URL");
            None
        }
    }
}

/// A source's id: a MAC under a key of this process, so it is stable across
/// reloads yet says nothing of the secrets it covers.
fn digest(parts: &[&[u8]]) -> String {
    static KEY: std::sync::OnceLock<aws_lc_rs::hmac::Key> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut k);
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k)
    });
    let mut ctx = aws_lc_rs::hmac::Context::with_key(key);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    crate::hex::lower(&ctx.sign().as_ref()[..16])
}

fn client(
    ld: &mut Loader<'_>,
    at: &str,
    upstream: &str,
    ca: Option<&str>,
    url: &Uri,
) -> Option<TokenClient> {
    let roots = match ca {
        None if url.scheme_str() == Some("http") => Some(rustls::RootCertStore::empty()),
        None | Some("system") => ld.system_roots(&format!("{at}.token_ca")),
        Some(file) => ld.roots(
            Held(Role::UpstreamCa, upstream),
            &format!("{at}.token_ca"),
            std::path::Path::new(file),
        ),
    }?;
    let tls = match crate::tls::upstream::client_config(roots, None) {
        Ok(t) => t,
        Err(e) => {
            ld.problem(format!("{at}.token_ca"), e.to_string());
            return None;
        }
    };
    let https = crate::runtime::upstream::https_connector(tls);
    Some(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https),
    )
}

/// Compiles `[upstream.NAME.auth]`; `None` when it has problems (recorded).
pub fn compile(ld: &mut Loader<'_>, upstream: &str, c: &AuthConfig) -> Option<Source> {
    let at = format!("upstream.{upstream}.auth");
    let before = ld.problems.len();
    let (kind, id) = match c {
        AuthConfig::Static(s) => {
            let token = ld.secret_ref(
                &at,
                "token",
                "the token",
                s.token.as_deref(),
                s.token_file.as_deref(),
            );
            let header_name = s
                .header
                .as_deref()
                .unwrap_or("authorization")
                .to_ascii_lowercase();
            let header = match HeaderName::from_bytes(header_name.as_bytes()) {
                Ok(_) if reserved(ld, &header_name) => {
                    ld.problem(
                        format!("{at}.header"),
                        format!("{header_name:?} is a header the gateway frames, routes or identifies requests by"),
                    );
                    None
                }
                Ok(h) => Some(h),
                Err(_) => {
                    ld.problem(format!("{at}.header"), "not a valid header name");
                    None
                }
            };
            let scheme = match &s.scheme {
                Some(sc) => sc.clone(),
                None if header_name == "authorization" => "Bearer".into(),
                None => String::new(),
            };
            let (Some(token), Some(header)) = (token, header) else {
                return None;
            };
            let mut bytes = if scheme.is_empty() {
                Vec::new()
            } else {
                format!("{scheme} ").into_bytes()
            };
            bytes.extend_from_slice(&token);
            let Ok(mut value) = HeaderValue::from_bytes(&bytes) else {
                ld.problem(
                    format!("{at}.token"),
                    "the token is not header-safe (control characters or non-ASCII)",
                );
                return None;
            };
            value.set_sensitive(true);
            let id = digest(&[
                upstream.as_bytes(),
                b"static",
                header_name.as_bytes(),
                &bytes,
            ]);
            (Kind::Static { header, value }, id)
        }
        AuthConfig::SalesforceJwtBearer(s) => {
            let (f, id) = salesforce(ld, &at, upstream, s)?;
            (Kind::Fetched(Box::new(f)), id)
        }
        AuthConfig::ClientCredentials(s) => {
            let (f, id) = client_credentials(ld, &at, upstream, s)?;
            (Kind::Fetched(Box::new(f)), id)
        }
    };
    (ld.problems.len() == before).then(|| Source {
        upstream: upstream.to_owned(),
        id,
        kind,
    })
}

/// Headers a static credential may not be put in.
fn reserved(ld: &Loader<'_>, name: &str) -> bool {
    use crate::hygiene::{CLIENT_CLAIMS, HOP_BY_HOP, ROUTING};
    let server = &ld.config.server;
    HOP_BY_HOP.contains(&name)
        || CLIENT_CLAIMS.contains(&name)
        || (ROUTING.contains(&name) && name != "authorization")
        || matches!(name, "cookie" | "content-encoding" | "expect")
        || name.eq_ignore_ascii_case(&server.identity_header)
        || name.eq_ignore_ascii_case(&server.request_id_header)
}

/// A duration a token setting may take.
fn bounded(ld: &mut Loader<'_>, at: &str, d: Duration, min: Duration) -> Duration {
    const MAX: Duration = Duration::from_secs(30 * 86_400);
    if d < min || d > MAX {
        ld.problem(at, format!("between {}s and 30 days", min.as_secs()));
    }
    d
}

fn timeout(ld: &mut Loader<'_>, at: &str, t: Option<crate::config::Dur>) -> Duration {
    let t = t.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if t.is_zero() || t > Duration::from_secs(120) {
        ld.problem(format!("{at}.token_timeout"), "between 1ms and 120s");
    }
    t
}

fn salesforce(
    ld: &mut Loader<'_>,
    at: &str,
    upstream: &str,
    s: &SalesforceJwtConfig,
) -> Option<(Fetcher, String)> {
    let login = s.login.trim_end_matches('/').to_owned();
    let login_uri = endpoint(ld, &format!("{at}.login"), &login).filter(|u| {
        let bare = matches!(u.path(), "" | "/") && u.query().is_none();
        if !bare {
            ld.problem(
                format!("{at}.login"),
                "the login URL is scheme and host only, e.g. https://acme.my.salesforce.com",
            );
        }
        bare
    });
    let token_url = login_uri.and_then(|_| {
        endpoint(
            ld,
            &format!("{at}.login"),
            &format!("{login}/services/oauth2/token"),
        )
    });
    let consumer_key = ld.expand(&format!("{at}.consumer_key"), &s.consumer_key);
    let key = ld.signing_key(&format!("{at}.key"), &s.key);
    if let Some(k) = &key {
        if jwt::algorithm(k).0 != "RS256" {
            ld.problem(
                format!("{at}.key"),
                "Salesforce signs the JWT bearer flow with RS256: use the connected app's RSA key",
            );
        }
    }
    let timeout = timeout(ld, at, s.token_timeout);
    // At least a minute: each fetch is a Salesforce login.
    let max_age = bounded(
        ld,
        &format!("{at}.max_age"),
        s.max_age.map_or(DEFAULT_MAX_AGE, |d| d.0),
        Duration::from_secs(60),
    );
    let token_url = token_url?;
    let client = client(ld, at, upstream, s.token_ca.as_deref(), &token_url)?;
    let (consumer_key, key) = (consumer_key?, key?);
    let id = digest(&[
        upstream.as_bytes(),
        b"salesforce_jwt_bearer",
        login.as_bytes(),
        consumer_key.as_bytes(),
        &spki(&key),
    ]);
    Some((
        Fetcher {
            flow: Flow::SalesforceJwt {
                consumer_key,
                audience: login,
                key,
            },
            token_url,
            timeout,
            client,
            max_age: Some(max_age),
            refresh_margin: Duration::ZERO,
            default_principal: s.username.clone(),
            use_instance_url: s.use_instance_url,
            instance_hosts: s
                .instance_hosts
                .clone()
                .unwrap_or_else(|| SALESFORCE_HOSTS.map(String::from).into()),
        },
        id,
    ))
}

/// Public bytes that change with the key (its signature over a fixed text
/// would not: ECDSA is randomized).
fn spki(key: &SigningKey) -> Vec<u8> {
    key.public_bytes()
}

fn client_credentials(
    ld: &mut Loader<'_>,
    at: &str,
    upstream: &str,
    s: &ClientCredentialsConfig,
) -> Option<(Fetcher, String)> {
    let token_url = endpoint(ld, &format!("{at}.token_url"), &s.token_url);
    let client_id = ld.expand(&format!("{at}.client_id"), &s.client_id);
    let timeout = timeout(ld, at, s.token_timeout);
    let margin = bounded(
        ld,
        &format!("{at}.refresh_margin"),
        s.refresh_margin.map_or(DEFAULT_MARGIN, |d| d.0),
        Duration::ZERO,
    );
    let mut material: Vec<u8> = Vec::new();
    let auth = match s.auth_method {
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
            for (k, set) in [("key", s.key.is_some()), ("key_id", s.key_id.is_some())] {
                if set {
                    ld.problem(
                        format!("{at}.{k}"),
                        "applies to auth_method = \"private_key_jwt\" only",
                    );
                }
            }
            let secret = ld.secret_ref(
                at,
                "client_secret",
                "the client secret",
                s.client_secret.as_deref(),
                s.client_secret_file.as_deref(),
            );
            match (secret, &client_id) {
                (Some(secret), Some(id)) => {
                    material = secret.clone();
                    if s.auth_method == ClientAuthMethod::ClientSecretPost
                        && std::str::from_utf8(&secret).is_err()
                    {
                        ld.problem(format!("{at}.client_secret"), "not UTF-8 text");
                    }
                    Some(if s.auth_method == ClientAuthMethod::ClientSecretBasic {
                        // RFC 6749 2.3.1: each form-encoded, then joined.
                        let enc = |b: &[u8]| form_urlencoded::byte_serialize(b).collect::<String>();
                        let pair = format!("{}:{}", enc(id.as_bytes()), enc(&secret));
                        use base64::Engine;
                        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                        ClientAuth::Basic(Secret::new(format!("Basic {b64}").into_bytes()))
                    } else {
                        ClientAuth::Post(Secret::new(secret))
                    })
                }
                _ => None,
            }
        }
        ClientAuthMethod::PrivateKeyJwt => {
            for (k, set) in [
                ("client_secret", s.client_secret.is_some()),
                ("client_secret_file", s.client_secret_file.is_some()),
            ] {
                if set {
                    ld.problem(
                        format!("{at}.{k}"),
                        "auth_method = \"private_key_jwt\" authenticates with key, not a secret",
                    );
                }
            }
            match &s.key {
                None => {
                    ld.problem(
                        format!("{at}.key"),
                        "auth_method = \"private_key_jwt\" needs key = \"client-key.pem\"",
                    );
                    None
                }
                Some(path) => ld.signing_key(&format!("{at}.key"), path).map(|key| {
                    material = spki(&key);
                    ClientAuth::PrivateKeyJwt {
                        key,
                        key_id: s.key_id.clone(),
                    }
                }),
            }
        }
    };
    for sc in &s.scopes {
        if sc.is_empty()
            || sc
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
        {
            ld.problem(
                format!("{at}.scopes"),
                format!("{sc:?} is not a scope token (RFC 6749 3.3)"),
            );
        }
    }
    let token_url = token_url?;
    let client = client(ld, at, upstream, s.token_ca.as_deref(), &token_url)?;
    let (client_id, auth) = (client_id?, auth?);
    let id = digest(&[
        upstream.as_bytes(),
        b"client_credentials",
        token_url.to_string().as_bytes(),
        client_id.as_bytes(),
        s.scopes.join(" ").as_bytes(),
        &material,
    ]);
    Some((
        Fetcher {
            flow: Flow::ClientCredentials {
                client_id,
                auth,
                scopes: s.scopes.clone(),
            },
            token_url,
            timeout,
            client,
            max_age: None,
            refresh_margin: margin,
            default_principal: None,
            use_instance_url: false,
            instance_hosts: Vec::new(),
        },
        id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_url_goes_only_where_it_may() {
        let hosts: Vec<String> = SALESFORCE_HOSTS.map(String::from).into();
        let login: Uri = "https://login.salesforce.com/services/oauth2/token"
            .parse()
            .unwrap();
        let local: Uri = "http://127.0.0.1:9/services/oauth2/token".parse().unwrap();
        for ok in [
            "https://acme.my.salesforce.com",
            "https://acme--dev.sandbox.my.salesforce.com/",
            "https://na1.salesforce.com:443",
            "https://acme.lightning.force.com",
        ] {
            assert!(instance_allowed(ok, &hosts, &login), "{ok}");
        }
        for bad in [
            "http://acme.my.salesforce.com",
            "https://salesforce.com.evil.example",
            "https://evilsalesforce.com",
            "https://acme.my.salesforce.com/services?x=1",
            "https://user@acme.my.salesforce.com",
            "http://localhost:@evil.example/",
            "http://127.0.0.1:1@169.254.169.254/",
            "http://127.0.0.1:8080",
            "nonsense",
        ] {
            assert!(!instance_allowed(bad, &hosts, &login), "{bad}");
        }
        // A local peer may name itself, and only then.
        assert!(instance_allowed("http://127.0.0.1:8080", &hosts, &local));
        assert!(!instance_allowed(
            "http://127.0.0.1:1@169.254.169.254/",
            &hosts,
            &local
        ));
    }
}
