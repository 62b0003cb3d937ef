//! DNS answer → backend set, without the network: arbitrary resolver results (answers of any
//! records — A, AAAA, CNAME, other names, any TTL, duplicates — and every kind of failure) go
//! through `Lookup::from_resolver` and `DnsDiscovery::apply`, several in a row, so that the
//! refresh state machine is fuzzed too. The same code runs on every refresh in production; the
//! `dns_answer` target drives it through a real DNS exchange, which is ~100× slower.
//!
//! Invariants:
//! - an answer becomes exactly the set of its A/AAAA addresses as `ip:port` (the cluster's
//!   port, weight 1, each once), and `/clusters`' `last_answer` lists them sorted;
//! - an answer without addresses, NXDOMAIN or NOERROR-without-records empties the cluster;
//! - any other failure is an error (pingora then keeps the backends it has) and leaves
//!   `last_answer` as it was;
//! - the refresh counters add up to the lookups applied; failures in a row are counted and reset
//!   by the next answer;
//! - the next refresh comes after `dns_refresh_rate` (or the TTL, never under
//!   `dns_min_refresh_rate`, with `respect_dns_ttl`); after failures, after
//!   `dns_failure_refresh_rate` doubled per failure in a row, never beyond `dns_refresh_rate`,
//!   and never sooner than the failure before.
#![no_main]

use arbitrary::Arbitrary;
use headway::config::{DnsSettings, LookupFamily, ResolverSettings};
use headway::upstream::discovery::{DnsDiscovery, Lookup, Outcome, RefreshCounters};
use headway::upstream::names::Names;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::lookup::Lookup as HickoryLookup;
use hickory_resolver::lookup_ip::LookupIp;
use hickory_resolver::ResolveError;
use libfuzzer_sys::fuzz_target;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use prometheus::IntCounter;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const NAMES: [&str; 3] = ["svc.fuzz.test.", "alias.fuzz.test.", "other.test."];

#[derive(Arbitrary, Debug)]
enum Data {
    A([u8; 4]),
    /// One of four addresses: duplicates are common.
    PooledA(u8),
    Aaaa([u8; 16]),
    Cname(u8),
}

#[derive(Arbitrary, Debug)]
struct RecordSpec {
    owner: u8,
    ttl: u32,
    data: Data,
}

#[derive(Arbitrary, Debug)]
enum Failure {
    NoRecords(u16),
    Timeout,
    Io,
    Message(String),
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// An answer with these records, valid for this many milliseconds from now.
    Answer(Vec<RecordSpec>, u32),
    Failure(Failure),
}

#[derive(Arbitrary, Debug)]
struct Input {
    port: u16,
    respect_ttl: bool,
    refresh_ms: u16,
    failure_ms: u16,
    min_ms: u16,
    steps: Vec<Step>,
}

fn name(i: u8) -> Name {
    Name::from_ascii(NAMES[usize::from(i) % NAMES.len()]).unwrap_or_else(|e| panic!("{e}"))
}

impl RecordSpec {
    fn record(&self) -> Record {
        let rdata = match &self.data {
            Data::A(ip) => RData::A(A(Ipv4Addr::from(*ip))),
            Data::PooledA(i) => RData::A(A(Ipv4Addr::new(10, 0, 0, i % 4))),
            Data::Aaaa(ip) => RData::AAAA(AAAA(Ipv6Addr::from(*ip))),
            Data::Cname(target) => RData::CNAME(CNAME(name(*target))),
        };
        Record::from_rdata(name(self.owner), self.ttl, rdata)
    }
}

impl Failure {
    fn error(&self) -> ResolveError {
        let kind = match self {
            Failure::NoRecords(code) => ProtoErrorKind::NoRecordsFound {
                query: Box::new(Query::query(name(0), RecordType::A)),
                soa: None,
                ns: None,
                negative_ttl: None,
                response_code: ResponseCode::from_low(*code as u8),
                trusted: true,
                authorities: None,
            },
            Failure::Timeout => ProtoErrorKind::Timeout,
            Failure::Io => ProtoErrorKind::Io(Arc::new(std::io::ErrorKind::ConnectionRefused.into())),
            Failure::Message(m) => ProtoErrorKind::Msg(m.clone()),
        };
        ResolveError::from(ProtoError::from(kind))
    }

    /// What discovery must make of it: an empty cluster or a failure.
    /// NXDOMAIN empties the cluster. NOERROR without records does only with the zone's SOA
    /// (lookup.rs: without one it may be an answer naming another name), and these errors
    /// carry none.
    fn empties(&self) -> bool {
        matches!(self, Failure::NoRecords(code)
            if ResponseCode::from_low(*code as u8) == ResponseCode::NXDomain)
    }
}

fn names() -> Arc<Names> {
    static NAMES_ASKED: OnceLock<Arc<Names>> = OnceLock::new();
    NAMES_ASKED
        .get_or_init(|| {
            // Never asked: `apply` takes results, it does not look anything up.
            let settings = ResolverSettings {
                nameservers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
                resolv_conf: "/nonexistent/resolv.conf".into(),
                timeout: Duration::from_millis(100),
                attempts: 1,
            };
            Names::new(&settings).unwrap_or_else(|e| panic!("{e}"))
        })
        .clone()
}

