//! `gateway.routes[]`: how a request is matched and what is done with it, named as Envoy's.

use super::duration::{positive, ConfDuration};
use super::errors::Errors;
use super::filters::{filters, FilterSpec};
use super::headers::{self, HeaderName, HeaderToAdd};
use super::mirror::{mirrors, Mirror, RawMirror};
use super::route_match::{request_match, RawHeaderMatch, RawQueryMatch, RequestMatch};
use super::split::{split, RawSticky, Split, WeightedCluster};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// One entry of `gateway.routes`: its match (path prefix, exact path or regex, optionally
/// restricted to Host domains) and what is done with a request it matches (a cluster, with
/// rewrites, header changes, filters and a timeout of its own, or a fixed direct response).
#[derive(Debug, Clone)]
pub struct Route {
    /// `prefix`, `path` or `regex`: exactly one of them (Envoy: `match`).
    pub matcher: PathMatch,
    /// `domains`: lowercase Host patterns (`api.example.com`, `*.example.com`, `example.*`);
    /// empty (the default, or `"*"`): any host (Envoy: `virtual_hosts[].domains`).
    pub domains: Vec<String>,
    /// `headers`, `query`, `methods`: the rest of the match (`route_match.rs`).
    pub request_match: RequestMatch,
    /// `cluster`, `clusters` (with `sticky`) or `direct_response`.
    pub action: RouteAction,
    /// `prefix_rewrite`: replaces the matched prefix (or the whole exact path) before
    /// forwarding; the query is kept (Envoy: same name).
    pub prefix_rewrite: Option<String>,
    /// `host_rewrite`: replaces the Host header before forwarding (Envoy:
    /// `host_rewrite_literal`).
    pub host_rewrite: Option<String>,
    /// `timeout`: overrides the cluster's `timeout` for this route (Envoy: route `timeout`).
    pub timeout: Option<Duration>,
    /// `request_headers_to_add`: `(name, value)` pairs appended before forwarding; names
    /// lowercase (Envoy: same name).
    pub request_headers_to_add: Vec<(String, String)>,
    /// `request_headers_to_remove`: lowercase names removed before forwarding (Envoy: same
    /// name).
    pub request_headers_to_remove: Vec<String>,
    /// `response_headers_to_add`: `(name, value)` pairs appended to the response, a direct
    /// response's too (Envoy: same name).
    pub response_headers_to_add: Vec<(String, String)>,
    /// `response_headers_to_remove`: lowercase names removed from the response (Envoy: same
    /// name).
    pub response_headers_to_remove: Vec<String>,
    /// `max_request_body_bytes`: larger request bodies get 413; `None` (the default): no limit
    /// (Envoy: buffer filter `max_request_bytes`).
    pub max_request_body_bytes: Option<u64>,
    /// `filters`: in order, for the filter registry to build; empty (the default): the route
    /// runs none.
    pub filters: Vec<FilterSpec>,
    /// `mirror`: shadow clusters that get copies of its requests (`mirror.rs`); empty (the
    /// default): none.
    pub mirror: Vec<Mirror>,
}

/// A route as the conf writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    prefix: Option<String>,
    path: Option<String>,
    regex: Option<String>,
    domains: Option<Vec<Domain>>,
    #[serde(default)]
    headers: Vec<RawHeaderMatch>,
    #[serde(default)]
    query: Vec<RawQueryMatch>,
    #[serde(default)]
    methods: Vec<String>,
    cluster: Option<String>,
    clusters: Option<Vec<WeightedCluster>>,
    sticky: Option<RawSticky>,
    prefix_rewrite: Option<String>,
    host_rewrite: Option<String>,
    timeout: Option<ConfDuration>,
    #[serde(default)]
    request_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    request_headers_to_remove: Vec<HeaderName>,
    #[serde(default)]
    response_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    response_headers_to_remove: Vec<HeaderName>,
    direct_response: Option<RawDirectResponse>,
    max_request_body_bytes: Option<u64>,
    /// Read entry by entry: each keeps its path for the registry.
    #[serde(default)]
    filters: Vec<Value>,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectResponse {
    status: u16,
    body: Option<String>,
}

/// How a route matches the request's path: its `prefix`, `path` or `regex`.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Plain byte prefix of the path, as Envoy's `match.prefix`.
    Prefix(String),
    /// The whole path, as Envoy's `match.path`.
    Exact(String),
    /// The whole path matches the expression (Envoy's `safe_regex`).
    Regex(regex::Regex),
}

