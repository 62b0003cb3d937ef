//! What the proxy keeps for one request from hook to hook.

use super::filter::{Chain, Context};
use super::headers::RequestId;
use super::retry::{NextAttempt, Outcome};
use super::router::RouteMatch;
use super::routing::Routing;
use crate::upstream::breaker::{AttemptSlot, PendingSlot, RequestSlot, RetrySlot};
use crate::upstream::cluster::Cluster;
use log::warn;
use smallvec::SmallVec;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request state. The slots release the request's share of its cluster's limits when the
/// context is dropped, whatever path the request took.
pub struct RequestCtx {
    /// The conf's routing the request started on (a reload does not move it).
    pub(super) routing: Arc<Routing>,
    pub(super) started: Instant,
    pub(super) request_id: RequestId,
    pub(super) route: Option<RouteMatch>,
    /// The route's filters; None when it has none (then no filter stage runs at all).
    pub(super) filters: Option<Chain>,
    /// The filters' per-request values.
    pub(super) vars: http::Extensions,
    /// The connection's peer, and the client behind it (see `filter::Context`); set when the
    /// route has filters.
    pub(super) peer: Option<IpAddr>,
    pub(super) client: Option<IpAddr>,
    pub(super) cluster: Option<Arc<Cluster>>,
    /// The request's whole budget (the cluster's `timeout`), retries included.
    pub(super) deadline: Option<Instant>,
    /// Backends this request was sent to, in order.
    /// (Inline up to four: no allocation for a request and its retries.)
    pub(super) tried: SmallVec<[SocketAddr; 4]>,
    /// Attempts that count against `retries` (see [`NextAttempt`] for those that do not).
    pub(super) counted_attempts: u32,
    /// What the next attempt is, after a failed one.
    pub(super) next_attempt: NextAttempt,
    /// What went wrong on the last attempt, for the answer if no attempt succeeds.
    pub(super) last_failure: Option<String>,
    /// When the first upstream attempt began, and how long until the response headers came.
    pub(super) upstream_started: Option<Instant>,
    pub(super) upstream_time: Option<Duration>,
    /// An upstream answer (e.g. 503) turned into a retry by `retry_on`.
    pub(super) retry_status: Option<u16>,
    /// For `ring_hash` / `maglev`: the key from the cluster's `hash_policy`.
    pub(super) hash_key: Option<Vec<u8>>,
    /// The gateway's own listener check: not counted, not logged.
    pub(super) self_check: bool,
    pub(super) request_slot: Option<RequestSlot>,
    pub(super) pending: Option<PendingSlot>,
    pub(super) attempt: Option<AttemptSlot>,
    pub(super) retry_slot: Option<RetrySlot>,
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
            cluster: None,
            deadline: None,
            tried: SmallVec::new(),
            counted_attempts: 0,
            next_attempt: NextAttempt::Counted,
            last_failure: None,
            upstream_started: None,
            upstream_time: None,
            retry_status: None,
            hash_key: None,
            self_check: false,
            request_slot: None,
            pending: None,
            attempt: None,
            retry_slot: None,
            mirror: None,
        }
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
        self.cluster.as_deref().map_or("-", |c| c.name())
    }

    /// Whether the request's deadline is still ahead.
    pub(super) fn in_time(&self) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// Whether this request may be sent again to another backend now: within `retries` and the
    /// deadline, with another ready backend, and — unless the backend it failed on fails alone
    /// (failover, see [`Cluster::fails_alone`]) — within the cluster's retry budget (whose slot
    /// it then holds until it ends).
    pub(super) fn may_resend(&mut self, cluster: &Arc<Cluster>) -> bool {
        if self.counted_attempts > cluster.config.retries
            || !self.in_time()
            || !cluster.has_ready_backend(&self.tried)
        {
            return false;
        }
        if self.tried.last().is_some_and(|a| cluster.fails_alone(a)) {
            return true;
        }
        if self.retry_slot.is_none() {
            match RetrySlot::take(&cluster.load, &cluster.config.retry) {
                Some(slot) => self.retry_slot = Some(slot),
                None => {
                    cluster.metrics.retry_budget_exhausted.inc();
                    warn!(
                        "retry budget exhausted cluster={} retries_in_progress={}",
                        cluster.name(),
                        cluster.load.retries()
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Ends the current attempt, reporting its outcome to passive health.
    pub(super) fn end_attempt(&mut self, cluster: &Cluster, outcome: Outcome) {
        self.pending = None;
        if let Some(attempt) = self.attempt.take() {
            if let (Some(state), Some(addr)) = (attempt.backend(), self.tried.last()) {
                match outcome {
                    Outcome::Success => cluster.report_success(state),
                    Outcome::Failure => cluster.report_failure(*addr, state, false),
                    Outcome::Refused => cluster.report_failure(*addr, state, true),
                    Outcome::NotItsFault => {}
                }
            }
        }
    }
}
