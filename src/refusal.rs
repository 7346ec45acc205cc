//! Why the gateway refused a request or could not complete it: one reason
//! per cause with its stage, its HTTP status, the sentence the caller reads,
//! and whether it counts as a failed authentication. WS-Security refusals keep
//! their own family (`wssec::reason`) and join it here as [`Kind::Wssec`].

use crate::reason::reasons;
use http::StatusCode;

reasons! {
    /// A refusal by the proxy itself.
    pub enum Reason {
        BadPath = "bad_path",
        /// Host, the absolute-form URI and `:authority` name different hosts.
        HostMismatch = "host_mismatch",
        AmbiguousSoapAction = "ambiguous_soap_action",
        /// `Connection` names a header that routing or identity decided on.
        ConnectionNamesRoutingHeader = "connection_names_routing_header",
        NoRoute = "no_route",
        Blocked = "blocked",
        IpNotAllowed = "ip_not_allowed",
        NoClientIdentity = "no_client_identity",
        IdentityNotAllowed = "identity_not_allowed",
        RateLimited = "rate_limited",
        /// The shared rate-limit store did not answer (`on_failure.rate = "fail_closed"`).
        RateStoreUnavailable = "rate_store_unavailable",
        RouteBusy = "route_busy",
        /// No `[route.credentials]` principal maps the client identity.
        NoPrincipal = "no_principal",
        /// The upstream's token could not be had (endpoint down or refusing).
        TokenUnavailable = "token_unavailable",
        /// A Salesforce SOAP route's body is not one envelope a SessionHeader
        /// can be written into.
        NotASoapEnvelope = "not_a_soap_envelope",
        TooManyHeaders = "too_many_headers",
        BodyTooLarge = "body_too_large",
        BadRequest = "bad_request",
        UnsupportedEncoding = "unsupported_encoding",
        BodyReadTimeout = "body_read_timeout",
        ClientBodyError = "client_body_error",
        /// The client sent no body bytes (or read none) for the idle timeout.
        ClientStalled = "client_stalled",
        UpstreamBusy = "upstream_busy",
        UpstreamUnreachable = "upstream_unreachable",
        UpstreamTls = "upstream_tls_failed",
        UpstreamError = "upstream_error",
        UpstreamConnectTimeout = "upstream_connect_timeout",
        UpstreamTimeout = "upstream_timeout",
        /// The upstream sent (or took) no body bytes for the idle timeout.
        UpstreamStalled = "upstream_stalled",
        /// The exchange ran past the route's `max_duration`.
        MaxDuration = "max_duration",
        WssecUnavailable = "wssec_unavailable",
        /// A message to verify as it streams does not fit in the spool's cap.
        SpoolFull = "spool_full",
        /// The upstream's answer failed the route's WS-Security verification.
        WssecResponseRefused = "wssec_response_refused",
        /// The upstream's answer could not be signed.
        WssecResponseUnsigned = "wssec_response_unsigned",
        /// The upstream's answer is larger than the response stage buffers.
        UpstreamResponseTooLarge = "upstream_response_too_large",
        Internal = "internal_error",
        /// The client went away before the response ended.
        ClientCancelled = "client_cancelled",
    }
}

/// The pipeline stage a refusal belongs to, for `sealgate_rejections_total{stage}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Route,
    Ip,
    Identity,
    Rate,
    Concurrency,
    Size,
    Wssec,
    /// The upstream's credential, brokered by the gateway.
    Credentials,
    Upstream,
    /// A body that stopped moving, or an exchange that ran too long.
    Transfer,
}

impl Stage {
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Route => "route",
            Stage::Ip => "ip",
            Stage::Identity => "identity",
            Stage::Rate => "rate",
            Stage::Concurrency => "concurrency",
            Stage::Size => "size",
            Stage::Wssec => "wssec",
            Stage::Credentials => "credentials",
            Stage::Upstream => "upstream",
            Stage::Transfer => "transfer",
        }
    }
}

