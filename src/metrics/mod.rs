//! Prometheus metrics. Series are created once, at start-up, per cluster and per route, so the
//! request path only increments counters it already holds (no label lookups, no locks).

use crate::window::{RouteWindow, RouteWindows};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets in seconds, from 100 µs (a loopback hop) to 15 s (the default timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 15.0,
];

/// Status classes a request can end with; `none` when no response reached the client.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
/// The `route` and `cluster` labels of requests that matched no route (404, or refused before
/// routing); a route's own label starts with `/`, `=` or `~`.
pub const NO_ROUTE: &str = "no_route";
#[allow(missing_docs)]
pub const NO_CLUSTER: &str = "none";

/// Every headway series, in a registry of its own; `/metrics` encodes it with pingora's. A
/// field is public where code outside the request path sets it (gauges set at scrape time,
/// counters handed to a listener or a thread).
pub struct Metrics {
    registry: Registry,
    /// The TLS listeners' series.
    pub tls: tls::TlsMetrics,
    requests: IntCounterVec,
    /// `headway_route_cluster_requests_total{route, cluster}`: a split route's picks.
    pub split_picks: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    retries: IntCounterVec,
    connect_failures: IntCounterVec,
    tunnel_timeouts: IntCounterVec,
    upstream_tls_errors: IntCounterVec,
    health_transitions: IntCounterVec,
    dns_refreshes: IntCounterVec,
    ejections: IntCounterVec,
    retry_budget_exhausted: IntCounterVec,
    overflows: IntCounterVec,
    panic: IntGaugeVec,
    /// `headway_dns_stale{cluster}`: 1 while the cluster's DNS has failed for over three
    /// refresh intervals, so its backends may be out of date; set at scrape time.
    pub dns_stale: IntGaugeVec,
    /// `headway_client_header_timeouts_total`: client connections closed for not sending
    /// complete request headers within `request_headers_timeout`.
    pub client_header_timeouts: IntCounter,
    /// `headway_panics_total`: panics in any of the gateway's threads (see
    /// [`Metrics::count_panics`]): each is a bug.
    pub panics: IntCounter,
    /// `headway_access_log_dropped_total`: access-log lines dropped because its writer thread
    /// fell behind (see [`crate::proxy::access_log`]).
    pub access_log_dropped: IntCounter,
    /// `headway_filter_events_total` and `headway_filter_event_timestamp_seconds` (see
    /// [`filters::FilterSeries`]).
    pub filters: filters::FilterSeries,
    /// `headway_mirror_requests_total{route, cluster, result}` (see [`mirror::MirrorSeries`]).
    pub mirrors: mirror::MirrorSeries,
    /// `headway_reloads_total{result}`: confs re-read in place (SIGHUP, `POST /reload`), by
    /// result: `ok` (swapped in) or `error` (refused, the old conf kept serving).
    pub reloads: IntCounterVec,
    /// `headway_conf_info{hash}`: 1 for the conf served (its XXH3-64), set at scrape time.
    pub conf_info: IntGaugeVec,
    /// `headway_conf_loaded_timestamp_seconds`: when the conf served was loaded.
    pub conf_loaded: prometheus::Gauge,
    /// `headway_parked_connections`: idle kept-alive client connections parked (see
    /// [`crate::server::client_limits`]).
    pub parked_connections: prometheus::IntGauge,
    /// `headway_open_connections`: client connections open on the proxy listeners.
    pub open_connections: prometheus::IntGauge,
    /// The routes of the conf served and their last minute, for the dashboard (not a series).
    pub route_windows: RouteWindows,
    /// `headway_parking_budget`: how many idle connections may be parked, a quarter of the
    /// open-files limit.
    pub parking_budget: prometheus::IntGauge,
    /// `headway_cluster_backends{cluster}`: backends discovered now; set at scrape time.
    pub backends: IntGaugeVec,
    /// `headway_cluster_healthy_backends{cluster}`: backends getting traffic now (healthy,
    /// not ejected); set at scrape time.
    pub healthy_backends: IntGaugeVec,
    /// `headway_dns_last_success_age_seconds{cluster}`: seconds since the cluster's name last
    /// got an answer, -1 if never; set at scrape time.
    pub dns_last_success_age: prometheus::GaugeVec,
    /// `headway_dns_consecutive_failures{cluster}`: resolver failures in a row; set at scrape
    /// time.
    pub dns_consecutive_failures: IntGaugeVec,
}

