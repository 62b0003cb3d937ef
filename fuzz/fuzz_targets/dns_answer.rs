//! DNS answer → backend set, through what headway exposes: `Names` (its lookups) and
//! `DnsDiscovery::discover`, against a DNS server in this process (UDP and TCP on 127.0.0.1)
//! that answers with a message built by hickory-proto from arbitrary records: A, AAAA and CNAME
//! (loops included), any TTL, duplicates, answers of hundreds of records (truncated over UDP,
//! so the resolver asks again over TCP), any response code, and records that answer another
//! name than the question.
//!
//! Invariants of the backend set a refresh yields:
//! - never a panic; every backend is `ip:port` with the cluster's port and weight 1, each
//!   address once; `/clusters`' `last_answer` lists exactly the backends' addresses;
//! - no invented address: each one comes from an A/AAAA record of the asked name or of a name
//!   it reaches through CNAMEs, of a family the cluster's `dns_lookup_family` allows;
//! - a plain answer (only A, or only AAAA, records of the asked name; one family looked up)
//!   becomes exactly that set of addresses; an empty NXDOMAIN or NOERROR empties the cluster;
//!   SERVFAIL and REFUSED are errors, which keep the last known backends;
//! - with `respect_dns_ttl`, the next refresh never comes sooner than `dns_min_refresh_rate`.
#![no_main]

use arbitrary::Arbitrary;
use headway::config::{DnsSettings, LookupFamily, ResolverSettings};
use headway::upstream::discovery::{DnsDiscovery, RefreshCounters};
use headway::upstream::names::Names;
use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use libfuzzer_sys::fuzz_target;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use prometheus::IntCounter;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The name the cluster resolves, and the other owners records may have.
const NAMES: [&str; 4] = [
    "svc.fuzz.test.",
    "alias.fuzz.test.",
    "alias.elsewhere.test.",
    "unrelated.test.",
];
const MAX_RECORDS: usize = 400;
/// A refresh against this server takes milliseconds; one that takes this long is stuck.
const DISCOVER_LIMIT: Duration = Duration::from_secs(20);
/// What the server fits in a UDP answer (EDNS payload it advertises, and the client's limit).
const UDP_LIMIT: usize = 1232;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Rcode {
    NoError,
    NxDomain,
    ServFail,
    Refused,
    FormErr,
    NotImp,
}

