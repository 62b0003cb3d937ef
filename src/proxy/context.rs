//! What the proxy keeps for one request from hook to hook.

use super::attempt::Attempt;
use super::filter::{Chain, Context};
use super::headers::RequestId;
use super::route::ServedRoute;
use super::routing::Routing;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state. The upstream trip holds the request's share of its cluster's limits and
/// gives it back when dropped, whatever path the request took.
pub struct RequestCtx {
    /// The conf's routing the request started on (a reload does not move it).
    pub(super) routing: Arc<Routing>,
    pub(super) started: Instant,
    pub(super) request_id: RequestId,
    /// The index of the matched route in `routing` (see [`RequestCtx::route`]).
    pub(super) route: Option<usize>,
    /// The route's filters; None when it has none (then no filter stage runs at all).
    pub(super) filters: Option<Chain>,
    /// The filters' per-request values.
    pub(super) vars: http::Extensions,
    /// The connection's peer, and the client behind it (see `filter::Context`); set when the
    /// route has filters.
    pub(super) peer: Option<IpAddr>,
    pub(super) client: Option<IpAddr>,
    /// The trip upstream, once the route named a cluster.
    pub(super) upstream: Option<Attempt>,
    /// The gateway's own listener check: not counted, not logged.
    pub(super) self_check: bool,
    /// Copies of the request for the route's shadows, gathering its body (`mirror.rs`).
    pub(super) mirror: Option<Box<super::mirror::Copies>>,
}

impl RequestCtx {
    pub(super) fn new(routing: Arc<Routing>) -> RequestCtx {
        RequestCtx {
            routing,
            started: Instant::now(),
            request_id: RequestId::default(),
            route: None,
            filters: None,
            vars: http::Extensions::new(),
            peer: None,
            client: None,
            upstream: None,
            self_check: false,
            mirror: None,
        }
    }

    /// The matched route, if any.
    pub(super) fn route(&self) -> Option<&ServedRoute> {
        self.routing.routes.get(self.route?)
    }

    /// The route's filters, if any, and what they see of the request besides its headers.
    pub(super) fn filters(&mut self) -> Option<(&Chain, Context<'_>)> {
        let chain = self.filters.as_ref()?;
        Some((
            chain,
            Context {
                client: self.client,
                peer: self.peer,
                request_id: self.request_id.as_str(),
                vars: &mut self.vars,
            },
        ))
    }

    /// The name of the request's cluster, `-` when it has none.
    pub(super) fn cluster_name(&self) -> &str {
        self.upstream.as_ref().map_or("-", |a| a.cluster.name())
    }
}
