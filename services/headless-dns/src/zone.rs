//! The records a [`DnsServer`](crate::DnsServer) answers from, changed at runtime from any thread.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// How the server answers every query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsMode {
    /// Answer from the zone's records (the default).
    #[default]
    Normal,
    /// Answer SERVFAIL to everything.
    ServFail,
    /// Answer REFUSED to everything.
    Refused,
    /// Never answer (a dead or unreachable DNS server: clients time out). Queries are still counted.
    Drop,
    /// Answer over UDP truncated (TC set, no records), and never over TCP: the fallback that a
    /// truncated answer sends clients to is broken (a firewall that drops DNS over TCP).
    BrokenTcp,
}

impl DnsMode {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => DnsMode::ServFail,
            2 => DnsMode::Refused,
            3 => DnsMode::Drop,
            4 => DnsMode::BrokenTcp,
            _ => DnsMode::Normal,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            DnsMode::Normal => 0,
            DnsMode::ServFail => 1,
            DnsMode::Refused => 2,
            DnsMode::Drop => 3,
            DnsMode::BrokenTcp => 4,
        }
    }
}

/// The records of one existing name. Both lists empty = the name exists with no addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRecords {
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
    pub srv: Vec<Srv>,
    /// An alias: the name answers a CNAME record to this name, followed within the zone (the
    /// other lists are then not served), as cluster DNS answers for an `ExternalName` Service.
    pub cname: Option<String>,
    /// The TTL of this name's records; `None`: the zone's.
    pub ttl: Option<u32>,
    /// A misbehaving answer: this name's records are answered as owned by this other name,
    /// with no CNAME linking the two (a broken server, or a spoofing attempt).
    pub answered_as: Option<String>,
}

/// One SRV record (RFC 2782): a target host and its port, with priority and weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// A name of the zone (its A records go in the answer's additional section).
    pub target: String,
}

/// The names a server knows, their records, TTL and [`DnsMode`], and query counters.
///
/// A cheap handle: clones share the same records, so the owner of a server keeps one to change
/// what it answers. It outlives any server using it (a server stopped and bound again on the same
/// port keeps its records and counters).
///
/// Defaults: no names (everything is NXDOMAIN), TTL 1 s, [`DnsMode::Normal`].
/// Names are compared case-insensitively, with or without their trailing dot.
#[derive(Clone)]
pub struct Zone {
    state: Arc<ZoneState>,
}

struct ZoneState {
    names: Mutex<HashMap<String, NameRecords>>,
    ttl: AtomicU32,
    mode: AtomicU8,
    queries: AtomicU64,
    tcp_queries: AtomicU64,
    /// The last names asked (lowercase, as asked: with the final dot), at most `ASKED_KEPT`.
    asked: Mutex<std::collections::VecDeque<String>>,
    /// Queries per 10 ms: (the current 10 ms since `born`, its count, the largest count since
    /// [`Zone::take_peak_per_10ms`]), to see whether clients ask all at once.
    burst: Mutex<(u128, u32, u32)>,
    born: std::time::Instant,
}

/// How many asked names [`Zone::asked`] keeps.
const ASKED_KEPT: usize = 10_000;

impl Default for Zone {
    fn default() -> Self {
        Zone::new()
    }
}

impl Zone {
    /// An empty zone: see the type's defaults.
    pub fn new() -> Zone {
        Zone {
            state: Arc::new(ZoneState {
                names: Mutex::new(HashMap::new()),
                ttl: AtomicU32::new(1),
                mode: AtomicU8::new(DnsMode::Normal.as_u8()),
                queries: AtomicU64::new(0),
                tcp_queries: AtomicU64::new(0),
                asked: Mutex::new(std::collections::VecDeque::new()),
                burst: Mutex::new((0, 0, 0)),
                born: std::time::Instant::now(),
            }),
        }
    }

