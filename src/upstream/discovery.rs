//! DNS discovery of a headless service's pods: a pingora `ServiceDiscovery` over hickory-resolver.
//!
//! Each refresh resolves the cluster's name afresh (the resolver caches nothing; clusters that
//! share a name share its lookup, see `names.rs`) and turns every address into a backend
//! `ip:port`. What a STRICT_DNS user expects:
//! - an answer (any number of records; big answers come over TCP) replaces the backend set;
//! - NXDOMAIN or an empty NOERROR answer (the service scaled to zero) empties it;
//! - a resolver failure (timeout, SERVFAIL, REFUSED, no network) keeps the last known set, is
//!   logged and counted, and the next attempt comes sooner, backing off as failures repeat.

pub use super::lookup::Lookup;
use super::names::{Names, Question};
/// Kept here too: callers built the resolver from this module before it had a file of its own.
pub use super::resolver::build_resolver;
use crate::config::{duration, DnsSettings};
use crate::{lock, rfc3339};
use async_trait::async_trait;
use log::{info, warn};
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::{Error, ErrorType, Result};
use prometheus::IntCounter;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How the last refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not asked yet.
    Pending,
    /// One or more addresses.
    Answer,
    /// NXDOMAIN or an empty answer: the cluster has no backends.
    Empty,
    /// The resolver failed: the last known backends are kept.
    Error,
}

/// What `/clusters` and the metrics show of a cluster's DNS, updated by every refresh.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DnsSnapshot {
    /// How the last refresh ended.
    pub last_outcome: Outcome,
    /// When the last refresh got an answer (addresses or authoritative empty), RFC 3339.
    pub last_success: Option<String>,
    /// The addresses of the last answer, sorted, each once; empty after an empty answer.
    pub last_answer: Vec<IpAddr>,
    /// For `discovery: srv`: the SRV records behind the backends (`priority weight port
    /// target`), sorted; absent for A/AAAA discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srv_records: Option<Vec<String>>,
    /// Smallest TTL in the last answer, seconds.
    pub last_ttl_seconds: Option<u64>,
    /// When (RFC 3339) and why the resolver last failed.
    pub last_error: Option<(String, String)>,
    /// Resolver failures in a row; 0 once an answer (or an empty one) arrives.
    pub consecutive_failures: u32,
    /// DNS has failed for longer than three refresh intervals (or three attempts in a row,
    /// if it never answered): the backends may be out of date.
    pub stale: bool,
    /// Seconds until the next refresh is due.
    pub next_refresh_in_seconds: Option<f64>,
    /// Refreshes that got addresses, since start-up.
    pub refreshes_answer: u64,
    /// Refreshes that got NXDOMAIN or no records, since start-up.
    pub refreshes_empty: u64,
    /// Refreshes the resolver failed, since start-up.
    pub refreshes_error: u64,
}

#[derive(Debug)]
struct DnsState {
    last_outcome: Outcome,
    last_success: Option<SystemTime>,
    last_answer: Vec<IpAddr>,
    /// SRV discovery: the records of the last answer, and which one each backend came from.
    last_srv: Vec<String>,
    srv_of: HashMap<SocketAddr, String>,
    last_ttl: Option<Duration>,
    last_error: Option<(SystemTime, String)>,
    consecutive_failures: u32,
    /// When the current run of failures began.
    failing_since: Option<SystemTime>,
    next_refresh: Option<Instant>,
}

impl DnsState {
    /// Failing for longer than three refresh intervals (or three attempts, if it never
    /// succeeded): worth an alert, since pods may have come and gone unseen.
    fn stale(&self, refresh_rate: Duration) -> bool {
        self.last_outcome == Outcome::Error
            && match (self.last_success, self.failing_since) {
                (None, _) => self.consecutive_failures >= 3,
                (Some(_), Some(since)) => since
                    .elapsed()
                    .is_ok_and(|d| d > refresh_rate.saturating_mul(3)),
                (Some(_), None) => false,
            }
    }
}

/// Resolves one name for one cluster. See the module doc for the semantics.
pub struct DnsDiscovery {
    cluster: String,
    /// The name, its family, and whether SRV records are asked (see `srv.rs`).
    question: Question,
    port: u16,
    settings: DnsSettings,
    names: Arc<Names>,
    state: Mutex<DnsState>,
    refreshes: RefreshCounters,
}

/// Refreshes by result, shared with the metrics registry.
pub struct RefreshCounters {
    /// `headway_dns_refreshes_total{result="answer"}`.
    pub answer: IntCounter,
    /// `headway_dns_refreshes_total{result="empty"}`.
    pub empty: IntCounter,
    /// `headway_dns_refreshes_total{result="error"}`.
    pub error: IntCounter,
}

