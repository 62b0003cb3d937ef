//! One cluster: a pingora `LoadBalancer` fed by discovery, pruned by health checks, with the
//! per-backend state that the request path and `/clusters` read.
//!
//! The cluster drives discovery and probes itself (see [`Cluster::run`]) instead of using
//! pingora's background loop, whose fixed period cannot follow TTLs or back off on DNS errors,
//! and which probes only after discovery in the same sequential loop.

use crate::config::{duration, Address, ClusterConfig, Discovery, LbPolicy, UpstreamProtocol};
use crate::metrics::ClusterMetrics;
use crate::upstream::backends::{BackendState, BackendTable};
use crate::upstream::breaker::ClusterLoad;
use crate::upstream::discovery::{DnsDiscovery, RefreshCounters};
use crate::upstream::health::{ProbeConnectors, RecordedHealthCheck};
use crate::upstream::lb::rotation::{self, Rotation};
use crate::upstream::lb::{self, Balancer};
use crate::upstream::names::Names;
use crate::upstream::outlier::OutlierDetector;
use crate::upstream::tls::PeerTls;
use async_trait::async_trait;
use pingora::lb::discovery::{ServiceDiscovery, Static};
use pingora::lb::Backend;
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::Result;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::Notify;

/// Streams one upstream HTTP/2 connection carries at once: 100, the least RFC 9113 §6.5.2
/// asks a server to allow (nginx allows 128); a server that allows fewer says so in its
/// SETTINGS and pingora keeps to that.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// Lets the load balancer own a discovery that the cluster also reads for `/clusters`.
struct SharedDns(Arc<DnsDiscovery>);

#[async_trait]
impl ServiceDiscovery for SharedDns {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        self.0.discover().await
    }
}

/// A picked backend: its address, and its state while it is a current backend.
pub type Picked = (SocketAddr, Option<Arc<BackendState>>);

/// One upstream cluster.
pub struct Cluster {
    /// The cluster's conf (`gateway.clusters[]`).
    pub config: ClusterConfig,
    /// Its series in `/metrics`.
    pub metrics: ClusterMetrics,
    /// Requests, connections and retries in progress, for the circuit breakers and retry budget.
    pub load: Arc<ClusterLoad>,
    pub(super) outlier: OutlierDetector,
    /// Too few backends are healthy: health and ejections are ignored (see `update_panic`).
    pub(super) panic: AtomicBool,
    /// Discovery and active health checks, and the pick for keyed policies.
    pub(super) balancer: Box<dyn Balancer>,
    /// The pick for rotation policies (round robin, random, least request).
    rotation: Option<Rotation>,
    pub(super) table: Arc<BackendTable>,
    /// None for an IP-literal address: its one backend is fixed.
    pub(super) dns: Option<Arc<DnsDiscovery>>,
    /// The first discovery (and, with health checks, the first round of probes) has run.
    pub(super) ready: AtomicBool,
    /// Wakes the probe loop when discovery finds new addresses, so they enter rotation fast.
    pub(super) probe_now: Notify,
    /// Flipped when a reload removes the cluster: its discovery and probes stop.
    pub(super) retired: tokio::sync::watch::Sender<bool>,
    /// `tls`: how its peers speak TLS; `None`: cleartext.
    pub tls: Option<Arc<PeerTls>>,
}

