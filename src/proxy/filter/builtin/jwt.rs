//! `jwt`: a request must carry `Authorization: Bearer <JWT>` signed by one of the route's keys,
//! from the right issuer, for the right audience, within its time, or gets `401` (Envoy's
//! `jwt_authn` filter; nginx Plus's `auth_jwt`).
//!
//! Verification is the `jsonwebtoken` crate's: signature by the key the token's `kid` and
//! `alg` select (see `jwt_keys`: a key verifies only its own algorithm; `alg: none` is no
//! algorithm at all), then `exp` (required), `nbf`, `iss` and `aud`, with `leeway` for clocks.
//! Answers follow RFC 6750 §3: no token, `Bearer realm="…"`; a bad one, `Bearer realm="…",
//! error="invalid_token", error_description="…"` with a fixed text, never a piece of the token.
//!
//! On success, chosen claims go to the backend as headers (`claims_to_headers`); the client's
//! own headers of those names are removed first, whatever the outcome, so none can be forged.
//! The `Authorization` header is removed too unless `forward: true` (Envoy's `forward`).
//!
//! Keys are the conf's own (`jwks_file`, `keys`) or an identity provider's (`remote_jwks`, see
//! `jwt_remote`): a token whose `kid` no key has asks for a refetch, and is answered from the
//! keys at hand.

use super::jwt_cache::{Lookup, TokenCache};
use super::jwt_keys::{self, InlineKey, KeySet};
use super::jwt_remote::{RemoteConf, RemoteJwks};
use crate::config::duration;
use crate::proxy::filter::{Answer, Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use pingora::http::RequestHeader;
use pingora::Result;
use prometheus::IntCounter;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// `{ name: jwt, jwks_file, keys, remote_jwks, issuer, audiences, leeway, claims_to_headers,
/// forward, realm, cache_size }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    /// Read into a `RemoteConf` by the factory, so that its errors name `remote_jwks`.
    #[serde(default)]
    remote_jwks: Option<serde_yaml::Value>,
    #[serde(default)]
    keys: Vec<InlineKey>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway: String,
    #[serde(default)]
    claims_to_headers: Vec<ClaimHeader>,
    #[serde(default)]
    forward: bool,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default = "default_cache_size")]
    cache_size: u64,
}

fn default_cache_size() -> u64 {
    10_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimHeader {
    claim: String,
    header: String,
}

fn default_leeway() -> String {
    "60s".into()
}

fn default_realm() -> String {
    "headway".into()
}

/// Where a filter's keys come from.
enum Keys {
    /// The conf's own: read when the filter is built.
    Fixed(KeySet),
    /// An identity provider's, fetched in the background.
    Remote(Arc<RemoteJwks>),
}

/// Every algorithm a key may verify (`jsonwebtoken` checks a token's `alg` against its
/// validation's).
const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a token was refused: the `error_description` (fixed texts only), and whether a key the
/// set lacks might have verified it (a remote set is then fetched again).
type Refusal = (&'static str, bool);

/// Verifies bearer tokens; forwards chosen claims.
pub struct Jwt {
    keys: Keys,
    /// One validation per algorithm.
    validations: Vec<(Algorithm, Validation)>,
    claims: Vec<(String, HeaderName)>,
    forward: bool,
    realm: String,
    denied: IntCounter,
    /// Tokens verified already (`cache_size: 0`: none kept).
    cache: Option<TokenCache>,
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    let keys = match &conf.remote_jwks {
        Some(_) if conf.jwks_file.is_some() || !conf.keys.is_empty() => {
            return Err(
                "remote_jwks: not with `jwks_file` or `keys`: a filter's keys come from one place"
                    .into(),
            );
        }
        Some(remote) => {
            let remote: RemoteConf =
                serde_yaml::from_value(remote.clone()).map_err(|e| format!("remote_jwks: {e}"))?;
            Keys::Remote(RemoteJwks::build(setup, &remote)?)
        }
        None => Keys::Fixed(KeySet {
            keys: jwt_keys::load(conf.jwks_file.as_deref(), &conf.keys)?,
            serial: 0,
        }),
    };
    let leeway = duration::parse(&conf.leeway).map_err(|e| format!("leeway: {e}"))?;
    if conf.realm.contains(['"', '\\']) || HeaderValue::from_str(&conf.realm).is_err() {
        return Err("realm: printable text without `\"` or `\\`".into());
    }
    if conf.issuer.as_deref() == Some("") {
        return Err("issuer: empty".into());
    }
    let mut claims = Vec::new();
    for (i, c) in conf.claims_to_headers.iter().enumerate() {
        let header = HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| {
            format!(
                "claims_to_headers[{i}].header: `{}` is not a header name",
                c.header
            )
        })?;
        claims.push((c.claim.clone(), header));
    }
    let mut validations: Vec<(Algorithm, Validation)> = Vec::new();
    for alg in ALGORITHMS {
        let mut v = Validation::new(alg);
        v.leeway = leeway.as_secs();
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &conf.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        if conf.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&conf.audiences);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        validations.push((alg, v));
    }
    Ok(Arc::new(Jwt {
        keys,
        validations,
        claims,
        forward: conf.forward,
        realm: conf.realm,
        denied: setup.counter("denied"),
        cache: (conf.cache_size > 0).then(|| TokenCache::new(conf.cache_size, leeway)),
    }))
}

