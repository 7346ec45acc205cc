//! Audit events: one JSON line each, target `sealgate::audit`, for what an
//! operator must see about the gateway's own material and configuration —
//! reloads, certificates and CRLs near their end, key files others can read.
//! Every event has a stable `event` name; secrets never appear.

use crate::tls::certs::CertSummary;

pub const TARGET: &str = "sealgate::audit";

pub fn reload_ok(trigger: &str, sha256: &str, generation: u64, changed: bool) {
    tracing::info!(
        target: TARGET,
        event = "config_reload",
        result = "ok",
        trigger,
        sha256,
        generation,
        changed,
        "configuration reloaded"
    );
}

/// `problems` are the lines `sealgate check` would print.
pub fn reload_failed(trigger: &str, problems: &[String]) {
    tracing::error!(
        target: TARGET,
        event = "config_reload",
        result = "error",
        trigger,
        problems = %problems.join("; "),
        problem_count = problems.len(),
        "configuration reload refused; the previous configuration keeps serving"
    );
}

/// The shared state store stopped answering (`up` false: each kind of state
/// now follows its on_failure policy) or answers again.
pub fn state_backend(up: bool, url: &str, detail: &str) {
    if up {
        tracing::info!(
            target: TARGET,
            event = "state_backend_recovered",
            url,
            "the shared state store answers again; replicas share state"
        );
    } else {
        tracing::error!(
            target: TARGET,
            event = "state_backend_unavailable",
            url,
            detail,
            "the shared state store does not answer; each kind of state follows its on_failure policy"
        );
    }
}

pub fn listener_moved(listener: &str, from: &str, to: &str) {
    tracing::info!(
        target: TARGET,
        event = "listener_rebound",
        listener,
        from,
        to,
        "listener rebound to its new address"
    );
}

/// A certificate came within `threshold_days` of its notAfter (or passed it).
pub fn certificate_expiry(c: &CertSummary, days_left: i64, threshold: &str) {
    let expired = days_left < 0 || c.not_after_unix <= crate::tls::certs::now_unix();
    macro_rules! event {
        ($lvl:ident, $name:literal, $msg:literal) => {
            tracing::$lvl!(
                target: TARGET,
                event = $name,
                role = c.held.as_str(),
                name = %c.name,
                key = %c.role,
                subject = %c.subject,
                issuer = %c.issuer,
                fingerprint_sha256 = %c.fingerprint,
                not_after_unix = c.not_after_unix,
                days_left,
                threshold,
                path = %c.path.display(),
                $msg
            )
        };
    }
    if expired {
        event!(
            error,
            "certificate_expired",
            "certificate has expired; renew it"
        );
    } else {
        event!(
            warn,
            "certificate_expiring",
            "certificate expires within a configured threshold; renew it"
        );
    }
}

/// A CRL came within a threshold of its nextUpdate (or passed it).
pub fn crl_next_update(c: &crate::tls::crl::CrlSummary, days_left: i64, threshold: &str) {
    let stale = c
        .next_update_unix
        .is_some_and(|t| t <= crate::tls::certs::now_unix());
    macro_rules! event {
        ($lvl:ident, $name:literal, $msg:literal) => {
            tracing::$lvl!(
                target: TARGET,
                event = $name,
                role = c.held.as_str(),
                name = %c.name,
                key = %c.at,
                issuer = %c.issuer,
                next_update_unix = c.next_update_unix.unwrap_or(0),
                days_left,
                threshold,
                source = %c.source,
                $msg
            )
        };
    }
    if stale {
        event!(
            error,
            "crl_stale",
            "CRL is past its nextUpdate; publish a fresh one (certificates it covers are refused unless a grace allows them)"
        );
    } else {
        event!(
            warn,
            "crl_next_update_near",
            "CRL reaches its nextUpdate within a configured threshold; publish a fresh one"
        );
    }
}

pub fn key_readable(key: &str, path: &std::path::Path, mode: u32) {
    tracing::warn!(
        target: TARGET,
        event = "key_file_readable",
        key,
        path = %path.display(),
        mode = %format!("{mode:04o}"),
        "private key file is readable by its group or everyone; chmod 600 it"
    );
}

pub fn crl_fetch(url: &str, result: &str, detail: &str) {
    if result == "error" {
        tracing::warn!(
            target: TARGET,
            event = "crl_fetch",
            url,
            result,
            detail,
            "CRL download failed; the last good copy stays in use"
        );
    } else {
        tracing::info!(
            target: TARGET,
            event = "crl_fetch",
            url,
            result,
            detail,
            "CRL downloaded"
        );
    }
}

/// A brokered token was issued (`refreshed`: it replaced an older one).
/// Its scopes and expiry, never the token.
pub fn token_issued(
    upstream: &str,
    principal: &str,
    scopes: &str,
    expires_unix: Option<u64>,
    refreshed: bool,
) {
    tracing::info!(
        target: TARGET,
        event = if refreshed { "token_refreshed" } else { "token_issued" },
        upstream,
        principal,
        scopes,
        expires_unix,
        "token fetched for the upstream"
    );
}

/// A token endpoint gave no token: `result` as `sealgate_token_fetches_total`
/// counts it, and what the endpoint said (its `error_description`).
pub fn token_refused(upstream: &str, principal: &str, result: &str, detail: &str) {
    tracing::error!(
        target: TARGET,
        event = "token_refused",
        upstream,
        principal,
        result,
        detail,
        "no token from the upstream's token endpoint; its requests get 503 token_unavailable"
    );
}

/// The upstream refused a brokered token (401): the next request fetches one.
pub fn token_invalidated(upstream: &str, principal: &str) {
    tracing::warn!(
        target: TARGET,
        event = "token_invalidated",
        upstream,
        principal,
        "the upstream refused the brokered token; a new one is fetched"
    );
}
