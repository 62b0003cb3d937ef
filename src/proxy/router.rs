//! Routing: the first route whose Host domains and path match picks what happens to a request.

use super::route_index::RouteIndex;
use super::route_match::RequestFacts;
use crate::config::{Route, RouteAction};

/// An ordered route table. Pure: no I/O, no state, so it can be tested and fuzzed on its own.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Route, Option<usize>)>,
    /// Finds the first match without scanning the table (`route_index.rs`).
    index: RouteIndex,
}

/// A matched route: its index in the table, and the index of its cluster (None for a direct
/// response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// The route's index in the table, as [`Router::get`] takes it.
    pub route: usize,
    /// Its cluster's index, as `cluster_index` gave it to [`Router::new`]; `None` for a direct
    /// response or a split between clusters (`clusters`).
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

impl Router {
    /// Builds the table; `cluster_index` maps a cluster name to its position. Routes naming an
    /// unknown cluster are dropped (validation has already refused such a conf).
    pub fn new(routes: &[Route], cluster_index: impl Fn(&str) -> Option<usize>) -> Router {
        let routes: Vec<(Route, Option<usize>)> = routes
            .iter()
            .filter_map(|r| match &r.action {
                RouteAction::Cluster(name) => cluster_index(name).map(|c| (r.clone(), Some(c))),
                RouteAction::Direct { .. } | RouteAction::Split(_) => Some((r.clone(), None)),
            })
            .collect();
        let index = RouteIndex::new(
            routes
                .iter()
                .map(|(r, _)| (r.domains.as_slice(), &r.matcher)),
        );
        Router { routes, index }
    }

    /// The first route matching `host` (the Host header or authority, port allowed; None when
    /// the request has none) and `path` (the request target's path, without the query).
    /// Paths are compared as bytes, without normalisation, as Envoy does. The request is taken
    /// as a bare `GET` ([`RequestFacts::bare`]); [`Router::route_request`] reads the rest.
    pub fn route(&self, host: Option<&[u8]>, path: &[u8]) -> Option<RouteMatch> {
        self.route_request(host, path, &RequestFacts::bare())
    }

