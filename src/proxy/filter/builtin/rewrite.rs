//! `prefix_rewrite` and `host_rewrite`: the path prefix and the Host the backend sees (Envoy's
//! route `prefix_rewrite` / `host_rewrite_literal`; nginx's `proxy_pass` URI and
//! `proxy_set_header Host`).

use crate::config::{PathMatch, Route};
use crate::proxy::filter::{Context, Filter, FilterSetup};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};
use serde::Deserialize;
use std::sync::Arc;

/// Replaces the route's matched prefix (or its whole exact path) with `to`.
pub struct PrefixRewrite {
    to: String,
    /// How many bytes of the path the route's match covers (0 for a regex match: the whole path
    /// is replaced).
    matched: Option<usize>,
}

/// Sets the Host header.
pub struct HostRewrite(HeaderValue);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    to: String,
}

impl PrefixRewrite {
    pub fn new(route: &Route, to: &str) -> PrefixRewrite {
        PrefixRewrite {
            to: to.to_owned(),
            matched: match &route.matcher {
                PathMatch::Prefix(prefix) => Some(prefix.len()),
                PathMatch::Exact(_) | PathMatch::Regex(_) => None,
            },
        }
    }
}

impl HostRewrite {
    pub fn new(host: &str) -> Option<HostRewrite> {
        HeaderValue::from_str(host).ok().map(HostRewrite)
    }
}

pub fn prefix_factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    if !conf.to.starts_with('/') {
        return Err(format!("to: `{}` must start with /", conf.to));
    }
    Ok(Arc::new(PrefixRewrite::new(setup.route, &conf.to)))
}

pub fn host_factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    HostRewrite::new(&conf.to)
        .map(|f| Arc::new(f) as Arc<dyn Filter>)
        .ok_or_else(|| format!("to: `{}` is not a valid Host", conf.to))
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Box<Error> {
    Error::because(
        ErrorType::HTTPStatus(400),
        "prefix_rewrite made an invalid URI",
        e,
    )
}

impl Filter for PrefixRewrite {
    fn on_upstream_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<()> {
        let path = req.uri.path();
        let rest = self.matched.and_then(|n| path.get(n..)).unwrap_or_default();
        let mut target = format!("{}{rest}", self.to);
        if let Some(q) = req.uri.query() {
            target.push('?');
            target.push_str(q);
        }
        // Scheme and authority stay: an HTTP/2 request's host is its URI's authority, which an
        // h2 upstream request needs; an HTTP/1 one is still written in origin-form.
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(target.parse().map_err(invalid)?);
        let uri = http::Uri::from_parts(parts).map_err(invalid)?;
        req.set_uri(uri);
        Ok(())
    }
}

impl Filter for HostRewrite {
    fn on_upstream_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<()> {
        req.insert_header(http::header::HOST, self.0.clone())
    }
}
