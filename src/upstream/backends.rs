//! A cluster's backends as the gateway knows them beyond pingora's healthy flag: admitted by a
//! first probe, health and since when, the last probe error, requests, passive health.

use crate::config::SlowStart;
use crate::lock;
use crate::upstream::outlier::Ejection;
use crate::upstream::slow_start::Ramp;
use crate::window::Window;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What the gateway knows of one backend beyond pingora's healthy flag.
#[derive(Debug)]
pub struct BackendState {
    /// A probe has passed since this address was discovered (always true without health checks).
    pub(super) admitted: AtomicBool,
    /// pingora's verdict by the thresholds alone (it starts every backend up), mirrored as
    /// probes report it, whether or not a probe has admitted the backend yet (see
    /// [`BackendState::healthy`]).
    up: AtomicBool,
    /// When `healthy` last changed, or when the address was discovered.
    pub(super) since: Mutex<SystemTime>,
    pub(super) last_error: Mutex<Option<String>>,
    /// Requests sent to this backend (each attempt counts).
    pub requests: AtomicU64,
    /// Requests being served by this backend right now.
    pub in_flight: AtomicI64,
    /// Passive health.
    pub ejection: Ejection,
    /// The last request sent here failed (see `Cluster::fails_alone`).
    pub(super) last_failed: AtomicBool,
    /// The last minute's attempts and failures, for the dashboard.
    pub window: Window,
    /// Discovered after the cluster's first backends: its first pass is a join, which slow
    /// start ramps (the first backends all start together, and have nobody to share with).
    late: bool,
    /// When its slow start began, on the cluster's [`Ramp`] clock; 0: never.
    pub(super) ramp_from: AtomicU64,
}

impl BackendState {
    /// Health as the gateway sees it: admitted by a probe and not marked down by the
    /// thresholds (what selection, panic mode and `/clusters` read).
    pub fn healthy(&self) -> bool {
        self.admitted.load(Relaxed) && self.up.load(Relaxed)
    }

    /// A backend in rotation, as a cluster without health checks has them.
    #[cfg(test)]
    pub(super) fn for_tests() -> BackendState {
        BackendState::new(true, false)
    }

    fn new(admitted: bool, late: bool) -> BackendState {
        BackendState {
            admitted: AtomicBool::new(admitted),
            up: AtomicBool::new(true),
            since: Mutex::new(SystemTime::now()),
            last_error: Mutex::new(None),
            requests: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            ejection: Ejection::default(),
            last_failed: AtomicBool::new(false),
            window: Window::default(),
            late,
            ramp_from: AtomicU64::new(0),
        }
    }
}

/// Backend states by address, hashed with foldhash: keyed by addresses from DNS (not by
/// anything a client sends), so SipHash's flood resistance buys nothing here and costs a few
/// hundred instructions a lookup.
pub type StateMap = HashMap<SocketAddr, Arc<BackendState>, foldhash::fast::RandomState>;

/// The backends of one DNS answer: by address, and in address order (the order round robin
/// walks, as pingora's sorted set had it), each with its state, so that selection reads the
/// state of the backend it considers without a lookup.
#[derive(Default)]
pub struct Members {
    by_addr: StateMap,
    order: Vec<(SocketAddr, Arc<BackendState>)>,
}

impl Members {
    fn new(by_addr: StateMap) -> Members {
        let mut order: Vec<_> = by_addr.iter().map(|(a, s)| (*a, s.clone())).collect();
        order.sort_unstable_by_key(|(a, _)| *a);
        Members { by_addr, order }
    }

    /// The backends in address order.
    pub fn in_order(&self) -> &[(SocketAddr, Arc<BackendState>)] {
        &self.order
    }
}

impl std::ops::Deref for Members {
    type Target = StateMap;

    fn deref(&self) -> &StateMap {
        &self.by_addr
    }
}

/// The current backends of a cluster, keyed by address. Replaced whole on membership changes,
/// so the request path reads it without a lock.
pub struct BackendTable {
    /// Whether backends must pass a probe before they get traffic.
    pub(super) gated: bool,
    pub(super) map: ArcSwap<Members>,
    /// Backends that left DNS with requests still in flight (draining), until those end.
    departed: Mutex<Vec<(SocketAddr, Arc<BackendState>)>>,
    /// `slow_start_window`: joining backends ramp up; None: they get a full share at once.
    pub(super) ramp: Option<Ramp>,
    /// The table has had backends: those discovered from now on join a serving cluster.
    seeded: AtomicBool,
}

