//! An index over a route table's hosts and paths: the first route (in conf order) whose Host
//! domains and path match, found in a time that does not grow with the number of prefix and
//! exact routes. Regex routes are tried in conf order, and only while they come before the
//! best match found so far.
//!
//! Each host pattern has its table (routes without domains share one): exact paths and
//! prefixes in one map keyed by their bytes, plus the lengths prefixes come in, so a path is
//! looked up once per distinct prefix length up to its own (and once whole, for exact paths);
//! regexes in a list. A host consults the tables its name can match: the any-host table, its
//! exact name, `*.suffix` tables at each of its dots, `prefix.*` tables likewise, and the rare
//! pattern of another shape one by one. The answer is the smallest conf index over them.

use crate::config::PathMatch;
use std::collections::HashMap;

/// Where a route's path is in a [`PathTable`]'s map: the same key holds exact paths and
/// prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
}

/// The routes of one host pattern, by path.
#[derive(Debug, Clone, Default)]
struct PathTable {
    /// Exact paths and prefixes by their bytes; each key's routes in conf order.
    paths: HashMap<Box<[u8]>, Vec<(usize, Kind)>>,
    /// The distinct lengths of the prefixes, shortest first.
    prefix_lengths: Vec<usize>,
    /// Regex routes in conf order.
    regexes: Vec<(usize, regex::Regex)>,
}

impl PathTable {
    fn insert(&mut self, route: usize, matcher: &PathMatch) {
        let (key, kind) = match matcher {
            PathMatch::Exact(p) => (p.as_bytes(), Kind::Exact),
            PathMatch::Prefix(p) => {
                let len = p.len();
                if let Err(at) = self.prefix_lengths.binary_search(&len) {
                    self.prefix_lengths.insert(at, len);
                }
                (p.as_bytes(), Kind::Prefix)
            }
            PathMatch::Regex(re) => {
                // A route listed under two patterns of one table is kept once.
                if self.regexes.last().map(|(i, _)| *i) != Some(route) {
                    self.regexes.push((route, re.clone()));
                }
                return;
            }
        };
        let entries = self.paths.entry(key.into()).or_default();
        if entries.last() != Some(&(route, kind)) {
            entries.push((route, kind));
        }
    }

    /// Lowers `best` to the first route of this table before it that matches `path` (and
    /// `utf8`, the path as text when it is UTF-8, for the regexes) and that `accept` takes.
    fn first(
        &self,
        path: &[u8],
        utf8: Option<&str>,
        best: &mut Option<usize>,
        accept: &mut impl FnMut(usize) -> bool,
    ) {
        let mut consider = |key: &[u8], whole: bool, best: &mut Option<usize>| {
            let Some(entries) = self.paths.get(key) else {
                return;
            };
            let hit = entries
                .iter()
                .take_while(|(i, _)| best.is_none_or(|b| *i < b))
                .find(|(i, kind)| (whole || *kind == Kind::Prefix) && accept(*i));
            if let Some((i, _)) = hit {
                *best = Some(*i);
            }
        };
        for &len in &self.prefix_lengths {
            if len >= path.len() {
                break;
            }
            consider(&path[..len], false, best);
        }
        // The whole path: exact routes, and prefixes as long as the path.
        consider(path, true, best);
        let Some(text) = utf8 else {
            return;
        };
        for (i, re) in &self.regexes {
            if best.is_some_and(|b| *i >= b) {
                break;
            }
            if re.is_match(text) && accept(*i) {
                *best = Some(*i);
                break;
            }
        }
    }
}

/// Whether `host` (any case) matches `pattern`: `*suffix`, `prefix*` (each needing at least
/// one more byte) or a whole name, ignoring case.
pub(crate) fn domain_matches(pattern: &[u8], host: &[u8]) -> bool {
    if let Some(suffix) = pattern.strip_prefix(b"*") {
        host.len() > suffix.len() && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    } else if let Some(prefix) = pattern.strip_suffix(b"*") {
        host.len() > prefix.len() && host[..prefix.len()].eq_ignore_ascii_case(prefix)
    } else {
        host.eq_ignore_ascii_case(pattern)
    }
}

/// The longest host name kept on the stack to be lowercased; a longer one (no DNS name is) is
/// lowercased on the heap.
const HOST_ON_STACK: usize = 256;