    /// The first route matching `host`, `path` and the rest of `request` (headers, query,
    /// method): a route whose `headers`, `query` or `methods` refuse it lets it through to the
    /// next one, in conf order.
    pub fn route_request(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        request: &RequestFacts<'_>,
    ) -> Option<RouteMatch> {
        let accept = |i: usize| {
            self.routes.get(i).is_some_and(|(r, _)| {
                r.request_match.is_empty() || r.request_match.matches(request)
            })
        };
        let route = self.index.first(host.map(host_of), path, accept)?;
        Some(RouteMatch {
            route,
            cluster: self.routes.get(route)?.1,
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
    use crate::config::{Config, PathMatch};

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

    /// The table as it was matched before the index: every route in order, the first that
    /// matches wins. The oracle the index must agree with.
    fn linear(
        routes: &[Route],
        host: Option<&[u8]>,
        path: &[u8],
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        use crate::proxy::route_index::domain_matches;
        let host = host.map(host_of);
        routes.iter().enumerate().position(|(i, r)| {
            let host_ok = r.domains.is_empty()
                || host.is_some_and(|h| r.domains.iter().any(|d| domain_matches(d.as_bytes(), h)));
            host_ok && r.matcher.matches(path) && accept(i)
        })
    }

    fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
        from[rng.usize(..from.len())]
    }

    /// A path from few segments, so that routes and requests share prefixes often; sometimes
    /// cut at any byte.
    fn random_path(rng: &mut fastrand::Rng) -> String {
        let mut p = String::new();
        for _ in 0..rng.usize(0..4) {
            p.push('/');
            p.push_str(pick(rng, &["a", "b", "ab", "api", "v1", "", "x.y"]));
        }
        if p.is_empty() || rng.u8(..) < 40 {
            p.insert(0, '/');
        }
        if rng.u8(..) < 50 {
            p.truncate(rng.usize(..=p.len()));
        }
        p
    }

    fn random_route(rng: &mut fastrand::Rng) -> Route {
        let matcher = match rng.u8(..4) {
            0 => PathMatch::Exact(random_path(rng)),
            1 => PathMatch::Regex(
                regex::Regex::new(pick(
                    rng,
                    &[
                        "^(?:/a/[a-z]+)$",
                        "^(?:/api/.*)$",
                        "^(?:/[ab/]+)$",
                        "^(?:/x.y/?)$",
                    ],
                ))
                .unwrap(),
            ),
            _ => PathMatch::Prefix(random_path(rng)),
        };
        let hosts = [
            "a.com", "*.a.com", "b.a.com", "www.*", "*.com", "a.*", "*", "api*", "*x.com", "[::1]",
            "A.Com",
        ];
        let domains = match rng.u8(..3) {
            0 => (0..rng.usize(1..3))
                .map(|_| pick(rng, &hosts).to_owned())
                .collect(),
            _ => Vec::new(),
        };
        let action = match rng.u8(..4) {
            0 => RouteAction::Direct {
                status: 200,
                body: String::new(),
            },
            n => RouteAction::Cluster(["a", "b", "c", "nowhere"][usize::from(n)].to_owned()),
        };
        Route {
            matcher,
            domains,
            request_match: Default::default(),
            action,
            prefix_rewrite: None,
            host_rewrite: None,
            timeout: None,
            request_headers_to_add: Vec::new(),
            request_headers_to_remove: Vec::new(),
            response_headers_to_add: Vec::new(),
            response_headers_to_remove: Vec::new(),
            max_request_body_bytes: None,
            filters: Vec::new(),
            mirror: Vec::new(),
        }
    }

    fn random_request(rng: &mut fastrand::Rng) -> (Option<Vec<u8>>, Vec<u8>) {
        let hosts = [
            "a.com",
            "b.a.com",
            "x.b.a.com",
            "www.a.com",
            "WWW.A.COM:8080",
            "www.",
            "a.",
            ".com",
            "com",
            "a.com.",
            "apix.com",
            "[::1]:80",
            "[::1]",
            "",
            "b.A.com",
        ];
        let host = (rng.u8(..) > 30).then(|| pick(rng, &hosts).as_bytes().to_vec());
        let mut path = random_path(rng).into_bytes();
        if rng.u8(..) < 20 {
            path.push(0xff);
        }
        (host, path)
    }

    /// The index returns exactly what the linear scan returns, over thousands of random tables
    /// mixing exact paths, prefixes, regexes and host patterns, with and without a check of
    /// the rest of the match (issue 26's headers and methods).
    #[test]
    fn the_index_agrees_with_the_linear_scan_on_random_tables() {
        let clusters = |name: &str| ["a", "b", "c"].iter().position(|c| *c == name);
        let mut matched = 0;
        for seed in 0..3_000u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let table: Vec<Route> = (0..rng.usize(0..40))
                .map(|_| random_route(&mut rng))
                .collect();
            let router = Router::new(&table, clusters);
            let kept: Vec<Route> = router.routes.iter().map(|(r, _)| r.clone()).collect();
            let skip = rng.usize(2..5);
            for _ in 0..30 {
                let (host, path) = random_request(&mut rng);
                let host = host.as_deref();
                let want = linear(&kept, host, &path, |_| true);
                let got = router.route(host, &path);
                assert_eq!(
                    got.map(|m| m.route),
                    want,
                    "seed {seed}: host {host:?} path {:?}",
                    String::from_utf8_lossy(&path)
                );
                if let Some(m) = got {
                    assert_eq!(m.cluster, router.cluster_of(m.route));
                    matched += 1;
                }
                let accept = |i: usize| !i.is_multiple_of(skip);
                assert_eq!(
                    router.index.first(host.map(host_of), &path, accept),
                    linear(&kept, host, &path, accept),
                    "seed {seed}, every {skip}th route refused"
                );
            }
        }
        assert!(matched > 20_000, "the tables matched too rarely: {matched}");
    }

    #[test]
    fn ten_thousand_routes_match_their_own_first_and_last() {
        let mut yaml = String::new();
        for i in 0..10_000 {
            yaml.push_str(&format!("    - {{ prefix: /svc-{i:05}/, cluster: a }}\n"));
        }
        yaml.push_str("    - { path: /last, cluster: b }");
        let r = router(&yaml);
        assert_eq!(r.len(), 10_001);
        assert_eq!(r.route(None, b"/svc-00000/x").map(|m| m.route), Some(0));
        assert_eq!(r.route(None, b"/svc-09999/").map(|m| m.route), Some(9_999));
        assert_eq!(cluster(&r, None, "/last"), Some(1));
        assert_eq!(r.route(None, b"/svc-10000/"), None);
    }
}