impl BackendTable {
    /// An empty table; `gated`: backends must pass a probe before they get traffic (the
    /// cluster has a `health_check`); `slow_start`: joining backends ramp up.
    pub fn new(gated: bool, slow_start: Option<SlowStart>) -> BackendTable {
        BackendTable {
            gated,
            map: ArcSwap::from_pointee(Members::default()),
            departed: Mutex::new(Vec::new()),
            ramp: slow_start.map(Ramp::new),
            seeded: AtomicBool::new(false),
        }
    }

    /// Now on the slow-start clock while some backend ramps; None without slow start or when
    /// no backend ramps (one atomic load).
    pub fn ramping(&self) -> Option<u64> {
        self.ramp.as_ref()?.active()
    }

    /// The weight of `state` at `now` (from [`BackendTable::ramping`]), as a fraction of a
    /// full one.
    pub fn weight(&self, state: &BackendState, now: u64) -> f64 {
        self.ramp
            .as_ref()
            .map_or(1.0, |r| r.weight(&state.ramp_from, now))
    }

    /// Starts the slow start of a backend that just joined, if the cluster has one.
    fn joined(&self, state: &BackendState) {
        if let Some(ramp) = &self.ramp {
            ramp.start(&state.ramp_from);
        }
    }

    /// Backends that left DNS and still serve requests sent to them before: draining.
    pub fn draining(&self) -> Vec<(SocketAddr, Arc<BackendState>)> {
        let mut departed = lock(&self.departed);
        departed.retain(|(_, s)| s.in_flight.load(Relaxed) > 0);
        departed.clone()
    }

    /// Makes the table match `addrs`, keeping the state of addresses already known. Returns
    /// whether any address is new.
    pub(super) fn sync(&self, addrs: impl Iterator<Item = SocketAddr> + Clone) -> bool {
        let old = self.map.load();
        // Most refreshes find the same pods: then there is nothing to rebuild.
        let mut count = 0;
        if addrs.clone().all(|a| {
            count += 1;
            old.contains_key(&a)
        }) && count == old.len()
        {
            return false;
        }
        let mut added = false;
        let late = self.seeded.load(Relaxed);
        let new: StateMap = addrs
            .map(|addr| {
                let state = old.get(&addr).cloned().unwrap_or_else(|| {
                    added = true;
                    let state = BackendState::new(!self.gated, late);
                    if late && !self.gated {
                        // Without probes, being in DNS is joining.
                        self.joined(&state);
                    }
                    Arc::new(state)
                });
                (addr, state)
            })
            .collect();
        if added || new.len() != old.len() {
            let mut departed = lock(&self.departed);
            departed.retain(|(a, s)| s.in_flight.load(Relaxed) > 0 && !new.contains_key(a));
            departed.extend(
                old.iter()
                    .filter(|(a, s)| !new.contains_key(*a) && s.in_flight.load(Relaxed) > 0)
                    .map(|(a, s)| (*a, s.clone())),
            );
            if !new.is_empty() {
                self.seeded.store(true, Relaxed);
            }
            self.map.store(Arc::new(Members::new(new)));
        }
        added
    }

    /// Whether `addr` may get traffic as far as the probe gate is concerned.
    pub fn admitted(&self, addr: &SocketAddr) -> bool {
        !self.gated
            || self
                .map
                .load()
                .get(addr)
                .is_some_and(|s| s.admitted.load(Relaxed))
    }

    /// The state of the backend at `addr`, if it is a current backend.
    pub fn get(&self, addr: &SocketAddr) -> Option<Arc<BackendState>> {
        self.map.load().get(addr).cloned()
    }

    /// Records one probe; returns true when it is the first pass that admits the backend.
    pub fn record_probe(&self, addr: SocketAddr, error: Option<String>) -> bool {
        let Some(state) = self.get(&addr) else {
            return false;
        };
        let passed = error.is_none();
        *lock(&state.last_error) = error;
        if passed {
            state.ejection.probe_passed();
        }
        if passed && !state.admitted.swap(true, Relaxed) {
            // Into rotation, unless pingora's thresholds hold it down after earlier failures:
            // then its next transition up puts it there.
            *lock(&state.since) = SystemTime::now();
            let in_rotation = state.up.load(Relaxed);
            if in_rotation && state.late {
                self.joined(&state);
            }
            return in_rotation;
        }
        false
    }

