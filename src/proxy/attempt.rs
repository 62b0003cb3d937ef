//! One request's trip upstream, as one value: the cluster it goes to, the backends tried, the
//! circuit-breaker slots it holds, its counts, its last failure and its timings. Its steps are
//! [`Attempt::admit`], [`Attempt::next_peer`] (begin a try), [`Attempt::connected`],
//! [`Attempt::answered`], a failure ([`Attempt::end_try`] with what `retry.rs` decided, then
//! [`Attempt::set_next`]) and [`Attempt::finish`]. Slots are taken and given back here only.

use super::retry::{self, NextAttempt, Outcome};
use crate::upstream::breaker::{AttemptSlot, PendingSlot, RequestSlot, RetrySlot};
use crate::upstream::cluster::Cluster;
use log::warn;
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType};
use smallvec::SmallVec;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The error `upstream_response_filter` returns to make pingora try again after a status named
/// by `retry_on`; what the status was is kept by the attempt ([`Attempt::retrying_on_status`]).
const RETRY_ON_STATUS: ErrorType = ErrorType::Custom("RetryOnStatus");

/// A request's upstream trip. Dropping it gives back every slot it still holds.
pub(super) struct Attempt {
    pub(super) cluster: Arc<Cluster>,
    /// The request's whole budget (the route's or the cluster's `timeout`), retries included.
    deadline: Instant,
    /// For `ring_hash` / `maglev`: the key from the cluster's `hash_policy`.
    hash_key: Option<Vec<u8>>,
    /// Backends this request was sent to, in order.
    /// (Inline up to four: no allocation for a request and its retries.)
    tried: SmallVec<[SocketAddr; 4]>,
    /// Tries that count against `retries` (see [`NextAttempt`] for those that do not).
    counted: u32,
    /// What the next try is, after a failed one.
    next: NextAttempt,
    /// What went wrong on the last try, for the answer if no try succeeds.
    last_failure: Option<String>,
    /// An upstream answer (e.g. 503) turned into a retry by `retry_on`.
    retry_status: Option<u16>,
    /// When the first try began, and how long until the response headers came.
    started: Option<Instant>,
    upstream_time: Option<Duration>,
    /// Held for the whole request, once admitted (`max_requests`).
    request: Option<RequestSlot>,
    /// Held from the first retry that re-sends the request to the end (the retry budget).
    retry: Option<RetrySlot>,
    /// Held while the current try waits for its connection (`max_pending_requests`).
    pending: Option<PendingSlot>,
    /// Held while the current try uses a connection (`max_connections`, the backend's
    /// in-flight count).
    connection: Option<AttemptSlot>,
}

impl Attempt {
    /// The trip of a request begun at `started` to `cluster`, within `timeout` (the route's,
    /// else the cluster's), picking backends by `hash_key` when the cluster hashes.
    pub(super) fn new(
        cluster: Arc<Cluster>,
        started: Instant,
        timeout: Option<Duration>,
        hash_key: Option<Vec<u8>>,
    ) -> Attempt {
        Attempt {
            deadline: started + timeout.unwrap_or(cluster.config.timeout),
            cluster,
            hash_key,
            tried: SmallVec::new(),
            counted: 0,
            next: NextAttempt::Counted,
            last_failure: None,
            retry_status: None,
            started: None,
            upstream_time: None,
            request: None,
            retry: None,
            pending: None,
            connection: None,
        }
    }

    /// Takes the request's slot of the cluster (`max_requests`), or the counted 503.
    pub(super) fn admit(&mut self) -> Result<(), Box<Error>> {
        let cluster = &self.cluster;
        let slot = RequestSlot::take(&cluster.load, &cluster.config.breakers)
            .map_err(|o| retry::overflow(cluster, o))?;
        self.request = Some(slot);
        Ok(())
    }

