//! `sealgate token`: one fetch from an upstream's token source, made as the
//! gateway makes it, to check a connected app's or client's setup before
//! traffic depends on it. The token itself is printed only when asked for.

use super::source::{Flow, Kind, Source, APPLICATION};
use std::fmt::Write as _;
use std::time::Instant;

/// What came back, as lines to print; `Err`: why no token came back (what
/// the endpoint said, never a secret).
pub async fn fetch_once(
    src: &Source,
    principal: Option<&str>,
    show: bool,
) -> Result<String, String> {
    let mut out = String::new();
    let f = match &src.kind {
        Kind::Static { header, value } => {
            let _ = writeln!(
                out,
                "upstream {}: static credential in header {header} (nothing to fetch)",
                src.upstream
            );
            let shown = match show {
                true => String::from_utf8_lossy(value.as_bytes()).into_owned(),
                false => hidden(value.len()),
            };
            let _ = writeln!(out, "credential: {shown}");
            return Ok(out);
        }
        Kind::Fetched(f) => f,
    };
    let principal = match (principal, &f.default_principal) {
        (Some(p), _) => p,
        (None, Some(p)) => p.as_str(),
        (None, None) if src.is_salesforce() => {
            return Err(format!(
                "upstream {}: tokens are per Salesforce user: name one with --principal (e.g. etl-prod@acme.com)",
                src.upstream
            ))
        }
        (None, None) => APPLICATION,
    };
    let _ = writeln!(
        out,
        "upstream {}: {}, token endpoint {}",
        src.upstream,
        src.kind_name(),
        f.token_url
    );
    if let Flow::ClientCredentials { client_id, .. } = &f.flow {
        let _ = writeln!(out, "client_id: {client_id}");
    }
    if principal != APPLICATION {
        let _ = writeln!(out, "principal: {principal}");
    }
    let started = Instant::now();
    let got = f.fetch(principal).await.map_err(|e| e.to_string())?;
    let _ = writeln!(out, "fetched in {} ms", started.elapsed().as_millis());
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    if src.is_salesforce() {
        let _ = writeln!(out, "instance_url: {}", or_none(&got.instance_url));
        let _ = writeln!(out, "org (Pub/Sub tenantid): {}", or_none(&got.org_id()));
        let _ = writeln!(out, "identity URL: {}", or_none(&got.id));
        if f.use_instance_url {
            let _ = writeln!(out, "requests go to the instance_url (use_instance_url)");
        }
    }
    let _ = writeln!(out, "scope: {}", or_none(&got.scope));
    let lifetime = match got.expires_in {
        Some(s) => format!(
            "expires_in {s} s, refreshed {} s ahead",
            f.refresh_margin.as_secs()
        ),
        None => "no expires_in: reused until the upstream refuses it".into(),
    };
    let age = f
        .max_age
        .map(|a| format!(", fetched anew after {}", humantime::format_duration(a)))
        .unwrap_or_default();
    let _ = writeln!(out, "lifetime: {lifetime}{age}");
    let value = got.access_token.expose();
    let shown = match show {
        true => String::from_utf8_lossy(value).into_owned(),
        false => hidden(value.len()),
    };
    let _ = writeln!(out, "token: {shown}");
    Ok(out)
}

fn hidden(len: usize) -> String {
    format!("({len} bytes, not shown: --show prints it)")
}
