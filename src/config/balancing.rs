//! A cluster's `lb_policy` and `hash_policy`: how a backend is picked for a request.

use super::choices::LbPolicy;
use super::errors::Errors;
use serde::Deserialize;

/// One entry of a cluster's `hash_policy`: what a consistent-hashing policy hashes on
/// (Envoy: `route.hash_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawHashPolicy")]
pub enum HashKey {
    /// A request header's value (name lowercase).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    SourceIp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHashPolicy {
    header: Option<String>,
    cookie: Option<String>,
    source_ip: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("give exactly one of: header: <name>, cookie: <name>, source_ip: true")]
pub struct NotOneHashKey;

impl TryFrom<RawHashPolicy> for HashKey {
    type Error = NotOneHashKey;

    fn try_from(raw: RawHashPolicy) -> Result<HashKey, NotOneHashKey> {
        HashKey::one_of(raw.header, raw.cookie, raw.source_ip).ok_or(NotOneHashKey)
    }
}

impl HashKey {
    /// The one key given: a header (its name valid), a cookie (named) or the client's address
    /// (`true`); None unless exactly one is. How `hash_policy` and a route's `sticky` read theirs.
    pub(super) fn one_of(
        header: Option<String>,
        cookie: Option<String>,
        address: Option<bool>,
    ) -> Option<HashKey> {
        match (header, cookie, address) {
            (Some(h), None, None) => http::HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(|n| HashKey::Header(n.as_str().to_owned())),
            (None, Some(c), None) if !c.is_empty() => Some(HashKey::Cookie(c)),
            (None, None, Some(true)) => Some(HashKey::SourceIp),
            _ => None,
        }
    }
}

/// Only the hashing policies take a `hash_policy`. A policy left out for its own error says
/// nothing about the hash keys.
pub(super) fn hash_policy(
    lb_policy: Option<LbPolicy>,
    keys: Option<Vec<HashKey>>,
    path: &str,
    errors: &mut Errors,
) -> Vec<HashKey> {
    let Some(keys) = keys else {
        return Vec::new();
    };
    let policy_path = format!("{path}.lb_policy");
    let policy =
        lb_policy.or_else(|| (!errors.at(&policy_path)).then_some(super::defaults::LB_POLICY));
    if policy.is_some_and(|p| !p.hashes()) {
        errors.push(
            format!("{path}.hash_policy"),
            "only ring_hash and maglev hash: set lb_policy to one of them",
        );
    }
    keys
}
