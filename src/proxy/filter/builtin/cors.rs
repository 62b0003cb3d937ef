//! `cors`: the gateway answers CORS preflights itself and adds CORS headers to the responses
//! of allowed origins (Envoy's `cors` filter; nginx's `add_header Access-Control-…` recipes).
//!
//! An origin is allowed when it equals an `allow_origins` entry byte for byte, or matches one
//! of its patterns: `https://*.example.com` (one or more lowercase DNS labels before
//! `.example.com`, nothing after it: no port, no trailing dot) or `regex:<re>` (anchored at
//! both ends by the gateway). `null` is never allowed, `*` allows every other origin. Origins
//! are compared as browsers send them: lowercase, so `https://App.example.com` does not match.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) never reaches the
//! backend: `204` with the CORS headers when the origin, the method and every requested header
//! are allowed; else `403` with no CORS header (counted `denied`), which the browser reports as
//! a failed preflight. On other requests the route's CORS response headers are the gateway's:
//! the backend's own `Access-Control-Allow-Origin`, `-Credentials` and `-Expose-Headers` are
//! removed, and set again only for an allowed origin.

use crate::config::duration;
use crate::proxy::filter::{Answer, Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use prometheus::IntCounter;
use regex::Regex;
use serde::Deserialize;
use std::sync::Arc;

/// `{ name: cors, allow_origins, allow_methods, allow_headers, expose_headers,
/// allow_credentials, max_age }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    allow_origins: Vec<String>,
    #[serde(default = "default_methods")]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default)]
    max_age: Option<String>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}

/// Which origins are allowed.
struct Origins {
    any: bool,
    exact: Vec<String>,
    patterns: Vec<Regex>,
}

impl Origins {
    fn parse(entries: &[String]) -> Result<Origins, String> {
        let mut origins = Origins {
            any: false,
            exact: Vec::new(),
            patterns: Vec::new(),
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("allow_origins[{i}]");
            if entry == "*" {
                origins.any = true;
            } else if let Some(re) = entry.strip_prefix("regex:") {
                let re = Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| format!("{at}: not a regex: {e}"))?;
                origins.patterns.push(re);
            } else if let Some((scheme, host)) = entry.split_once("://*.") {
                check_origin(&at, &format!("{scheme}://{host}"))?;
                let re = format!(
                    r"^{}://(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+{}$",
                    regex::escape(scheme),
                    regex::escape(host)
                );
                origins
                    .patterns
                    .push(Regex::new(&re).map_err(|e| format!("{at}: {e}"))?);
            } else {
                check_origin(&at, entry)?;
                origins.exact.push(entry.clone());
            }
        }
        if entries.is_empty() {
            return Err("allow_origins: name at least one origin (or `*`)".into());
        }
        Ok(origins)
    }

    fn allows(&self, origin: &str) -> bool {
        origin != "null"
            && (self.any
                || self.exact.iter().any(|o| o == origin)
                || self.patterns.iter().any(|re| re.is_match(origin)))
    }
}

/// An origin as a browser serializes it: `scheme://host[:port]`, lowercase, no path.
fn check_origin(at: &str, origin: &str) -> Result<(), String> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!(
            "{at}: `{origin}` is not an origin (scheme://host[:port])"
        ));
    };
    let plain = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
    };
    if !plain(scheme, "+-.") || !plain(rest, "-.:[]") || rest.contains('*') {
        return Err(format!(
            "{at}: `{origin}` is not an origin as browsers send it: scheme://host[:port], \
             lowercase, no path or trailing `/` (a pattern is `scheme://*.domain` or `regex:…`)"
        ));
    }
    Ok(())
}

/// What `on_request` found, for `on_response`.
#[derive(Clone)]
enum Seen {
    /// A preflight the filter answered itself.
    Preflight,
    /// Another request: the `Access-Control-Allow-Origin` to send, when its origin is allowed.
    Actual(Option<HeaderValue>),
}