impl Cluster {
    /// `names` (the gateway's lookups) is required for DNS-named clusters and ignored for IP
    /// literals; `probes` are the connectors its health checks use, shared by every cluster.
    pub fn new(
        config: ClusterConfig,
        names: Option<Arc<Names>>,
        probes: Arc<ProbeConnectors>,
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
                let names = names.ok_or_else(|| format!("cluster {}: no resolver", config.name))?;
                let refreshes = RefreshCounters {
                    answer: metrics.dns_answer.clone(),
                    empty: metrics.dns_empty.clone(),
                    error: metrics.dns_error.clone(),
                };
                let dns = DnsDiscovery::new(
                    &config.name,
                    name,
                    config.port,
                    config.dns,
                    names,
                    refreshes,
                );
                let dns = Arc::new(match config.discovery {
                    Discovery::Srv => dns.srv(),
                    Discovery::Dns => dns,
                });
                (Box::new(SharedDns(dns.clone())), Some(dns))
            }
        };
        let table = Arc::new(BackendTable::new(
            config.health_check.is_some(),
            config.slow_start,
        ));
        let tls = config
            .tls
            .as_ref()
            .map(|tls| Arc::new(PeerTls::new(&config.name, tls, &metrics.tls_errors)));
        let mut balancer = lb::balancer(config.lb_policy, discovery);
        if let Some(hc) = &config.health_check {
            let host = config.address.to_string();
            let host = host.trim_end_matches('.');
            let transitions = (
                metrics.became_healthy.clone(),
                metrics.became_unhealthy.clone(),
            );
            let check = RecordedHealthCheck::new(
                &config.name,
                hc,
                host,
                tls.clone(),
                table.clone(),
                transitions,
                probes,
            )
            .map_err(|e| format!("cluster {}: health check: {e}", config.name))?;
            balancer.set_health_check(Box::new(check));
        }
        Ok(Cluster {
            outlier: OutlierDetector::new(config.outlier),
            load: Arc::default(),
            panic: AtomicBool::new(false),
            rotation: lb::rotation_for(config.lb_policy),
            config,
            metrics,
            balancer,
            table,
            dns,
            ready: AtomicBool::new(false),
            probe_now: Notify::new(),
            retired: tokio::sync::watch::channel(false).0,
            tls,
        })
    }

    /// A peer for the backend at `addr`: cleartext HTTP/1.1 or h2c per `protocol`, or TLS per
    /// `tls`. Timeouts are the request's to set.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        match &self.tls {
            Some(tls) => tls.apply(&mut peer),
            // Cleartext HTTP/2 with prior knowledge (h2c), as gRPC backends expect.
            None if self.config.protocol == UpstreamProtocol::Http2 => {
                peer.options.set_http_version(2, 2)
            }
            None => {}
        }
        // pingora's default is one stream per HTTP/2 connection (a connection per concurrent
        // request, those beyond the idle pool's 128 closed after one use): share them instead.
        if peer.options.alpn != pingora::protocols::ALPN::H1 {
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        peer
    }

    /// The cluster's name, as routes name it.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the first discovery (and first round of probes) has run.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// The backends as the gateway knows them (health, requests, passive health).
    pub fn table(&self) -> &BackendTable {
        &self.table
    }

    /// Picks a ready backend by the cluster's policy, skipping `exclude` (backends this request
    /// already tried): its address, and its state when it is still a current backend. A
    /// backend is ready when it is in the current DNS answer, has passed its first probe, is
    /// not marked down and is not ejected. In panic mode (too few are ready) every backend that
    /// ever passed a probe is a candidate. `key` is the request's hash key for `ring_hash` and
    /// `maglev` (None: a random one).
    pub fn select(&self, exclude: &[SocketAddr], key: Option<&[u8]>) -> Option<Picked> {
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

    /// Whether a backend with this state may get a request: past its first probe, and healthy
    /// and not ejected (or, in panic mode, whatever its health).
    fn eligible(&self, state: &BackendState, panic: bool) -> bool {
        if self.table.gated && !state.admitted.load(Relaxed) {
            return false;
        }
        panic
            || (state.healthy()
                && !(self.outlier.enabled() && self.outlier.is_ejected(&state.ejection)))
    }

    fn select_one(&self, exclude: &[SocketAddr], key: &[u8]) -> Option<Picked> {
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

    fn select_one_in(&self, exclude: &[SocketAddr], key: &[u8], panic: bool) -> Option<Picked> {
        let members = self.table.map.load();
        let eligible = |addr: &SocketAddr, state: &BackendState| {
            !exclude.contains(addr) && self.eligible(state, panic)
        };
        if let Some(rotation) = &self.rotation {
            if let Some(now) = self.table.ramping() {
                // Slow start: shares by weight while a backend ramps. Least request weighs by
                // load too, as Envoy's does with unequal weights: weight / (in flight + 1).
                let least = self.config.lb_policy == LbPolicy::LeastRequest;
                let weight = |(_, s): &(SocketAddr, Arc<BackendState>)| {
                    let w = self.table.weight(s, now);
                    if least {
                        w / (s.in_flight.load(Relaxed).max(0) as f64 + 1.0)
                    } else {
                        w
                    }
                };
                return rotation::pick_weighted(
                    members.in_order(),
                    |(a, s)| eligible(a, s),
                    weight,
                )
                .map(|(addr, state)| (*addr, Some(state.clone())));
            }
            return rotation
                .pick(members.in_order(), |(a, s)| eligible(a, s))
                .map(|(addr, state)| (*addr, Some(state.clone())));
        }
        // pingora's own health flag is mirrored in the state (`BackendState::healthy`).
        let accept = |b: &Backend, _: bool| {
            b.addr
                .as_inet()
                .and_then(|a| members.get_key_value(a))
                .is_some_and(|(a, s)| eligible(a, s))
        };
        let count = members.len();
        let picked = self
            .balancer
            .select_with(key, count * 2 + 8, &accept)
            .and_then(|b| b.addr.as_inet().copied())
            // The policy's iterator is bounded; when it gives up, a scan makes sure that a lone
            // ready backend among hundreds is still found.
            .or_else(|| {
                let mut all = members.in_order().iter();
                all.find(|(a, s)| eligible(a, s)).map(|m| m.0)
            })?;
        Some((picked, members.get(&picked).cloned()))
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
        !self.any_in_rotation(&[*addr], |state| state.last_failed.load(Relaxed))
    }

    /// Whether `test` holds for the state of any backend in rotation outside `exclude` (ready
    /// as [`Cluster::select`] sees it), without picking one.
    fn any_in_rotation(
        &self,
        exclude: &[SocketAddr],
        mut test: impl FnMut(&BackendState) -> bool,
    ) -> bool {
        self.any_in_rotation_in(exclude, &mut test, self.panic.load(Relaxed))
            || (self.panic_now() && self.any_in_rotation_in(exclude, &mut test, true))
    }

    fn any_in_rotation_in(
        &self,
        exclude: &[SocketAddr],
        test: &mut impl FnMut(&BackendState) -> bool,
        panic: bool,
    ) -> bool {
        let members = self.table.map.load();
        let found = members
            .in_order()
            .iter()
            .filter(|(a, s)| !exclude.contains(a) && self.eligible(s, panic))
            .any(|(_, s)| test(s));
        found
    }

    /// Least request (Envoy's default: power of two choices): of two random ready backends,
    /// the one with fewer requests in flight.
    fn select_least_request(&self, exclude: &[SocketAddr]) -> Option<Picked> {
        if self.table.ramping().is_some() {
            // One draw weighted by ramp and load (see `select_one_in`).
            return self.select_one(exclude, b"");
        }
        let first = self.select_one(exclude, b"")?;
        let mut without_first = exclude.to_vec();
        without_first.push(first.0);
        let Some(second) = self.select_one(&without_first, b"") else {
            return Some(first);
        };
        let load = |p: &Picked| p.1.as_ref().map_or(0, |s| s.in_flight.load(Relaxed));
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
        state.window.record(0, 1, None);
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
    pub(super) fn update_panic(&self) -> bool {
        let threshold = self.config.healthy_panic_threshold as usize;
        let members = self.table.map.load();
        let (mut admitted, mut healthy) = (0usize, 0usize);
        for (_, state) in members.in_order() {
            if self.table.gated && !state.admitted.load(Relaxed) {
                continue;
            }
            admitted += 1;
            if state.healthy() && !self.outlier.is_ejected(&state.ejection) {
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
}

impl Cluster {
    /// Seconds since DNS last answered, failures in a row since, and whether the backends are
    /// stale (None for IP literals).
    pub fn dns_staleness(&self) -> Option<(Option<f64>, u32, bool)> {
        self.dns.as_ref().map(|d| d.staleness())
    }
}
