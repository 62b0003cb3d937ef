//! `api_key`: a request must carry one of the route's API keys, in a header or a query
//! parameter, or gets `401`; the key stops at the gateway (Envoy's `api_key_auth` filter;
//! nginx: `map $http_x_api_key $ok { … }` and `if ($ok = 0) { return 401; }`).
//!
//! Keys come from `keys_file` (one a line, `#` comments, `name:key` to name the client) and
//! inline `keys:` (for tests and demos: a conf file is read by more people than a key file).
//! Only their SHA-256 digests are kept, and a request's key is found by its digest: no
//! comparison runs over the key's bytes, so its timing tells nothing about a valid key. The
//! key is removed from what is forwarded — its header, and its query parameter from the URI —
//! and is written in no log: the access log and pingora's error log name the path only.

use crate::proxy::filter::{Answer, Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use percent_encoding::percent_decode_str;
use pingora::http::RequestHeader;
use pingora::Result;
use prometheus::IntCounter;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// `{ name: api_key, header, query, keys_file, keys, client_header, realm }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default = "default_header")]
    header: String,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    keys_file: Option<PathBuf>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    client_header: Option<String>,
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_header() -> String {
    "x-api-key".into()
}

fn default_realm() -> String {
    "headway".into()
}

/// A key's SHA-256 digest.
type KeyDigest = [u8; 32];

fn digest(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

/// Checks, then strips, a route's API key.
pub struct ApiKey {
    header: HeaderName,
    query: Option<String>,
    /// Digest → the client's name (`name:key` lines), if any.
    keys: HashMap<KeyDigest, Option<HeaderValue>>,
    client_header: Option<HeaderName>,
    challenge: HeaderValue,
    denied: IntCounter,
}

/// The keys of a key file: `key` or `name:key` a line; blank lines and `#` comments skipped.
/// Errors name the line, never its text.
fn read_keys_file(
    path: &PathBuf,
    keys: &mut HashMap<KeyDigest, Option<HeaderValue>>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("keys_file: cannot read {}: {e}", path.display()))?;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("keys_file: {} line {}", path.display(), i + 1);
        let (name, key) = match line.split_once(':') {
            Some((name, key)) => {
                let name = HeaderValue::from_str(name.trim())
                    .ok()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        format!("{}: the client name is empty or not printable", at())
                    })?;
                (Some(name), key.trim())
            }
            None => (None, line),
        };
        if key.is_empty() {
            return Err(format!("{}: the key is empty", at()));
        }
        keys.insert(digest(key.as_bytes()), name);
    }
    Ok(())
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    let header = HeaderName::from_bytes(conf.header.as_bytes())
        .map_err(|_| format!("header: `{}` is not a header name", conf.header))?;
    let client_header = match &conf.client_header {
        Some(h) => Some(
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("client_header: `{h}` is not a header name"))?,
        ),
        None => None,
    };
    if conf.query.as_deref() == Some("") {
        return Err("query: the parameter name is empty".into());
    }
    let mut keys = HashMap::new();
    if let Some(path) = &conf.keys_file {
        read_keys_file(path, &mut keys)?;
    }
    for (i, key) in conf.keys.iter().enumerate() {
        if key.is_empty() {
            return Err(format!("keys[{i}]: the key is empty"));
        }
        keys.insert(digest(key.as_bytes()), None);
    }
    if keys.is_empty() {
        return Err("keys_file, keys: no key at all: every request would be refused".into());
    }
    if conf.realm.contains(['"', '\\']) {
        return Err("realm: no `\"` or `\\` in a realm".into());
    }
    let challenge = HeaderValue::from_str(&format!("ApiKey realm=\"{}\"", conf.realm))
        .map_err(|_| "realm: not valid in a header value".to_owned())?;
    Ok(Arc::new(ApiKey {
        header,
        query: conf.query,
        keys,
        client_header,
        challenge,
        denied: setup.counter("denied"),
    }))
}

/// What the request carried: no key, one key, or more than one (refused: which would count?).
enum Found {
    None,
    One(Vec<u8>),
    Many,
}

impl Found {
    fn add(self, key: Vec<u8>) -> Found {
        match self {
            Found::None => Found::One(key),
            _ => Found::Many,
        }
    }
}