impl DnsDiscovery {
    /// Discovery of the backends `name:port` for the cluster named `cluster` (in logs), with
    /// the cluster's DNS settings, asking through the gateway's [`Names`]. Nothing is asked
    /// until the first refresh.
    pub fn new(
        cluster: &str,
        name: &str,
        port: u16,
        settings: DnsSettings,
        names: Arc<Names>,
        refreshes: RefreshCounters,
    ) -> DnsDiscovery {
        DnsDiscovery {
            cluster: cluster.to_owned(),
            question: Question {
                name: name.to_owned(),
                family: settings.lookup_family,
                srv: false,
            },
            port,
            settings,
            names,
            state: Mutex::new(DnsState {
                last_outcome: Outcome::Pending,
                last_success: None,
                last_answer: Vec::new(),
                last_srv: Vec::new(),
                srv_of: HashMap::new(),
                last_ttl: None,
                last_error: None,
                consecutive_failures: 0,
                failing_since: None,
                next_refresh: None,
            }),
            refreshes,
        }
    }

    /// The same discovery of SRV records: `name` is an SRV name, each backend's port its
    /// record's (`port` is not used).
    pub fn srv(mut self) -> DnsDiscovery {
        self.question.srv = true;
        self
    }

    /// The name's answer: a lookup of its own, or that of another cluster with the same name
    /// that ended less than a quarter of `dns_refresh_rate` (at most a second) ago.
    async fn lookup(&self) -> Lookup {
        let fresh_within = (self.settings.refresh_rate / 4).min(Duration::from_secs(1));
        self.names.lookup(&self.question, fresh_within).await
    }

    /// When the refresh after one now is due: [`DnsDiscovery::next_refresh_delay`] from now,
    /// moved to the name's own instants so that names are spread over the interval (see
    /// [`Names::due`]).
    pub fn next_refresh_at(&self, now: Instant) -> Instant {
        self.names
            .due(&self.question.name, now, self.next_refresh_delay())
    }

    /// How long to wait before the next refresh, given how the last one ended: the TTL (never
    /// under `dns_min_refresh_rate`) or `dns_refresh_rate` after an answer; after failures,
    /// `dns_failure_refresh_rate` doubled per consecutive failure, never beyond `dns_refresh_rate`.
    pub fn next_refresh_delay(&self) -> Duration {
        let state = lock(&self.state);
        let s = &self.settings;
        match state.last_outcome {
            Outcome::Error => {
                let doublings = state.consecutive_failures.saturating_sub(1).min(16);
                let backoff = s.failure_refresh_rate.saturating_mul(1 << doublings);
                backoff.min(s.refresh_rate.max(s.failure_refresh_rate))
            }
            Outcome::Answer if s.respect_ttl => state
                .last_ttl
                .unwrap_or(s.refresh_rate)
                .max(s.min_refresh_rate),
            _ => s.refresh_rate,
        }
    }

    /// Records when the scheduler will refresh next, for `/clusters`.
    pub fn set_next_refresh(&self, at: Instant) {
        lock(&self.state).next_refresh = Some(at);
    }

    /// The DNS name resolved: the cluster's `address`.
    pub fn name(&self) -> &str {
        &self.question.name
    }

    /// Seconds since the last answer, failures in a row since, and whether that makes the
    /// backends stale, for the metrics.
    pub fn staleness(&self) -> (Option<f64>, u32, bool) {
        let state = lock(&self.state);
        let age = state
            .last_success
            .and_then(|t| t.elapsed().ok())
            .map(|d| d.as_secs_f64());
        (
            age,
            state.consecutive_failures,
            state.stale(self.settings.refresh_rate),
        )
    }

    /// The SRV record a backend came from (SRV discovery only).
    pub fn srv_record(&self, addr: &SocketAddr) -> Option<String> {
        lock(&self.state).srv_of.get(addr).cloned()
    }

    /// The DNS state as `/clusters` shows it.
    pub fn snapshot(&self) -> DnsSnapshot {
        let state = lock(&self.state);
        DnsSnapshot {
            last_outcome: state.last_outcome,
            last_success: state.last_success.map(rfc3339),
            last_answer: state.last_answer.clone(),
            srv_records: self.question.srv.then(|| state.last_srv.clone()),
            last_ttl_seconds: state.last_ttl.map(|t| t.as_secs()),
            last_error: state
                .last_error
                .as_ref()
                .map(|(at, e)| (rfc3339(*at), e.clone())),
            consecutive_failures: state.consecutive_failures,
            stale: state.stale(self.settings.refresh_rate),
            next_refresh_in_seconds: state
                .next_refresh
                .map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64()),
            refreshes_answer: self.refreshes.answer.get(),
            refreshes_empty: self.refreshes.empty.get(),
            refreshes_error: self.refreshes.error.get(),
        }
    }

    fn backends(&self, ips: &[IpAddr]) -> BTreeSet<Backend> {
        ips.iter()
            .map(|ip| Backend {
                addr: PingoraAddr::Inet(SocketAddr::new(*ip, self.port)),
                weight: 1,
                ext: Default::default(),
            })
            .collect()
    }
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    /// Resolves the name once and applies the outcome (see [`DnsDiscovery::apply`]).
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let result = self.lookup().await;
        self.apply(result, SystemTime::now())
    }
}