impl PathMatch {
    /// Whether the request path `path` (without the query) matches; a regex never matches a
    /// path that is not UTF-8.
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
            PathMatch::Exact(p) => path == p.as_bytes(),
            PathMatch::Regex(re) => std::str::from_utf8(path).is_ok_and(|p| re.is_match(p)),
        }
    }

    /// How the conf writes it, for logs and metrics.
    pub fn describe(&self) -> String {
        match self {
            PathMatch::Prefix(p) => p.clone(),
            PathMatch::Exact(p) => format!("={p}"),
            PathMatch::Regex(re) => {
                // The conf's pattern, without the anchoring wrapper the loader adds.
                let s = re.as_str();
                let pattern = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                format!("~{pattern}")
            }
        }
    }

    /// Whether every path `later` matches is also matched by `self`.
    fn covers(&self, later: &PathMatch) -> bool {
        match (self, later) {
            (PathMatch::Prefix(a), PathMatch::Prefix(b) | PathMatch::Exact(b)) => b.starts_with(a),
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            _ => false,
        }
    }
}

/// What a route does with a request it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// `cluster`: proxy to the cluster of this name (Envoy: `route.cluster`).
    Cluster(String),
    /// `direct_response`: answer without any upstream (Envoy: same name).
    Direct {
        /// `status`: 100–599.
        status: u16,
        /// `body`: default empty.
        body: String,
    },
    /// `clusters` (and `sticky`): proxy to one of several clusters by weight (Envoy:
    /// `weighted_clusters`).
    Split(Split),
}

impl Route {
    /// The cluster the route proxies to; `None` for a direct response.
    pub fn cluster(&self) -> Option<&str> {
        match &self.action {
            RouteAction::Cluster(c) => Some(c),
            RouteAction::Direct { .. } | RouteAction::Split(_) => None,
        }
    }

    /// Whether `later` can ever match: not if this route comes first, covers its hosts and its
    /// paths, and matches on nothing else (a route with `headers`, `query` or `methods` lets
    /// the requests it refuses through to the routes after it).
    fn shadows(&self, later: &Route) -> bool {
        let rest = self.request_match.is_empty();
        let hosts = self.domains.is_empty()
            || (!later.domains.is_empty()
                && later.domains.iter().all(|d| self.domains.contains(d)));
        rest && hosts && self.matcher.covers(&later.matcher)
    }
}

/// A Host pattern, lowercase: `example.com`, `*.example.com`, `example.*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
struct Domain(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a host, `*.suffix`, `prefix.*` or `*`")]
struct NotADomain(String);

impl TryFrom<String> for Domain {
    type Error = NotADomain;

    fn try_from(d: String) -> Result<Domain, NotADomain> {
        let d = d.to_ascii_lowercase();
        let core = d
            .strip_prefix("*.")
            .or_else(|| d.strip_suffix(".*"))
            .unwrap_or(&d);
        let valid = d == "*"
            || (!core.is_empty()
                && core.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']')
                }));
        if valid {
            Ok(Domain(d))
        } else {
            Err(NotADomain(d))
        }
    }
}

/// The routes read so far, each with its path in the conf, indexed by the path they match: a
/// route that can never match is found among the few earlier ones whose prefix starts its
/// path, not by comparing it with each (10,000 routes would make 50 million comparisons).
#[derive(Debug, Default)]
pub(super) struct Earlier {
    routes: Vec<(String, Route)>,
    /// Prefix and exact routes by their path's bytes.
    by_path: HashMap<Box<[u8]>, Vec<usize>>,
    /// The distinct lengths of the prefixes.
    prefix_lengths: BTreeSet<usize>,
}

impl Earlier {
    /// Adds the route read at `path`, after every one before it.
    pub(super) fn push(&mut self, path: String, route: Route) {
        let key = match &route.matcher {
            PathMatch::Prefix(p) => {
                self.prefix_lengths.insert(p.len());
                Some(p)
            }
            PathMatch::Exact(p) => Some(p),
            PathMatch::Regex(_) => None,
        };
        if let Some(key) = key {
            let at = self.routes.len();
            self.by_path
                .entry(key.as_bytes().into())
                .or_default()
                .push(at);
        }
        self.routes.push((path, route));
    }

    /// The first earlier route that matches every request `later` would (a regex covers
    /// nothing, and nothing covers a regex).
    fn shadowing(&self, later: &Route) -> Option<&(String, Route)> {
        let text = match &later.matcher {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p.as_bytes(),
            PathMatch::Regex(_) => return None,
        };
        let lengths = self.prefix_lengths.range(..text.len());
        lengths
            .copied()
            .chain([text.len()])
            .filter_map(|len| self.by_path.get(&text[..len]))
            .flatten()
            .copied()
            .filter(|&i| self.routes[i].1.shadows(later))
            .min()
            .map(|i| &self.routes[i])
    }

    /// The routes, in the conf's order.
    pub(super) fn into_routes(self) -> Vec<Route> {
        self.routes.into_iter().map(|(_, r)| r).collect()
    }
}