    /// Replaces the A records of `name`. No address leaves the name existing without A records:
    /// NOERROR with an empty answer.
    pub fn set_a(&self, name: &str, ips: impl IntoIterator<Item = Ipv4Addr>) {
        self.names().entry(normalize(name)).or_default().a = ips.into_iter().collect();
    }

    /// Replaces the AAAA records of `name`; see [`Zone::set_a`].
    pub fn set_aaaa(&self, name: &str, ips: impl IntoIterator<Item = Ipv6Addr>) {
        self.names().entry(normalize(name)).or_default().aaaa = ips.into_iter().collect();
    }

    /// Sets `name` as cluster DNS does for a headless service: one A record per ready pod, and
    /// NXDOMAIN (the name is removed) when no pod is ready. Any AAAA records of the name go.
    pub fn set_headless_service(&self, name: &str, ready_pods: impl IntoIterator<Item = Ipv4Addr>) {
        let a: Vec<Ipv4Addr> = ready_pods.into_iter().collect();
        let mut names = self.names();
        if a.is_empty() {
            names.remove(&normalize(name));
        } else {
            names.insert(
                normalize(name),
                NameRecords {
                    a,
                    ..NameRecords::default()
                },
            );
        }
    }

    /// Sets the SRV records of a headless service's named port as cluster DNS does:
    /// `_<port>._<proto>.<service>` answers one SRV record per ready pod (priority 0, equal
    /// weights, `port`, target `<ip with dashes>.<service>`), and each target answers its A
    /// record; NXDOMAIN when no pod is ready. `srv_name` is the full `_http._tcp.<service>` name.
    pub fn set_headless_srv(&self, srv_name: &str, port: u16, ready_pods: &[Ipv4Addr]) {
        let service = normalize(srv_name)
            .splitn(3, '.')
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        let mut names = self.names();
        if let Some(old) = names.remove(&normalize(srv_name)) {
            for srv in old.srv {
                names.remove(&normalize(&srv.target));
            }
        }
        if ready_pods.is_empty() {
            return;
        }
        let weight = u16::try_from(100 / ready_pods.len()).unwrap_or(1).max(1);
        let srv = ready_pods
            .iter()
            .map(|ip| {
                // Fully qualified, as cluster DNS writes targets: no resolver appends a search
                // domain to it.
                let target = format!("{}.{service}.", ip.to_string().replace('.', "-"));
                names.insert(
                    normalize(&target),
                    NameRecords {
                        a: vec![*ip],
                        ..NameRecords::default()
                    },
                );
                Srv {
                    priority: 0,
                    weight,
                    port,
                    target,
                }
            })
            .collect();
        names.insert(
            normalize(srv_name),
            NameRecords {
                srv,
                ..NameRecords::default()
            },
        );
    }

    /// Replaces the SRV records of `name` (targets are not touched).
    pub fn set_srv(&self, name: &str, records: Vec<Srv>) {
        self.names().entry(normalize(name)).or_default().srv = records;
    }

    /// Makes `name` an alias of `target`: it answers a CNAME record, and the zone's records of
    /// `target` (followed through further aliases) after it.
    pub fn set_cname(&self, name: &str, target: &str) {
        self.names().entry(normalize(name)).or_default().cname = Some(target.to_owned());
    }

    /// The TTL of `name`'s records (its CNAME, or its addresses), instead of the zone's.
    pub fn set_name_ttl(&self, name: &str, secs: u32) {
        self.names().entry(normalize(name)).or_default().ttl = Some(secs);
    }

    /// Misbehaves for `name`: its records are answered as owned by `other`, no CNAME linking
    /// them. A resolver must not take them as `name`'s.
    pub fn set_answered_as(&self, name: &str, other: &str) {
        self.names().entry(normalize(name)).or_default().answered_as = Some(other.to_owned());
    }

