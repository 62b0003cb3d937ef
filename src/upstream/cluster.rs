//! One cluster: a pingora `LoadBalancer` fed by discovery, pruned by health checks, with the
//! per-backend state that the request path and `/clusters` read.
//!
//! The cluster drives discovery and probes itself (see [`Cluster::run`]) instead of using
//! pingora's background loop, whose fixed period cannot follow TTLs or back off on DNS errors,
//! and which probes only after discovery in the same sequential loop.

use crate::config::{
    duration, Address, ClusterConfig, HealthCheckConfig, HealthCheckKind, LbPolicy,
};
use crate::metrics::ClusterMetrics;
use crate::upstream::breaker::ClusterLoad;
use crate::upstream::discovery::{DnsDiscovery, DnsSnapshot, RefreshCounters};
use crate::upstream::health::RecordedHealthCheck;
use crate::upstream::lb::maglev::Maglev;
use crate::upstream::outlier::{Ejection, OutlierDetector};
use crate::{lock, unix_seconds};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use pingora::lb::discovery::{ServiceDiscovery, Static};
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::Result;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

/// What the gateway knows of one backend beyond pingora's healthy flag.
#[derive(Debug)]
pub struct BackendState {
    /// A probe has passed since this address was discovered (always true without health checks).
    admitted: AtomicBool,
    /// Health as last reported: admitted and not marked down by the thresholds.
    healthy: AtomicBool,
    /// When `healthy` last changed, or when the address was discovered.
    since: Mutex<SystemTime>,
    last_error: Mutex<Option<String>>,
    /// Requests sent to this backend (each attempt counts).
    pub requests: AtomicU64,
    /// Requests being served by this backend right now.
    pub in_flight: AtomicI64,
    /// Passive health.
    pub ejection: Ejection,
    /// The last request sent here failed (see [`Cluster::fails_alone`]).
    last_failed: AtomicBool,
}

impl BackendState {
    fn new(admitted: bool) -> BackendState {
        BackendState {
            admitted: AtomicBool::new(admitted),
            healthy: AtomicBool::new(admitted),
            since: Mutex::new(SystemTime::now()),
            last_error: Mutex::new(None),
            requests: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            ejection: Ejection::default(),
            last_failed: AtomicBool::new(false),
        }
    }
}

/// The current backends of a cluster, keyed by address. Replaced whole on membership changes,
/// so the request path reads it without a lock.
pub struct BackendTable {
    /// Whether backends must pass a probe before they get traffic.
    gated: bool,
    map: ArcSwap<HashMap<SocketAddr, Arc<BackendState>>>,
}