impl Rcode {
    fn code(self) -> ResponseCode {
        match self {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::ServFail => ResponseCode::ServFail,
            Rcode::Refused => ResponseCode::Refused,
            Rcode::FormErr => ResponseCode::FormErr,
            Rcode::NotImp => ResponseCode::NotImp,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Data {
    A([u8; 4]),
    /// An A record from a pool of four addresses: duplicates are common.
    PooledA(u8),
    Aaaa([u8; 16]),
    PooledAaaa(u8),
    Cname(u8),
}

#[derive(Arbitrary, Debug, Clone)]
struct RecordSpec {
    owner: u8,
    ttl: u32,
    data: Data,
}

#[derive(Arbitrary, Debug, Clone)]
struct Input {
    family: u8,
    respect_ttl: bool,
    port: u16,
    rcode: Rcode,
    /// Answer every query with every record, whatever name and type it asked for.
    sloppy: bool,
    records: Vec<RecordSpec>,
    /// The record list is sent 1 to 4 times over: duplicate records.
    copies: u8,
}

fn owner(i: u8) -> Name {
    match Name::from_ascii(NAMES[i as usize % NAMES.len()]) {
        Ok(name) => name,
        Err(e) => panic!("bad owner name: {e}"),
    }
}

impl RecordSpec {
    fn record(&self) -> Record {
        let rdata = match &self.data {
            Data::A(ip) => RData::A(A(Ipv4Addr::from(*ip))),
            Data::PooledA(i) => RData::A(A(Ipv4Addr::new(10, 0, 0, i % 4))),
            Data::Aaaa(ip) => RData::AAAA(AAAA(Ipv6Addr::from(*ip))),
            Data::PooledAaaa(i) => RData::AAAA(AAAA(Ipv6Addr::new(
                0xfd00,
                0,
                0,
                0,
                0,
                0,
                0,
                u16::from(i % 4),
            ))),
            Data::Cname(target) => RData::CNAME(CNAME(owner(*target))),
        };
        Record::from_rdata(owner(self.owner), self.ttl, rdata)
    }

    fn ip(&self) -> Option<IpAddr> {
        match self.record().data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        }
    }
}

impl Input {
    fn records(&self) -> impl Iterator<Item = &RecordSpec> {
        self.records.iter().take(MAX_RECORDS)
    }

    fn family(&self) -> LookupFamily {
        match self.family % 5 {
            0 => LookupFamily::V4Only,
            1 => LookupFamily::V6Only,
            2 => LookupFamily::V4Preferred,
            3 => LookupFamily::Auto,
            _ => LookupFamily::All,
        }
    }

    /// The answer section for a question, as the zone (or, sloppy, a careless server) gives it.
    fn answers(&self, name: &Name, qtype: RecordType) -> Vec<Record> {
        let mut out = Vec::new();
        for _ in 0..=(self.copies % 4) {
            for spec in self.records() {
                let record = spec.record();
                let fits = record.name() == name
                    && (record.record_type() == qtype || record.record_type() == RecordType::CNAME);
                if self.sloppy || fits {
                    out.push(record);
                }
            }
        }
        out
    }

    /// Owner names reachable from the cluster's name through CNAME records.
    fn reachable(&self) -> BTreeSet<Name> {
        let mut names = BTreeSet::from([owner(0)]);
        for _ in 0..NAMES.len() {
            for spec in self.records() {
                if let Data::Cname(target) = spec.data {
                    if names.contains(&owner(spec.owner)) {
                        names.insert(owner(target));
                    }
                }
            }
        }
        names
    }
}

/// The server: it answers with whatever input the fuzzer is running now.
struct Server {
    addr: SocketAddr,
    current: Arc<Mutex<Option<Input>>>,
}

fn respond(query: &Message, input: &Input, udp: bool) -> Option<Vec<u8>> {
    let mut response = Message::new();
    response
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .set_response_code(input.rcode.code());
    response.add_queries(query.queries().iter().cloned());
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_LIMIT as u16);
        response.set_edns(edns);
    }
    if let Some(q) = query.queries().first() {
        response.add_answers(input.answers(q.name(), q.query_type()));
    }
    let bytes = response.to_vec().ok()?;
    let limit = if query.extensions().is_some() {
        UDP_LIMIT
    } else {
        512
    };
    if udp && bytes.len() > limit {
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}

fn current(server: &Arc<Mutex<Option<Input>>>) -> Option<Input> {
    server.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn serve_udp(socket: UdpSocket, input: Arc<Mutex<Option<Input>>>) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let (Ok(query), Some(input)) = (Message::from_vec(&buf[..n]), current(&input)) else {
            continue;
        };
        if let Some(bytes) = respond(&query, &input, true) {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

fn serve_tcp(listener: TcpListener, input: Arc<Mutex<Option<Input>>>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let input = input.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            // A bounded number of queries per connection.
            for _ in 0..16 {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    return;
                }
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                if stream.read_exact(&mut buf).is_err() {
                    return;
                }
                let (Ok(query), Some(input)) = (Message::from_vec(&buf), current(&input)) else {
                    return;
                };
                let Some(bytes) = respond(&query, &input, false) else {
                    return;
                };
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                if stream.write_all(&framed).is_err() {
                    return;
                }
            }
        });
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let current = Arc::new(Mutex::new(None));
        // UDP and TCP on one port, as resolvers expect.
        for _ in 0..100 {
            let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
                continue;
            };
            let Ok(addr) = udp.local_addr() else { continue };
            let Ok(tcp) = TcpListener::bind(addr) else {
                continue;
            };
            let (u, t) = (current.clone(), current.clone());
            std::thread::spawn(move || serve_udp(udp, u));
            std::thread::spawn(move || serve_tcp(tcp, t));
            return Server { addr, current };
        }
        panic!("no port free for both UDP and TCP on 127.0.0.1");
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
    })
}

fn counter(name: &str) -> IntCounter {
    IntCounter::new(name, name).unwrap_or_else(|e| panic!("counter: {e}"))
}

