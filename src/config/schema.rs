//! The configuration's shape, as serde reads it; defaults live beside the keys.

use super::units::{Dur, Size};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, rename = "upstream")]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// A built-in echo server for trying sealgate out (quickstart, demos).
    pub echo: Option<EchoConfig>,
    #[serde(default)]
    pub log: LogConfig,
    /// Where replay entries, rate-limit buckets and blocks live: this
    /// process, or a store the replicas share.
    #[serde(default)]
    pub state: StateConfig,
    /// Where messages too large to hold wait, encrypted, while verified.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Directory the config file sits in; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// SHA-256 of the text this config was parsed from.
    #[serde(skip)]
    pub text_sha256: Vec<u8>,
}

/// `[spool]`: where a verifying route's message above its `max_body` is kept
/// while it streams past (sealed with a per-message key), and how much all
/// such messages together may take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Default: `sealgate-spool` in the system's temporary directory. One
    /// gateway per directory: it removes the spool files it finds there when
    /// it starts.
    pub dir: Option<PathBuf>,
    /// Past this, new large messages get 503 with Retry-After.
    #[serde(default = "default_spool_max_total")]
    pub max_total: Size,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_total: default_spool_max_total(),
        }
    }
}

fn default_spool_max_total() -> Size {
    Size(8 << 30)
}

impl SpoolConfig {
    /// The directory, relative paths taken from the config file's.
    pub fn dir_in(&self, base: &Path) -> PathBuf {
        match &self.dir {
            Some(d) => base.join(d),
            None => std::env::temp_dir().join("sealgate-spool"),
        }
    }
}

/// `[state]`: the backend shared by replicas, and what each kind of state
/// does while it cannot be reached.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackend,
    /// `redis://host:port/db` or `rediss://` (TLS); a user name may be in
    /// it, the password never is.
    pub url: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Prepended to every key, so several gateways can share one Redis
    /// (default `sealgate:`).
    pub key_prefix: Option<String>,
    /// Deadline of every state operation (default 50 ms).
    pub timeout: Option<Dur>,
    /// Deadline of a connection attempt (default 1 s).
    pub connect_timeout: Option<Dur>,
    /// Multiplexed connections, used in turn (default 2).
    pub pool_size: Option<usize>,
    /// `rediss://`: CAs for the server certificate (default: the system's).
    pub ca: Option<PathBuf>,
    /// `rediss://`: a client certificate and key to present.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub on_failure: StateFailureConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Memory,
    Redis,
}

/// While the shared store cannot be reached.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateFailureConfig {
    #[serde(default)]
    pub replay: ReplayFailure,
    #[serde(default)]
    pub rate: RateFailure,
    #[serde(default)]
    pub blocks: BlockFailure,
}

/// Blocks while the store cannot be reached: the one choice there is, named
/// so a config says what it relies on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockFailure {
    /// Each replica counts failures and blocks on its own.
    #[default]
    Local,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateFailure {
    /// Each replica's own buckets decide (limits then hold per replica).
    #[default]
    Local,
    /// Admit, as if no limit were set.
    FailOpen,
    /// Refuse with 503 `rate_store_unavailable`.
    FailClosed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFailure {
    /// Refuse with 503 rather than risk accepting a replay.
    #[default]
    FailClosed,
    /// This replica's own cache decides, and a metric says so.
    Local,
}

/// How the gateway logs; read at start (a reload does not reopen logs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (default) or `text`; `run --log-format` overrides it.
    #[serde(default)]
    pub format: LogFormat,
    /// Audit events (target `sealgate::audit`) also go to this file, as JSON
    /// lines appended.
    pub audit_file: Option<PathBuf>,
    /// No log line is longer than this (default 16 KiB): longer fields are
    /// cut, and the line says so.
    #[serde(default = "default_max_line")]
    pub max_line: Size,
    /// SOAP/XML element, attribute and JSON field names whose values are
    /// masked wherever message content could reach a log line or report;
    /// credentials (Authorization, Cookie, Password, sessionId, ...) always are.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Characters of a `redact` value kept at its end (0: none), as portals
    /// show the last four digits of a card number.
    #[serde(default)]
    pub keep_last: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            audit_file: None,
            max_line: default_max_line(),
            redact: Vec::new(),
            keep_last: 0,
        }
    }
}