impl Reason {
    pub const fn stage(self) -> Stage {
        use Reason as R;
        match self {
            R::BadPath
            | R::HostMismatch
            | R::AmbiguousSoapAction
            | R::ConnectionNamesRoutingHeader
            | R::NoRoute
            | R::BadRequest => Stage::Route,
            R::Blocked | R::IpNotAllowed => Stage::Ip,
            R::NoClientIdentity | R::IdentityNotAllowed => Stage::Identity,
            R::RateLimited | R::RateStoreUnavailable => Stage::Rate,
            R::RouteBusy => Stage::Concurrency,
            R::NoPrincipal | R::TokenUnavailable | R::NotASoapEnvelope => Stage::Credentials,
            R::TooManyHeaders | R::BodyTooLarge | R::BodyReadTimeout | R::ClientBodyError => {
                Stage::Size
            }
            R::UnsupportedEncoding
            | R::WssecUnavailable
            | R::SpoolFull
            | R::WssecResponseRefused
            | R::WssecResponseUnsigned
            | R::Internal => Stage::Wssec,
            R::UpstreamBusy
            | R::UpstreamUnreachable
            | R::UpstreamTls
            | R::UpstreamError
            | R::UpstreamConnectTimeout
            | R::UpstreamTimeout
            | R::UpstreamStalled
            | R::UpstreamResponseTooLarge => Stage::Upstream,
            R::ClientStalled | R::MaxDuration | R::ClientCancelled => Stage::Transfer,
        }
    }

    pub fn status(self) -> StatusCode {
        use Reason as R;
        use StatusCode as S;
        match self {
            R::BadPath
            | R::HostMismatch
            | R::AmbiguousSoapAction
            | R::ConnectionNamesRoutingHeader
            | R::BadRequest
            | R::NotASoapEnvelope
            | R::ClientBodyError => S::BAD_REQUEST,
            R::NoRoute => S::NOT_FOUND,
            R::Blocked
            | R::IpNotAllowed
            | R::NoClientIdentity
            | R::IdentityNotAllowed
            | R::NoPrincipal => S::FORBIDDEN,
            R::RateLimited => S::TOO_MANY_REQUESTS,
            R::RouteBusy
            | R::UpstreamBusy
            | R::WssecUnavailable
            | R::SpoolFull
            | R::RateStoreUnavailable
            | R::TokenUnavailable => S::SERVICE_UNAVAILABLE,
            R::TooManyHeaders => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            R::BodyTooLarge => S::PAYLOAD_TOO_LARGE,
            R::UnsupportedEncoding => S::UNSUPPORTED_MEDIA_TYPE,
            R::BodyReadTimeout | R::ClientStalled => S::REQUEST_TIMEOUT,
            R::UpstreamUnreachable
            | R::UpstreamTls
            | R::UpstreamError
            | R::WssecResponseRefused
            | R::WssecResponseUnsigned
            | R::UpstreamResponseTooLarge => S::BAD_GATEWAY,
            R::UpstreamConnectTimeout
            | R::UpstreamTimeout
            | R::UpstreamStalled
            | R::MaxDuration => S::GATEWAY_TIMEOUT,
            R::Internal => S::INTERNAL_SERVER_ERROR,
            // nginx's code for "the client closed the request before the response".
            R::ClientCancelled => match S::from_u16(499) {
                Ok(s) => s,
                Err(_) => S::BAD_REQUEST,
            },
        }
    }