/// One cluster's series, each with its `cluster` label set, made once at start-up.
pub struct ClusterMetrics {
    /// `headway_request_duration_seconds`: from the request's arrival to the end of its
    /// response.
    pub request_duration: Histogram,
    /// `headway_upstream_response_seconds`: from the first upstream attempt to the upstream's
    /// response headers.
    pub upstream_duration: Histogram,
    /// `headway_upstream_retries_total`: further attempts made on another backend.
    pub retries: IntCounter,
    /// `headway_upstream_connect_failures_total`: failed connection attempts to backends.
    pub connect_failures: IntCounter,
    /// `headway_tunnel_idle_timeouts_total`: upgraded connections (WebSocket) closed after
    /// `tunnel_timeout` without traffic.
    pub tunnel_timeouts: IntCounter,
    /// `headway_upstream_tls_errors_total{cluster, reason}`: made per reason by
    /// [`crate::upstream::tls`], only for clusters that speak TLS.
    pub tls_errors: IntCounterVec,
    /// `headway_health_transitions_total{to="healthy"}`: backends marked up by the probes.
    pub became_healthy: IntCounter,
    /// `headway_health_transitions_total{to="unhealthy"}`: backends marked down by the probes.
    pub became_unhealthy: IntCounter,
    /// `headway_dns_refreshes_total{result="answer"}`: refreshes that got addresses.
    pub dns_answer: IntCounter,
    /// `headway_dns_refreshes_total{result="empty"}`: refreshes that got NXDOMAIN or no
    /// records.
    pub dns_empty: IntCounter,
    /// `headway_dns_refreshes_total{result="error"}`: refreshes the resolver failed.
    pub dns_error: IntCounter,
    /// `headway_outlier_ejections_total`: backends ejected by passive health.
    pub ejections: IntCounter,
    /// `headway_retry_budget_exhausted_total`: retries not made because the retry budget was
    /// used up.
    pub retry_budget_exhausted: IntCounter,
    /// `headway_circuit_breaker_overflows_total`: requests refused by a circuit breaker, by
    /// `limit`: `max_requests`, `max_pending_requests`, `max_connections`, in this order.
    pub overflows: [IntCounter; 3],
    /// `headway_cluster_panic_mode`: 1 while too few backends are healthy and traffic goes to
    /// every probed backend (`healthy_panic_threshold`).
    pub panic: prometheus::IntGauge,
}

/// Requests of one (cluster, route), by status class, and its last minute for the dashboard.
pub struct RouteMetrics {
    by_class: [IntCounter; 6],
    /// The route's last minute (see [`crate::window`]).
    pub window: RouteWindow,
}