impl LogConfig {
    /// The masking `redact` and `keep_last` ask for.
    pub fn redactor(&self) -> Result<crate::redact::Redactor, crate::redact::RedactError> {
        crate::redact::Redactor::new(&self.redact, self.keep_last)
    }
}

fn default_max_line() -> Size {
    Size(16 * 1024)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
    /// After SIGTERM/SIGINT, `/readyz` answers 503 for this long before the
    /// listeners close, so a load balancer stops sending first.
    #[serde(default = "default_drain_delay")]
    pub drain_delay: Dur,
    /// Header carrying the verified client identity upstream; any copy from the client is removed.
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    #[serde(default = "default_request_id_header")]
    pub request_id_header: String,
    #[serde(default)]
    pub limits: LimitsConfig,
    pub blocking: Option<BlockingConfig>,
    /// How long before a certificate's notAfter (or a CRL's nextUpdate) an
    /// audit event says so; each threshold once per certificate and process.
    #[serde(default = "default_expiry_warnings")]
    pub expiry_warnings: Vec<Dur>,
}

fn default_expiry_warnings() -> Vec<Dur> {
    [30, 7, 1]
        .map(|d| Dur(Duration::from_secs(d * 86_400)))
        .to_vec()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grace_period: default_grace(),
            drain_delay: default_drain_delay(),
            identity_header: default_identity_header(),
            request_id_header: default_request_id_header(),
            limits: LimitsConfig::default(),
            blocking: None,
            expiry_warnings: default_expiry_warnings(),
        }
    }
}

fn default_grace() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_drain_delay() -> Dur {
    Dur(Duration::ZERO)
}
fn default_identity_header() -> String {
    "x-forwarded-client-cert".into()
}
fn default_request_id_header() -> String {
    "x-request-id".into()
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Request line plus headers, in bytes (HTTP/1.1), or the header list size (HTTP/2).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Size,
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Default request body ceiling; a route may set its own.
    #[serde(default = "default_max_body")]
    pub max_body: Size,
    /// HTTP/1 request headers must be complete within this of their first
    /// byte (a new connection's first request: of the handshake); the wait
    /// for a keep-alive connection's next request is `idle_timeout`'s.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// A connection with no request in flight and no traffic is closed after this long.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Dur,
    /// A request or response body that makes no progress for this long (in
    /// either direction: a peer not sending, or not reading) ends the exchange.
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout: Dur,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_body: default_max_body(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            handshake_timeout: default_handshake_timeout(),
            body_idle_timeout: default_body_idle_timeout(),
        }
    }
}

fn default_max_header_bytes() -> Size {
    Size(32 << 10)
}
fn default_max_headers() -> usize {
    100
}
fn default_max_body() -> Size {
    Size(64 << 20)
}
fn default_header_read_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_idle_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_handshake_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_body_idle_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub tls: ListenerTls,
    /// Checked at TCP accept, before any TLS work. Empty: every address.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    #[serde(default)]
    pub allow_ips_files: Vec<IpFileConfig>,
    pub proxy_protocol: Option<ProxyProtocolConfig>,
    /// New TLS handshakes per client IP, checked before the handshake.
    pub handshake_rate: Option<RateConfig>,
    /// Connections open at once on this listener; more are refused at accept.
    pub max_connections: Option<usize>,
}

/// A file of CIDRs: one per line (`#` comments), or Salesforce's `ip-ranges.json`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum IpFileConfig {
    Path(PathBuf),
    Filtered(IpFileFiltered),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct IpFileFiltered {
    pub path: PathBuf,
    /// For `ip-ranges.json`: keep only prefixes with this `direction` (e.g. "outbound").
    pub direction: Option<String>,
    /// For `ip-ranges.json`: keep only prefixes in these regions.
    #[serde(default)]
    pub regions: Vec<String>,
}

