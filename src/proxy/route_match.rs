//! Whether a request's headers, query and method satisfy the rest of a route's match
//! (`config/route_match.rs`), evaluated without allocating but for two rare cases: a regex
//! tested against a repeated header, or against a query value with `%` escapes.
//!
//! Decisions (README, "Matching headers, query and method"):
//! - A header listed more than once is matched as its values joined with `,` in the order they
//!   came, as Envoy does and RFC 9110 §5.3 allows (a recipient may combine them so); names are
//!   case-insensitive.
//! - A query parameter is matched by its first occurrence (Envoy and the Gateway API's advice);
//!   names are case-sensitive, as Envoy's `query_parameters` and the Gateway API compare them;
//!   values are percent-decoded first (`%20` is a space; `+` stays `+`, as Envoy leaves it; an
//!   invalid escape stays as written), names are compared as written.

use crate::config::{HeaderMatch, QueryMatch, RequestMatch, ValueTest};
use http::{HeaderMap, Method};
use percent_encoding::percent_decode;

/// What the rest of a route's match reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The headers; None: none at all.
    pub headers: Option<&'a HeaderMap>,
    /// The query, after the `?` (None: no `?`).
    pub query: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// What a request's head says.
    pub fn of(request: &'a http::request::Parts) -> RequestFacts<'a> {
        RequestFacts {
            method: &request.method,
            headers: Some(&request.headers),
            query: request.uri.query(),
        }
    }

    /// A `GET` without headers or query.
    pub fn bare() -> RequestFacts<'static> {
        RequestFacts {
            method: &Method::GET,
            headers: None,
            query: None,
        }
    }
}

impl RequestMatch {
    /// Whether every condition holds for `request` (an empty match: always).
    pub fn matches(&self, request: &RequestFacts<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(request.method))
            && self.headers.iter().all(|h| h.holds(request.headers))
            && self.query.iter().all(|q| q.holds(request.query))
    }
}

impl HeaderMatch {
    fn holds(&self, headers: Option<&HeaderMap>) -> bool {
        let mut values = headers.map(|h| h.get_all(&self.name).iter());
        let mut next = || values.as_mut().and_then(Iterator::next);
        let result = match (next(), &self.test) {
            (None, test) => matches!(test, ValueTest::Present(false)),
            (Some(_), ValueTest::Present(want)) => *want,
            (Some(first), test) => match next() {
                // One value, the common case: compared in place.
                None => test.holds(first.as_bytes()),
                Some(second) => {
                    let rest = std::iter::from_fn(next);
                    repeated(test, [first, second].into_iter().chain(rest))
                }
            },
        };
        result != self.invert
    }
}

impl ValueTest {
    /// Whether one value passes (`present` is decided before: any value passes it).
    fn holds(&self, value: &[u8]) -> bool {
        match self {
            ValueTest::Exact(want) => value == &**want,
            ValueTest::Prefix(want) => value.starts_with(want),
            ValueTest::Regex(re) => re.is_match(value),
            ValueTest::Present(want) => *want,
        }
    }
}

/// Whether a header's repeated `values`, joined with `,`, pass `test`: compared piece by piece
/// for `exact` and `prefix`; joined for a `regex` (the only allocation of a header test).
fn repeated<'v>(test: &ValueTest, values: impl Iterator<Item = &'v http::HeaderValue>) -> bool {
    let values = values.map(http::HeaderValue::as_bytes);
    match test {
        ValueTest::Exact(want) => joined_matches(values, want, false),
        ValueTest::Prefix(want) => joined_matches(values, want, true),
        ValueTest::Regex(re) => re.is_match(&values.collect::<Vec<_>>().join(&b","[..])),
        ValueTest::Present(want) => *want,
    }
}

/// Whether `values` joined with `,` equal `want` (or start with it, for `prefix`), compared
/// piece by piece.
fn joined_matches<'v>(values: impl Iterator<Item = &'v [u8]>, want: &[u8], prefix: bool) -> bool {
    let mut rest = want;
    for (i, value) in values.enumerate() {
        for piece in [if i > 0 { &b","[..] } else { b"" }, value] {
            if prefix && piece.len() >= rest.len() {
                return piece.starts_with(rest);
            }
            match rest.strip_prefix(piece) {
                Some(left) => rest = left,
                None => return false,
            }
        }
    }
    rest.is_empty()
}

