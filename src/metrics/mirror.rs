//! `headway_mirror_requests_total{route, cluster, result}`: what became of the copies of
//! requests sent to shadow clusters (a route's `mirror`).

use super::register;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// What became of one copy, as a closed set (the series' `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorResult {
    /// The shadow answered, below 500.
    Ok,
    /// The shadow answered 500 or above.
    ErrorStatus,
    /// No answer: no ready backend, a refused connection, a reset, a request that ended
    /// before the copy's body was complete.
    Failed,
    /// No answer within the copy's `timeout`.
    Timeout,
    /// Not sent: `max_in_flight` copies were already unanswered.
    DroppedFull,
}

impl MirrorResult {
    /// Every result, in the order of [`MirrorResult::label`]'s index.
    pub const ALL: [MirrorResult; 5] = [
        MirrorResult::Ok,
        MirrorResult::ErrorStatus,
        MirrorResult::Failed,
        MirrorResult::Timeout,
        MirrorResult::DroppedFull,
    ];

    /// The label: `ok`, `error_status`, `failed`, `timeout`, `dropped_full`.
    pub fn label(self) -> &'static str {
        match self {
            MirrorResult::Ok => "ok",
            MirrorResult::ErrorStatus => "error_status",
            MirrorResult::Failed => "failed",
            MirrorResult::Timeout => "timeout",
            MirrorResult::DroppedFull => "dropped_full",
        }
    }
}

/// The counters of one route's copies to one shadow cluster, one per result.
#[derive(Clone)]
pub struct MirrorCounts([IntCounter; 5]);

impl MirrorCounts {
    /// Counts one copy.
    pub fn count(&self, result: MirrorResult) {
        let at = MirrorResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or_default();
        self.0[at].inc();
    }
}

/// The series.
#[derive(Clone)]
pub struct MirrorSeries {
    requests: IntCounterVec,
}

impl MirrorSeries {
    pub(super) fn registered(r: &Registry) -> prometheus::Result<MirrorSeries> {
        let requests = IntCounterVec::new(
            Opts::new(
                "headway_mirror_requests_total",
                "Copies of requests sent to shadow clusters (a route's mirror), by result.",
            ),
            &["route", "cluster", "result"],
        )?;
        register(r, requests.clone())?;
        Ok(MirrorSeries { requests })
    }

    /// The counters of `route`'s copies to `cluster`, every result's series made (at 0).
    pub fn counts(&self, route: &str, cluster: &str) -> MirrorCounts {
        MirrorCounts(MirrorResult::ALL.map(|r| {
            self.requests
                .with_label_values(&[route, cluster, r.label()])
        }))
    }
}