impl IpFileConfig {
    pub fn path(&self) -> &Path {
        match self {
            IpFileConfig::Path(p) => p,
            IpFileConfig::Filtered(f) => &f.path,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolConfig {
    /// Load balancers allowed to send a PROXY header (v1 or v2).
    pub trusted: Vec<String>,
    /// A trusted peer may also connect without a PROXY header.
    #[serde(default)]
    pub optional: bool,
    #[serde(default = "default_proxy_timeout")]
    pub timeout: Dur,
}

fn default_proxy_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

/// A token bucket: `per_second` (or `per_minute`) sustained, `burst` at once.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub per_second: Option<f64>,
    pub per_minute: Option<f64>,
    pub burst: Option<u32>,
    /// Most keys remembered at once; stale keys go first.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    100_000
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RateKey {
    /// The verified client certificate (anonymous callers share one bucket per IP).
    Client,
    /// The client IP (IPv6 by /64).
    Ip,
    /// One bucket for the route.
    Route,
    /// One bucket shared by every route that names a global limit with the same rate.
    Global,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub key: RateKey,
    pub per_second: Option<f64>,
    pub per_minute: Option<f64>,
    pub burst: Option<u32>,
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

impl RateLimitConfig {
    pub fn rate(&self) -> RateConfig {
        RateConfig {
            per_second: self.per_second,
            per_minute: self.per_minute,
            burst: self.burst,
            max_keys: self.max_keys,
        }
    }
}

/// One table or a list of tables.
#[derive(Debug, Clone)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

// By hand rather than `untagged`, so an error inside the table keeps its own
// message and path instead of "did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table or a list of tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                s: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(serde::de::value::SeqAccessDeserializer::new(s))
                    .map(OneOrMany::Many)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

/// Automatic blocking of clients that keep failing authentication.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct BlockingConfig {
    /// Failures (refused handshakes, identity denials, WS-Security failures) that trigger a block.
    pub max_failures: u32,
    /// Counted within this window.
    pub window: Dur,
    /// How long a block lasts.
    pub duration: Dur,
    /// Addresses never blocked (health checkers, the load balancer).
    #[serde(default)]
    pub never_block: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Required,
    Optional,
    Off,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "default_client_auth")]
    pub client_auth: ClientAuth,
    pub client_ca: Option<PathBuf>,
    /// PEM intermediate CAs below `client_ca` whose CRLs are in `crls`: a
    /// CRL is verified against its issuer when loaded, so the issuer must be
    /// known. Not trust anchors; clients still send their chains.
    #[serde(default)]
    pub client_intermediates: Vec<PathBuf>,
    /// Client certificates trusted as themselves, with no chain — a Salesforce
    /// org's self-signed certificate — each `{ cert = "org.crt" }` or
    /// `{ fingerprint_sha256 = "AB:CD:..." }`; still checked for validity.
    #[serde(default)]
    pub pinned_clients: Vec<PinnedClientConfig>,
    /// CRL files, or distribution points fetched in the background:
    /// `{ url = "http://...", refresh = "1h" }`.
    #[serde(default)]
    pub crls: Vec<CrlSource>,
    /// How long past its nextUpdate a CRL is still relied on (default 0:
    /// certificates it covers are refused as `crl_stale`).
    #[serde(default)]
    pub crl_stale_grace: Dur,
    #[serde(default = "default_min_version")]
    pub min_version: TlsVersion,
    /// Which certificates of a client's chain are checked against `crls`.
    #[serde(default)]
    pub crl_check: CrlCheck,
    /// TLS session resumption (tickets and session ids). A resumed session's
    /// client certificate is checked again against the current CAs and CRLs.
    #[serde(default = "yes")]
    pub session_resumption: bool,
}

fn yes() -> bool {
    true
}

/// Where a CRL comes from: a PEM or DER file, or a URL (a CA's CRL
/// distribution point) fetched in the background, verified against the
/// issuing CA, and swapped in like a changed file.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum CrlSource {
    File(PathBuf),
    Url(CrlUrl),
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CrlUrl {
    pub url: String,
    /// How often to fetch it again (default 1 h).
    #[serde(default = "default_crl_refresh")]
    pub refresh: Dur,
    /// One fetch may take this long (default 10 s).
    #[serde(default = "default_crl_timeout")]
    pub timeout: Dur,
}

fn default_crl_refresh() -> Dur {
    Dur(Duration::from_secs(3600))
}
fn default_crl_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// One pinned client certificate: the file, or its SHA-256 fingerprint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedClientConfig {
    pub cert: Option<PathBuf>,
    pub fingerprint_sha256: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CrlCheck {
    /// Every certificate below the trust anchor, as nginx's `ssl_crl`.
    #[default]
    Chain,
    /// The client's own certificate only.
    Leaf,
}

fn default_client_auth() -> ClientAuth {
    ClientAuth::Required
}
fn default_min_version() -> TlsVersion {
    TlsVersion::V1_2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    pub listener: String,
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// Any rule admits; all fields inside one rule must match.
    #[serde(default)]
    pub allow: Vec<AllowRuleConfig>,
    /// Callers without a client certificate (optional/off listeners) may use this route.
    #[serde(default)]
    pub allow_anonymous: bool,
    pub upstream: String,
    /// Errors on this route are SOAP faults (1.1 or 1.2, following the request).
    #[serde(default)]
    pub soap: bool,
    pub max_body: Option<Size>,
    /// Checked per request; empty: every address.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    #[serde(default)]
    pub allow_ips_files: Vec<IpFileConfig>,
    #[serde(default)]
    pub rate_limit: OneOrMany<RateLimitConfig>,
    /// Requests in flight on this route.
    pub max_concurrent: Option<usize>,
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Dur,
    /// Overrides `server.limits.body_idle_timeout` (a long-lived stream that
    /// may sit idle, such as a Pub/Sub API subscription).
    pub body_idle_timeout: Option<Dur>,
    /// The whole exchange, from request headers to the end of the response.
    pub max_duration: Option<Dur>,
    pub wssec: Option<RouteWssec>,
    /// How the upstream's credential (`[upstream.NAME.auth]`) is presented.
    pub credentials: Option<RouteCredentials>,
}

/// A route's use of its upstream's credential.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteCredentials {
    /// The client identity → the principal the token is for (the first
    /// rule that matches); a caller no rule maps is refused (403).
    #[serde(default)]
    pub principals: Vec<PrincipalConfig>,
    /// Let the client's own credentials through instead of removing them.
    #[serde(default)]
    pub pass_client_credentials: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    pub principal: String,
    pub when: AllowRuleConfig,
}