impl QueryMatch {
    fn holds(&self, query: Option<&str>) -> bool {
        let value = query.and_then(|q| {
            q.split('&').find_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name == self.name).then_some(value.as_bytes())
            })
        });
        let Some(value) = value else {
            return matches!(self.test, ValueTest::Present(false));
        };
        match &self.test {
            ValueTest::Present(want) => *want,
            ValueTest::Exact(want) => percent_decode(value).eq(want.iter().copied()),
            ValueTest::Prefix(want) => {
                let mut d = percent_decode(value);
                want.iter().all(|b| d.next() == Some(*b))
            }
            ValueTest::Regex(re) if value.contains(&b'%') => {
                re.is_match(&percent_decode(value).collect::<Vec<u8>>())
            }
            ValueTest::Regex(re) => re.is_match(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The match of the first route of `matches` (YAML keys of a route).
    fn rule(matches: &str) -> RequestMatch {
        let yaml = format!(
            "gateway:\n  routes:\n    - {{ prefix: /, cluster: a, {matches} }}\n  clusters:\n    - {{ name: a, address: a.test, port: 80 }}\n"
        );
        let mut routes = Config::from_yaml(&yaml).unwrap().gateway.routes;
        routes.remove(0).request_match
    }

    fn holds(m: &RequestMatch, method: &str, target: &str, headers: &[(&str, &str)]) -> bool {
        let mut req = http::Request::builder().method(method).uri(target);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        m.matches(&RequestFacts::of(&parts))
    }

    #[test]
    fn repeated_headers_match_joined_with_commas() {
        let exact = rule("headers: [{ name: X-A, exact: \"1,2\" }]");
        let prefix = rule("headers: [{ name: x-a, prefix: \"1,\" }]");
        let re = rule("headers: [{ name: x-a, regex: \"1,[0-9],3\" }]");
        let two = [("x-a", "1"), ("x-a", "2")];
        assert!(holds(&exact, "GET", "/", &two));
        assert!(holds(&exact, "GET", "/", &[("x-a", "1,2")]));
        assert!(!holds(
            &exact,
            "GET",
            "/",
            &[("x-a", "1"), ("x-a", "2"), ("x-a", "3")]
        ));
        assert!(!holds(&exact, "GET", "/", &[("x-a", "1")]));
        assert!(holds(&prefix, "GET", "/", &two));
        assert!(!holds(&prefix, "GET", "/", &[("x-a", "1")]));
        assert!(holds(
            &re,
            "GET",
            "/",
            &[("x-a", "1"), ("x-a", "7"), ("x-a", "3")]
        ));
        assert!(!holds(&re, "GET", "/", &two));
        assert!(holds(
            &rule("headers: [{ name: x-a, prefix: \"\" }]"),
            "GET",
            "/",
            &[("x-a", "")]
        ));
    }

    #[test]
    fn query_values_are_decoded_and_the_first_one_counts() {
        let exact = rule("query: [{ name: q, exact: \"a b/é\" }]");
        assert!(holds(&exact, "GET", "/?q=a%20b%2F%C3%A9", &[]));
        assert!(holds(&exact, "GET", "/?x&q=a%20b/%c3%a9&q=z", &[]));
        assert!(!holds(&exact, "GET", "/?q=z&q=a%20b/%c3%a9", &[]));
        assert!(!holds(&exact, "GET", "/?Q=a%20b/%c3%a9", &[]));
        let bad = rule("query: [{ name: q, exact: \"%zz%4\" }]");
        assert!(
            holds(&bad, "GET", "/?q=%zz%4", &[]),
            "invalid escapes stay as written"
        );
        let absent = rule("query: [{ name: q, present: false }]");
        assert!(holds(&absent, "GET", "/", &[]) && holds(&absent, "GET", "/?qq=1", &[]));
        assert!(!holds(&absent, "GET", "/?q", &[]));
    }

    #[test]
    fn methods_and_an_empty_match() {
        let m = rule("methods: [PUT, PURGE]");
        assert!(holds(&m, "PURGE", "/", &[]) && holds(&m, "PUT", "/", &[]));
        assert!(!holds(&m, "GET", "/", &[]));
        let none = RequestMatch::default();
        assert!(none.is_empty() && none.matches(&RequestFacts::bare()));
    }
}