fn counter(name: &str) -> IntCounter {
    IntCounter::new(name, name).unwrap_or_else(|e| panic!("{e}"))
}

fn ms(v: u16) -> Duration {
    Duration::from_millis(u64::from(v).max(1))
}

fuzz_target!(|input: Input| {
    let settings = DnsSettings {
        refresh_rate: ms(input.refresh_ms),
        failure_refresh_rate: ms(input.failure_ms),
        min_refresh_rate: ms(input.min_ms),
        respect_ttl: input.respect_ttl,
        lookup_family: LookupFamily::All,
    };
    let discovery = DnsDiscovery::new(
        "fuzz",
        NAMES[0],
        input.port,
        settings,
        names(),
        RefreshCounters {
            answer: counter("answer"),
            empty: counter("empty"),
            error: counter("error"),
        },
    );
    let mut last_answer: Vec<IpAddr> = Vec::new();
    let mut failures_in_a_row = 0u32;
    let mut last_failure_delay = Duration::ZERO;
    let steps = &input.steps[..input.steps.len().min(16)];
    for step in steps {
        let now = Instant::now();
        let result = match step {
            Step::Answer(records, valid_ms) => {
                let records: Vec<Record> = records.iter().take(300).map(RecordSpec::record).collect();
                let valid_until = now + Duration::from_millis(u64::from(*valid_ms));
                let query = Query::query(name(0), RecordType::A);
                Ok(LookupIp::from(HickoryLookup::new_with_deadline(
                    query,
                    Arc::from(records),
                    valid_until,
                )))
            }
            Step::Failure(failure) => Err(failure.error()),
        };
        // The addresses an answer carries, whatever else it holds.
        let addresses: BTreeSet<IpAddr> = match &result {
            Ok(answer) => answer
                .as_lookup()
                .record_iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        let lookup = Lookup::from_resolver(result, now);
        match (&lookup, step) {
            (Lookup::Answer(ips, ttl), Step::Answer(_, valid_ms)) => {
                assert_eq!(ips.iter().copied().collect::<BTreeSet<_>>(), addresses);
                assert!(*ttl <= Duration::from_millis(u64::from(*valid_ms)));
            }
            (Lookup::Empty(_), Step::Answer(..)) => assert!(addresses.is_empty()),
            (Lookup::Empty(_), Step::Failure(f)) => assert!(f.empties(), "{f:?} emptied the cluster"),
            (Lookup::Failed(_), Step::Failure(f)) => assert!(!f.empties(), "{f:?} was a failure"),
            (other, step) => panic!("{step:?} became {other:?}"),
        }

        let outcome = discovery.apply(lookup.clone(), SystemTime::now());
        let snapshot = discovery.snapshot();
        match (&lookup, outcome) {
            (Lookup::Answer(..), Ok((backends, _))) => {
                let mut seen = BTreeSet::new();
                for backend in &backends {
                    let PingoraAddr::Inet(addr) = backend.addr else {
                        panic!("backend that is not ip:port: {backend:?}");
                    };
                    assert_eq!(addr.port(), input.port);
                    assert_eq!(backend.weight, 1);
                    assert!(seen.insert(addr.ip()), "{addr} twice");
                }
                assert_eq!(seen, addresses, "backends are not the answer's addresses");
                last_answer = seen.into_iter().collect();
                assert_eq!(snapshot.last_outcome, Outcome::Answer);
                failures_in_a_row = 0;
            }
            (Lookup::Empty(_), Ok((backends, _))) => {
                assert!(backends.is_empty(), "an empty answer left backends");
                last_answer.clear();
                assert_eq!(snapshot.last_outcome, Outcome::Empty);
                failures_in_a_row = 0;
            }
            (Lookup::Failed(_), Err(_)) => {
                assert_eq!(snapshot.last_outcome, Outcome::Error);
                failures_in_a_row += 1;
            }
            (lookup, outcome) => panic!("{lookup:?} gave {outcome:?}"),
        }
        assert_eq!(snapshot.last_answer, last_answer, "last_answer");
        assert_eq!(snapshot.consecutive_failures, failures_in_a_row);

        let delay = discovery.next_refresh_delay();
        let s = &settings;
        match &lookup {
            Lookup::Failed(_) => {
                let ceiling = s.refresh_rate.max(s.failure_refresh_rate);
                assert!(delay >= s.failure_refresh_rate.min(ceiling) && delay <= ceiling);
                if failures_in_a_row > 1 {
                    assert!(delay >= last_failure_delay, "backoff went down");
                }
                last_failure_delay = delay;
            }
            Lookup::Answer(_, ttl) if s.respect_ttl => {
                assert_eq!(delay, (*ttl).max(s.min_refresh_rate));
            }
            _ => assert_eq!(delay, s.refresh_rate),
        }
    }
    let s = discovery.snapshot();
    assert_eq!(
        s.refreshes_answer + s.refreshes_empty + s.refreshes_error,
        steps.len() as u64
    );
});
