//! Slow start: a backend that joins a cluster (its first probe passed, a new address from DNS
//! once the cluster has its first backends, or back to healthy after probes took it out) gets a
//! weight that grows from `slow_start_min_weight_percent` to full over `slow_start_window`
//! (Envoy's `slow_start_config` with `aggression` 1.0: linear).
//!
//! Times are milliseconds on the cluster's own clock, kept in atomics so the request path reads
//! them without a lock; 0 means "never". Once every ramp is over, the request path pays one
//! atomic load and nothing else.

use crate::config::SlowStart;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// One cluster's slow start: its window and when the last ramp ends.
#[derive(Debug)]
pub struct Ramp {
    epoch: Instant,
    window_ms: u64,
    /// The first weight, as a fraction of a full one.
    min: f64,
    /// When the last ramp started ends, on the clock; 0: no backend ramps.
    until: AtomicU64,
}

impl Ramp {
    /// The ramp `config` describes.
    pub fn new(config: SlowStart) -> Ramp {
        Ramp {
            epoch: Instant::now(),
            window_ms: u64::try_from(config.window.as_millis())
                .unwrap_or(u64::MAX / 2)
                .max(1),
            min: f64::from(config.min_weight_percent) / 100.0,
            until: AtomicU64::new(0),
        }
    }

    /// Now on the cluster's clock; never 0.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX / 2)
            .saturating_add(1)
    }

    /// Starts a backend's ramp now; `from` is its start.
    pub fn start(&self, from: &AtomicU64) {
        let now = self.now();
        from.store(now, Relaxed);
        self.until
            .fetch_max(now.saturating_add(self.window_ms), Relaxed);
    }

    /// Now on the clock when some backend may still be ramping, None when none is (then the
    /// policy picks as without slow start).
    pub fn active(&self) -> Option<u64> {
        let until = self.until.load(Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.now();
        if now < until {
            return Some(now);
        }
        // Every ramp is over: the next requests skip the clock. A ramp started meanwhile moved
        // `until` on, and the exchange fails.
        let _ = self.until.compare_exchange(until, 0, Relaxed, Relaxed);
        None
    }

    /// The weight at `now` of a backend whose ramp started at `from`, as a fraction of a full
    /// one: `max(min, elapsed / window)`, and 1 outside its window.
    pub fn weight(&self, from: &AtomicU64, now: u64) -> f64 {
        let from = from.load(Relaxed);
        let elapsed = now.saturating_sub(from);
        if from == 0 || elapsed >= self.window_ms {
            return 1.0;
        }
        // Milliseconds within one window: exact in an f64.
        (elapsed as f64 / self.window_ms as f64).max(self.min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ramp(window_ms: u64, min_percent: u32) -> Ramp {
        Ramp::new(SlowStart {
            window: Duration::from_millis(window_ms),
            min_weight_percent: min_percent,
        })
    }

    #[test]
    fn the_weight_grows_linearly_from_the_floor_to_full() {
        let r = ramp(10_000, 10);
        let from = AtomicU64::new(1_000);
        assert_eq!(r.weight(&from, 1_000), 0.1, "the floor at the start");
        assert_eq!(r.weight(&from, 1_500), 0.1, "5% is under the floor");
        assert_eq!(r.weight(&from, 3_500), 0.25);
        assert_eq!(r.weight(&from, 8_500), 0.75);
        assert_eq!(r.weight(&from, 11_000), 1.0, "the window is over");
        assert_eq!(r.weight(&AtomicU64::new(0), 5), 1.0, "never ramped");
    }

    #[test]
    fn nothing_is_active_until_a_ramp_starts() {
        let r = ramp(60_000, 10);
        assert_eq!(r.active(), None);
        let from = AtomicU64::new(0);
        r.start(&from);
        let now = r.active();
        assert!(now.is_some());
        assert_eq!(r.weight(&from, now.unwrap_or(0)), 0.1);
        // A ramp that ended at the clock's first tick: over, whenever this runs.
        let short = ramp(1, 50);
        short.until.store(1, Relaxed);
        assert_eq!(short.active(), None);
        assert_eq!(
            short.until.load(Relaxed),
            0,
            "an ended ramp costs no clock read"
        );
    }
}