    /// Begins a try: a ready backend not tried yet, its slots, and its peer with the per-try
    /// timeouts (`tunnel` for an upgraded connection instead). The 503 or 504 when there is
    /// no backend or no time left.
    pub(super) fn next_peer(&mut self, tunnel: Option<Duration>) -> Result<HttpPeer, Box<Error>> {
        let cluster = Arc::clone(&self.cluster);
        let name = cluster.name();
        let key = self.hash_key.as_deref();
        let selected = cluster.select(&self.tried, key).or_else(|| {
            // A stale pooled connection says nothing about the backend: it may be retried.
            (self.next == NextAttempt::StalePooled)
                .then(|| cluster.select(&[], key))
                .flatten()
        });
        let Some((addr, backend)) = selected else {
            let message = match &self.last_failure {
                None => format!("no healthy upstream for cluster {name}"),
                Some(failure) => format!(
                    "upstream connect error for cluster {name}: {failure}; no other healthy backend to retry"
                ),
            };
            return Err(Error::explain(ErrorType::HTTPStatus(503), message));
        };
        let now = Instant::now();
        let remaining = self.deadline.saturating_duration_since(now);
        if remaining.is_zero() {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                format!("upstream timeout for cluster {name}: no time left to retry"),
            ));
        }
        let limits = &cluster.config.breakers;
        self.connection = None;
        self.pending = Some(
            PendingSlot::take(&cluster.load, limits).map_err(|o| retry::overflow(&cluster, o))?,
        );
        self.connection = Some(
            AttemptSlot::take(&cluster.load, limits, backend)
                .map_err(|o| retry::overflow(&cluster, o))?,
        );
        if self.next == NextAttempt::Counted {
            self.counted += 1;
        }
        if !self.tried.is_empty() {
            cluster.metrics.retries.inc();
        }
        self.next = NextAttempt::Counted;
        self.retry_status = None;
        self.tried.push(addr);
        self.started.get_or_insert(now);

        let mut peer = cluster.peer(addr);
        let connect = cluster.config.connect_timeout.min(remaining);
        let per_try = tunnel.unwrap_or_else(|| {
            cluster
                .config
                .retry
                .per_try_timeout
                .map_or(remaining, |t| t.min(remaining))
        });
        peer.options.connection_timeout = Some(connect);
        peer.options.total_connection_timeout = Some(connect);
        peer.options.read_timeout = Some(per_try);
        peer.options.write_timeout = Some(per_try);
        peer.options.idle_timeout = Some(cluster.config.idle_timeout);
        Ok(peer)
    }

    /// The try has its connection: it no longer waits for one.
    pub(super) fn connected(&mut self) {
        self.pending = None;
    }

    /// The backend answered with `status`. When `retry_on` names it and the request may go
    /// again (`replayable`: idempotent, body kept), the try ends as a failure and the error
    /// that makes pingora try again is returned; otherwise the try ends, reported to passive
    /// health, and the time to the answer is kept.
    pub(super) fn answered(&mut self, status: u16, replayable: bool) -> Result<(), Box<Error>> {
        if self.cluster.config.retry.on.status(status) && replayable && self.may_resend() {
            self.end_try(Some(Outcome::Failure));
            let backend = self
                .tried
                .last()
                .map_or_else(String::new, |a| a.to_string());
            warn!(
                "upstream answered {status} cluster={} backend={backend}: retrying on another backend",
                self.cluster.name()
            );
            self.last_failure = Some(format!("{status} from {backend}"));
            self.retry_status = Some(status);
            return Err(Error::explain(
                RETRY_ON_STATUS,
                format!("upstream answered {status}"),
            ));
        }
        let outcome = if status >= 500 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        self.end_try(Some(outcome));
        self.upstream_time = self.started.map(|t| t.elapsed());
        Ok(())
    }

    /// Whether the current failure is a status `retry_on` turned into a retry (already reported
    /// to passive health by [`Attempt::answered`]).
    pub(super) fn retrying_on_status(&self) -> bool {
        self.retry_status.is_some()
    }

    /// Ends the current try: its slots are given back and `outcome`, if any, is what passive
    /// health hears of its backend.
    pub(super) fn end_try(&mut self, outcome: Option<Outcome>) {
        self.pending = None;
        let Some(slot) = self.connection.take() else {
            return;
        };
        if let (Some(state), Some(addr), Some(outcome)) =
            (slot.backend(), self.tried.last(), outcome)
        {
            match outcome {
                Outcome::Success => self.cluster.report_success(state),
                Outcome::Failure => self.cluster.report_failure(*addr, state, false),
                Outcome::Refused => self.cluster.report_failure(*addr, state, true),
                Outcome::NotItsFault => {}
            }
        }
    }

    /// The request is over (logged): the try's slots go back now, without a report; the
    /// request's and the retry budget's go with the attempt.
    pub(super) fn finish(&mut self) {
        self.end_try(None);
    }

    /// Whether the request's deadline is still ahead.
    pub(super) fn in_time(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Whether a ready backend not tried yet remains.
    pub(super) fn has_other_backend(&self) -> bool {
        self.cluster.has_ready_backend(&self.tried)
    }

    /// Whether this request may be sent again to another backend now: within `retries` and the
    /// deadline, with another ready backend, and — unless the backend it failed on fails alone
    /// (failover, see [`Cluster::fails_alone`]) — within the cluster's retry budget (whose slot
    /// it then holds until it ends).
    pub(super) fn may_resend(&mut self) -> bool {
        let cluster = &self.cluster;
        if self.counted > cluster.config.retries || !self.in_time() || !self.has_other_backend() {
            return false;
        }
        if self.tried.last().is_some_and(|a| cluster.fails_alone(a)) {
            return true;
        }
        if self.retry.is_none() {
            match RetrySlot::take(&cluster.load, &cluster.config.retry) {
                Some(slot) => self.retry = Some(slot),
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

    /// What the next try is (after a failed one that goes again).
    pub(super) fn set_next(&mut self, next: NextAttempt) {
        self.next = next;
    }

    /// What went wrong on the last try, for the answer if no try succeeds.
    pub(super) fn set_last_failure(&mut self, failure: String) {
        self.last_failure = Some(failure);
    }

    /// How many tries began.
    pub(super) fn tries(&self) -> usize {
        self.tried.len()
    }

    /// The backend of the last try, if one began.
    pub(super) fn backend(&self) -> Option<&SocketAddr> {
        self.tried.last()
    }

    /// From the first try to the response headers, once they came.
    pub(super) fn upstream_time(&self) -> Option<Duration> {
        self.upstream_time
    }
}