/// WS-Security on a route: for requests on their way upstream, and for the
/// upstream's responses on their way back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWssec {
    pub request: Option<WssecStageConfig>,
    pub response: Option<WssecStageConfig>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WssecMode {
    /// Check the message's signature, Timestamp and tokens; refuse it otherwise.
    Verify,
    /// Add a Security header: Timestamp, signature and/or UsernameToken.
    Sign,
    /// Remove the Security header for this receiver without judging it (for
    /// an upstream that refuses its mustUnderstand, where trust is decided
    /// elsewhere).
    Strip,
    #[default]
    None,
}

impl WssecMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WssecMode::Verify => "verify",
            WssecMode::Sign => "sign",
            WssecMode::Strip => "strip",
            WssecMode::None => "none",
        }
    }
}

/// How the signer's identity must relate to the mutual-TLS client identity.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BindIdentity {
    /// No relation required.
    #[default]
    Off,
    /// The message is signed with the very certificate the client presented.
    Certificate,
    /// The signer's subject DN equals the client's.
    Subject,
    /// The client's subject maps to the signer's subject in `identity_map`.
    Map,
}

/// How a signature written by the gateway names its key.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyReferenceConfig {
    /// A BinarySecurityToken carrying the certificate, and a Reference to it.
    #[default]
    Bst,
    IssuerSerial,
    Ski,
    Thumbprint,
}