fuzz_target!(|input: Input| {
    let server = server();
    *server.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(input.clone());
    let family = input.family();
    // Lookups of their own for each input: no answer is shared with the previous one's.
    let names = Names::new(
        &ResolverSettings {
            nameservers: vec![server.addr],
            // Missing on purpose: no search domains, only the nameserver above.
            resolv_conf: "/nonexistent/resolv.conf".into(),
            timeout: Duration::from_millis(500),
            attempts: 1,
        },
    )
    .unwrap_or_else(|e| panic!("Names::new: {e}"));
    let settings = DnsSettings {
        refresh_rate: Duration::from_secs(5),
        failure_refresh_rate: Duration::from_secs(1),
        min_refresh_rate: Duration::from_secs(1),
        respect_ttl: input.respect_ttl,
        lookup_family: family,
    };
    let discovery = DnsDiscovery::new(
        "fuzz",
        NAMES[0],
        input.port,
        settings,
        names,
        RefreshCounters {
            answer: counter("answer"),
            empty: counter("empty"),
            error: counter("error"),
        },
    );
    // libFuzzer's -timeout cannot fire while its alarm lands on one of the server's threads:
    // a refresh that never ends is caught here instead. headway's refresh loop has no such
    // bound, so a stuck lookup would freeze the cluster's backends.
    let result = runtime()
        .block_on(async { tokio::time::timeout(DISCOVER_LIMIT, discovery.discover()).await })
        .unwrap_or_else(|_| panic!("discover() still running after {DISCOVER_LIMIT:?}"));

    let reachable = input.reachable();
    let allowed: BTreeSet<IpAddr> = input
        .records()
        .filter(|r| reachable.contains(&owner(r.owner)))
        .filter_map(RecordSpec::ip)
        .filter(|ip| match family {
            LookupFamily::V4Only => ip.is_ipv4(),
            LookupFamily::V6Only => ip.is_ipv6(),
            _ => true,
        })
        .collect();
    // A plain answer: one family asked, only records of that type for the asked name.
    let plain_type = match family {
        LookupFamily::V4Only => Some(RecordType::A),
        LookupFamily::V6Only => Some(RecordType::AAAA),
        _ => None,
    }
    .filter(|t| {
        !input.sloppy
            && input
                .records()
                .all(|r| owner(r.owner) == owner(0) && r.record().record_type() == *t)
    });

    match result {
        Ok((backends, _)) => {
            let mut addrs = BTreeSet::new();
            for backend in &backends {
                let PingoraAddr::Inet(addr) = backend.addr else {
                    panic!("backend that is not ip:port: {backend:?}");
                };
                assert_eq!(addr.port(), input.port, "port not preserved: {addr}");
                assert_eq!(backend.weight, 1, "{addr}");
                assert!(addrs.insert(addr), "{addr} twice in the backend set");
                assert!(
                    allowed.contains(&addr.ip()),
                    "{addr} is not an address of {} ({family:?}); allowed {allowed:?}",
                    NAMES[0]
                );
            }
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            assert_eq!(
                discovery.snapshot().last_answer,
                ips,
                "last_answer vs backends"
            );
            if plain_type.is_some() {
                match input.rcode {
                    Rcode::NoError => assert_eq!(
                        ips.iter().copied().collect::<BTreeSet<_>>(),
                        allowed,
                        "a plain answer must become exactly its addresses"
                    ),
                    // NXDOMAIN with records contradicts itself: either reading is fine.
                    Rcode::NxDomain if allowed.is_empty() => {
                        assert!(ips.is_empty(), "NXDOMAIN left backends")
                    }
                    Rcode::NxDomain => {}
                    Rcode::ServFail | Rcode::Refused => {
                        panic!(
                            "{:?} emptied or replaced the backend set: {ips:?}",
                            input.rcode
                        )
                    }
                    Rcode::FormErr | Rcode::NotImp => {}
                }
            }
        }
        Err(e) => {
            let clear = match input.rcode {
                // Without records, NOERROR is a failure unless the zone's SOA comes with it
                // (lookup.rs), and this server sends none.
                Rcode::NoError => !allowed.is_empty(),
                Rcode::NxDomain => allowed.is_empty(),
                _ => false,
            };
            if plain_type.is_some() && clear {
                panic!(
                    "a plain {:?} answer was taken as a failure: {e}",
                    input.rcode
                );
            }
        }
    }
    if input.respect_ttl {
        assert!(discovery.next_refresh_delay() >= Duration::from_secs(1));
    }
});
