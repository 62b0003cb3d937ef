//! `request_headers` and `response_headers`: add and remove headers (Envoy's
//! `request_headers_to_add` / `_to_remove` and the response ones).

use crate::proxy::filter::{Context, Filter, FilterSetup};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use serde::Deserialize;
use std::sync::Arc;

/// Headers to remove, then headers to add (appended: an added name may repeat), parsed once.
pub struct HeaderChanges {
    remove: Vec<HeaderName>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderChanges {
    /// From names and values the conf has already checked; any that would not parse are left
    /// out (the conf refuses them first).
    pub fn new(add: &[(String, String)], remove: &[String]) -> HeaderChanges {
        HeaderChanges {
            remove: remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            add: add
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    fn from_conf(setup: &FilterSetup<'_>) -> Result<HeaderChanges, String> {
        let conf: Conf = setup.parse()?;
        let mut add = Vec::with_capacity(conf.add.len());
        for (i, h) in conf.add.into_iter().enumerate() {
            let name = HeaderName::from_bytes(h.key.as_bytes())
                .map_err(|_| format!("add[{i}].key: `{}` is not a header name", h.key))?;
            let value = HeaderValue::from_str(&h.value)
                .map_err(|_| format!("add[{i}].value: not a valid header value"))?;
            add.push((name, value));
        }
        let mut remove = Vec::with_capacity(conf.remove.len());
        for (i, n) in conf.remove.iter().enumerate() {
            remove.push(
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("remove[{i}]: `{n}` is not a header name"))?,
            );
        }
        Ok(HeaderChanges { remove, add })
    }
}

/// `{ name: request_headers, add: [{ key, value }], remove: [names] }` (the keys of the
/// route's own `request_headers_to_add`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    add: Vec<Header>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    key: String,
    value: String,
}

/// Changes the request's headers on their way to the backend.
pub struct RequestHeaders(pub HeaderChanges);

/// Changes the response's headers on their way to the client.
pub struct ResponseHeaders(pub HeaderChanges);

pub fn request_factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(RequestHeaders(HeaderChanges::from_conf(setup)?)))
}

pub fn response_factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    Ok(Arc::new(ResponseHeaders(HeaderChanges::from_conf(setup)?)))
}

impl Filter for RequestHeaders {
    fn on_upstream_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<()> {
        for name in &self.0.remove {
            req.remove_header(name);
        }
        for (name, value) in &self.0.add {
            req.append_header(name.clone(), value.clone())?;
        }
        Ok(())
    }
}

impl Filter for ResponseHeaders {
    fn on_response(&self, resp: &mut ResponseHeader, _cx: &mut Context<'_>) -> Result<()> {
        for name in &self.0.remove {
            resp.remove_header(name);
        }
        for (name, value) in &self.0.add {
            resp.append_header(name.clone(), value.clone())?;
        }
        Ok(())
    }
}