/// One WS-Security stage (`mode`), with the keys of that mode. Keys of the
/// other mode are optional here so that setting one is reported, not ignored;
/// defaults are applied when the stage is compiled (`sealgate wssec` builds
/// one from its flags, so the CLI and the proxy judge alike).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WssecStageConfig {
    pub mode: WssecMode,

    // ---- both modes ----
    /// The body is buffered up to this size (default 16 MiB); above it a
    /// verified request streams through the spool (up to
    /// `max_streamed_body`), anything else gets 413 (502 for a response).
    pub max_body: Option<Size>,
    /// Verify only, requests: the largest message verified as it streams
    /// through the encrypted spool (default 0: none, 413 above max_body).
    pub max_streamed_body: Option<Size>,
    /// The whole of a streamed message must arrive within this (default 30 min).
    pub stream_read_timeout: Option<Dur>,
    /// Messages being buffered and processed at once; more wait up to the
    /// route's queue_timeout, then 503 (default 16).
    pub max_concurrent: Option<usize>,
    /// The whole body must arrive within this (default 30 s).
    pub read_timeout: Option<Dur>,
    /// CPU one message's verification may take, all passes together; beyond
    /// it the message is refused (`wssec_work_limit`). Default 5 s.
    pub work_limit: Option<Dur>,
    #[serde(default)]
    pub xml: XmlLimitsConfig,

    // ---- verify ----
    /// PEM trust anchors for signer certificates.
    pub trust: Option<PathBuf>,
    /// PEM intermediates between signers and the anchors.
    #[serde(default)]
    pub intermediates: Vec<PathBuf>,
    /// Signer certificates: a PEM file (for KeyIdentifier / X509IssuerSerial
    /// references, still chained to `trust`), or a list of entries that may
    /// pin a certificate (`{ cert = "...", pinned = true }`) or a SHA-256
    /// fingerprint (`{ fingerprint_sha256 = "AB:CD:..." }`): trusted as
    /// themselves, with no chain.
    pub signers: Option<SignersConfig>,
    #[serde(default)]
    pub crls: Vec<CrlSource>,
    /// How long past its nextUpdate a signer CRL is still relied on (default 0).
    pub crl_stale_grace: Option<Dur>,
    /// `Body`, `Timestamp` and header blocks as `{namespace}LocalName`.
    pub require_signed: Option<Vec<String>>,
    /// Header blocks that may be signed without being required.
    #[serde(default)]
    pub signable_headers: Vec<String>,
    pub require_timestamp: Option<bool>,
    pub max_clock_skew: Option<Dur>,
    /// Longest Timestamp lifetime accepted (default 5 min).
    pub max_ttl: Option<Dur>,
    pub allow_sha1: Option<bool>,
    /// RSA signer keys under 2048 bits (refused by default).
    pub allow_legacy_keys: Option<bool>,
    /// The SOAP actor/role URI this gateway is, beside the defaults; Security
    /// headers for other actors are left alone.
    pub actor: Option<String>,
    /// False (default): the Security header is removed before forwarding.
    pub forward_security_header: Option<bool>,
    /// Size of the gateway's replay cache (one cache, shared by every verifying
    /// stage, so a message cannot be replayed through another route).
    pub replay_cache_entries: Option<usize>,
    pub bind_identity: Option<BindIdentity>,
    /// Client subject DN -> signer subject DN, for `bind_identity = "map"`.
    #[serde(default)]
    pub identity_map: BTreeMap<String, String>,
    /// UsernameToken users and where their secrets come from.
    #[serde(default)]
    pub usernames: Vec<UsernameConfig>,
    pub require_username_token: Option<bool>,

    // ---- sign ----
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), readable by its owner only.
    pub key: Option<PathBuf>,
    /// PEM signing certificate (the key's).
    pub cert: Option<PathBuf>,
    pub key_reference: Option<KeyReferenceConfig>,
    /// Lifetime of the Timestamp written (default 5 min, at most 24 h).
    pub ttl: Option<Dur>,
    /// Write a Timestamp (default true).
    pub timestamp: Option<bool>,
    /// Header blocks to sign beside Body and Timestamp, as `{namespace}LocalName`.
    #[serde(default)]
    pub sign_headers: Vec<String>,
    /// A message that already has a Security header gets a new one in its
    /// place (default: it is refused).
    pub replace_security: Option<bool>,
    pub username_token: Option<UsernameTokenConfig>,
}

/// `signers = "file.pem"`, or a list of entries.
#[derive(Debug)]
pub enum SignersConfig {
    File(PathBuf),
    List(Vec<SignerConfig>),
}

// By hand rather than `untagged`, so an error inside an entry keeps its own
// message and path.
impl<'de> Deserialize<'de> for SignersConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SignersConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a PEM file path, or a list of { cert = \"...\", pinned = true } / { fingerprint_sha256 = \"...\" } entries")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(SignersConfig::File(PathBuf::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                s: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::<SignerConfig>::deserialize(serde::de::value::SeqAccessDeserializer::new(s))
                    .map(SignersConfig::List)
            }
        }
        d.deserialize_any(V)
    }
}

/// One signer: a certificate (pinned or chained), or a pinned fingerprint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    pub cert: Option<PathBuf>,
    /// Trusted as itself, with no chain (still checked for validity and key size).
    #[serde(default)]
    pub pinned: bool,
    /// SHA-256 of a certificate the message itself carries, pinned.
    pub fingerprint_sha256: Option<String>,
}

