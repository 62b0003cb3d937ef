//! Passive health (outlier detection): a backend that fails several requests in a row — 5xx
//! answers, refused or timed-out connections, resets — is ejected from rotation for a while,
//! before an active probe would notice. Each repeat ejection lasts longer (base × times ejected,
//! up to a maximum), and no more than a share of the cluster is ever ejected at once (one
//! backend always can be), so a cluster-wide problem cannot eject everything.

use crate::config::OutlierDetection;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// One backend's passive-health state.
#[derive(Debug, Default)]
pub struct Ejection {
    consecutive_failures: AtomicU32,
    /// Milliseconds since the detector's epoch until which the backend is ejected; 0: never.
    ejected_until_ms: AtomicU64,
    times_ejected: AtomicU32,
    /// Every failure of the current streak was a refused connect: nothing listened.
    refused_only: AtomicBool,
    /// The current ejection came from such a streak, so a passing probe lifts it: the pod
    /// listens again (restarted on the same address), which a probe proves as well as anything.
    lifted_by_probe: AtomicBool,
}

impl Ejection {
    /// How much longer the backend stays ejected, if it is.
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Relaxed);
        (until > now_ms).then(|| Duration::from_millis(until - now_ms))
    }

    /// Ends an ejection early: an active probe saw the backend recover.
    pub fn clear(&self) {
        self.ejected_until_ms.store(0, Relaxed);
        self.consecutive_failures.store(0, Relaxed);
    }

    /// An active probe passed: ends an ejection that refused connects caused.
    pub fn probe_passed(&self) {
        if self.lifted_by_probe.swap(false, Relaxed) {
            self.clear();
        }
    }

    /// How many times the backend has been ejected, which lengthens its next ejection.
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Relaxed)
    }

    /// Failures in the current streak; 0 after a success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }
}

/// A cluster's outlier detection settings and clock.
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierDetection,
    epoch: Instant,
}

impl OutlierDetector {
    /// A detector for the cluster's `outlier_detection`; its clock starts now.
    pub fn new(config: OutlierDetection) -> OutlierDetector {
        OutlierDetector {
            config,
            epoch: Instant::now(),
        }
    }

    /// Whether passive health is on: `consecutive_failures` is not 0.
    pub fn enabled(&self) -> bool {
        self.config.consecutive_failures > 0
    }

    /// Milliseconds on the detector's clock, as [`Ejection::remaining`] takes them.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the backend is ejected now.
    pub fn is_ejected(&self, e: &Ejection) -> bool {
        e.remaining(self.now_ms()).is_some()
    }

    /// Counts one success: the backend's streak of failures ends.
    pub fn success(&self, e: &Ejection) {
        if e.consecutive_failures.load(Relaxed) != 0 {
            e.consecutive_failures.store(0, Relaxed);
        }
    }

    /// Counts one failure (`refused`: a refused connect). When it completes a streak and the
    /// cluster can spare the backend (`ejected` of `total` are out already), ejects it and
    /// returns for how long.
    pub fn failure(
        &self,
        e: &Ejection,
        refused: bool,
        ejected: usize,
        total: usize,
    ) -> Option<Duration> {
        if !self.enabled() {
            return None;
        }
        let streak = e.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if streak == 1 || !refused {
            e.refused_only.store(refused, Relaxed);
        }
        if streak < self.config.consecutive_failures || self.is_ejected(e) {
            return None;
        }
        let share_ok =
            ejected == 0 || ejected * 100 < self.config.max_ejection_percent as usize * total;
        if !share_ok {
            return None;
        }
        let times = e.times_ejected.fetch_add(1, Relaxed) + 1;
        let time = self
            .config
            .base_ejection_time
            .saturating_mul(times)
            .min(self.config.max_ejection_time);
        e.ejected_until_ms
            .store(self.now_ms() + time.as_millis() as u64, Relaxed);
        e.lifted_by_probe
            .store(e.refused_only.load(Relaxed), Relaxed);
        e.consecutive_failures.store(0, Relaxed);
        Some(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(percent: u32) -> OutlierDetector {
        OutlierDetector::new(OutlierDetection {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: percent,
        })
    }

    #[test]
    fn a_streak_ejects_and_a_success_breaks_it() {
        let d = detector(50);
        let e = Ejection::default();
        assert_eq!(d.failure(&e, false, 0, 4), None);
        assert_eq!(d.failure(&e, false, 0, 4), None);
        d.success(&e);
        assert_eq!(d.failure(&e, false, 0, 4), None);
        assert_eq!(d.failure(&e, false, 0, 4), None);
        assert_eq!(d.failure(&e, false, 0, 4), Some(Duration::from_secs(10)));
        assert!(d.is_ejected(&e));
        assert_eq!(
            d.failure(&e, false, 1, 4),
            None,
            "failures while ejected change nothing"
        );
    }

    #[test]
    fn repeat_ejections_grow_up_to_the_maximum() {
        let d = detector(100);
        let e = Ejection::default();
        let mut times = Vec::new();
        for _ in 0..3 {
            e.ejected_until_ms.store(0, Relaxed); // as if the last ejection had expired
            for _ in 0..3 {
                if let Some(t) = d.failure(&e, false, 0, 4) {
                    times.push(t.as_secs());
                }
            }
        }
        assert_eq!(times, vec![10, 20, 25]);
        assert_eq!(e.times_ejected(), 3);
    }

    #[test]
    fn never_more_than_the_share_but_always_one() {
        let d = detector(10);
        let e = Ejection::default();
        for _ in 0..2 {
            d.failure(&e, false, 0, 3);
        }
        assert!(
            d.failure(&e, false, 0, 3).is_some(),
            "one backend can always be ejected"
        );
        let other = Ejection::default();
        for _ in 0..5 {
            assert_eq!(
                d.failure(&other, false, 1, 3),
                None,
                "10% of 3 is already used"
            );
        }
        let off = OutlierDetector::new(OutlierDetection {
            consecutive_failures: 0,
            ..d.config
        });
        for _ in 0..10 {
            assert_eq!(off.failure(&other, false, 0, 3), None);
        }
    }

    #[test]
    fn an_ejection_for_refused_connects_ends_with_a_passing_probe_and_no_other_does() {
        let d = detector(100);
        let refused = Ejection::default();
        for _ in 0..3 {
            d.failure(&refused, true, 0, 4);
        }
        assert!(d.is_ejected(&refused));
        refused.probe_passed();
        assert!(!d.is_ejected(&refused), "the pod listens again");

        let mixed = Ejection::default();
        d.failure(&mixed, true, 0, 4);
        d.failure(&mixed, false, 0, 4); // a 5xx or a reset: the pod answered badly
        d.failure(&mixed, true, 0, 4);
        assert!(d.is_ejected(&mixed));
        mixed.probe_passed();
        assert!(
            d.is_ejected(&mixed),
            "its /healthz passing says nothing of its requests"
        );
    }
}
