//! A listener's routes, most specific first, and how a request finds the
//! first one it matches without trying them all: a listener fronting a large
//! ERP or portal estate can carry thousands of routes, and a linear scan
//! costs every request a comparison per route.

use super::route::{Matcher, Route};
use http::Method;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

/// Up to this many routes a scan is cheaper than hashing the path's prefixes.
const SCAN_UP_TO: usize = 16;

/// Matchers whose prefix is the same, by that prefix: indices into the
/// matchers, ascending.
type SameLength = HashMap<Box<str>, Vec<usize>>;

/// Finds the first matcher (in their order) that a request matches.
///
/// A matcher can only match a path it is a prefix of, so the matchers are
/// grouped by their prefix's length and hashed by the prefix itself: a
/// request costs one lookup per distinct prefix length, and only matchers
/// whose prefix the path starts with are tried — the same answer as trying
/// every matcher in order.
pub struct MatcherIndex {
    matchers: Vec<Matcher>,
    /// Each distinct prefix length with its prefixes.
    by_len: Vec<(usize, SameLength)>,
}

impl MatcherIndex {
    pub fn new(matchers: Vec<Matcher>) -> MatcherIndex {
        let mut by_len: Vec<(usize, SameLength)> = Vec::new();
        if matchers.len() > SCAN_UP_TO {
            for (i, m) in matchers.iter().enumerate() {
                let prefix = m.path_prefix();
                let slot = match by_len.iter().position(|(l, _)| *l == prefix.len()) {
                    Some(p) => p,
                    None => {
                        by_len.push((prefix.len(), HashMap::new()));
                        by_len.len() - 1
                    }
                };
                by_len[slot].1.entry(prefix.into()).or_default().push(i);
            }
        }
        MatcherIndex { matchers, by_len }
    }

    /// The index of the first matcher the request matches; `host` is lower
    /// case without a port, `action` the request's SOAP action.
    pub fn first(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        action: Option<&str>,
    ) -> Option<usize> {
        if self.by_len.is_empty() {
            return self
                .matchers
                .iter()
                .position(|m| m.matches(host, method, path, action));
        }
        let mut best: Option<usize> = None;
        for (len, prefixes) in &self.by_len {
            let Some(head) = path.get(..*len) else {
                continue;
            };
            let Some(ids) = prefixes.get(head) else {
                continue;
            };
            for &i in ids {
                if best.is_some_and(|b| i >= b) {
                    break;
                }
                if self.matchers[i].matches(host, method, path, action) {
                    best = Some(i);
                    break;
                }
            }
        }
        best
    }
}

/// A listener's routes, most specific first.
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    index: MatcherIndex,
}

impl RouteTable {
    /// `routes` in the order they are to be tried.
    pub fn new(routes: Vec<Arc<Route>>) -> RouteTable {
        let index = MatcherIndex::new(routes.iter().map(|r| r.matcher.clone()).collect());
        RouteTable { routes, index }
    }

    /// The route a request takes: the first it matches.
    pub fn select(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        action: Option<&str>,
    ) -> Option<&Arc<Route>> {
        self.index
            .first(host, method, path, action)
            .and_then(|i| self.routes.get(i))
    }
}

impl Deref for RouteTable {
    type Target = [Arc<Route>];
    fn deref(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: Option<&str>, prefix: &str, methods: &[Method], action: Option<&str>) -> Matcher {
        Matcher::new(
            host.map(str::to_owned),
            prefix.to_owned(),
            methods.to_vec(),
            action.map(str::to_owned),
        )
    }

    /// The index agrees with trying every matcher in order, on tables large
    /// enough to be indexed, with prefixes nested in one another and
    /// matchers that also ask for a host, a method or an action.
    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let mut ms = vec![
            m(Some("erp.example"), "/api/", &[], None),
            m(None, "/api/orders/", &[Method::POST], None),
            m(None, "/api/orders/", &[], Some("urn:create")),
            m(None, "/api/orders", &[], None),
            m(None, "/api/", &[], None),
            m(None, "/services/Soap/", &[], None),
            m(None, "/svc/é/", &[], None),
        ];
        for i in 0..40 {
            ms.push(m(None, &format!("/tenant/{i}/"), &[], None));
        }
        ms.push(m(None, "/", &[Method::GET], None));
        ms.push(m(None, "", &[], None));
        let index = MatcherIndex::new(ms.clone());
        assert!(!index.by_len.is_empty(), "a table this large is indexed");
        let hosts = [None, Some("erp.example"), Some("other")];
        let methods = [Method::GET, Method::POST];
        let actions = [None, Some("urn:create")];
        let paths = [
            "/api/orders/1",
            "/api/orders",
            "/api/ordersX",
            "/api/",
            "/api",
            "/tenant/7/x",
            "/tenant/39/",
            "/tenant/40/",
            "/services/Soap/u",
            "/svc/é/x",
            "/svc/",
            "/",
            "",
        ];
        for h in hosts {
            for me in &methods {
                for a in actions {
                    for p in paths {
                        let scan = ms.iter().position(|x| x.matches(h, me, p, a));
                        assert_eq!(index.first(h, me, p, a), scan, "{h:?} {me} {p} {a:?}");
                    }
                }
            }
        }
    }
}
