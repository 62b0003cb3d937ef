//! `/stats`: everything the dashboard shows, as one JSON document — the gateway, each route's
//! last minute, each cluster's DNS state and backends with theirs.

use super::AdminState;
use crate::lifecycle::ActiveConf;
use crate::upstream::snapshot::ClusterSnapshot;
use crate::window::Summary;
use serde::Serialize;
use std::time::Instant;

/// The `/stats` document. Keys in this order: the gateway, its routes, its clusters.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// The process.
    pub gateway: GatewayStats,
    /// Every route of the conf served, in its order, then `no_route` (requests that matched no
    /// route: the gateway's own 404, or a refusal before routing).
    pub routes: Vec<RouteStats>,
    /// Requests a `rate_limit` could not count in its shared store (Redis), by route and
    /// reason, since the start: only those that happened.
    pub rate_limit_store_errors: Vec<StoreErrors>,
    /// Every route with `clusters`: each cluster's weight and realised share.
    pub splits: Vec<super::splits::RouteSplit>,
    /// Every certificate in use, as `/clusters` shows it.
    pub certificates: Vec<crate::certificates::CertInfo>,
    /// Every cluster as `/clusters` shows it, plus each backend's `last_minute` and the
    /// backends draining after they left DNS.
    pub clusters: Vec<ClusterSnapshot>,
}

/// The gateway process as `/stats` shows it.
#[derive(Debug, Serialize)]
pub struct GatewayStats {
    /// headway's version.
    pub version: &'static str,
    /// When this document was made (RFC 3339, UTC).
    pub now: String,
    /// Seconds since the gateway started.
    pub uptime_seconds: u64,
    /// The conf served: its hash and when it was loaded.
    pub conf: Option<ActiveConf>,
    /// Going away (SIGTERM / SIGQUIT): `/ready` answers 503.
    pub draining: bool,
    /// Client connections open on the proxy listeners.
    pub connections: i64,
    /// Of those, idle kept-alive connections parked without a request state.
    pub parked_connections: i64,
    /// How many may be parked.
    pub parking_budget: i64,
}

/// One route's last minute.
#[derive(Debug, Serialize)]
pub struct RouteStats {
    /// The route as `/metrics` labels it.
    pub route: String,
    /// Its cluster (`direct`: the route answers itself; `none` for `no_route`).
    pub cluster: String,
    /// Requests, errors (5xx or no response), rate and latency quantiles of the last 60 s.
    pub last_minute: Summary,
}

/// `headway_rate_limit_store_errors_total` of one route and reason.
#[derive(Debug, Serialize)]
pub struct StoreErrors {
    /// The route as `/metrics` labels it.
    pub route: String,
    /// Why (timeout, refused, dropped, error, connecting).
    pub reason: String,
    /// How many requests its `failure_mode` decided.
    pub count: u64,
}

/// The store errors that happened, from their counters.
fn store_errors(series: &prometheus::IntCounterVec) -> Vec<StoreErrors> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for family in series.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            let count = m.get_counter().get_value() as u64;
            if count > 0 {
                out.push(StoreErrors {
                    route: label("route"),
                    reason: label("reason"),
                    count,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.route, &a.reason).cmp(&(&b.route, &b.reason)));
    out
}

/// Everything the dashboard shows, now.
pub fn stats(state: &AdminState, started: Instant) -> Stats {
    let m = &state.metrics;
    Stats {
        gateway: GatewayStats {
            version: env!("CARGO_PKG_VERSION"),
            now: crate::rfc3339(std::time::SystemTime::now()),
            uptime_seconds: started.elapsed().as_secs(),
            conf: state.lifecycle.conf(),
            draining: state.lifecycle.is_draining(),
            connections: m.open_connections.get(),
            parked_connections: m.parked_connections.get(),
            parking_budget: m.parking_budget.get(),
        },
        routes: m
            .route_windows
            .summaries()
            .into_iter()
            .map(|(route, cluster, last_minute)| RouteStats {
                route,
                cluster,
                last_minute,
            })
            .collect(),
        rate_limit_store_errors: store_errors(&m.filters.store_errors),
        splits: super::splits::splits(m),
        certificates: super::certificates_in_use(state),
        clusters: state.clusters.load().iter().map(|c| c.stats()).collect(),
    }
}