    /// Makes `name` not exist any more: queries for it get NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.names().remove(&normalize(name));
    }

    /// The records of `name`, `None` when it does not exist.
    pub fn records(&self, name: &str) -> Option<NameRecords> {
        self.names().get(&normalize(name)).cloned()
    }

    /// TTL of every record served from now on (answers and the negative-caching SOA).
    pub fn set_ttl(&self, secs: u32) {
        self.state.ttl.store(secs, Ordering::SeqCst);
    }

    pub fn ttl(&self) -> u32 {
        self.state.ttl.load(Ordering::SeqCst)
    }

    /// Changes how every query is answered from now on.
    pub fn set_mode(&self, mode: DnsMode) {
        self.state.mode.store(mode.as_u8(), Ordering::SeqCst);
    }

    pub fn mode(&self) -> DnsMode {
        DnsMode::from_u8(self.state.mode.load(Ordering::SeqCst))
    }

    /// Queries received (any type, any mode, UDP and TCP) by every server using this zone.
    pub fn queries(&self) -> u64 {
        self.state.queries.load(Ordering::SeqCst)
    }

    /// Queries received over TCP (e.g. retries after a truncated UDP answer).
    pub fn tcp_queries(&self) -> u64 {
        self.state.tcp_queries.load(Ordering::SeqCst)
    }

    /// The names asked, oldest first (the last 10,000).
    pub fn asked(&self) -> Vec<String> {
        self.state
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn record_asked(&self, name: &str) {
        let mut asked = self.state.asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.len() == ASKED_KEPT {
            asked.pop_front();
        }
        asked.push_back(name.to_ascii_lowercase());
    }

    /// The most queries received within one 10 ms since the last call (or the start).
    pub fn take_peak_per_10ms(&self) -> u32 {
        let mut burst = self.state.burst.lock().unwrap_or_else(|p| p.into_inner());
        let peak = burst.2.max(burst.1);
        burst.2 = 0;
        burst.1 = 0;
        peak
    }

    pub(crate) fn count_query(&self, over_tcp: bool) {
        {
            let slot = self.state.born.elapsed().as_millis() / 10;
            let mut burst = self.state.burst.lock().unwrap_or_else(|p| p.into_inner());
            if burst.0 != slot {
                burst.2 = burst.2.max(burst.1);
                *burst = (slot, 0, burst.2);
            }
            burst.1 += 1;
        }
        self.state.queries.fetch_add(1, Ordering::SeqCst);
        if over_tcp {
            self.state.tcp_queries.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ignores poisoning: a thread that panicked while holding the lock (a failing test) must
    /// not take the server down with it; the map itself is always consistent.
    fn names(&self) -> MutexGuard<'_, HashMap<String, NameRecords>> {
        self.state
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `Foo.Example.` and `foo.example` are the same name.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_and_dot_insensitive() {
        let zone = Zone::new();
        zone.set_a("Svc.Test.", [Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(
            zone.records("svc.test").map(|r| r.a),
            Some(vec![Ipv4Addr::new(10, 0, 0, 1)])
        );
        zone.remove("SVC.TEST");
        assert_eq!(zone.records("svc.test."), None);
    }

    #[test]
    fn a_headless_service_without_ready_pods_does_not_exist() {
        let zone = Zone::new();
        let name = "service1.default.svc.cluster.local.";
        zone.set_aaaa(name, ["fd00::1".parse().unwrap()]);
        zone.set_headless_service(
            name,
            [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
        );
        let records = zone.records(name).unwrap();
        assert_eq!(records.a.len(), 2);
        assert!(records.aaaa.is_empty());
        zone.set_headless_service(name, []);
        assert_eq!(zone.records(name), None, "scaled to zero: NXDOMAIN");
    }

    #[test]
    fn defaults_and_settings() {
        let zone = Zone::new();
        assert_eq!(
            (zone.ttl(), zone.mode(), zone.queries()),
            (1, DnsMode::Normal, 0)
        );
        let shared = zone.clone();
        shared.set_ttl(5);
        shared.set_mode(DnsMode::Drop);
        shared.count_query(true);
        shared.count_query(false);
        assert_eq!((zone.ttl(), zone.mode()), (5, DnsMode::Drop));
        assert_eq!((zone.queries(), zone.tcp_queries()), (2, 1));
    }
}