impl RouteMetrics {
    /// Counts one request that ended with `status` (0: no response was sent) after `latency`
    /// (None: an answer given before the proxy's hooks ran); a 5xx or no response is an
    /// error in the route's window.
    pub fn count(&self, status: u16, latency: Option<std::time::Duration>) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.by_class[class].inc();
        self.window.window.record(1, u32::from(class >= 4), latency);
    }
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts, labels)?)
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Fails only on a definition error (a bad name, a duplicate series): a bug that
    /// `every_series_registers_and_encodes` catches.
    pub fn new() -> prometheus::Result<Metrics> {
        let r = Registry::new();
        Ok(Metrics {
            tls: tls::TlsMetrics::new(&r)?,
            requests: counter_vec(
                &r,
                "headway_requests_total",
                "Requests by cluster, route prefix and status class.",
                &["cluster", "route", "code"],
            )?,
            split_picks: counter_vec(
                &r,
                "headway_route_cluster_requests_total",
                "Requests of a route with `clusters`, by route and the cluster picked.",
                &["route", "cluster"],
            )?,
            request_duration: histogram_vec(
                &r,
                "headway_request_duration_seconds",
                "Time from the request's arrival to the end of its response, per cluster.",
                &["cluster"],
            )?,
            upstream_duration: histogram_vec(
                &r,
                "headway_upstream_response_seconds",
                "Time from the first upstream attempt to the upstream's response headers, per cluster.",
                &["cluster"],
            )?,
            retries: counter_vec(
                &r,
                "headway_upstream_retries_total",
                "Further attempts made on another backend, per cluster.",
                &["cluster"],
            )?,
            connect_failures: counter_vec(
                &r,
                "headway_upstream_connect_failures_total",
                "Failed connection attempts to backends, per cluster.",
                &["cluster"],
            )?,
            upstream_tls_errors: counter_vec(
                &r,
                "headway_upstream_tls_errors_total",
                "Failed TLS handshakes with backends, per cluster and reason.",
                &["cluster", "reason"],
            )?,
            tunnel_timeouts: counter_vec(
                &r,
                "headway_tunnel_idle_timeouts_total",
                "Upgraded connections (WebSocket) closed after tunnel_timeout without traffic, per cluster.",
                &["cluster"],
            )?,
            health_transitions: counter_vec(
                &r,
                "headway_health_transitions_total",
                "Backends that crossed a health threshold, per cluster and direction.",
                &["cluster", "to"],
            )?,
            dns_refreshes: counter_vec(
                &r,
                "headway_dns_refreshes_total",
                "DNS refreshes per cluster by result: answer, empty (NXDOMAIN or no records) or error.",
                &["cluster", "result"],
            )?,
            ejections: counter_vec(
                &r,
                "headway_outlier_ejections_total",
                "Backends ejected by passive health (failures in a row), per cluster.",
                &["cluster"],
            )?,
            retry_budget_exhausted: counter_vec(
                &r,
                "headway_retry_budget_exhausted_total",
                "Retries not made because the cluster's retry budget was used up.",
                &["cluster"],
            )?,
            overflows: counter_vec(
                &r,
                "headway_circuit_breaker_overflows_total",
                "Requests answered 503 at once because a circuit breaker limit was reached.",
                &["cluster", "limit"],
            )?,
            panic: gauge_vec(
                &r,
                "headway_cluster_panic_mode",
                "1 while too few backends are healthy and traffic goes to all probed backends.",
                &["cluster"],
            )?,
            dns_stale: gauge_vec(
                &r,
                "headway_dns_stale",
                "1 while the cluster's DNS has failed for long enough that its backends are stale.",
                &["cluster"],
            )?,
            client_header_timeouts: register(
                &r,
                IntCounter::new(
                    "headway_client_header_timeouts_total",
                    "Client connections closed for not sending complete request headers in time.",
                )?,
            )?,
            filters: filters::FilterSeries::new()?.registered(&r)?,
            mirrors: mirror::MirrorSeries::registered(&r)?,
            panics: register(
                &r,
                IntCounter::new(
                    "headway_panics_total",
                    "Panics in the gateway's threads; each one is a bug (a request task's panic drops its client).",
                )?,
            )?,
            conf_info: gauge_vec(
                &r,
                "headway_conf_info",
                "1 for the conf the gateway serves, by the hash of its file (XXH3-64).",
                &["hash"],
            )?,
            conf_loaded: register(
                &r,
                prometheus::Gauge::new(
                    "headway_conf_loaded_timestamp_seconds",
                    "When the conf the gateway serves was loaded (at start or by a reload).",
                )?,
            )?,
            reloads: counter_vec(
                &r,
                "headway_reloads_total",
                "Confs re-read in place (SIGHUP, POST /reload), by result: ok or error.",
                &["result"],
            )?,
            access_log_dropped: register(
                &r,
                IntCounter::new(
                    "headway_access_log_dropped_total",
                    "Access-log lines dropped because the log's writer fell behind.",
                )?,
            )?,
            parked_connections: register(
                &r,
                prometheus::IntGauge::new(
                    "headway_parked_connections",
                    "Idle kept-alive client connections waiting without a request state.",
                )?,
            )?,
            open_connections: register(
                &r,
                prometheus::IntGauge::new(
                    "headway_open_connections",
                    "Client connections open on the proxy listeners.",
                )?,
            )?,
            route_windows: RouteWindows::default(),
            parking_budget: register(
                &r,
                prometheus::IntGauge::new(
                    "headway_parking_budget",
                    "How many idle connections may be parked: a quarter of the open-files limit.",
                )?,
            )?,
            backends: gauge_vec(
                &r,
                "headway_cluster_backends",
                "Backends currently discovered, per cluster.",
                &["cluster"],
            )?,
            healthy_backends: gauge_vec(
                &r,
                "headway_cluster_healthy_backends",
                "Backends currently getting traffic, per cluster.",
                &["cluster"],
            )?,
            dns_last_success_age: register(
                &r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "headway_dns_last_success_age_seconds",
                        "Seconds since the cluster's name last got an answer (-1: never).",
                    ),
                    &["cluster"],
                )?,
            )?,
            dns_consecutive_failures: gauge_vec(
                &r,
                "headway_dns_consecutive_failures",
                "Resolver failures in a row, per cluster (0 once an answer arrives).",
                &["cluster"],
            )?,
            registry: r,
        })
    }

    /// Counts every panic from now on in `headway_panics_total`, then reports it as before
    /// (the default hook's `thread '…' panicked at …` line on stderr). tokio contains a panic in
    /// a request task, so the gateway runs on, but that request's client gets no answer.
    pub fn count_panics(&self) {
        let panics = self.panics.clone();
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.inc();
            report(info);
        }));
    }

    /// The series of the cluster named `cluster`; called once per cluster at start-up.
    pub fn cluster(&self, cluster: &str) -> ClusterMetrics {
        let c = [cluster];
        ClusterMetrics {
            request_duration: self.request_duration.with_label_values(&c),
            upstream_duration: self.upstream_duration.with_label_values(&c),
            retries: self.retries.with_label_values(&c),
            connect_failures: self.connect_failures.with_label_values(&c),
            tunnel_timeouts: self.tunnel_timeouts.with_label_values(&c),
            tls_errors: self.upstream_tls_errors.clone(),
            became_healthy: self
                .health_transitions
                .with_label_values(&[cluster, "healthy"]),
            became_unhealthy: self
                .health_transitions
                .with_label_values(&[cluster, "unhealthy"]),
            dns_answer: self.dns_refreshes.with_label_values(&[cluster, "answer"]),
            dns_empty: self.dns_refreshes.with_label_values(&[cluster, "empty"]),
            dns_error: self.dns_refreshes.with_label_values(&[cluster, "error"]),
            ejections: self.ejections.with_label_values(&c),
            retry_budget_exhausted: self.retry_budget_exhausted.with_label_values(&c),
            overflows: ["max_requests", "max_pending_requests", "max_connections"]
                .map(|limit| self.overflows.with_label_values(&[cluster, limit])),
            panic: self.panic.with_label_values(&c),
        }
    }

    /// `cluster` and `route` are `none` for requests that matched no route.
    pub fn route(&self, cluster: &str, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_class: CLASSES
                .map(|class| self.requests.with_label_values(&[cluster, route, class])),
            window: self.route_windows.window(cluster, route),
        }
    }

    /// Every series in Prometheus' text format, followed by pingora's own (default registry).
    pub fn encode(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            log::error!("metrics: cannot encode: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

pub mod filters;
pub mod mirror;
#[cfg(test)]
mod tests;
mod tls;