/// Answers preflights, marks the responses of allowed origins.
pub struct Cors {
    origins: Origins,
    methods: Vec<String>,
    any_method: bool,
    allow_methods: HeaderValue,
    /// Lowercase; empty with `any_header`.
    headers: Vec<String>,
    any_header: bool,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
    /// Whether answers depend on `Origin` (all but `*` without credentials).
    vary: bool,
    preflights: IntCounter,
    denied: IntCounter,
}

fn joined(at: &str, items: &[String]) -> Result<Option<HeaderValue>, String> {
    if items.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&items.join(", "))
        .map(Some)
        .map_err(|_| format!("{at}: not valid in a header value"))
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    let origins = Origins::parse(&conf.allow_origins)?;
    for (i, m) in conf.allow_methods.iter().enumerate() {
        if m != "*" && http::Method::from_bytes(m.as_bytes()).is_err() {
            return Err(format!("allow_methods[{i}]: `{m}` is not a method"));
        }
    }
    for (key, list) in [
        ("allow_headers", &conf.allow_headers),
        ("expose_headers", &conf.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" && HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(format!("{key}[{i}]: `{h}` is not a header name"));
            }
        }
    }
    let any_method = conf.allow_methods.iter().any(|m| m == "*");
    let any_header = conf.allow_headers.iter().any(|h| h == "*");
    Ok(Arc::new(Cors {
        vary: !origins.any || conf.allow_credentials,
        origins,
        allow_methods: joined("allow_methods", &conf.allow_methods)?
            .unwrap_or(HeaderValue::from_static("GET, HEAD, POST")),
        methods: conf.allow_methods,
        any_method,
        allow_headers: joined("allow_headers", &conf.allow_headers)?,
        headers: conf
            .allow_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        any_header,
        expose_headers: joined("expose_headers", &conf.expose_headers)?,
        credentials: conf.allow_credentials,
        max_age: match &conf.max_age {
            Some(text) => Some(HeaderValue::from(
                duration::parse(text)
                    .map_err(|e| format!("max_age: {e}"))?
                    .as_secs(),
            )),
            None => None,
        },
        preflights: setup.counter("preflight"),
        denied: setup.counter("denied"),
    }))
}