    /// One sentence for the caller.
    pub const fn message(self) -> &'static str {
        use Reason as R;
        match self {
            R::BadPath => "The path has dot segments, encoded slashes, backslashes or empty segments; send it normalised.",
            R::HostMismatch => "The request names more than one host (Host, the request target or :authority); send one.",
            R::AmbiguousSoapAction => "Send one SOAPAction, and for SOAP 1.2 let it agree with the Content-Type's action.",
            R::ConnectionNamesRoutingHeader => "The Connection header names a header the request is routed or identified by; do not list it.",
            R::NoRoute => "No route matches this request.",
            R::Blocked => "This client is blocked for a while after repeated authentication failures.",
            R::IpNotAllowed => "This client address may not use this route.",
            R::NoClientIdentity => "This route requires a client certificate.",
            R::IdentityNotAllowed => "The client certificate is not allowed on this route.",
            R::RateLimited => "Too many requests; retry after the time given.",
            R::RateStoreUnavailable => "Rate limits cannot be checked right now; retry later.",
            R::RouteBusy => "This route is at its concurrency limit; retry later.",
            R::NoPrincipal => "No upstream account is mapped to this client certificate on this route.",
            R::TokenUnavailable => "The gateway cannot obtain the upstream's credential right now; retry later.",
            R::NotASoapEnvelope => "This route writes the upstream's session into the SOAP Header: send one well-formed SOAP envelope, with at most one SessionHeader.",
            R::TooManyHeaders => "The request has too many header fields.",
            R::BodyTooLarge => "The request body is larger than this route allows.",
            R::BadRequest => "The request could not be forwarded as sent.",
            R::UnsupportedEncoding => "Messages this route reads whole (WS-Security, a SessionHeader) must be sent unencoded (no Content-Encoding) in UTF-8.",
            R::BodyReadTimeout => "The request body did not arrive in time.",
            R::ClientBodyError => "The request body could not be read from the client.",
            R::ClientStalled => "The request body stopped arriving.",
            R::UpstreamBusy => "The upstream is at its concurrency limit; retry later.",
            R::UpstreamUnreachable => "The upstream could not be reached.",
            R::UpstreamTls => "The TLS handshake with the upstream failed.",
            R::UpstreamError => "The upstream closed the connection or sent an invalid response.",
            R::UpstreamConnectTimeout => "Connecting to the upstream timed out.",
            R::UpstreamTimeout => "The upstream did not answer in time.",
            R::UpstreamStalled => "The upstream stopped reading the request or sending the response.",
            R::MaxDuration => "The exchange took longer than this route allows.",
            R::WssecUnavailable => "The gateway cannot process WS-Security right now; retry later.",
            R::SpoolFull => "The gateway holds as many large messages as it can right now; retry after the time given.",
            R::WssecResponseRefused => "The upstream's answer failed WS-Security verification and was withheld.",
            R::WssecResponseUnsigned => "The upstream's answer could not be signed and was withheld.",
            R::UpstreamResponseTooLarge => "The upstream's answer is larger than this route accepts.",
            R::Internal => "The gateway could not process this request.",
            R::ClientCancelled => "The client closed the request.",
        }
    }

    /// A failed authentication: counts towards blocking the client.
    pub const fn counts_toward_block(self) -> bool {
        matches!(self, Reason::NoClientIdentity | Reason::IdentityNotAllowed)
    }
}

/// A refusal of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Proxy(Reason),
    Wssec(crate::wssec::reason::Reason),
}

impl Kind {
    /// Both families together, for arrays of metric handles.
    pub const COUNT: usize = Reason::COUNT + crate::wssec::reason::Reason::COUNT;

    pub const fn index(self) -> usize {
        match self {
            Kind::Proxy(r) => r.index(),
            Kind::Wssec(r) => Reason::COUNT + r.index(),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Proxy(r) => r.as_str(),
            Kind::Wssec(r) => r.as_str(),
        }
    }

    pub const fn stage(self) -> Stage {
        match self {
            Kind::Proxy(r) => r.stage(),
            Kind::Wssec(_) => Stage::Wssec,
        }
    }

    /// WS-Security reasons stay in the log and the metrics, as WSS4J keeps them.
    pub const fn public(self) -> bool {
        matches!(self, Kind::Proxy(_))
    }
}

/// A request the gateway refused or could not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    pub const fn new(reason: Reason) -> Refusal {
        Refusal {
            kind: Kind::Proxy(reason),
            retry_after_secs: None,
        }
    }

    pub const fn wssec(reason: crate::wssec::reason::Reason) -> Refusal {
        Refusal {
            kind: Kind::Wssec(reason),
            retry_after_secs: None,
        }
    }

    pub const fn retry_after(mut self, secs: u64) -> Refusal {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The status the gateway answers with before any SOAP binding applies.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Proxy(r) => r.status(),
            // SOAP's own HTTP bindings: 500 for a 1.1 fault, 400 for a 1.2 Sender fault.
            Kind::Wssec(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Reason> for Refusal {
    fn from(r: Reason) -> Refusal {
        Refusal::new(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_across_both_families() {
        let mut labels: std::collections::HashSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reason::COUNT);
        for r in crate::wssec::reason::Reason::ALL {
            assert!(labels.insert(r.as_str()), "{r} is also a proxy reason");
        }
        let idx: std::collections::HashSet<usize> = Reason::ALL
            .iter()
            .map(|r| Kind::Proxy(*r).index())
            .chain(
                crate::wssec::reason::Reason::ALL
                    .iter()
                    .map(|r| Kind::Wssec(*r).index()),
            )
            .collect();
        assert_eq!(idx.len(), Kind::COUNT);
        assert!(idx.iter().all(|i| *i < Kind::COUNT));
    }

    #[test]
    fn statuses_are_errors() {
        for r in Reason::ALL {
            let s = r.status().as_u16();
            assert!((400..600).contains(&s), "{r}: {s}");
        }
    }
}
