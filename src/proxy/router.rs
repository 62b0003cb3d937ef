//! Routing: the first route whose Host domains and path match picks what happens to a request.

use crate::config::{Route, RouteAction};

/// An ordered route table. Pure: no I/O, no state, so it can be tested and fuzzed on its own.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Route, Option<usize>)>,
}

/// A matched route: its index in the table, and the index of its cluster (None for a direct
/// response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// The route's index in the table, as [`Router::get`] takes it.
    pub route: usize,
    /// Its cluster's index, as `cluster_index` gave it to [`Router::new`]; `None` for a direct
    /// response.
    pub cluster: Option<usize>,
}

/// The host part of a Host header or authority, without its port (compared ignoring case).
fn host_of(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        // [v6]:port → [v6]
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    }
}

/// Whether `host` (any case) matches `pattern` (lowercase, as the conf loader keeps it).
fn domain_matches(pattern: &str, host: &[u8]) -> bool {
    let pattern = pattern.as_bytes();
    if let Some(suffix) = pattern.strip_prefix(b"*") {
        host.len() > suffix.len() && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    } else if let Some(prefix) = pattern.strip_suffix(b"*") {
        host.len() > prefix.len() && host[..prefix.len()].eq_ignore_ascii_case(prefix)
    } else {
        host.eq_ignore_ascii_case(pattern)
    }
}

impl Router {
    /// Builds the table; `cluster_index` maps a cluster name to its position. Routes naming an
    /// unknown cluster are dropped (validation has already refused such a conf).
    pub fn new(routes: &[Route], cluster_index: impl Fn(&str) -> Option<usize>) -> Router {
        Router {
            routes: routes
                .iter()
                .filter_map(|r| match &r.action {
                    RouteAction::Cluster(name) => cluster_index(name).map(|c| (r.clone(), Some(c))),
                    RouteAction::Direct { .. } => Some((r.clone(), None)),
                })
                .collect(),
        }
    }

    /// The first route matching `host` (the Host header or authority, port allowed; None when
    /// the request has none) and `path` (the request target's path, without the query).
    /// Paths are compared as bytes, without normalisation, as Envoy does.
    pub fn route(&self, host: Option<&[u8]>, path: &[u8]) -> Option<RouteMatch> {
        let host = host.map(host_of);
        self.routes
            .iter()
            .position(|(r, _)| {
                let host_ok = r.domains.is_empty()
                    || host.is_some_and(|h| r.domains.iter().any(|d| domain_matches(d, h)));
                host_ok && r.matcher.matches(path)
            })
            .map(|route| RouteMatch {
                route,
                cluster: self.routes[route].1,
            })
    }

