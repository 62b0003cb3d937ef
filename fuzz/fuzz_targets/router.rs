//! The router on arbitrary route tables and requests: paths that are not UTF-8, very long,
//! with `..`, `%2e%2e`, NUL or stray `%`; Host headers with ports, IPv6 literals and odd case.
//! `Router::route` never panics, and what it returns is the first route of the table that
//! matches, by an independent restatement of the matching rules (Envoy's): a prefix is a plain
//! byte prefix, a path is the whole path, a regex matches the whole (UTF-8) path; a route with
//! domains needs a Host whose name (lowercased, port removed) equals one, or ends with a
//! `*.suffix` or starts with a `prefix.*` with at least one more byte.
//! Routes naming an unknown cluster are not in the table.
#![no_main]

use arbitrary::Arbitrary;
use headway::config::{Config, PathMatch, Route, RouteAction};
use headway::proxy::router::Router;
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

const CLUSTERS: [&str; 3] = ["a", "b", "c"];
const MAX_ROUTES: usize = 16;
const MAX_REQUESTS: usize = 8;

/// Pieces paths, prefixes and regexes are made of, so that they share text often enough for
/// prefixes to match.
#[derive(Arbitrary, Debug, Clone)]
enum Piece {
    Slash,
    Dot,
    DotDot,
    Word(u8),
    /// `%XX`, upper case hex.
    Percent(u8),
    /// `%xx`, lower case hex.
    PercentLower(u8),
    /// Any byte: NUL, controls, bytes that are not UTF-8.
    Byte(u8),
    Char(char),
    Query,
    Fragment,
    /// `a` repeated up to 1 023 times.
    Long(u16),
    /// 70 000 bytes of `a`: longer than any request line a client should send (once a text).
    Huge,
}

const WORDS: [&str; 12] = [
    "service", "1", "2", "10", "api", "users", "admin", "%2e%2e", "%2F", "..;", "//", "*",
];

fn render(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces.iter().take(64) {
        match piece {
            Piece::Slash => out.push(b'/'),
            Piece::Dot => out.push(b'.'),
            Piece::DotDot => out.extend_from_slice(b".."),
            Piece::Word(i) => out.extend_from_slice(WORDS[*i as usize % WORDS.len()].as_bytes()),
            Piece::Percent(b) => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
            Piece::PercentLower(b) => out.extend_from_slice(format!("%{b:02x}").as_bytes()),
            Piece::Byte(b) => out.push(*b),
            Piece::Char(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            Piece::Query => out.push(b'?'),
            Piece::Fragment => out.push(b'#'),
            Piece::Long(n) => out.extend(std::iter::repeat_n(b'a', *n as usize % 1024)),
            Piece::Huge if out.len() < 70_000 => out.extend(std::iter::repeat_n(b'a', 70_000)),
            Piece::Huge => {}
        }
    }
    out
}

#[derive(Arbitrary, Debug)]
enum MatchKind {
    Prefix,
    Exact,
    Regex,
}

#[derive(Arbitrary, Debug)]
enum Target {
    Cluster(u8),
    /// A cluster the table does not know: the route is dropped.
    Unknown,
    Direct,
}

#[derive(Arbitrary, Debug)]
enum Wildcard {
    None,
    /// `*.suffix`
    Leading,
    /// `prefix.*`
    Trailing,
}

#[derive(Arbitrary, Debug)]
struct DomainSpec {
    wildcard: Wildcard,
    name: Vec<Piece>,
}

#[derive(Arbitrary, Debug)]
struct RouteSpec {
    kind: MatchKind,
    text: Vec<Piece>,
    domains: Vec<DomainSpec>,
    target: Target,
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    host: Option<Vec<Piece>>,
    /// Host with a port, or an IPv6 literal host.
    host_decoration: u8,
    target: Vec<Piece>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<RouteSpec>,
    requests: Vec<RequestSpec>,
}

/// A route as the conf loader makes it; the target changes only what it fuzzes, so that fields
/// added to `Route` later need no change here.
fn template() -> &'static Route {
    static TEMPLATE: OnceLock<Route> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let yaml = "gateway:\n  routes:\n    - { prefix: /, cluster: a }\n  clusters:\n    - { name: a, address: 127.0.0.1, port: 80 }\n";
        match Config::from_yaml(yaml) {
            Ok(config) => config.gateway.routes[0].clone(),
            Err(e) => panic!("the template conf is refused: {e}"),
        }
    })
}

/// The regex for a route's `regex:` text, wrapped as the conf loader wraps it (the whole path
/// must match). Compiling dominates a run, and the fuzzer repeats texts: keep them.
fn compiled(text: &str) -> Option<regex::Regex> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<regex::Regex>>> = RefCell::default();
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() > 512 {
            cache.clear();
        }
        cache
            .entry(text.to_owned())
            .or_insert_with(|| {
                regex::RegexBuilder::new(&format!("^(?:{text})$"))
                    .size_limit(1 << 16)
                    .build()
                    .ok()
            })
            .clone()
    })
}

