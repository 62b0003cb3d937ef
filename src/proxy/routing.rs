//! One conf's request path: its routes, their filters and clusters, its counters and its access
//! log. A reload swaps it whole; a request keeps the one it started on.

use super::access_log::AccessLog;
use super::filter::{Build, Chain, Kept, Reach, Registry, Tasks};
use super::mirror::Mirrors;
use super::router::Router;
use crate::config::{Cidr, Gateway as GatewayConfig, RequestLimits};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Clusters;
use std::sync::Arc;

/// What the hooks read of the conf, for one request.
pub(super) struct Routing {
    pub(super) clusters: Arc<Clusters>,
    pub(super) router: Router,
    /// Each route's filters, in the router's order; None for a route without any.
    pub(super) filters: Vec<Option<Chain>>,
    /// Request counters per route, in the router's order.
    pub(super) route_metrics: Vec<RouteMetrics>,
    /// Request counters of requests that matched no route.
    pub(super) unrouted: RouteMetrics,
    /// Each route's shadow clusters (`mirror`), in the router's order.
    pub(super) mirrors: Mirrors,
    pub(super) access_log: Arc<AccessLog>,
    access_log_conf: crate::config::AccessLogConfig,
    pub(super) limits: RequestLimits,
    pub(super) trusted_proxies: Vec<Cidr>,
    /// What the filters keep across a reload (see `FilterSetup::keep`).
    kept: Kept,
    /// The filters' background tasks, until the routing is served (see `FilterSetup::spawn`).
    pub(super) tasks: Tasks,
}

impl Routing {
    /// `config`'s routing over `clusters`; `previous`'s access log is kept when the log's conf
    /// did not change (its writer thread and file stay).
    pub(super) fn new(
        config: &GatewayConfig,
        clusters: Arc<Clusters>,
        metrics: &Metrics,
        registry: &Registry,
        previous: Option<&Routing>,
    ) -> Result<Routing, Vec<String>> {
        let build = Build::new(
            previous.map(|p| &p.kept),
            &metrics.filters,
            Reach::Running(&clusters),
        );
        let filters = chains(config, registry, &build)?;
        let (kept, tasks) = build.finish();
        let router = Router::new(&config.routes, |name| {
            config.clusters.iter().position(|c| c.name == name)
        });
        let route_metrics: Vec<RouteMetrics> = (0..router.len())
            .map(|i| {
                let cluster = router
                    .cluster_of(i)
                    .and_then(|c| clusters.get(c))
                    .map_or("direct", |c| c.name());
                metrics.route(cluster, &router.describe(i))
            })
            .collect();
        let mirrors = Mirrors::new(&router, &clusters, &metrics.mirrors);
        let unrouted = metrics.route(crate::metrics::NO_CLUSTER, crate::metrics::NO_ROUTE);
        let access_log = match previous {
            Some(p) if p.access_log_conf == config.access_log => p.access_log.clone(),
            _ => Arc::new(
                AccessLog::open(&config.access_log)
                    .map_err(|e| vec![e])?
                    .counting_drops_in(metrics.access_log_dropped.clone()),
            ),
        };
        // The dashboard shows the routes served from now on, the unrouted requests last.
        metrics.route_windows.publish(
            route_metrics
                .iter()
                .chain([&unrouted])
                .map(|m| m.window.clone())
                .collect(),
        );
        Ok(Routing {
            clusters,
            router,
            filters,
            route_metrics,
            unrouted,
            mirrors,
            access_log,
            access_log_conf: config.access_log.clone(),
            limits: config.limits,
            trusted_proxies: config.trusted_proxies.clone(),
            kept,
            tasks,
        })
    }
}

/// Every route's filters (None for a route without any), or every error of every route.
/// `metrics` gets the filters' counters; None when the conf is only being checked.
pub fn filter_chains(
    config: &GatewayConfig,
    registry: &Registry,
    metrics: Option<&Metrics>,
) -> Result<Vec<Option<Chain>>, Vec<String>> {
    let scratch;
    let series = match metrics {
        Some(m) => &m.filters,
        None => {
            scratch =
                crate::metrics::filters::FilterSeries::new().map_err(|e| vec![e.to_string()])?;
            &scratch
        }
    };
    chains(
        config,
        registry,
        &Build::new(None, series, Reach::Checked(&config.clusters)),
    )
}

fn chains(
    config: &GatewayConfig,
    registry: &Registry,
    build: &Build<'_>,
) -> Result<Vec<Option<Chain>>, Vec<String>> {
    let mut chains = Vec::with_capacity(config.routes.len());
    let mut errors = Vec::new();
    for route in &config.routes {
        match super::filter::chain(registry, route, build) {
            Ok(chain) => chains.push((!chain.is_empty()).then_some(chain)),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(chains)
    } else {
        Err(errors)
    }
}