    /// The route at index `route`, as [`RouteMatch::route`] gives it.
    pub fn get(&self, route: usize) -> Option<&Route> {
        self.routes.get(route).map(|(r, _)| r)
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table holds no route: every request then gets 404.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The cluster index of route `route`.
    pub fn cluster_of(&self, route: usize) -> Option<usize> {
        self.routes.get(route).and_then(|(_, c)| *c)
    }

    /// The match of route `route` as the conf writes it (`/prefix`, `=/exact`, `~regex`), for
    /// logs and metrics.
    pub fn describe(&self, route: usize) -> String {
        self.routes
            .get(route)
            .map_or_else(String::new, |(r, _)| r.matcher.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A router from conf text: `routes` as YAML list items, clusters a, b, c defined.
    fn router(routes: &str) -> Router {
        let yaml = format!(
            "gateway:\n  routes:\n{routes}\n  clusters:\n    - {{ name: a, address: a.test, port: 80 }}\n    - {{ name: b, address: b.test, port: 80 }}\n    - {{ name: c, address: c.test, port: 80 }}\n"
        );
        let g = Config::from_yaml(&yaml).unwrap().gateway;
        Router::new(&g.routes, |name| {
            g.clusters.iter().position(|c| c.name == name)
        })
    }

    fn cluster(r: &Router, host: Option<&str>, path: &str) -> Option<usize> {
        r.route(host.map(str::as_bytes), path.as_bytes())
            .and_then(|m| m.cluster)
    }

    #[test]
    fn first_matching_prefix_wins() {
        let r = router(
            "    - { prefix: /service/1, cluster: a }\n    - { prefix: /service/2, cluster: b }\n    - { prefix: /, cluster: c }",
        );
        assert_eq!(cluster(&r, None, "/service/1"), Some(0));
        assert_eq!(cluster(&r, None, "/service/1/deep/path"), Some(0));
        assert_eq!(cluster(&r, None, "/service/2"), Some(1));
        assert_eq!(cluster(&r, None, "/service/3"), Some(2));
        assert_eq!(r.describe(1), "/service/2");
    }

    #[test]
    fn prefix_is_a_plain_string_prefix_as_in_envoy() {
        let r = router("    - { prefix: /service/1, cluster: a }");
        assert_eq!(cluster(&r, None, "/service/10"), Some(0));
        assert_eq!(cluster(&r, None, "/service/"), None);
        assert_eq!(cluster(&r, None, "/Service/1"), None, "case-sensitive");
        assert_eq!(
            cluster(&r, None, "/x/../service/1"),
            None,
            "no normalisation"
        );
    }

    #[test]
    fn exact_paths_and_regexes() {
        let r = router(
            "    - { path: /health, direct_response: { status: 200, body: ok } }\n    - { regex: \"/users/[0-9]+\", cluster: b }\n    - { prefix: /users, cluster: c }",
        );
        let m = r.route(None, b"/health").unwrap();
        assert_eq!((m.route, m.cluster), (0, None));
        assert_eq!(r.route(None, b"/health/x").map(|m| m.route), None);
        assert_eq!(cluster(&r, None, "/users/42"), Some(1));
        assert_eq!(
            cluster(&r, None, "/users/42/x"),
            Some(2),
            "regexes match the whole path"
        );
        assert_eq!(cluster(&r, None, "/users/me"), Some(2));
        assert_eq!(r.describe(1), "~/users/[0-9]+");
        assert_eq!(
            r.route(None, b"/users/\xff"),
            Some(RouteMatch {
                route: 2,
                cluster: Some(2)
            })
        );
    }

    #[test]
    fn domains_restrict_routes_to_hosts() {
        let r = router(
            "    - { prefix: /, domains: [api.example.com], cluster: a }\n    - { prefix: /, domains: [\"*.example.com\"], cluster: b }\n    - { prefix: /, domains: [\"www.*\"], cluster: c }",
        );
        assert_eq!(cluster(&r, Some("api.example.com"), "/"), Some(0));
        assert_eq!(
            cluster(&r, Some("API.Example.COM:8443"), "/"),
            Some(0),
            "case and port"
        );
        assert_eq!(cluster(&r, Some("shop.example.com"), "/"), Some(1));
        assert_eq!(
            cluster(&r, Some("example.com"), "/"),
            None,
            "*.x needs a label before"
        );
        assert_eq!(cluster(&r, Some("www.other.org"), "/"), Some(2));
        assert_eq!(cluster(&r, None, "/"), None, "no Host, no domain route");
        assert_eq!(host_of(b"[::1]:8080"), b"[::1]");
        assert_eq!(cluster(&r, Some("SHOP.Example.COM:443"), "/"), Some(1));
    }

    #[test]
    fn no_route_for_unmatched_or_odd_paths() {
        let r = router("    - { prefix: /service/1, cluster: a }");
        for path in [&b""[..], b"/", b"*", b"service/1", b"\xff\xfe/service/1"] {
            assert_eq!(r.route(None, path), None, "{path:?}");
        }
        let long = [b'a'; 100_000];
        assert_eq!(r.route(Some(&long), &long), None);
    }
}