/// Why a token was refused: the `error_description`, fixed texts only.
fn description(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidAudience => "the token is for another audience",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidSignature => "the signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
        _ => "the token is malformed",
    }
}

impl Jwt {
    /// The claims of a token valid under `set`, or why it is not.
    fn verify(&self, token: &str, set: &KeySet) -> Result<Map<String, Value>, Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| ("the token is malformed", false))?;
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
            .filter(|_| set.keys.iter().any(|k| k.alg == header.alg))
            .map(|(_, v)| v)
            .ok_or(("no key of this route verifies the token's algorithm", true))?;
        let mut outcome = Err(("no key of this route has the token's kid", true));
        let candidates = set.keys.iter().filter(|k| {
            k.alg == header.alg && (k.kid.is_none() || header.kid.is_none() || k.kid == header.kid)
        });
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                // A later key may be the one that signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {
                    outcome = Err((description(e.kind()), false));
                }
                // The signature verified: what is wrong is the token, not the key.
                Err(e) => return Err((description(e.kind()), false)),
            }
        }
        outcome
    }

    fn refuse(&self, error: Option<&str>) -> Flow {
        self.denied.inc();
        let (challenge, body) = match error {
            None => (
                format!("Bearer realm=\"{}\"", self.realm),
                "a bearer token is required\n".to_owned(),
            ),
            Some(why) => (
                format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{why}\"",
                    self.realm
                ),
                format!("invalid token: {why}\n"),
            ),
        };
        let mut answer = Answer::new(401, body);
        // Both texts are checked or fixed: this cannot fail, and if it did the 401 stands.
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            answer = answer.header(WWW_AUTHENTICATE, v);
        }
        Flow::Respond(answer)
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(req: &RequestHeader) -> Option<&str> {
    let mut values = req.headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A claim as a header value: strings as they are, numbers and booleans as JSON writes them;
/// arrays and objects are not forwarded.
fn claim_value(v: &Value) -> Option<HeaderValue> {
    match v {
        Value::String(s) => HeaderValue::from_str(s).ok(),
        Value::Number(_) | Value::Bool(_) => HeaderValue::from_str(&v.to_string()).ok(),
        _ => None,
    }
}

#[async_trait]
impl Filter for Jwt {
    async fn on_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<Flow> {
        for (_, header) in &self.claims {
            req.remove_header(header);
        }
        let Some(token) = bearer(req) else {
            return Ok(self.refuse(None));
        };
        let remote_set;
        let set = match &self.keys {
            Keys::Fixed(set) => set,
            Keys::Remote(remote) => {
                remote_set = remote.keys();
                &**remote_set
            }
        };
        let cached = self.cache.as_ref().map(|c| c.get(token, set.serial));
        let fresh;
        let headers: &[(HeaderName, HeaderValue)] = match &cached {
            Some(Lookup::Valid(verified)) => &verified.headers,
            Some(Lookup::Expired) => return Ok(self.refuse(Some("the token has expired"))),
            Some(Lookup::Unknown) | None => {
                let claims = match self.verify(token, set) {
                    Ok(claims) => claims,
                    Err((why, no_key)) => {
                        if let (true, Keys::Remote(remote)) = (no_key, &self.keys) {
                            remote.unknown_key();
                        }
                        return Ok(self.refuse(Some(why)));
                    }
                };
                let headers: Vec<(HeaderName, HeaderValue)> = self
                    .claims
                    .iter()
                    .filter_map(|(claim, header)| {
                        Some((header.clone(), claims.get(claim).and_then(claim_value)?))
                    })
                    .collect();
                let exp = claims.get("exp").and_then(|e| {
                    e.as_u64()
                        .or_else(|| e.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                });
                if let (Some(cache), Some(exp)) = (&self.cache, exp) {
                    cache.insert(token, exp, set.serial, headers.clone());
                }
                fresh = headers;
                &fresh
            }
        };
        for (header, value) in headers {
            req.insert_header(header.clone(), value.clone())?;
        }
        if !self.forward {
            req.remove_header(&AUTHORIZATION);
        }
        Ok(Flow::Continue)
    }
}