    /// Records a threshold crossing reported by pingora. Returns whether the backend's health
    /// really changed: pingora starts every backend healthy, so the first failures of one that
    /// never passed a probe flip pingora's flag but not ours.
    pub fn record_transition(&self, addr: SocketAddr, healthy: bool) -> bool {
        let Some(state) = self.get(&addr) else {
            return false;
        };
        let was = state.healthy();
        state.up.store(healthy, Relaxed);
        let changed = state.healthy() != was;
        if changed {
            *lock(&state.since) = SystemTime::now();
            if healthy {
                // Back after probes took it out (a restarted pod: cold again), or a backend
                // whose first pass the thresholds held down: either joins a serving cluster.
                self.joined(&state);
                // Recovered by active probes (e.g. a restarted pod): passive health's verdict,
                // formed while it was down, no longer holds (Envoy:
                // successful_active_health_check_uneject_host).
                state.ejection.clear();
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_backend_table_follows_membership_and_keeps_known_state() {
        let table = BackendTable::new(true, None);
        let first = addrs(&["10.0.0.1:80", "10.0.0.2:80"]);
        assert!(table.sync(first.iter().copied()), "two new addresses");
        table.record_probe(first[0], None);
        let before = table.map.load_full();
        assert!(!table.sync(first.iter().copied()), "nothing new");
        assert!(
            Arc::ptr_eq(&before, &table.map.load_full()),
            "an unchanged answer rebuilds nothing"
        );
        assert!(
            !table.sync(first[..1].iter().copied()),
            "a removal adds nothing"
        );
        assert!(
            table.get(&first[1]).is_none(),
            "the removed address is gone"
        );
        let grown = addrs(&["10.0.0.1:80", "10.0.0.3:80"]);
        assert!(table.sync(grown.iter().copied()));
        assert!(table.admitted(&grown[0]), "a known address keeps its state");
        assert!(!table.admitted(&grown[1]), "a new one waits for its probe");
    }

    #[test]
    fn backends_that_join_a_serving_cluster_ramp_and_the_first_ones_do_not() {
        let slow = SlowStart {
            window: std::time::Duration::from_secs(600),
            min_weight_percent: 10,
        };
        let table = BackendTable::new(true, Some(slow));
        let first = addrs(&["10.0.0.1:80"]);
        table.sync(first.iter().copied());
        assert!(table.record_probe(first[0], None));
        assert_eq!(
            table.ramping(),
            None,
            "the first backends get their share at once"
        );
        let grown = addrs(&["10.0.0.1:80", "10.0.0.2:80"]);
        table.sync(grown.iter().copied());
        assert_eq!(table.ramping(), None, "not before its first probe passes");
        assert!(table.record_probe(grown[1], None));
        let now = table.ramping().unwrap();
        let state = |a| table.get(a).unwrap();
        assert_eq!(table.weight(&state(&grown[1]), now), 0.1);
        assert_eq!(table.weight(&state(&grown[0]), now), 1.0);

        let open = BackendTable::new(false, Some(slow));
        open.sync(first.iter().copied());
        assert_eq!(open.ramping(), None);
        open.sync(grown.iter().copied());
        let now = open.ramping().unwrap();
        let joined = open.get(&grown[1]).unwrap();
        assert_eq!(
            open.weight(&joined, now),
            0.1,
            "without probes, DNS is joining"
        );

        let restarted = BackendTable::new(true, Some(slow));
        restarted.sync(first.iter().copied());
        restarted.record_probe(first[0], None);
        restarted.record_transition(first[0], false);
        assert_eq!(restarted.ramping(), None);
        restarted.record_transition(first[0], true);
        let now = restarted.ramping().unwrap();
        let back = restarted.get(&first[0]).unwrap();
        assert_eq!(
            restarted.weight(&back, now),
            0.1,
            "back from down: cold again"
        );
        assert_eq!(BackendTable::new(true, None).ramping(), None);
    }
}