/// The route index. Pure: built once per conf, read by every request.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    /// Routes without domains: any host, or none.
    any_host: PathTable,
    /// By lowercase host name.
    exact_hosts: HashMap<Box<[u8]>, PathTable>,
    /// `*.example.com` by `.example.com`.
    suffix_hosts: HashMap<Box<[u8]>, PathTable>,
    /// `example.*` by `example.`.
    prefix_hosts: HashMap<Box<[u8]>, PathTable>,
    /// Patterns of any other shape (only a program's own `Route` can hold one), tried in turn.
    other_hosts: Vec<(Box<[u8]>, PathTable)>,
}

impl RouteIndex {
    /// Indexes `routes`: each one's lowercase domain patterns (empty: any host) and its path
    /// match, at its position in the slice.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a [String], &'a PathMatch)>) -> RouteIndex {
        let mut index = RouteIndex::default();
        for (i, (domains, matcher)) in routes.into_iter().enumerate() {
            if domains.is_empty() {
                index.any_host.insert(i, matcher);
            }
            for domain in domains {
                index.table_for(domain).insert(i, matcher);
            }
        }
        index
    }

    fn table_for(&mut self, pattern: &str) -> &mut PathTable {
        let p = pattern.to_ascii_lowercase().into_bytes();
        // The same reading of a pattern as `Router`'s: a leading `*` first.
        if p.starts_with(b"*.") {
            return self.suffix_hosts.entry(Box::from(&p[1..])).or_default();
        }
        if !p.starts_with(b"*") && p.ends_with(b".*") {
            return self
                .prefix_hosts
                .entry(Box::from(&p[..p.len() - 1]))
                .or_default();
        }
        if !p.starts_with(b"*") && !p.ends_with(b"*") {
            return self.exact_hosts.entry(p.into()).or_default();
        }
        let at = match self.other_hosts.iter().position(|(o, _)| **o == *p) {
            Some(at) => at,
            None => {
                self.other_hosts.push((p.into(), PathTable::default()));
                self.other_hosts.len() - 1
            }
        };
        &mut self.other_hosts[at].1
    }

    /// The first route in conf order whose domains match `host` (without its port; None: no
    /// Host, only routes without domains match) and whose path match takes `path`, among those
    /// `accept` takes. `accept` is asked about matching routes only, each at most once per
    /// pattern it is listed under, and only while it could still be the answer: it must be a
    /// pure test of the rest of a route's match (headers, method, …).
    pub fn first(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        mut accept: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let utf8 = std::str::from_utf8(path).ok();
        let mut best = None;
        self.any_host.first(path, utf8, &mut best, &mut accept);
        let Some(host) = host else {
            return best;
        };
        if self.exact_hosts.is_empty()
            && self.suffix_hosts.is_empty()
            && self.prefix_hosts.is_empty()
            && self.other_hosts.is_empty()
        {
            return best;
        }
        let mut stack = [0u8; HOST_ON_STACK];
        let heap;
        let lower: &[u8] = if host.len() <= HOST_ON_STACK {
            let buf = &mut stack[..host.len()];
            buf.copy_from_slice(host);
            buf.make_ascii_lowercase();
            buf
        } else {
            heap = host.to_ascii_lowercase();
            &heap
        };
        let mut visit = |table: Option<&PathTable>, best: &mut Option<usize>| {
            if let Some(t) = table {
                t.first(path, utf8, best, &mut accept);
            }
        };
        visit(self.exact_hosts.get(lower), &mut best);
        for (dot, _) in lower.iter().enumerate().filter(|(_, b)| **b == b'.') {
            // `*.x` needs a label before `.x`; `x.*` one after `x.`.
            if dot > 0 && !self.suffix_hosts.is_empty() {
                visit(self.suffix_hosts.get(&lower[dot..]), &mut best);
            }
            if dot + 1 < lower.len() && !self.prefix_hosts.is_empty() {
                visit(self.prefix_hosts.get(&lower[..=dot]), &mut best);
            }
        }
        for (pattern, table) in &self.other_hosts {
            if domain_matches(pattern, lower) {
                visit(Some(table), &mut best);
            }
        }
        best
    }
}