impl Cors {
    /// The `Access-Control-Allow-Origin` for `origin`, when it is allowed: `*` for any origin
    /// without credentials, else the origin itself.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if !self.origins.allows(origin.to_str().ok()?) {
            return None;
        }
        if self.origins.any && !self.credentials {
            Some(HeaderValue::from_static("*"))
        } else {
            Some(origin.clone())
        }
    }

    fn preflight(&self, req: &RequestHeader, method: &HeaderValue) -> Answer {
        let allow = self
            .allow_origin(req.headers.get(header::ORIGIN))
            .filter(|_| {
                self.any_method
                    || self
                        .methods
                        .iter()
                        .any(|m| m.as_bytes() == method.as_bytes())
            });
        let requested = req
            .headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>();
        let headers_ok = self.any_header || requested.iter().all(|h| self.headers.contains(h));
        let vary = self.vary_header();
        let Some(origin) = allow.filter(|_| headers_ok) else {
            self.denied.inc();
            return vary.into_iter().fold(
                Answer::new(
                    403,
                    "CORS preflight refused: origin, method or headers not allowed\n",
                ),
                |a, (n, v)| a.header(n, v),
            );
        };
        self.preflights.inc();
        let mut answer = Answer::new(204, "")
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)
            .header(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                if self.any_method {
                    method.clone()
                } else {
                    self.allow_methods.clone()
                },
            );
        let allow_headers = match (&self.allow_headers, self.any_header) {
            // `*` echoes what was asked: a literal `*` means nothing with credentials.
            (_, true) if !requested.is_empty() => HeaderValue::from_str(&requested.join(", ")).ok(),
            (_, true) => None,
            (list, false) => list.clone(),
        };
        if let Some(v) = allow_headers {
            answer = answer.header(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(v) = &self.max_age {
            answer = answer.header(header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if self.credentials {
            answer = answer.header(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        vary.into_iter().fold(answer, |a, (n, v)| a.header(n, v))
    }

    fn vary_header(&self) -> Option<(HeaderName, HeaderValue)> {
        self.vary
            .then(|| (header::VARY, HeaderValue::from_static("Origin")))
    }
}

#[async_trait]
impl Filter for Cors {
    async fn on_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<Flow> {
        let preflight_method = (req.method == http::Method::OPTIONS)
            .then(|| req.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD))
            .flatten()
            .filter(|_| req.headers.contains_key(header::ORIGIN));
        if let Some(method) = preflight_method {
            let answer = self.preflight(req, method);
            cx.vars.insert(Seen::Preflight);
            return Ok(Flow::Respond(answer));
        }
        let allow = self.allow_origin(req.headers.get(header::ORIGIN));
        cx.vars.insert(Seen::Actual(allow));
        Ok(Flow::Continue)
    }

    fn on_response(&self, resp: &mut ResponseHeader, cx: &mut Context<'_>) -> Result<()> {
        match cx.vars.get::<Seen>() {
            Some(Seen::Preflight) if resp.status == 204 => {
                resp.remove_header(&header::CONTENT_TYPE);
                resp.remove_header(&header::CONTENT_LENGTH);
            }
            // A refused preflight; or not seen: an earlier filter answered before this one ran.
            Some(Seen::Preflight) | None => {}
            Some(Seen::Actual(allow)) => {
                for name in [
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                ] {
                    resp.remove_header(&name);
                }
                if let Some(origin) = allow {
                    resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())?;
                    if self.credentials {
                        resp.insert_header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
                    }
                    if let Some(v) = &self.expose_headers {
                        resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone())?;
                    }
                }
                if self.vary && !varies_by_origin(resp) {
                    resp.append_header(header::VARY, "Origin")?;
                }
            }
        }
        Ok(())
    }
}

/// Whether the response's `Vary` already names `Origin` (or `*`).
fn varies_by_origin(resp: &ResponseHeader) -> bool {
    resp.headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Origins {
        Origins::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patterns_match_subdomains_and_nothing_else() {
        let o = origins(&["https://app.example.com", "https://*.example.org"]);
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("https://a.example.org"));
        assert!(o.allows("https://a.b.example.org"));
        for forged in [
            "null",
            "https://App.example.com",
            "https://app.example.com.",
            "https://app.example.com.evil.net",
            "https://example.org",
            "https://a.example.org.",
            "https://a.example.org.evil.net",
            "https://evil.net/.example.org",
            "https://a.example.org:8443",
            "http://a.example.org",
            "https://A.example.org",
            "https://-.example.org",
            "https://a_b.example.org",
        ] {
            assert!(!o.allows(forged), "{forged} must not match");
        }
    }

    #[test]
    fn regexes_are_anchored_and_null_never_matches() {
        let o = origins(&[r"regex:https://[a-z]+\.example\.com"]);
        assert!(o.allows("https://app.example.com"));
        assert!(!o.allows("https://app.example.com.evil.net"));
        assert!(!o.allows("xhttps://app.example.com"));
        assert!(!origins(&["*"]).allows("null"));
    }

    #[test]
    fn conf_errors_name_the_entry() {
        let bad = |list: &[&str]| {
            Origins::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .err()
                .unwrap()
        };
        assert!(bad(&["https://a.example.com/"]).starts_with("allow_origins[0]"));
        assert!(bad(&["*", "https://A.example.com"]).starts_with("allow_origins[1]"));
        assert!(bad(&["regex:("]).starts_with("allow_origins[0]"));
        assert!(bad(&["https://a.*.example.com"]).starts_with("allow_origins[0]"));
        assert!(bad(&[]).starts_with("allow_origins"));
    }
}
