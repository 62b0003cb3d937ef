//! A route's `clusters` and `sticky`: its requests split between clusters by weight, a user
//! kept on one of them by a key (Envoy: `weighted_clusters` and `hash_policy`).

use super::balancing::HashKey;
use super::errors::Errors;
use serde::Deserialize;
use std::collections::HashMap;

/// The largest sum of a route's weights: weights are `u32`, and so is their total.
pub const MAX_TOTAL_WEIGHT: u64 = u32::MAX as u64;

/// A route's `clusters`: where its requests go, in shares of the total weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The clusters in the conf's order, each with its `weight` (0: drained, gets nothing).
    pub clusters: Vec<WeightedCluster>,
    /// `sticky`: what keeps a user on one cluster while the weights stay; None (the default):
    /// each request is picked at random by weight.
    pub sticky: Option<HashKey>,
}

/// One entry of a route's `clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    /// `name`: a cluster of `gateway.clusters`.
    pub name: String,
    /// `weight`: its share of the route's requests over the sum of the weights; 0 drains it.
    pub weight: u32,
}

/// A route's `sticky` as the conf writes it: one of `header`, `cookie`, `client_address`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    header: Option<String>,
    cookie: Option<String>,
    client_address: Option<bool>,
}

impl Split {
    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.clusters.iter().map(|c| u64::from(c.weight)).sum()
    }

    /// The clusters' names joined by `+` (`v1+v2`): the route's `cluster` label in
    /// `headway_requests_total` and on the dashboard; weights are left out, so a reload that
    /// changes them keeps the route's series and last minute.
    pub fn label(&self) -> String {
        let names: Vec<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        names.join("+")
    }
}

/// Checks a route's `clusters` and `sticky` at `path`; `defined` holds the conf's clusters.
pub(super) fn split(
    clusters: Vec<WeightedCluster>,
    sticky: Option<RawSticky>,
    path: &str,
    defined: &HashMap<String, usize>,
    errors: &mut Errors,
) -> Option<Split> {
    let before = errors.count();
    if clusters.is_empty() {
        errors.push(format!("{path}.clusters"), "name at least one cluster");
    }
    for (i, c) in clusters.iter().enumerate() {
        if !defined.contains_key(&c.name) {
            let mut names: Vec<&str> = defined.keys().map(String::as_str).collect();
            names.sort_unstable();
            errors.push(
                format!("{path}.clusters[{i}].name"),
                format!(
                    "unknown cluster `{}`{} (defined: {})",
                    c.name,
                    super::errors::did_you_mean(&c.name, names.iter().copied()),
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
        if clusters[..i].iter().any(|earlier| earlier.name == c.name) {
            errors.push(
                format!("{path}.clusters[{i}].name"),
                format!("`{}` is named twice: give it one weight", c.name),
            );
        }
    }
    let split = Split {
        sticky: sticky.and_then(|s| sticky_key(s, &format!("{path}.sticky"), errors)),
        clusters,
    };
    let total = split.total();
    if total == 0 && !split.clusters.is_empty() {
        errors.push(
            format!("{path}.clusters"),
            "every weight is 0: at least one cluster must take requests",
        );
    }
    if total > MAX_TOTAL_WEIGHT {
        errors.push(
            format!("{path}.clusters"),
            format!("the weights add up to {total}, more than {MAX_TOTAL_WEIGHT}"),
        );
    }
    (errors.count() == before).then_some(split)
}

/// `sticky`'s key, read as `hash_policy` reads its keys.
fn sticky_key(raw: RawSticky, path: &str, errors: &mut Errors) -> Option<HashKey> {
    let key = HashKey::one_of(raw.header, raw.cookie, raw.client_address);
    if key.is_none() {
        errors.push(
            path,
            "give exactly one of: header: <name>, cookie: <name>, client_address: true",
        );
    }
    key
}
