//! A cluster's backends as the gateway knows them beyond pingora's healthy flag: admitted by a
//! first probe, health and since when, the last probe error, requests, passive health.

use crate::lock;
use crate::upstream::outlier::Ejection;
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
        BackendState::new(true)
    }

    fn new(admitted: bool) -> BackendState {
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
}

impl BackendTable {
    /// An empty table; `gated`: backends must pass a probe before they get traffic (the
    /// cluster has a `health_check`).
    pub fn new(gated: bool) -> BackendTable {
        BackendTable {
            gated,
            map: ArcSwap::from_pointee(Members::default()),
            departed: Mutex::new(Vec::new()),
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
        let new: StateMap = addrs
            .map(|addr| {
                let state = old.get(&addr).cloned().unwrap_or_else(|| {
                    added = true;
                    Arc::new(BackendState::new(!self.gated))
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
            return state.up.load(Relaxed);
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
        let table = BackendTable::new(true);
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
}
