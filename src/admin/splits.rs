//! Each split route's shares, as `/stats`, `/clusters` and the dashboard show them: the weights
//! configured and the share each cluster was picked for in the last minute.

use crate::metrics::Metrics;
use serde::Serialize;

/// A route with `clusters`.
#[derive(Debug, Serialize)]
pub struct RouteSplit {
    /// The route as `/metrics` labels it.
    pub route: String,
    /// Its clusters, in the conf's order.
    pub clusters: Vec<SplitShare>,
}

/// One cluster of a split route.
#[derive(Debug, Serialize)]
pub struct SplitShare {
    /// The cluster's name.
    pub cluster: String,
    /// Its `weight` in the conf served.
    pub weight: u32,
    /// Its weight over the route's total, in percent.
    pub configured_percent: f64,
    /// The requests it was picked for in the last 60 s.
    pub requests_last_minute: u64,
    /// Their share of the route's picks in the last 60 s, in percent; None before any.
    pub realised_percent: Option<f64>,
}

/// Every split route of the conf served, in its order.
pub fn splits(metrics: &Metrics) -> Vec<RouteSplit> {
    let percent = |part: f64, whole: f64| (part * 10_000.0 / whole).round() / 100.0;
    metrics
        .route_windows
        .splits()
        .into_iter()
        .map(|(route, shares)| {
            let shares: Vec<(String, u32, u64)> = shares
                .into_iter()
                .map(|s| (s.cluster, s.weight, s.window.summary().requests))
                .collect();
            let weights: f64 = shares.iter().map(|s| f64::from(s.1)).sum();
            let picks: u64 = shares.iter().map(|s| s.2).sum();
            let clusters = shares
                .into_iter()
                .map(|(cluster, weight, requests)| SplitShare {
                    cluster,
                    weight,
                    configured_percent: percent(f64::from(weight), weights.max(1.0)),
                    requests_last_minute: requests,
                    realised_percent: (picks > 0).then(|| percent(requests as f64, picks as f64)),
                })
                .collect();
            RouteSplit { route, clusters }
        })
        .collect()
}