impl BackendTable {
    pub fn new(gated: bool) -> BackendTable {
        BackendTable {
            gated,
            map: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Makes the table match `addrs`, keeping the state of addresses already known. Returns
    /// whether any address is new.
    fn sync(&self, addrs: impl Iterator<Item = SocketAddr> + Clone) -> bool {
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
        let new: HashMap<_, _> = addrs
            .map(|addr| {
                let state = old.get(&addr).cloned().unwrap_or_else(|| {
                    added = true;
                    Arc::new(BackendState::new(!self.gated))
                });
                (addr, state)
            })
            .collect();
        if added || new.len() != old.len() {
            self.map.store(Arc::new(new));
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
            state.healthy.store(true, Relaxed);
            *lock(&state.since) = SystemTime::now();
            return true;
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
        if healthy && !state.admitted.load(Relaxed) {
            return false;
        }
        let changed = state.healthy.swap(healthy, Relaxed) != healthy;
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

/// pingora's load balancer, for whichever selection policy the conf names. `least_request`
/// draws its two candidates from a random balancer and compares them itself.
enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    RingHash(LoadBalancer<KetamaHashing>),
    Maglev(LoadBalancer<Maglev>),
}

macro_rules! each_balancer {
    ($self:expr, $lb:ident => $e:expr) => {
        match $self {
            Balancer::RoundRobin($lb) => $e,
            Balancer::Random($lb) => $e,
            Balancer::RingHash($lb) => $e,
            Balancer::Maglev($lb) => $e,
        }
    };
}

impl Balancer {
    fn new(policy: LbPolicy, discovery: Box<dyn ServiceDiscovery + Send + Sync>) -> Balancer {
        let backends = Backends::new(discovery);
        match policy {
            LbPolicy::RoundRobin => Balancer::RoundRobin(LoadBalancer::from_backends(backends)),
            LbPolicy::Random | LbPolicy::LeastRequest => {
                Balancer::Random(LoadBalancer::from_backends(backends))
            }
            LbPolicy::RingHash => Balancer::RingHash(LoadBalancer::from_backends(backends)),
            LbPolicy::Maglev => Balancer::Maglev(LoadBalancer::from_backends(backends)),
        }
    }

    fn backends(&self) -> &Backends {
        each_balancer!(self, lb => lb.backends())
    }

    fn set_health_check(&mut self, check: Box<RecordedHealthCheck>) {
        each_balancer!(self, lb => lb.set_health_check(check))
    }

    async fn update(&self) -> Result<()> {
        each_balancer!(self, lb => lb.update().await)
    }

    fn select_with(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: impl Fn(&Backend, bool) -> bool,
    ) -> Option<Backend> {
        fn pick<S>(
            lb: &LoadBalancer<S>,
            key: &[u8],
            n: usize,
            accept: impl Fn(&Backend, bool) -> bool,
        ) -> Option<Backend>
        where
            S: BackendSelection + 'static,
            S::Iter: BackendIter,
        {
            lb.select_with(key, n, accept)
        }
        each_balancer!(self, lb => pick(lb, key, max_iterations, accept))
    }
}

/// Lets the load balancer own a discovery that the cluster also reads for `/clusters`.
struct SharedDns(Arc<DnsDiscovery>);

#[async_trait]
impl ServiceDiscovery for SharedDns {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        self.0.discover().await
    }
}

/// One upstream cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    pub metrics: ClusterMetrics,
    /// Requests, connections and retries in progress, for the circuit breakers and retry budget.
    pub load: ClusterLoad,
    outlier: OutlierDetector,
    /// Too few backends are healthy: health and ejections are ignored (see `update_panic`).
    panic: AtomicBool,
    balancer: Balancer,
    table: Arc<BackendTable>,
    /// None for an IP-literal address: its one backend is fixed.
    dns: Option<Arc<DnsDiscovery>>,
    /// The first discovery (and, with health checks, the first round of probes) has run.
    ready: AtomicBool,
    /// Wakes the probe loop when discovery finds new addresses, so they enter rotation fast.
    probe_now: Notify,
}

impl Cluster {
    /// `resolver` is required for DNS-named clusters and ignored for IP literals.
    pub fn new(
        config: ClusterConfig,
        resolver: Option<TokioResolver>,
        metrics: ClusterMetrics,
    ) -> Result<Cluster, String> {
        let (discovery, dns): (Box<dyn ServiceDiscovery + Send + Sync>, _) = match &config.address {
            Address::Ip(ip) => {
                let addr = SocketAddr::new(*ip, config.port);
                let backend = Backend {
                    addr: PingoraAddr::Inet(addr),
                    weight: 1,
                    ext: Default::default(),
                };
                (Static::new(BTreeSet::from([backend])), None)
            }
            Address::Name(name) => {
                let resolver =
                    resolver.ok_or_else(|| format!("cluster {}: no resolver", config.name))?;
                let refreshes = RefreshCounters {
                    answer: metrics.dns_answer.clone(),
                    empty: metrics.dns_empty.clone(),
                    error: metrics.dns_error.clone(),
                };
                let dns = Arc::new(DnsDiscovery::new(
                    &config.name,
                    name,
                    config.port,
                    config.dns,
                    resolver,
                    refreshes,
                ));
                (Box::new(SharedDns(dns.clone())), Some(dns))
            }
        };
        let table = Arc::new(BackendTable::new(config.health_check.is_some()));
        let mut balancer = Balancer::new(config.lb_policy, discovery);
        if let Some(hc) = &config.health_check {
            let host = config.address.to_string();
            let host = host.trim_end_matches('.');
            let transitions = (
                metrics.became_healthy.clone(),
                metrics.became_unhealthy.clone(),
            );
            let check =
                RecordedHealthCheck::new(&config.name, hc, host, table.clone(), transitions)
                    .map_err(|e| format!("cluster {}: health check: {e}", config.name))?;
            balancer.set_health_check(Box::new(check));
        }
        Ok(Cluster {
            outlier: OutlierDetector::new(config.outlier),
            load: ClusterLoad::default(),
            panic: AtomicBool::new(false),
            config,
            metrics,
            balancer,
            table,
            dns,
            ready: AtomicBool::new(false),
            probe_now: Notify::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub fn table(&self) -> &BackendTable {
        &self.table
    }

    /// Picks a ready backend by the cluster's policy, skipping `exclude` (backends this request
    /// already tried). A backend is ready when it is in the current DNS answer, has passed its
    /// first probe, is not marked down and is not ejected. In panic mode (too few are ready)
    /// every backend that ever passed a probe is a candidate. `key` is the request's hash key
    /// for `ring_hash` and `maglev` (None: a random one).
    pub fn select(&self, exclude: &[SocketAddr], key: Option<&[u8]>) -> Option<SocketAddr> {
        if self.config.lb_policy == LbPolicy::LeastRequest {
            return self.select_least_request(exclude);
        }
        let random;
        let key = match key {
            Some(k) => k,
            None if self.config.lb_policy.hashes() => {
                random = fastrand::u64(..).to_le_bytes();
                &random[..]
            }
            None => b"",
        };
        self.select_one(exclude, key)
    }

    /// Whether `b` may get this request: not in `exclude`, past its first probe, and healthy
    /// and not ejected (or, in panic mode, whatever its health).
    fn accepts(
        &self,
        b: &Backend,
        healthy: bool,
        exclude: &[SocketAddr],
        panic: bool,
        table: &HashMap<SocketAddr, Arc<BackendState>>,
    ) -> bool {
        let Some(addr) = b.addr.as_inet() else {
            return false;
        };
        if exclude.contains(addr) || !self.table.admitted(addr) {
            return false;
        }
        panic
            || (healthy
                && !table
                    .get(addr)
                    .is_some_and(|s| self.outlier.is_ejected(&s.ejection)))
    }

    fn select_one(&self, exclude: &[SocketAddr], key: &[u8]) -> Option<SocketAddr> {
        self.select_one_in(exclude, key, self.panic.load(Relaxed))
            // Probes flip backends one at a time and panic mode is decided once the round is
            // done: in between, every backend may be down while panic mode is still off. A miss
            // decides it again (cheap: misses are rare) so that window answers no 503s.
            .or_else(|| {
                self.panic_now()
                    .then(|| self.select_one_in(exclude, key, true))?
            })
    }

    /// Decides panic mode again; true when that turned it on.
    fn panic_now(&self) -> bool {
        !self.panic.load(Relaxed) && self.update_panic()
    }

    fn select_one_in(&self, exclude: &[SocketAddr], key: &[u8], panic: bool) -> Option<SocketAddr> {
        let table = self.table.map.load();
        let accept = |b: &Backend, healthy: bool| self.accepts(b, healthy, exclude, panic, &table);
        let backends = self.balancer.backends();
        let count = backends.get_backend().len();
        self.balancer
            .select_with(key, count * 2 + 8, accept)
            // The policy's iterator is bounded; when it gives up, a scan makes sure that a lone
            // ready backend among hundreds is still found.
            .or_else(|| {
                backends
                    .get_backend()
                    .iter()
                    .find(|b| accept(b, backends.ready(b)))
                    .cloned()
            })
            .and_then(|b| b.addr.as_inet().copied())
    }

    /// Whether a ready backend outside `exclude` exists. Unlike [`Cluster::select`] it picks
    /// nothing, so asking does not move round robin on.
    pub fn has_ready_backend(&self, exclude: &[SocketAddr]) -> bool {
        self.any_in_rotation(exclude, |_| true)
    }

    /// Whether `addr` fails alone: every other backend in rotation answered its last request.
    /// Moving a request off a lone failing backend (a hung or dying pod) is failover, not the
    /// retry storm a retry budget is for: that is failures spread over the cluster.
    pub fn fails_alone(&self, addr: &SocketAddr) -> bool {
        !self.any_in_rotation(&[*addr], |state| {
            state.is_some_and(|s| s.last_failed.load(Relaxed))
        })
    }

    /// Whether `test` holds for the state of any backend in rotation outside `exclude` (ready
    /// as [`Cluster::select`] sees it), without picking one.
    fn any_in_rotation(
        &self,
        exclude: &[SocketAddr],
        mut test: impl FnMut(Option<&Arc<BackendState>>) -> bool,
    ) -> bool {
        self.any_in_rotation_in(exclude, &mut test, self.panic.load(Relaxed))
            || (self.panic_now() && self.any_in_rotation_in(exclude, &mut test, true))
    }

    fn any_in_rotation_in(
        &self,
        exclude: &[SocketAddr],
        test: &mut impl FnMut(Option<&Arc<BackendState>>) -> bool,
        panic: bool,
    ) -> bool {
        let table = self.table.map.load();
        let backends = self.balancer.backends();
        let found = backends
            .get_backend()
            .iter()
            .filter(|b| self.accepts(b, backends.ready(b), exclude, panic, &table))
            .any(|b| test(b.addr.as_inet().and_then(|a| table.get(a))));
        found
    }

    /// Power of two choices: two random ready backends, the one with fewer requests in flight.
    fn select_least_request(&self, exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let first = self.select_one(exclude, b"")?;
        let mut without_first = exclude.to_vec();
        without_first.push(first);
        let Some(second) = self.select_one(&without_first, b"") else {
            return Some(first);
        };
        let load = |a: &SocketAddr| self.table.get(a).map_or(0, |s| s.in_flight.load(Relaxed));
        Some(if load(&second) < load(&first) {
            second
        } else {
            first
        })
    }

    /// A request to `addr` got a good answer: its failure streak ends.
    pub fn report_success(&self, state: &BackendState) {
        state.last_failed.store(false, Relaxed);
        self.outlier.success(&state.ejection);
    }

    /// A request to `addr` failed (5xx, connect failure, reset, timeout): maybe eject it.
    pub fn report_failure(&self, addr: SocketAddr, state: &BackendState, refused: bool) {
        state.last_failed.store(true, Relaxed);
        if !self.outlier.enabled() {
            return;
        }
        let table = self.table.map.load();
        let ejected = table
            .values()
            .filter(|s| self.outlier.is_ejected(&s.ejection))
            .count();
        if let Some(time) = self
            .outlier
            .failure(&state.ejection, refused, ejected, table.len())
        {
            self.metrics.ejections.inc();
            log::warn!(
                "outlier cluster={} backend={addr} ejected for {} after {} failures in a row (ejection #{})",
                self.config.name,
                duration::display(time),
                self.config.outlier.consecutive_failures,
                state.ejection.times_ejected()
            );
            self.update_panic();
        }
    }

    /// Panic mode (Envoy's healthy panic threshold): when the share of healthy backends among
    /// those that ever passed a probe falls below `healthy_panic_threshold`, health checks and
    /// ejections are most likely wrong (a broken health endpoint, a cluster-wide blip), and
    /// traffic goes to all of them rather than to the few left or to none. Backends that never
    /// passed a probe stay out: they may not be listening yet.
    /// Returns whether the cluster is now in panic mode.
    fn update_panic(&self) -> bool {
        let threshold = self.config.healthy_panic_threshold as usize;
        let backends = self.balancer.backends();
        let table = self.table.map.load();
        let (mut admitted, mut healthy) = (0usize, 0usize);
        for b in backends.get_backend().iter() {
            let Some(addr) = b.addr.as_inet() else {
                continue;
            };
            let admitted_here =
                !self.table.gated || table.get(addr).is_some_and(|s| s.admitted.load(Relaxed));
            if !admitted_here {
                continue;
            }
            admitted += 1;
            let ejected = table
                .get(addr)
                .is_some_and(|s| self.outlier.is_ejected(&s.ejection));
            if backends.ready(b) && !ejected {
                healthy += 1;
            }
        }
        let panic = threshold > 0 && admitted > 0 && healthy * 100 < threshold * admitted;
        if self.panic.swap(panic, Relaxed) != panic {
            if panic {
                log::warn!(
                    "panic cluster={}: only {healthy} of {admitted} backends healthy (below {threshold}%): sending to all {admitted}",
                    self.config.name
                );
            } else {
                log::info!(
                    "panic over cluster={}: {healthy} of {admitted} backends healthy",
                    self.config.name
                );
            }
        }
        self.metrics.panic.set(i64::from(panic));
        panic
    }

    /// One discovery round. Returns whether new addresses appeared.
    async fn refresh(&self) -> bool {
        if let Err(e) = self.balancer.update().await {
            // DnsDiscovery has logged and counted it; the last known backends stay.
            log::debug!("cluster={} discovery failed: {e}", self.config.name);
        }
        let current = self.balancer.backends().get_backend();
        let added = self
            .table
            .sync(current.iter().filter_map(|b| b.addr.as_inet().copied()));
        self.update_panic();
        added
    }

    async fn probe(&self) {
        self.balancer.backends().run_health_check(true).await;
        self.update_panic();
    }

    /// Runs discovery and probes until `shutdown` flips. Calls `on_ready` once the first round is
    /// done, whatever its outcome, so a DNS outage at start-up does not keep the gateway closed.
    pub async fn run(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        on_ready: impl FnOnce(),
    ) {
        self.refresh().await;
        if self.config.health_check.is_some() {
            self.probe().await;
        }
        self.ready.store(true, Relaxed);
        on_ready();

        let discovery = async {
            let Some(dns) = &self.dns else {
                return std::future::pending::<()>().await;
            };
            loop {
                let delay = dns.next_refresh_delay();
                dns.set_next_refresh(Instant::now() + delay);
                tokio::time::sleep(delay).await;
                if self.refresh().await {
                    self.probe_now.notify_one();
                }
            }
        };
        let probes = async {
            let Some(hc) = &self.config.health_check else {
                return std::future::pending::<()>().await;
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(hc.interval) => {}
                    _ = self.probe_now.notified() => {}
                }
                self.probe().await;
            }
        };
        let stopped = async {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    // The server is gone without a shutdown signal: keep serving what we have.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(discovery, probes) } => {}
            _ = stopped => {}
        }
    }

    /// The cluster as `/clusters` shows it.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let backends = self.balancer.backends();
        let table = self.table.map.load();
        let mut list: Vec<BackendSnapshot> = backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let addr = *b.addr.as_inet()?;
                let state = table.get(&addr);
                let admitted = self.table.admitted(&addr);
                Some(BackendSnapshot {
                    address: addr.to_string(),
                    healthy: admitted && backends.ready(b),
                    probed: admitted,
                    since: state.as_ref().map(|s| unix_seconds(*lock(&s.since))),
                    last_error: state.as_ref().and_then(|s| lock(&s.last_error).clone()),
                    requests: state.as_ref().map_or(0, |s| s.requests.load(Relaxed)),
                    in_flight: state.as_ref().map_or(0, |s| s.in_flight.load(Relaxed)),
                    ejected_for_seconds: state.as_ref().and_then(|s| {
                        s.ejection
                            .remaining(self.outlier.now_ms())
                            .map(|d| d.as_secs_f64())
                    }),
                    times_ejected: state.as_ref().map_or(0, |s| s.ejection.times_ejected()),
                    consecutive_failures: state
                        .as_ref()
                        .map_or(0, |s| s.ejection.consecutive_failures()),
                })
            })
            .collect();
        list.sort_by(|a, b| a.address.cmp(&b.address));
        ClusterSnapshot {
            name: self.config.name.clone(),
            address: self.config.address.to_string(),
            port: self.config.port,
            lb_policy: self.config.lb_policy.name(),
            ready: self.is_ready(),
            dns: self.dns.as_ref().map(|d| d.snapshot()),
            health_check: self.config.health_check.as_ref().map(describe_health_check),
            healthy_backends: list
                .iter()
                .filter(|b| b.healthy && b.ejected_for_seconds.is_none())
                .count(),
            panic_mode: self.panic.load(Relaxed),
            requests_in_progress: self.load.requests(),
            retries_in_progress: self.load.retries(),
            backends: list,
        }
    }
}

impl Cluster {
    /// Seconds since DNS last answered, failures in a row since, and whether the backends are
    /// stale (None for IP literals).
    pub fn dns_staleness(&self) -> Option<(Option<f64>, u32, bool)> {
        self.dns.as_ref().map(|d| d.staleness())
    }
}

impl ClusterSnapshot {
    /// Envoy's `/clusters` text form, `cluster::host::stat::value`, for people who grep.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let n = &self.name;
        let _ = writeln!(out, "{n}::address::{}:{}", self.address, self.port);
        let _ = writeln!(out, "{n}::lb_policy::{}", self.lb_policy);
        if let Some(dns) = &self.dns {
            let outcome = serde_json::to_value(dns.last_outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "{n}::dns::last_outcome::{outcome}");
            let _ = writeln!(out, "{n}::dns::addresses::{}", dns.last_answer.len());
            let _ = writeln!(
                out,
                "{n}::dns::consecutive_failures::{}",
                dns.consecutive_failures
            );
            let _ = writeln!(out, "{n}::dns::stale::{}", dns.stale);
        }
        for b in &self.backends {
            let a = &b.address;
            let flags = match (b.healthy, b.probed, b.ejected_for_seconds.is_some()) {
                (true, _, false) => "healthy",
                (true, _, true) => "/failed_outlier_check",
                (false, false, _) => "/pending_active_hc",
                (false, true, _) => "/failed_active_hc",
            };
            let _ = writeln!(out, "{n}::{a}::health_flags::{flags}");
            let _ = writeln!(out, "{n}::{a}::rq_active::{}", b.in_flight);
            let _ = writeln!(out, "{n}::{a}::rq_total::{}", b.requests);
        }
        out
    }
}

