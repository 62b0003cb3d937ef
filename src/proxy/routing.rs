//! One conf's request path: its routes, their filters and clusters, its counters and its access
//! log. A reload swaps it whole; a request keeps the one it started on.

use super::access_log::AccessLog;
use super::filter::{Build, Chain, Kept, Reach, Registry, Tasks};
use super::mirror::RouteMirror;
use super::route::{ServedRoute, Target};
use super::route_match::RequestFacts;
use super::router::Router;
use super::split::WeightedClusters;
use crate::config::{Cidr, Gateway as GatewayConfig, RequestLimits, RouteAction};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Clusters;
use std::sync::Arc;

/// What the hooks read of the conf, for one request.
pub(super) struct Routing {
    router: Router,
    /// Each route of the router's table, at its index there.
    pub(super) routes: Vec<ServedRoute>,
    /// Request counters of requests that matched no route.
    pub(super) unrouted: RouteMetrics,
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
        let router = Router::new(&config.routes, |name| {
            config.clusters.iter().position(|c| c.name == name)
        });
        let routes = served_routes(&router, &clusters, metrics, registry, &build)?;
        let (kept, tasks) = build.finish();
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
            routes
                .iter()
                .map(|r| &r.metrics)
                .chain([&unrouted])
                .map(|m| m.window.clone())
                .collect(),
        );
        Ok(Routing {
            router,
            routes,
            unrouted,
            access_log,
            access_log_conf: config.access_log.clone(),
            limits: config.limits,
            trusted_proxies: config.trusted_proxies.clone(),
            kept,
            tasks,
        })
    }
}

impl Routing {
    /// The first route matching `host` and `path` (see [`Router::route`]), with its index.
    pub(super) fn route(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        request: &RequestFacts<'_>,
    ) -> Option<(usize, &ServedRoute)> {
        let index = self.router.route_request(host, path, request)?.route;
        Some((index, self.routes.get(index)?))
    }
}

/// Every route of `router`'s table as one value, at its index there, or every error of every
/// route's filters.
fn served_routes(
    router: &Router,
    clusters: &Clusters,
    metrics: &Metrics,
    registry: &Registry,
    build: &Build<'_>,
) -> Result<Vec<ServedRoute>, Vec<String>> {
    let mut routes = Vec::with_capacity(router.len());
    let mut errors = Vec::new();
    let by_name: std::collections::HashMap<&str, &Arc<crate::upstream::cluster::Cluster>> =
        clusters.iter().map(|c| (c.name(), c)).collect();
    for (i, route) in (0..router.len()).filter_map(|i| Some((i, router.get(i)?))) {
        let filters = match super::filter::chain(registry, route, build) {
            Ok(chain) => (!chain.is_empty()).then_some(chain),
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let describe = route.matcher.describe();
        let mirror = RouteMirror::new(&route.mirror, &describe, clusters, &metrics.mirrors);
        let (target, metrics) = match &route.action {
            RouteAction::Split(split) => {
                let mut series = metrics.route(&split.label(), &describe);
                let picks = |cluster: &str| {
                    metrics
                        .split_picks
                        .with_label_values(&[describe.as_str(), cluster])
                };
                let by_name = |name: &str| by_name.get(name).map(|c| Arc::clone(c));
                let Some(weighted) =
                    WeightedClusters::new(split, by_name, picks, &series.window.splits)
                else {
                    errors.push(format!(
                        "route {describe}: a cluster of its split is not running"
                    ));
                    continue;
                };
                series.window.splits = weighted.shares();
                (Target::Split(weighted), series)
            }
            _ => match router.cluster_of(i).and_then(|c| clusters.get(c)) {
                Some(cluster) => (
                    Target::Cluster(cluster.clone()),
                    metrics.route(cluster.name(), &describe),
                ),
                None => (Target::Direct, metrics.route("direct", &describe)),
            },
        };
        routes.push(ServedRoute {
            metrics,
            timeout: route.timeout,
            target,
            filters,
            mirror,
        });
    }
    if errors.is_empty() {
        Ok(routes)
    } else {
        Err(errors)
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
