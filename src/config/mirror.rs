//! `gateway.routes[].mirror[]`: copies of a route's requests sent to a shadow cluster, whose
//! answers are read and dropped (Envoy: `request_mirror_policies`).

use super::defaults;
use super::duration::{positive, ConfDuration};
use super::errors::Errors;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// One shadow of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// `cluster`: the shadow cluster's name (Envoy: `cluster`).
    pub cluster: String,
    /// `percent`: the share of requests copied, 0 to 100, fractions allowed; default 100
    /// (Envoy: `runtime_fraction`).
    pub percent: f64,
    /// `body_limit`: bytes of the request body a copy carries; default 64 KiB. A longer body
    /// is cut there (the copy's `Content-Length` says what it carries).
    pub body_limit: u64,
    /// `max_in_flight`: copies to this shadow from this route unanswered at once; default 64.
    /// More are dropped, counted as `dropped_full`.
    pub max_in_flight: u32,
    /// `timeout`: a copy's whole exchange; None (the default): the shadow cluster's `timeout`.
    pub timeout: Option<Duration>,
}

/// A `mirror` entry as the conf writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    cluster: String,
    percent: Option<f64>,
    body_limit: Option<u64>,
    max_in_flight: Option<u32>,
    timeout: Option<ConfDuration>,
}

/// Reads the `mirror` list of the route at `path`; `clusters` are the names defined.
pub(super) fn mirrors(
    raw: Vec<RawMirror>,
    path: &str,
    clusters: &HashMap<String, usize>,
    errors: &mut Errors,
) -> Vec<Mirror> {
    let mut mirrors = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let at = format!("{path}.mirror[{i}]");
        if !clusters.contains_key(&m.cluster) {
            errors.push(
                format!("{at}.cluster"),
                format!("unknown cluster `{}`", m.cluster),
            );
        }
        let percent = m.percent.unwrap_or(defaults::MIRROR_PERCENT);
        if !(0.0..=100.0).contains(&percent) {
            errors.push(
                format!("{at}.percent"),
                format!("{percent} is not a percentage (0 to 100)"),
            );
        }
        let max_in_flight = m.max_in_flight.unwrap_or(defaults::MIRROR_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            errors.push(format!("{at}.max_in_flight"), "must be at least 1");
        }
        let timeout = positive(m.timeout, &format!("{at}.timeout"), errors);
        mirrors.push(Mirror {
            cluster: m.cluster,
            percent,
            body_limit: m.body_limit.unwrap_or(defaults::MIRROR_BODY_LIMIT),
            max_in_flight,
            timeout,
        });
    }
    mirrors
}