/// A UsernameToken the gateway adds (for services that authenticate by it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernameTokenConfig {
    pub user: String,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// PasswordDigest with Nonce and Created, rather than PasswordText.
    #[serde(default)]
    pub digest: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernameConfig {
    pub user: String,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

/// Overrides of the hardened XML reader's limits; unset keys keep the defaults.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct XmlLimitsConfig {
    pub max_depth: Option<usize>,
    pub max_attributes: Option<usize>,
    pub max_namespaces_per_element: Option<usize>,
    pub max_namespaces_in_scope: Option<usize>,
    pub max_name_length: Option<usize>,
    pub max_text_length: Option<Size>,
    pub max_attribute_length: Option<Size>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub soap_action: Option<String>,
}

/// Fields of a client certificate that a route may require.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct AllowRuleConfig {
    pub subject: Option<String>,
    pub cn: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub san_dns: Option<String>,
    pub san_uri: Option<String>,
    pub san_email: Option<String>,
    pub spiffe_id: Option<String>,
    pub fingerprint_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: String,
    /// `"system"` for the operating system's roots, or a PEM bundle path.
    pub ca: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time allowed for the upstream to answer with response headers.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// Ceiling on requests in flight to this upstream.
    pub max_concurrent: Option<usize>,
    /// How long a request may wait for a free slot before a 503.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Dur,
    /// Send the client's Host header upstream instead of the upstream's own authority.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default = "default_pool_idle_timeout")]
    pub pool_idle_timeout: Dur,
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle_per_host: usize,
    /// A credential the gateway holds and presents on the callers' behalf.
    pub auth: Option<AuthConfig>,
}

/// `[upstream.NAME.auth]`: where the upstream's credential comes from. A
/// secret is never written here: `${VAR}` names an environment variable, or
/// a `*_file` key a file.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthConfig {
    /// OAuth 2.0 JWT bearer (RFC 7523) as Salesforce runs it.
    SalesforceJwtBearer(SalesforceJwtConfig),
    /// OAuth 2.0 client credentials (RFC 6749 section 4.4).
    ClientCredentials(ClientCredentialsConfig),
    /// A bearer token or API key that does not change.
    Static(StaticTokenConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceJwtConfig {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain URL.
    #[serde(default = "default_salesforce_login")]
    pub login: String,
    /// The connected app's consumer key (the JWT's `iss`).
    pub consumer_key: String,
    /// The connected app's private key (PEM, RSA): signs the assertion.
    pub key: PathBuf,
    /// The Salesforce user when a route maps no principal.
    pub username: Option<String>,
    /// Fetched again after this long even if still accepted.
    pub max_age: Option<Dur>,
    /// Requests go to the token's `instance_url` instead of the upstream's host.
    #[serde(default)]
    pub use_instance_url: bool,
    /// Hosts an `instance_url` may name (default: Salesforce's domains).
    pub instance_hosts: Option<Vec<String>>,
    /// `"system"` (default) or a PEM bundle path: the token endpoint's CAs.
    pub token_ca: Option<String>,
    /// One fetch, connection included (default 10s).
    pub token_timeout: Option<Dur>,
}

fn default_salesforce_login() -> String {
    "https://login.salesforce.com".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    pub token_url: String,
    pub client_id: String,
    /// `${VAR}` only; or `client_secret_file`.
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// `private_key_jwt`: the key signing the client assertion (PEM, RSA or
    /// ECDSA P-256) and its `kid`.
    pub key: Option<PathBuf>,
    pub key_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A token is fetched again this long before it expires.
    pub refresh_margin: Option<Dur>,
    pub token_ca: Option<String>,
    pub token_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenConfig {
    /// `${VAR}` only; or `token_file`.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// The header it goes in (default `authorization`).
    pub header: Option<String>,
    /// Written before the token: default `Bearer` in `authorization`, none elsewhere.
    pub scheme: Option<String>,
}

fn default_connect_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_request_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_queue_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_pool_idle_timeout() -> Dur {
    Dur(Duration::from_secs(90))
}
fn default_pool_max_idle() -> usize {
    32
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoConfig {
    pub listen: SocketAddr,
}