/// Checks one route; `clusters` maps cluster names to where they are defined, `earlier` holds
/// the routes before it that passed, with their paths.
pub(super) fn route(
    r: RawRoute,
    path: &str,
    clusters: &HashMap<String, usize>,
    earlier: &Earlier,
    errors: &mut Errors,
) -> Option<Route> {
    let before = errors.count();
    // A key written but wrong is reported as such, not again as missing.
    let written = |key: &str, errors: &Errors| errors.at(&format!("{path}.{key}"));
    let matcher = match (r.prefix, r.path, r.regex) {
        (Some(p), None, None) => Some((PathMatch::Prefix(p.clone()), "prefix", p)),
        (None, Some(p), None) => Some((PathMatch::Exact(p.clone()), "path", p)),
        (None, None, Some(re)) => match regex::Regex::new(&format!("^(?:{re})$")) {
            Ok(compiled) => Some((PathMatch::Regex(compiled), "regex", "/".to_owned())),
            Err(e) => {
                errors.push(format!("{path}.regex"), format!("not a valid regex: {e}"));
                None
            }
        },
        (None, None, None)
            if ["prefix", "path", "regex"]
                .iter()
                .any(|k| written(k, errors)) =>
        {
            None
        }
        _ => {
            errors.push(path, "give exactly one of prefix, path, regex");
            None
        }
    };
    if let Some((_, key, text)) = &matcher {
        if !text.starts_with('/') {
            errors.push(
                format!("{path}.{key}"),
                format!("`{text}` must start with `/`"),
            );
        }
    }
    let matcher = matcher.map(|(m, _, _)| m);

    let mut domains = Vec::new();
    for Domain(d) in r.domains.unwrap_or_default() {
        if d == "*" {
            domains.clear();
            break;
        }
        domains.push(d);
    }

    if r.sticky.is_some() && r.clusters.is_none() {
        errors.push(
            format!("{path}.sticky"),
            "needs `clusters`: it keeps a user on one of them",
        );
    }
    let action = match (r.cluster, r.clusters, r.direct_response) {
        (None, Some(weighted), None) => {
            split(weighted, r.sticky, path, clusters, errors).map(RouteAction::Split)
        }
        (Some(cluster), None, None) => {
            if !clusters.contains_key(&cluster) {
                let mut names: Vec<&str> = clusters.keys().map(String::as_str).collect();
                names.sort_unstable();
                errors.push(
                    format!("{path}.cluster"),
                    format!(
                        "unknown cluster `{cluster}` (defined: {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                );
            }
            Some(RouteAction::Cluster(cluster))
        }
        (None, None, Some(direct)) => {
            if !(100..=599).contains(&direct.status) {
                errors.push(
                    format!("{path}.direct_response.status"),
                    format!("{} is not an HTTP status", direct.status),
                );
            }
            Some(RouteAction::Direct {
                status: direct.status,
                body: direct.body.unwrap_or_default(),
            })
        }
        (None, None, None)
            if ["cluster", "clusters", "direct_response"]
                .iter()
                .any(|k| written(k, errors)) =>
        {
            None
        }
        (None, None, None) => {
            errors.push(path, "missing: cluster (or clusters, or direct_response)");
            None
        }
        _ => {
            errors.push(
                path,
                "give one of cluster, clusters, direct_response, not two",
            );
            None
        }
    };

    if let Some(rewrite) = &r.prefix_rewrite {
        if matches!(matcher, Some(PathMatch::Regex(_))) {
            errors.push(
                format!("{path}.prefix_rewrite"),
                "needs a prefix or path match: a regex has no prefix to replace",
            );
        }
        if !rewrite.starts_with('/') {
            errors.push(
                format!("{path}.prefix_rewrite"),
                format!("`{rewrite}` must start with `/`"),
            );
        }
    }
    if let Some(host) = &r.host_rewrite {
        if host.is_empty() || http::HeaderValue::from_str(host).is_err() || host.contains(' ') {
            errors.push(
                format!("{path}.host_rewrite"),
                format!("`{host}` is not a host"),
            );
        }
    }
    let timeout = positive(r.timeout, &format!("{path}.timeout"), errors);
    let filters = filters(r.filters, path, errors);
    let request_match = request_match(r.headers, r.query, r.methods, path, errors);
    let mirror = mirrors(r.mirror, path, clusters, errors);
    if !mirror.is_empty() && matches!(action, Some(RouteAction::Direct { .. })) {
        errors.push(format!("{path}.mirror"), "needs a route to a cluster");
    }

    let route = Route {
        matcher: matcher?,
        domains,
        request_match,
        action: action?,
        prefix_rewrite: r.prefix_rewrite,
        host_rewrite: r.host_rewrite,
        timeout,
        request_headers_to_add: headers::to_add(r.request_headers_to_add),
        request_headers_to_remove: headers::to_remove(r.request_headers_to_remove),
        response_headers_to_add: headers::to_add(r.response_headers_to_add),
        response_headers_to_remove: headers::to_remove(r.response_headers_to_remove),
        max_request_body_bytes: r.max_request_body_bytes,
        filters,
        mirror,
    };
    if let Some((first, e)) = earlier.shadowing(&route) {
        errors.push(
            path,
            format!(
                "`{}` can never match: {first} (`{}`) comes first and matches every request it would",
                route.matcher.describe(),
                e.matcher.describe()
            ),
        );
    }
    (errors.count() == before).then_some(route)
}
