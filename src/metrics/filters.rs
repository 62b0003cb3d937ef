//! The filters' series: what each route's filters count, and when each counted event last
//! happened (a filter's background work, such as `jwt` fetching its keys, shows its age there).

use super::register;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};

/// What filters count; filters get their series from `FilterSetup::counter` and
/// `FilterSetup::timestamp`.
#[derive(Clone)]
pub struct FilterSeries {
    /// `headway_filter_events_total{route, filter, event}`: what filters counted (a rate
    /// limit's `limited`, an auth filter's `denied`, `jwt`'s `jwks_fetch_ok`, …).
    pub events: IntCounterVec,
    /// `headway_filter_event_timestamp_seconds{route, filter, event}`: when the event last
    /// happened (Unix seconds), for the events a filter stamps: `time() - …` is its age.
    pub timestamps: GaugeVec,
    /// `headway_rate_limit_store_errors_total{route, reason}`: requests a `rate_limit` with a
    /// shared store could not count there, so its `failure_mode` decided (`reason`: timeout,
    /// refused, dropped, error, connecting).
    pub store_errors: IntCounterVec,
}

impl FilterSeries {
    /// The series, not yet registered: [`super::Metrics`] registers them; a conf being checked
    /// builds its filters with series nobody reads.
    pub fn new() -> prometheus::Result<FilterSeries> {
        let labels = ["route", "filter", "event"];
        Ok(FilterSeries {
            events: IntCounterVec::new(
                Opts::new(
                    "headway_filter_events_total",
                    "Events counted by route filters (requests limited, denied, compressed, ...).",
                ),
                &labels,
            )?,
            timestamps: GaugeVec::new(
                Opts::new(
                    "headway_filter_event_timestamp_seconds",
                    "When a filter's event last happened (Unix seconds), for the events it stamps.",
                ),
                &labels,
            )?,
            store_errors: IntCounterVec::new(
                Opts::new(
                    "headway_rate_limit_store_errors_total",
                    "Requests a rate_limit could not count in its shared store (Redis), by reason: its failure_mode decided.",
                ),
                &["route", "reason"],
            )?,
        })
    }

    /// Registers both series in `r`.
    pub(super) fn registered(self, r: &Registry) -> prometheus::Result<FilterSeries> {
        register(r, self.events.clone())?;
        register(r, self.timestamps.clone())?;
        register(r, self.store_errors.clone())?;
        Ok(self)
    }
}