fn build_route(spec: &RouteSpec) -> Option<Route> {
    let text = String::from_utf8_lossy(&render(&spec.text)).into_owned();
    let matcher = match spec.kind {
        MatchKind::Prefix => PathMatch::Prefix(text),
        MatchKind::Exact => PathMatch::Exact(text),
        // Wrapped exactly as the conf loader wraps it: the whole path must match.
        // Parsing a long pattern is all a run would do: regexes stay short.
        MatchKind::Regex if text.len() > 256 => return None,
        MatchKind::Regex => PathMatch::Regex(compiled(&text)?),
    };
    let domains = spec
        .domains
        .iter()
        .take(4)
        .map(|d| {
            let name = String::from_utf8_lossy(&render(&d.name)).to_ascii_lowercase();
            match d.wildcard {
                Wildcard::None => name,
                Wildcard::Leading => format!("*.{name}"),
                Wildcard::Trailing => format!("{name}.*"),
            }
        })
        .collect();
    let action = match spec.target {
        Target::Cluster(i) => RouteAction::Cluster(CLUSTERS[i as usize % CLUSTERS.len()].into()),
        Target::Unknown => RouteAction::Cluster("unknown".into()),
        Target::Direct => RouteAction::Direct {
            status: 200,
            body: String::new(),
        },
    };
    let mut route = template().clone();
    route.matcher = matcher;
    route.domains = domains;
    route.action = action;
    Some(route)
}

fn cluster_index(name: &str) -> Option<usize> {
    CLUSTERS.iter().position(|c| *c == name)
}

/// The name of a Host header value: lowercased, without its port (`[v6]:port` keeps `[v6]`).
fn host_name(host: &[u8]) -> Vec<u8> {
    let name = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    name.to_ascii_lowercase()
}

fn domain_matches(pattern: &str, name: &[u8]) -> bool {
    let pattern = pattern.as_bytes();
    if pattern.first() == Some(&b'*') {
        let suffix = &pattern[1..];
        name.len() > suffix.len() && name.ends_with(suffix)
    } else if pattern.last() == Some(&b'*') {
        let prefix = &pattern[..pattern.len() - 1];
        name.len() > prefix.len() && name.starts_with(prefix)
    } else {
        name == pattern
    }
}

/// The matching rules, restated from the module doc.
fn expected_match(route: &Route, host: Option<&[u8]>, path: &[u8]) -> bool {
    let host_ok = route.domains.is_empty()
        || host.is_some_and(|h| {
            let name = host_name(h);
            route.domains.iter().any(|d| domain_matches(d, &name))
        });
    let path_ok = match &route.matcher {
        PathMatch::Prefix(p) => path.len() >= p.len() && &path[..p.len()] == p.as_bytes(),
        PathMatch::Exact(p) => path == p.as_bytes(),
        PathMatch::Regex(re) => std::str::from_utf8(path).is_ok_and(|p| re.is_match(p)),
    };
    host_ok && path_ok
}

fn check(router: &Router, table: &[Route], host: Option<&[u8]>, path: &[u8]) {
    let got = router.route(host, path);
    let expected = table.iter().position(|r| expected_match(r, host, path));
    assert_eq!(
        got.map(|m| m.route),
        expected,
        "host {host:?} path {:?}",
        String::from_utf8_lossy(path)
    );
    let Some(m) = got else {
        return;
    };
    let route = router
        .get(m.route)
        .unwrap_or_else(|| panic!("route() returned index {} that get() lacks", m.route));
    if let PathMatch::Prefix(p) = &route.matcher {
        assert!(
            path.starts_with(p.as_bytes()),
            "prefix {p:?} does not start the path"
        );
    }
    let expected_cluster = match &route.action {
        RouteAction::Cluster(name) => cluster_index(name),
        RouteAction::Direct { .. } | RouteAction::Split(_) => None,
    };
    assert_eq!(m.cluster, expected_cluster, "cluster of route {}", m.route);
    assert_eq!(router.cluster_of(m.route), expected_cluster);
    let _ = router.describe(m.route);
}

fuzz_target!(|input: Input| {
    let routes: Vec<Route> = input
        .routes
        .iter()
        .take(MAX_ROUTES)
        .filter_map(build_route)
        .collect();
    let router = Router::new(&routes, cluster_index);
    // What the router keeps: direct responses and routes to known clusters, in order.
    let table: Vec<Route> = routes
        .iter()
        .filter(|r| match &r.action {
            RouteAction::Cluster(name) => cluster_index(name).is_some(),
            RouteAction::Direct { .. } | RouteAction::Split(_) => true,
        })
        .cloned()
        .collect();
    assert_eq!(router.len(), table.len());
    assert_eq!(router.is_empty(), table.is_empty());

    for request in input.requests.iter().take(MAX_REQUESTS) {
        let mut host = request.host.as_ref().map(|h| render(h));
        if let Some(h) = host.as_mut() {
            match request.host_decoration % 4 {
                1 => h.extend_from_slice(format!(":{}", request.host_decoration).as_bytes()),
                2 => {
                    h.insert(0, b'[');
                    h.extend_from_slice(b"]:8443");
                }
                _ => {}
            }
        }
        let target = render(&request.target);
        // The raw bytes, as a router caller might hand them over.
        check(&router, &table, host.as_deref(), &target);
        // What the proxy hands over: the path pingora parsed out of the request target, and the
        // Host header or else the authority of an absolute-form target.
        if let Ok(req) = RequestHeader::build("GET", &target, None) {
            let authority = req.uri.authority().map(|a| a.as_str().as_bytes().to_vec());
            let host = host.clone().or(authority);
            check(&router, &table, host.as_deref(), req.uri.path().as_bytes());
        }
    }
});