fn describe_health_check(hc: &HealthCheckConfig) -> String {
    let what = match &hc.kind {
        HealthCheckKind::Http { path, .. } => format!("http GET {path}"),
        HealthCheckKind::Tcp => "tcp connect".to_owned(),
    };
    format!(
        "{what} every {} (timeout {}, healthy after {}, unhealthy after {})",
        duration::display(hc.interval),
        duration::display(hc.timeout),
        hc.healthy_threshold,
        hc.unhealthy_threshold
    )
}

#[derive(Debug, Serialize)]
pub struct ClusterSnapshot {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub lb_policy: &'static str,
    /// First discovery round done.
    pub ready: bool,
    /// None for an IP-literal address.
    pub dns: Option<DnsSnapshot>,
    pub health_check: Option<String>,
    /// Backends getting traffic now: healthy and not ejected.
    pub healthy_backends: usize,
    /// Too few healthy backends: traffic goes to every probed backend (healthy_panic_threshold).
    pub panic_mode: bool,
    pub requests_in_progress: u32,
    pub retries_in_progress: u32,
    pub backends: Vec<BackendSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct BackendSnapshot {
    pub address: String,
    /// Gets new requests: in DNS, first probe passed, not marked down.
    pub healthy: bool,
    /// Has passed a probe since it was discovered (true when the cluster has no health check).
    pub probed: bool,
    /// Unix seconds since `healthy` last changed.
    pub since: Option<f64>,
    pub last_error: Option<String>,
    pub requests: u64,
    pub in_flight: i64,
    /// Seconds left of an outlier ejection; None when not ejected.
    pub ejected_for_seconds: Option<f64>,
    pub times_ejected: u32,
    /// Failed requests in a row (passive health).
    pub consecutive_failures: u32,
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
