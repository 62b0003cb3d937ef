//! A route's `headers`, `query` and `methods`: the rest of its match beyond Host and path, as
//! Envoy's route `headers` and `query_parameters` matchers write it.

use super::errors::Errors;
use serde::Deserialize;

/// The largest compiled program one `regex` of a header or query match may take (bytes, as the
/// `regex` crate's `size_limit` counts them): 100 KiB, as a few hundred characters of an
/// ordinary pattern take; `\w{1000}` does not fit. A conf error names a larger one.
pub const REGEX_SIZE_LIMIT: usize = 100 << 10;

/// The rest of a route's match: every header, query and method condition must hold. Empty (the
/// default): only Host and path decide, and evaluating it costs one check.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// `headers`: each must hold.
    pub headers: Vec<HeaderMatch>,
    /// `query`: each must hold.
    pub query: Vec<QueryMatch>,
    /// `methods`: the request's method must be one of them; empty: any method.
    pub methods: Vec<http::Method>,
}

impl RequestMatch {
    /// Whether the route matches on Host and path alone.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.query.is_empty() && self.methods.is_empty()
    }
}

/// One entry of `headers`: a header's name (any case) and a test of its value.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// `name`, lowercase.
    pub name: http::HeaderName,
    /// `exact`, `prefix`, `regex` or `present`.
    pub test: ValueTest,
    /// `invert`: the entry holds when the test fails (default false).
    pub invert: bool,
}

/// One entry of `query`: a parameter's name (case-sensitive) and a test of its value.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// `name`, as the query writes it (not decoded).
    pub name: String,
    /// `exact`, `regex` or `present`.
    pub test: ValueTest,
}

/// What a header's or a parameter's value must be.
#[derive(Debug, Clone)]
pub enum ValueTest {
    /// `exact`: the whole value.
    Exact(Box<[u8]>),
    /// `prefix`: the value starts with it (headers only).
    Prefix(Box<[u8]>),
    /// `regex`: the whole value matches (as Envoy's `safe_regex`).
    Regex(regex::bytes::Regex),
    /// `present: true`: there, whatever its value; `present: false`: absent.
    Present(bool),
}

/// A `headers` entry as the conf writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaderMatch {
    name: String,
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
    #[serde(default)]
    invert: bool,
}

/// A `query` entry as the conf writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueryMatch {
    name: String,
    exact: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
}

/// Reads a route's `headers`, `query` and `methods` (the route at `path`), every error with
/// its own path.
pub(super) fn request_match(
    headers: Vec<RawHeaderMatch>,
    query: Vec<RawQueryMatch>,
    methods: Vec<String>,
    path: &str,
    errors: &mut Errors,
) -> RequestMatch {
    let mut m = RequestMatch::default();
    for (i, h) in headers.into_iter().enumerate() {
        let at = format!("{path}.headers[{i}]");
        let name = match http::HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                errors.push(
                    format!("{at}.name"),
                    format!("`{}` is not a header name", h.name),
                );
                None
            }
        };
        let test = value_test(
            "exact, prefix, regex, present",
            h.exact,
            h.prefix,
            h.regex,
            h.present,
            &at,
            errors,
        );
        if let (Some(name), Some(test)) = (name, test) {
            m.headers.push(HeaderMatch {
                name,
                test,
                invert: h.invert,
            });
        }
    }
    for (i, q) in query.into_iter().enumerate() {
        let at = format!("{path}.query[{i}]");
        if q.name.is_empty() {
            errors.push(format!("{at}.name"), "must not be empty");
        }
        if let Some(test) = value_test(
            "exact, regex, present",
            q.exact,
            None,
            q.regex,
            q.present,
            &at,
            errors,
        ) {
            m.query.push(QueryMatch { name: q.name, test });
        }
    }
    for (i, name) in methods.into_iter().enumerate() {
        let at = format!("{path}.methods[{i}]");
        match method(&name) {
            Ok(method) if m.methods.contains(&method) => {
                errors.push(at, format!("`{name}` is listed twice"))
            }
            Ok(method) => m.methods.push(method),
            Err(why) => errors.push(at, why),
        }
    }
    m
}

/// A method name: a token (RFC 9110), uppercase, since methods are case-sensitive and a
/// lowercase `get` would never match a browser's `GET`. Methods of other specs (`PURGE`,
/// `PROPFIND`) are allowed.
fn method(name: &str) -> Result<http::Method, String> {
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "`{name}`: methods are case-sensitive and uppercase (`{}`)",
            name.to_ascii_uppercase()
        ));
    }
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    match http::Method::from_bytes(name.as_bytes()) {
        Ok(method) if token => Ok(method),
        _ => Err(format!("`{name}` is not a method name")),
    }
}

/// Exactly one of the operators (`operators` names them for the error), checked; `at` is the
/// entry's path.
fn value_test(
    operators: &str,
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
    at: &str,
    errors: &mut Errors,
) -> Option<ValueTest> {
    let given = [
        exact.is_some(),
        prefix.is_some(),
        regex.is_some(),
        present.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        errors.push(at, format!("give exactly one of {operators}"));
        return None;
    }
    if let Some(exact) = exact {
        return Some(ValueTest::Exact(exact.into_bytes().into()));
    }
    if let Some(prefix) = prefix {
        return Some(ValueTest::Prefix(prefix.into_bytes().into()));
    }
    if let Some(present) = present {
        return Some(ValueTest::Present(present));
    }
    let pattern = regex?;
    let compiled = regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build();
    match compiled {
        Ok(re) => Some(ValueTest::Regex(re)),
        Err(regex::Error::CompiledTooBig(_)) => {
            errors.push(
                format!("{at}.regex"),
                format!(
                    "`{pattern}` compiles to more than {} KiB: write a smaller expression",
                    REGEX_SIZE_LIMIT >> 10
                ),
            );
            None
        }
        Err(e) => {
            errors.push(format!("{at}.regex"), format!("not a valid regex: {e}"));
            None
        }
    }
}