impl ApiKey {
    /// Takes the key out of the request's header and query, returning what was there.
    fn take_key(&self, req: &mut RequestHeader) -> Result<Found> {
        let mut found = Found::None;
        for v in req.headers.get_all(&self.header) {
            found = found.add(v.as_bytes().to_vec());
        }
        req.remove_header(&self.header);
        let Some(param) = &self.query else {
            return Ok(found);
        };
        let Some(query) = req.uri.query() else {
            return Ok(found);
        };
        let mut kept = Vec::new();
        let mut from_query = Found::None;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode_str(name).decode_utf8_lossy() == param.as_str() {
                from_query = from_query.add(percent_decode_str(value).collect());
            } else {
                kept.push(pair);
            }
        }
        if matches!(from_query, Found::None) {
            return Ok(found);
        }
        let path = req.uri.path();
        let rest = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(PathAndQuery::try_from(rest).map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InternalError, "api_key: URI", e)
        })?);
        let uri = Uri::from_parts(parts).map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InternalError, "api_key: URI", e)
        })?;
        req.set_uri(uri);
        Ok(match (found, from_query) {
            (Found::None, q) => q,
            _ => Found::Many,
        })
    }
}

#[async_trait]
impl Filter for ApiKey {
    async fn on_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<Flow> {
        if let Some(h) = &self.client_header {
            // The client's own copy would pass for the gateway's.
            req.remove_header(h);
        }
        let client = match self.take_key(req)? {
            Found::One(key) => self.keys.get(&digest(&key)),
            Found::None | Found::Many => None,
        };
        let Some(name) = client else {
            self.denied.inc();
            return Ok(Flow::Respond(
                Answer::new(401, "a valid API key is required\n")
                    .header(http::header::WWW_AUTHENTICATE, self.challenge.clone()),
            ));
        };
        if let (Some(h), Some(name)) = (&self.client_header, name) {
            req.insert_header(h.clone(), name.clone())?;
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(query: Option<&str>) -> ApiKey {
        ApiKey {
            header: HeaderName::from_static("x-api-key"),
            query: query.map(str::to_owned),
            keys: HashMap::from([(digest(b"k+1/="), None)]),
            client_header: None,
            challenge: HeaderValue::from_static("ApiKey"),
            denied: IntCounter::new("t", "t").unwrap(),
        }
    }

    fn found(f: &ApiKey, uri: &str, header: Option<&str>) -> (String, Option<Vec<u8>>) {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(h) = header {
            req.insert_header("x-api-key", h).unwrap();
        }
        let key = match f.take_key(&mut req).unwrap() {
            Found::One(k) => Some(k),
            Found::None => None,
            Found::Many => Some(b"<many>".to_vec()),
        };
        assert!(req.headers.get("x-api-key").is_none());
        (req.uri.to_string(), key)
    }

    #[test]
    fn the_query_parameter_is_taken_out_of_the_uri() {
        let f = filter(Some("api_key"));
        let (uri, key) = found(&f, "/a/b?x=1&api_key=k%2B1%2F%3D&y=2", None);
        assert_eq!(uri, "/a/b?x=1&y=2");
        assert_eq!(key.as_deref(), Some(&b"k+1/="[..]));
        // An encoded parameter name is the same parameter.
        let (uri, key) = found(&f, "/a?api%5Fkey=k+1/=", None);
        assert_eq!(uri, "/a");
        assert_eq!(key.as_deref(), Some(&b"k+1/="[..]));
        let (uri, key) = found(&f, "/a?api_key=1&api_key=2", None);
        assert_eq!((uri.as_str(), key.as_deref()), ("/a", Some(&b"<many>"[..])));
        let (_, key) = found(&f, "/a?api_key=1", Some("2"));
        assert_eq!(
            key.as_deref(),
            Some(&b"<many>"[..]),
            "header and query both"
        );
        let (uri, key) = found(&f, "/a?x=api_key", None);
        assert_eq!((uri.as_str(), key), ("/a?x=api_key", None));
    }

    #[test]
    fn without_a_query_key_the_parameter_is_left_alone() {
        let (uri, key) = found(&filter(None), "/a?api_key=1", Some("k"));
        assert_eq!(uri, "/a?api_key=1");
        assert_eq!(key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn key_file_errors_name_the_line_and_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# comment\n\nalice:secret-1\nsecret-2\n:secret-3\n").unwrap();
        let mut keys = HashMap::new();
        let e = read_keys_file(&path, &mut keys).unwrap_err();
        assert!(e.contains("line 5"), "{e}");
        assert!(!e.contains("secret-3"), "{e}");
        std::fs::write(&path, "alice:secret-1\nsecret-2\n").unwrap();
        let mut keys = HashMap::new();
        read_keys_file(&path, &mut keys).unwrap();
        assert_eq!(
            keys.get(&digest(b"secret-1")),
            Some(&Some(HeaderValue::from_static("alice")))
        );
        assert_eq!(keys.get(&digest(b"secret-2")), Some(&None));
    }
}
