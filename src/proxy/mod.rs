//! The request path: route, run the route's filters, pick a ready backend, retry elsewhere,
//! answer failures, log.
//!
//! [`Proxy`] is the gateway's pingora `ProxyHttp`; its hooks (`hooks.rs`) stay thin and call
//! into one file per job: the request's context, HTTP/1 hygiene, headers, the retry decision,
//! the gateway's own answers, the router, the filters and the access log.

pub mod access_log;
mod answers;
mod context;
mod failures;
pub mod filter;
mod headers;
mod hooks;
mod http1;
mod logging;
mod retry;
pub mod router;

pub use context::RequestCtx;

use crate::config::{Cidr, Gateway as GatewayConfig, RequestLimits};
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Clusters;
use access_log::{AccessLog, Entry};
use filter::{Chain, Registry};
use router::Router;
use std::sync::Arc;

/// The path of the listener self-check (see [`Proxy::self_check_token`]).
pub const SELF_CHECK_PATH: &str = "/.well-known/headway/self-check";
/// The header carrying the self-check's token.
pub const SELF_CHECK_HEADER: &str = "x-headway-self-check";

/// The gateway's `ProxyHttp`. Cheap to clone: the listener keeps one for the answers pingora
/// gives before the proxy's hooks run.
#[derive(Clone)]
pub struct Proxy(Arc<Inner>);

struct Inner {
    clusters: Arc<Clusters>,
    router: Router,
    /// Each route's filters, in the router's order; None for a route without any.
    filters: Vec<Option<Chain>>,
    /// Request counters per route, in the router's order.
    route_metrics: Vec<RouteMetrics>,
    /// Request counters of requests that matched no route.
    unrouted: RouteMetrics,
    access_log: AccessLog,
    limits: RequestLimits,
    trusted_proxies: Vec<Cidr>,
    lifecycle: Arc<Lifecycle>,
    /// A per-process secret: the proxy answers a request carrying it with 204, so the
    /// listener check knows it reached this process and not another one on the same port.
    self_check: String,
}

impl Proxy {
    /// The proxy for `config`'s routes over `clusters`, with the filters `registry` builds.
    /// Fails with every problem of the routes' filters, each with its path.
    pub fn new(
        config: &GatewayConfig,
        clusters: Arc<Clusters>,
        metrics: &Metrics,
        registry: &Registry,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Proxy, Vec<String>> {
        let filters = filter_chains(config, registry)?;
        let router = Router::new(&config.routes, |name| {
            config.clusters.iter().position(|c| c.name == name)
        });
        let route_metrics = (0..router.len())
            .map(|i| {
                let cluster = router
                    .cluster_of(i)
                    .and_then(|c| clusters.get(c))
                    .map_or("direct", |c| c.name());
                metrics.route(cluster, &router.describe(i))
            })
            .collect();
        let unrouted = metrics.route("none", "none");
        let access_log = AccessLog::open(&config.access_log)
            .map_err(|e| vec![e])?
            .counting_drops_in(metrics.access_log_dropped.clone());
        Ok(Proxy(Arc::new(Inner {
            clusters,
            router,
            filters,
            route_metrics,
            unrouted,
            access_log,
            limits: config.limits,
            trusted_proxies: config.trusted_proxies.clone(),
            lifecycle,
            self_check: format!("{:032x}", fastrand::u128(..)),
        })))
    }

    /// The token of the listener self-check: a request to [`SELF_CHECK_PATH`] with it in
    /// [`SELF_CHECK_HEADER`] gets 204 from this process only.
    pub fn self_check_token(&self) -> &str {
        &self.0.self_check
    }

    /// Logs and counts an answer given before the proxy's hooks ran (pingora's parser 400, the
    /// listener's 408): no route, method or path is known for it.
    pub fn log_own_answer(&self, status: u16, client: Option<std::net::IpAddr>, why: &str) {
        self.0.unrouted.count(status);
        if !self.0.access_log.enabled() {
            return;
        }
        let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        self.0.access_log.write(&Entry {
            client: &client,
            method: "-",
            path: "-",
            status,
            cluster: "-",
            backend: "-",
            attempts: 0,
            upstream_ms: None,
            duration_ms: 0.0,
            request_id: "-",
            bytes_received: 0,
            bytes_sent: 0,
            error: Some(why),
        });
    }
}

/// Every route's filters (None for a route without any), or every error of every route.
pub fn filter_chains(
    config: &GatewayConfig,
    registry: &Registry,
) -> Result<Vec<Option<Chain>>, Vec<String>> {
    let mut chains = Vec::with_capacity(config.routes.len());
    let mut errors = Vec::new();
    for route in &config.routes {
        match filter::chain(registry, route) {
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
