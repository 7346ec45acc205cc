//! Checks that need only the parsed file: names, references between tables,
//! values. Each problem names its TOML path and the fix.

use super::{ClientAuth, Config, Problem};
use crate::hygiene::{CLIENT_CLAIMS, HOP_BY_HOP, ROUTING};

/// The default identity header is also a client claim stripped on the way in.
const DEFAULT_IDENTITY_HEADER: &str = "x-forwarded-client-cert";

impl Config {
    /// Checks that need only the parsed file: names, references, values.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.listeners.is_empty() {
            out.push(Problem::new(
                "listener",
                "no listener defined; add a [[listener]] table with name, listen and [listener.tls]",
            ));
        }
        let listener_names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
        for (i, l) in self.listeners.iter().enumerate() {
            let p = format!("listener[{i}]");
            check_name(&mut out, &format!("{p}.name"), &l.name);
            if listener_names.iter().filter(|n| **n == l.name).count() > 1 {
                out.push(Problem::new(
                    format!("{p}.name"),
                    format!(
                        "listener name {:?} is used twice; give each listener its own name",
                        l.name
                    ),
                ));
            }
            // Port 0 (any free port) never clashes.
            let fixed = l.listen.port() != 0;
            if fixed && self.listeners[..i].iter().any(|o| o.listen == l.listen) {
                out.push(Problem::new(
                    format!("{p}.listen"),
                    format!("address {} is already used by another listener", l.listen),
                ));
            }
            if fixed && l.listen == self.admin.listen {
                out.push(Problem::new(
                    format!("{p}.listen"),
                    format!(
                        "address {} is also the admin listener's; pick another port",
                        l.listen
                    ),
                ));
            }
            let pins = !l.tls.pinned_clients.is_empty();
            match (l.tls.client_auth, &l.tls.client_ca) {
                (ClientAuth::Required | ClientAuth::Optional, None) if !pins => out.push(Problem::new(
                    format!("{p}.tls.client_ca"),
                    "client_auth needs a client CA bundle or pinned client certificates; set client_ca = \"path/to/client-ca.crt\", pinned_clients = [{ fingerprint_sha256 = \"AB:CD:...\" }], or client_auth = \"off\"",
                )),
                (ClientAuth::Off, _) if pins => out.push(Problem::new(
                    format!("{p}.tls.pinned_clients"),
                    "pinned_clients is set but client_auth = \"off\", so no certificate is asked for; set client_auth = \"required\" or remove pinned_clients",
                )),
                (ClientAuth::Off, Some(_)) => out.push(Problem::new(
                    format!("{p}.tls.client_ca"),
                    "client_ca is set but client_auth = \"off\", so it would never be used; set client_auth = \"required\" or remove client_ca",
                )),
                _ => {}
            }
            if l.tls.client_auth == ClientAuth::Off && !l.tls.crls.is_empty() {
                out.push(Problem::new(
                    format!("{p}.tls.crls"),
                    "CRLs are set but client_auth = \"off\"; remove them or require client certificates",
                ));
            }
        }
        let route_names: Vec<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
        for (i, r) in self.routes.iter().enumerate() {
            let p = format!("route[{i}]");
            check_name(&mut out, &format!("{p}.name"), &r.name);
            if route_names.iter().filter(|n| **n == r.name).count() > 1 {
                out.push(Problem::new(
                    format!("{p}.name"),
                    format!(
                        "route name {:?} is used twice; give each route its own name",
                        r.name
                    ),
                ));
            }
            match self.listeners.iter().find(|l| l.name == r.listener) {
                None => out.push(Problem::new(
                    format!("{p}.listener"),
                    format!(
                        "no listener named {:?} (known: {})",
                        r.listener,
                        known(listener_names.iter().copied())
                    ),
                )),
                Some(l) => {
                    if l.tls.client_auth == ClientAuth::Off && !r.allow_anonymous {
                        out.push(Problem::new(
                            format!("{p}.allow_anonymous"),
                            format!(
                                "listener {:?} asks for no client certificates, so no caller could reach this route; set allow_anonymous = true or client_auth = \"required\"",
                                l.name
                            ),
                        ));
                    }
                }
            }
            if !self.upstreams.contains_key(&r.upstream) {
                out.push(Problem::new(
                    format!("{p}.upstream"),
                    format!(
                        "no upstream named {:?} (known: {})",
                        r.upstream,
                        known(self.upstreams.keys().map(String::as_str))
                    ),
                ));
            }
            if let Some(prefix) = &r.matcher.path_prefix {
                if !prefix.starts_with('/') {
                    out.push(Problem::new(
                        format!("{p}.match.path_prefix"),
                        format!("path prefix {prefix:?} must start with \"/\""),
                    ));
                }
            }
            for (j, m) in r.matcher.methods.iter().enumerate() {
                if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                    out.push(Problem::new(
                        format!("{p}.match.methods[{j}]"),
                        format!("{m:?} is not an HTTP method; write e.g. \"POST\""),
                    ));
                }
            }
        }
        for (name, u) in &self.upstreams {
            let p = format!("upstream.{name}");
            check_name(&mut out, &p, name);
            match u.url.parse::<http::Uri>() {
                Ok(uri) => {
                    let scheme = uri.scheme_str().unwrap_or("");
                    if scheme != "http" && scheme != "https" {
                        out.push(Problem::new(
                            format!("{p}.url"),
                            format!("{:?} must start with https:// or http://", u.url),
                        ));
                    } else if uri.host().is_none() {
                        out.push(Problem::new(
                            format!("{p}.url"),
                            format!("{:?} has no host; write e.g. \"https://acme.my.salesforce.com\"", u.url),
                        ));
                    } else if scheme == "http" && (u.ca.is_some() || u.client_cert.is_some()) {
                        out.push(Problem::new(
                            format!("{p}.url"),
                            "TLS settings (ca, client_cert) are set but the URL is http://; use https://",
                        ));
                    }
                    if uri.query().is_some() {
                        out.push(Problem::new(
                            format!("{p}.url"),
                            "the upstream URL may carry a base path but no query string",
                        ));
                    }
                }
                Err(e) => out.push(Problem::new(
                    format!("{p}.url"),
                    format!("{:?} is not a URL ({e}); write e.g. \"https://acme.my.salesforce.com:8443\"", u.url),
                )),
            }
            if u.client_cert.is_some() != u.client_key.is_some() {
                out.push(Problem::new(
                    format!("{p}.client_key"),
                    "client_cert and client_key go together; set both or neither",
                ));
            }
            if u.max_concurrent == Some(0) {
                out.push(Problem::new(
                    format!("{p}.max_concurrent"),
                    "0 would refuse every request; remove the key for no ceiling, or set 1 or more",
                ));
            }
        }
        let lim = &self.server.limits;
        if lim.max_header_bytes.0 < 8192 {
            out.push(Problem::new(
                "server.limits.max_header_bytes",
                "the HTTP/1.1 parser needs at least 8KiB; use \"8KiB\" or more",
            ));
        }
        if lim.max_headers == 0 {
            out.push(Problem::new(
                "server.limits.max_headers",
                "0 would refuse every request; use e.g. 100",
            ));
        }
        for (what, d) in [
            ("header_read_timeout", lim.header_read_timeout),
            ("idle_timeout", lim.idle_timeout),
            ("handshake_timeout", lim.handshake_timeout),
        ] {
            if d.0.is_zero() {
                out.push(Problem::new(
                    format!("server.limits.{what}"),
                    "must be longer than zero, e.g. \"10s\"",
                ));
            }
        }
        self.validate_headers(&mut out);
        out
    }

    /// The identity and request-id headers must be real, distinct names that
    /// the gateway does not already strip or route on.
    fn validate_headers(&self, out: &mut Vec<Problem>) {
        let s = &self.server;
        let canon = |h: &str| h.trim().to_ascii_lowercase().replace('_', "-");
        for (hdr, key) in [
            (&s.identity_header, "server.identity_header"),
            (&s.request_id_header, "server.request_id_header"),
        ] {
            if http::HeaderName::from_bytes(hdr.as_bytes()).is_err() {
                out.push(Problem::new(
                    key,
                    format!("{hdr:?} is not a valid header name"),
                ));
                continue;
            }
            let name = canon(hdr);
            let reserved = [&HOP_BY_HOP[..], &CLIENT_CLAIMS[..], &ROUTING[..]]
                .iter()
                .any(|list| list.contains(&name.as_str()))
                && name != canon(DEFAULT_IDENTITY_HEADER);
            if reserved {
                out.push(Problem::new(
                    key,
                    format!("{hdr:?} is a header the gateway routes on, strips or sets itself; pick another name, e.g. \"x-client-identity\""),
                ));
            }
        }
        if canon(&s.identity_header) == canon(&s.request_id_header) {
            out.push(Problem::new(
                "server.request_id_header",
                format!(
                    "{:?} is also the identity header; the client's request id would be stripped as a forged identity, or become one; give them different names",
                    s.request_id_header
                ),
            ));
        }
    }
}

fn check_name(out: &mut Vec<Problem>, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        out.push(Problem::new(
            path,
            format!("name {name:?} must be non-empty letters, digits, '-', '_' or '.' (it becomes a metrics label)"),
        ));
    }
}

fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none defined".into()
    } else {
        v.join(", ")
    }
}