impl DnsDiscovery {
    /// Takes one lookup's outcome into the cluster's DNS state and gives pingora what it acts
    /// on: an answer's backend set (sorted, each address once), an empty set for a name with
    /// no pods, or an error for a failure, on which pingora keeps the backends it has. Logs and
    /// counts every outcome (pingora's update loop drops errors silently).
    pub fn apply(
        &self,
        result: Lookup,
        now: SystemTime,
    ) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut state = lock(&self.state);
        match result {
            Lookup::Answer(mut ips, ttl) => {
                ips.sort_unstable();
                ips.dedup();
                self.refreshes.answer.inc();
                if state.last_outcome != Outcome::Answer || state.last_answer != ips {
                    info!(
                        "dns cluster={} name={} addresses={} ttl={}",
                        self.cluster,
                        self.question.name,
                        ips.len(),
                        duration::display(ttl)
                    );
                }
                if state.consecutive_failures > 0 {
                    info!(
                        "dns recovered cluster={} name={} after={} failures",
                        self.cluster, self.question.name, state.consecutive_failures
                    );
                }
                let backends = self.backends(&ips);
                state.last_outcome = Outcome::Answer;
                state.last_success = Some(now);
                state.last_answer = ips;
                state.last_ttl = Some(ttl);
                state.consecutive_failures = 0;
                state.failing_since = None;
                Ok((backends, HashMap::new()))
            }
            Lookup::Srv(mut endpoints, ttl) => {
                endpoints.sort_by(|a, b| (a.addr, &a.record).cmp(&(b.addr, &b.record)));
                endpoints.dedup_by(|a, b| a.addr == b.addr);
                let mut records: Vec<String> = endpoints.iter().map(|e| e.record.clone()).collect();
                records.sort();
                records.dedup();
                self.refreshes.answer.inc();
                if state.last_outcome != Outcome::Answer || state.last_srv != records {
                    info!(
                        "dns cluster={} srv={} records={} backends={} ttl={}",
                        self.cluster,
                        self.question.name,
                        records.len(),
                        endpoints.len(),
                        duration::display(ttl)
                    );
                }
                let backends = endpoints
                    .iter()
                    .map(|e| Backend {
                        addr: PingoraAddr::Inet(e.addr),
                        weight: 1,
                        ext: Default::default(),
                    })
                    .collect();
                let mut ips: Vec<IpAddr> = endpoints.iter().map(|e| e.addr.ip()).collect();
                ips.sort_unstable();
                ips.dedup();
                state.last_outcome = Outcome::Answer;
                state.last_success = Some(now);
                state.last_answer = ips;
                state.last_srv = records;
                state.srv_of = endpoints
                    .iter()
                    .map(|e| (e.addr, e.record.clone()))
                    .collect();
                state.last_ttl = Some(ttl);
                state.consecutive_failures = 0;
                state.failing_since = None;
                Ok((backends, HashMap::new()))
            }
            Lookup::Empty(why) => {
                self.refreshes.empty.inc();
                if state.last_outcome != Outcome::Empty {
                    warn!(
                        "dns cluster={} name={} result={why}: the cluster has no backends",
                        self.cluster, self.question.name
                    );
                }
                state.last_outcome = Outcome::Empty;
                state.last_success = Some(now);
                state.last_answer.clear();
                state.last_srv.clear();
                state.srv_of.clear();
                state.last_ttl = None;
                state.consecutive_failures = 0;
                state.failing_since = None;
                Ok((BTreeSet::new(), HashMap::new()))
            }
            Lookup::Failed(message) => {
                self.refreshes.error.inc();
                let was_stale = state.stale(self.settings.refresh_rate);
                state.failing_since.get_or_insert(now);
                state.last_outcome = Outcome::Error;
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.last_error = Some((now, message.clone()));
                warn!(
                    "dns cluster={} name={} error=\"{message}\" failures={} keeping={} last known backends",
                    self.cluster,
                    self.question.name,
                    state.consecutive_failures,
                    state.last_answer.len()
                );
                if !was_stale && state.stale(self.settings.refresh_rate) {
                    log::error!(
                        "dns cluster={} name={} stale: failing for over {} with no answer; serving the {} last known backends",
                        self.cluster,
                        self.question.name,
                        duration::display(self.settings.refresh_rate.saturating_mul(3)),
                        state.last_answer.len()
                    );
                }
                Error::e_explain(
                    ErrorType::Custom("DnsError"),
                    format!(
                        "resolving {} for cluster {}: {message}",
                        self.question.name, self.cluster
                    ),
                )
            }
        }
    }
}
