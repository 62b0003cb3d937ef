//! Path-prefix routing: the first route whose prefix starts the request path picks the cluster.

use crate::config::Route;

/// An ordered prefix table. Pure: no I/O, no state, so it can be tested and fuzzed on its own.
#[derive(Debug, Clone)]
pub struct Router {
    /// (prefix, index into the gateway's cluster list), in conf order.
    routes: Vec<(String, usize)>,
}

/// A matched route: which route (its index in the table) and which cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub route: usize,
    pub cluster: usize,
}

impl Router {
    /// Builds the table; `cluster_index` maps a cluster name to its position. Routes naming an
    /// unknown cluster are dropped (validation has already refused such a conf).
    pub fn new(routes: &[Route], cluster_index: impl Fn(&str) -> Option<usize>) -> Router {
        Router {
            routes: routes
                .iter()
                .filter_map(|r| cluster_index(&r.cluster).map(|c| (r.prefix.clone(), c)))
                .collect(),
        }
    }

    /// The first route whose prefix is a plain string prefix of `path` (Envoy's `match.prefix`):
    /// no normalisation, so `/service/1` matches `/service/1`, `/service/1/x` and `/service/10`.
    /// `path` is the request target's path, without the query string.
    pub fn route(&self, path: &[u8]) -> Option<RouteMatch> {
        self.routes
            .iter()
            .position(|(prefix, _)| path.starts_with(prefix.as_bytes()))
            .map(|route| RouteMatch {
                route,
                cluster: self.routes[route].1,
            })
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The cluster index of route `route`.
    pub fn cluster_of(&self, route: usize) -> Option<usize> {
        self.routes.get(route).map(|(_, c)| *c)
    }

    /// The prefix of route `route`, for logs and metrics.
    pub fn prefix(&self, route: usize) -> &str {
        self.routes.get(route).map_or("", |(p, _)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(pairs: &[(&str, &str)]) -> Router {
        let routes: Vec<Route> = pairs
            .iter()
            .map(|(prefix, cluster)| Route {
                prefix: prefix.to_string(),
                cluster: cluster.to_string(),
            })
            .collect();
        let clusters = ["service1", "service2", "fallback"];
        Router::new(&routes, |name| clusters.iter().position(|c| *c == name))
    }

    #[test]
    fn first_matching_prefix_wins() {
        let r = router(&[
            ("/service/1", "service1"),
            ("/service/2", "service2"),
            ("/", "fallback"),
        ]);
        assert_eq!(r.route(b"/service/1").map(|m| m.cluster), Some(0));
        assert_eq!(r.route(b"/service/1/deep/path").map(|m| m.cluster), Some(0));
        assert_eq!(r.route(b"/service/2").map(|m| m.cluster), Some(1));
        assert_eq!(r.route(b"/service/3").map(|m| m.cluster), Some(2));
        assert_eq!(
            r.route(b"/service/3"),
            Some(RouteMatch {
                route: 2,
                cluster: 2
            })
        );
        assert_eq!(r.prefix(1), "/service/2");
    }

    #[test]
    fn prefix_is_a_plain_string_prefix_as_in_envoy() {
        let r = router(&[("/service/1", "service1")]);
        assert_eq!(r.route(b"/service/10").map(|m| m.cluster), Some(0));
        assert_eq!(r.route(b"/service/"), None);
        assert_eq!(r.route(b"/Service/1"), None, "matching is case-sensitive");
        assert_eq!(r.route(b"/x/../service/1"), None, "no path normalisation");
    }

    #[test]
    fn no_route_for_unmatched_or_odd_paths() {
        let r = router(&[("/service/1", "service1")]);
        for path in [&b""[..], b"/", b"*", b"service/1", b"\xff\xfe/service/1"] {
            assert_eq!(r.route(path), None, "{path:?}");
        }
        let long = [b'a'; 100_000];
        assert_eq!(r.route(&long), None);
    }

    #[test]
    fn routes_to_unknown_clusters_are_dropped() {
        let r = router(&[("/a", "nope"), ("/a", "service2")]);
        assert_eq!(
            r.route(b"/a"),
            Some(RouteMatch {
                route: 0,
                cluster: 1
            })
        );
    }
}
