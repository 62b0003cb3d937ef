//! What a cluster carries at once: circuit breakers (requests, requests waiting for a
//! connection, connections in use) and the retry budget. Each unit is a slot held by the
//! request's context and released on drop, so no early return or error can leak one.
//! Overflow is refused at once — it is answered with 503 by the caller, never queued.

use crate::config::{CircuitBreakers, RetryPolicy};
use crate::upstream::backends::BackendState;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

/// A cluster's current load.
#[derive(Debug, Default)]
pub struct ClusterLoad {
    requests: AtomicU32,
    pending: AtomicU32,
    connections: AtomicU32,
    retries: AtomicU32,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `circuit_breakers.max_requests`, with its value.
    Requests(u32),
    /// `circuit_breakers.max_pending_requests`, with its value.
    Pending(u32),
    /// `circuit_breakers.max_connections`, with its value.
    Connections(u32),
}

impl Overflow {
    /// The limit's conf key (`max_requests`, `max_pending_requests`, `max_connections`), as
    /// the 503's message and the `limit` label of `headway_circuit_breaker_overflows_total`
    /// name it.
    pub fn label(self) -> &'static str {
        match self {
            Overflow::Requests(_) => "max_requests",
            Overflow::Pending(_) => "max_pending_requests",
            Overflow::Connections(_) => "max_connections",
        }
    }

    /// The limit's configured value.
    pub fn limit(self) -> u32 {
        match self {
            Overflow::Requests(n) | Overflow::Pending(n) | Overflow::Connections(n) => n,
        }
    }
}

/// Takes one unit of `counter` unless that would pass `limit`.
fn take(counter: &AtomicU32, limit: u32) -> bool {
    counter
        .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
        .is_ok()
}

impl ClusterLoad {
    /// Requests to the cluster in progress: the [`RequestSlot`]s held.
    pub fn requests(&self) -> u32 {
        self.requests.load(Relaxed)
    }

    /// Requests in progress that have retried: the [`RetrySlot`]s held.
    pub fn retries(&self) -> u32 {
        self.retries.load(Relaxed)
    }
}

/// Held for the whole request.
pub struct RequestSlot(Arc<ClusterLoad>);

/// Held while an attempt waits for its upstream connection.
pub struct PendingSlot(Arc<ClusterLoad>);

/// Held while an attempt uses a connection to `backend`: counts in the cluster's connections and
/// the backend's in-flight requests.
pub struct AttemptSlot {
    load: Arc<ClusterLoad>,
    backend: Option<Arc<BackendState>>,
}

/// Held from a request's first retry to its end: the retry budget's unit.
pub struct RetrySlot(Arc<ClusterLoad>);

impl RequestSlot {
    /// Takes a request slot, or says which limit refused it: `max_requests`.
    pub fn take(
        load: &Arc<ClusterLoad>,
        limits: &CircuitBreakers,
    ) -> Result<RequestSlot, Overflow> {
        take(&load.requests, limits.max_requests)
            .then(|| RequestSlot(load.clone()))
            .ok_or(Overflow::Requests(limits.max_requests))
    }
}

impl PendingSlot {
    /// Takes a slot while the attempt waits for its connection, or refuses it:
    /// `max_pending_requests`.
    pub fn take(
        load: &Arc<ClusterLoad>,
        limits: &CircuitBreakers,
    ) -> Result<PendingSlot, Overflow> {
        take(&load.pending, limits.max_pending_requests)
            .then(|| PendingSlot(load.clone()))
            .ok_or(Overflow::Pending(limits.max_pending_requests))
    }
}

impl AttemptSlot {
    /// Takes a connection slot (`max_connections`), and counts the attempt in `backend`'s
    /// in-flight and total requests when there is one.
    pub fn take(
        load: &Arc<ClusterLoad>,
        limits: &CircuitBreakers,
        backend: Option<Arc<BackendState>>,
    ) -> Result<AttemptSlot, Overflow> {
        if !take(&load.connections, limits.max_connections) {
            return Err(Overflow::Connections(limits.max_connections));
        }
        if let Some(b) = &backend {
            b.in_flight.fetch_add(1, Relaxed);
            b.requests.fetch_add(1, Relaxed);
            b.window.record(1, 0, None);
        }
        Ok(AttemptSlot {
            load: load.clone(),
            backend,
        })
    }

    /// The backend the attempt counts against, if any.
    pub fn backend(&self) -> Option<&Arc<BackendState>> {
        self.backend.as_ref()
    }
}

impl RetrySlot {
    /// A retry is allowed while the retries in progress stay under `budget_percent` of the
    /// requests in progress, or under `min_retry_concurrency`, whichever is larger — so retries
    /// cannot multiply the load on a cluster that is already failing.
    pub fn take(load: &Arc<ClusterLoad>, policy: &RetryPolicy) -> Option<RetrySlot> {
        let budget = (load.requests() as u64 * policy.budget_percent as u64 / 100) as u32;
        let limit = budget.max(policy.min_retry_concurrency);
        take(&load.retries, limit).then(|| RetrySlot(load.clone()))
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Relaxed);
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Relaxed);
    }
}

impl Drop for AttemptSlot {
    fn drop(&mut self) {
        self.load.connections.fetch_sub(1, Relaxed);
        if let Some(b) = &self.backend {
            b.in_flight.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_never_passes_the_limit() {
        let c = AtomicU32::new(0);
        assert!(take(&c, 2));
        assert!(take(&c, 2));
        assert!(!take(&c, 2));
        assert_eq!(c.load(Relaxed), 2);
    }
}
