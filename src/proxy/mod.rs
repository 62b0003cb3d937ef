//! The request path: route, run the route's filters, pick a ready backend, retry elsewhere,
//! answer failures, log.
//!
//! [`Proxy`] is the gateway's pingora `ProxyHttp`; its hooks (`hooks.rs`) stay thin and call
//! into one file per job: the request's context, HTTP/1 hygiene, headers, the retry decision,
//! the gateway's own answers, the router, the filters and the access log.

pub mod access_log;
mod answers;
mod attempt;
mod context;
mod failures;
pub mod filter;
mod headers;
mod hooks;
mod http1;
mod logging;
mod mirror;
mod retry;
mod route;
pub mod route_index;
pub mod route_match;
pub mod router;
mod routing;
mod split;
mod xfcc;

pub use context::RequestCtx;

use crate::config::Gateway as GatewayConfig;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::upstream::Clusters;
use access_log::Entry;
use arc_swap::ArcSwap;
use filter::Registry;
pub use routing::filter_chains;
use routing::Routing;
use std::sync::Arc;

/// The path of the listener self-check (see [`Proxy::self_check_token`]).
pub const SELF_CHECK_PATH: &str = "/.well-known/headway/self-check";
/// The header carrying the self-check's token.
pub const SELF_CHECK_HEADER: &str = "x-headway-self-check";

/// The gateway's `ProxyHttp`. Cheap to clone: the listener keeps one for the answers pingora
/// gives before the proxy's hooks run, the reloader one to swap its routing.
#[derive(Clone)]
pub struct Proxy {
    /// The routing requests start on now; each request keeps the one it started on.
    current: Arc<ArcSwap<Routing>>,
    lifecycle: Arc<Lifecycle>,
    /// A per-process secret: the proxy answers a request carrying it with 204, so the
    /// listener check knows it reached this process and not another one on the same port.
    self_check: Arc<str>,
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
        let routing = Routing::new(config, clusters, metrics, registry, None)?;
        Ok(Proxy {
            current: Arc::new(ArcSwap::from_pointee(routing)),
            lifecycle,
            self_check: format!("{:032x}", fastrand::u128(..)).into(),
        })
    }

    /// Starts the background tasks of the routes' filters (see `FilterSetup::spawn`) on the
    /// tokio runtime this is called on, once the server runs; returns how many started.
    pub fn start_filter_tasks(&self) -> usize {
        self.current.load().tasks.start()
    }

    /// How many background tasks of the routes' filters wait to be started.
    pub fn pending_filter_tasks(&self) -> usize {
        self.current.load().tasks.pending()
    }

    /// Builds the routing of `config` over `clusters` (keeping the access log when its conf is
    /// unchanged) and makes it the one new requests start on; requests already started finish
    /// on theirs; its filters' background tasks start (on the runtime this is called on).
    /// Nothing changes when it fails: every problem, each with its path.
    pub fn reload(
        &self,
        config: &GatewayConfig,
        clusters: Arc<Clusters>,
        metrics: &Metrics,
        registry: &Registry,
    ) -> Result<(), Vec<String>> {
        let old = self.current.load_full();
        let routing = Routing::new(config, clusters, metrics, registry, Some(&old))?;
        routing.tasks.start();
        self.current.store(Arc::new(routing));
        Ok(())
    }

    /// Writes every queued access-log line (waiting for the log's writer, 2 s at most): at exit.
    pub fn flush_access_log(&self) {
        self.current.load().access_log.flush();
    }

    /// The token of the listener self-check: a request to [`SELF_CHECK_PATH`] with it in
    /// [`SELF_CHECK_HEADER`] gets 204 from this process only.
    pub fn self_check_token(&self) -> &str {
        &self.self_check
    }

    /// Logs and counts an answer given before the proxy's hooks ran (pingora's parser 400, the
    /// listener's 408): no route, method or path is known for it.
    pub fn log_own_answer(&self, status: u16, client: Option<std::net::IpAddr>, why: &str) {
        let routing = self.current.load();
        routing.unrouted.count(status, None);
        if !routing.access_log.enabled() {
            return;
        }
        let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        routing.access_log.write(&Entry {
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
