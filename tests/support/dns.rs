//! A real, authoritative DNS server (hickory-server) on 127.0.0.1 whose records a test changes at
//! will: A/AAAA per name, NXDOMAIN, SERVFAIL/REFUSED/silence, stop and restart on the same port.
//!
//! UDP and TCP share one port. Large UDP answers are truncated with the TC bit set, so resolvers
//! retry over TCP, as they must against a headless service with hundreds of pods.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use tokio::runtime::Runtime;

use super::{lock, new_runtime, shutdown_runtime};

/// Largest UDP payload the server agrees to send to an EDNS client, whatever the client offers.
const MAX_EDNS_PAYLOAD: u16 = 4096;
/// Payload limit for UDP clients without EDNS (RFC 1035).
const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// TCP connections idle for this long are closed by hickory-server.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server answers every query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsMode {
    /// Answer from the configured records (the default).
    Normal,
    /// Answer SERVFAIL to everything.
    ServFail,
    /// Answer REFUSED to everything.
    Refused,
    /// Never answer (a dead or unreachable DNS server: clients time out). Queries are still counted.
    Drop,
}

impl DnsMode {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => DnsMode::ServFail,
            2 => DnsMode::Refused,
            3 => DnsMode::Drop,
            _ => DnsMode::Normal,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            DnsMode::Normal => 0,
            DnsMode::ServFail => 1,
            DnsMode::Refused => 2,
            DnsMode::Drop => 3,
        }
    }
}

/// The records of one existing name. Both lists empty = the name exists with no addresses.
#[derive(Default, Clone)]
struct NameRecords {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
}

/// State shared by the test thread and the server tasks; it survives `stop()`/`restart()`.
struct Zone {
    names: Mutex<HashMap<String, NameRecords>>,
    ttl: AtomicU32,
    mode: AtomicU8,
    queries: AtomicU64,
    tcp_queries: AtomicU64,
}

/// A DNS server on `127.0.0.1:<ephemeral port>`, UDP and TCP. Dropping it stops it.
///
/// Defaults: no names (everything is NXDOMAIN), TTL 1 s, [`DnsMode::Normal`].
/// Every answer is authoritative (AA), has RA set, echoes the query id and question, and carries
/// an OPT record when the query had one. Negative answers (NXDOMAIN, or an existing name without
/// records of the asked type) carry an SOA of the root zone whose TTL and minimum are the TTL.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Zone>,
    runtime: Option<Runtime>,
}

impl DnsServer {
    /// Starts a server on 127.0.0.1 with a fresh port free for both UDP and TCP.
    pub fn start() -> DnsServer {
        let zone = Arc::new(Zone {
            names: Mutex::new(HashMap::new()),
            ttl: AtomicU32::new(1),
            mode: AtomicU8::new(DnsMode::Normal.as_u8()),
            queries: AtomicU64::new(0),
            tcp_queries: AtomicU64::new(0),
        });
        let runtime = new_runtime("dns");
        let mut last_error = String::new();
        for _ in 0..100 {
            let bound = runtime.block_on(async {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
                let addr = udp.local_addr()?;
                let tcp = bind_tcp(addr)?;
                std::io::Result::Ok((udp, tcp, addr))
            });
            match bound {
                Ok((udp, tcp, addr)) => {
                    serve(&runtime, &zone, udp, tcp);
                    return DnsServer {
                        addr,
                        zone,
                        runtime: Some(runtime),
                    };
                }
                // The UDP port may be taken on TCP by someone else: try another one.
                Err(e) => last_error = e.to_string(),
            }
        }
        panic!("DnsServer: no port free for both UDP and TCP on 127.0.0.1: {last_error}");
    }

    /// The server's address (the same for UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's port (the same for UDP and TCP).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Replaces the A records of `name` (trailing dot optional, case-insensitive). An empty slice
    /// leaves the name existing without A records: NOERROR with an empty answer.
    pub fn set_a(&self, name: &str, ips: &[&str]) {
        let ips = ips
            .iter()
            .map(|ip| {
                Ipv4Addr::from_str(ip)
                    .unwrap_or_else(|e| panic!("DnsServer::set_a({name}): bad IPv4 {ip:?}: {e}"))
            })
            .collect();
        lock(&self.zone.names).entry(normalize(name)).or_default().a = ips;
    }

    /// Replaces the AAAA records of `name`; see [`DnsServer::set_a`].
    pub fn set_aaaa(&self, name: &str, ips: &[&str]) {
        let ips = ips
            .iter()
            .map(|ip| {
                Ipv6Addr::from_str(ip)
                    .unwrap_or_else(|e| panic!("DnsServer::set_aaaa({name}): bad IPv6 {ip:?}: {e}"))
            })
            .collect();
        lock(&self.zone.names)
            .entry(normalize(name))
            .or_default()
            .aaaa = ips;
    }

    /// Makes `name` not exist any more: queries for it get NXDOMAIN.
    pub fn remove(&self, name: &str) {
        lock(&self.zone.names).remove(&normalize(name));
    }

    /// TTL of every record served from now on (answers and the negative-caching SOA). Default 1.
    pub fn set_ttl(&self, secs: u32) {
        self.zone.ttl.store(secs, Ordering::SeqCst);
    }

    /// Changes how every query is answered from now on.
    pub fn set_mode(&self, mode: DnsMode) {
        self.zone.mode.store(mode.as_u8(), Ordering::SeqCst);
    }

    /// Queries received (any type, any mode, UDP and TCP), since start, across restarts.
    pub fn queries(&self) -> u64 {
        self.zone.queries.load(Ordering::SeqCst)
    }

    /// Queries received over TCP (e.g. retries after a truncated UDP answer).
    pub fn tcp_queries(&self) -> u64 {
        self.zone.tcp_queries.load(Ordering::SeqCst)
    }

    /// Whether the server is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.runtime.is_some()
    }

    /// Closes both sockets and every open TCP connection: the server is really gone (UDP
    /// queries get ICMP port unreachable, TCP connects are refused). Returns once they are closed.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            shutdown_runtime(runtime);
        }
    }

    /// Starts the server again on the same port with the same records, mode and counters.
    /// Panics if the port cannot be bound again within 10 s. No-op if it is running.
    pub fn restart(&mut self) {
        if self.runtime.is_some() {
            return;
        }
        let runtime = new_runtime("dns");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let addr = self.addr;
            let bound = runtime.block_on(async move {
                let udp = tokio::net::UdpSocket::bind(addr).await?;
                let tcp = bind_tcp(addr)?;
                std::io::Result::Ok((udp, tcp))
            });
            match bound {
                Ok((udp, tcp)) => {
                    serve(&runtime, &self.zone, udp, tcp);
                    self.runtime = Some(runtime);
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("DnsServer::restart: cannot bind {} again: {e}", self.addr)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds a TCP listener with SO_REUSEADDR, so that a restart is not blocked by connections of
/// the previous generation lingering in TIME_WAIT.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn serve(
    runtime: &Runtime,
    zone: &Arc<Zone>,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
) {
    let handler = ZoneHandler {
        zone: Arc::clone(zone),
    };
    // ServerFuture spawns onto the current runtime, and aborts its tasks when dropped: build it
    // inside the runtime and keep it alive in a task of its own.
    runtime.block_on(async move {
        let mut server = ServerFuture::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT);
        tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                log::warn!("harness DNS server ended: {e}");
            }
        });
    });
}

/// `Foo.Example.` and `foo.example` are the same name.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_name(name: &str) -> Name {
    Name::from_str(name).unwrap_or_else(|e| panic!("bad DNS name {name:?}: {e}"))
}

struct ZoneHandler {
    zone: Arc<Zone>,
}

/// What a query resolves to, before any truncation.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
}

impl ZoneHandler {
    fn answer(&self, request: &Request, mode: DnsMode) -> Answer {
        let refuse = |code| Answer {
            code,
            answers: Vec::new(),
            authority: Vec::new(),
        };
        match mode {
            DnsMode::ServFail => return refuse(ResponseCode::ServFail),
            DnsMode::Refused => return refuse(ResponseCode::Refused),
            DnsMode::Normal | DnsMode::Drop => {}
        }
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            return refuse(ResponseCode::NotImp);
        }
        let [query] = request.queries() else {
            return refuse(ResponseCode::FormErr);
        };
        let ttl = self.zone.ttl.load(Ordering::SeqCst);
        // Answer with the name as the client spelt it: resolvers may check the case (0x20).
        let owner = query.original().name().clone();
        let found = lock(&self.zone.names)
            .get(&normalize(&query.name().to_string()))
            .cloned();
        let Some(records) = found else {
            return Answer {
                code: ResponseCode::NXDomain,
                answers: Vec::new(),
                authority: vec![soa(ttl)],
            };
        };
        let answers: Vec<Record> = match query.query_type() {
            RecordType::A => records
                .a
                .iter()
                .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
                .collect(),
            RecordType::AAAA => records
                .aaaa
                .iter()
                .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
                .collect(),
            _ => Vec::new(),
        };
        let authority = if answers.is_empty() {
            vec![soa(ttl)]
        } else {
            Vec::new()
        };
        Answer {
            code: ResponseCode::NoError,
            answers,
            authority,
        }
    }
}

/// The SOA of the root zone, whose TTL and minimum bound negative caching to `ttl`.
fn soa(ttl: u32) -> Record {
    let soa = SOA::new(
        parse_name("ns.harness.test."),
        parse_name("hostmaster.harness.test."),
        1,
        60,
        60,
        600,
        ttl,
    );
    Record::from_rdata(Name::root(), ttl, RData::SOA(soa))
}

/// How many of `answers` fit in `limit` bytes along with the header, question and OPT record.
/// `None` when they all fit (no truncation needed).
fn answers_that_fit(
    header: &Header,
    request: &Request,
    answers: &[Record],
    authority: &[Record],
    edns: Option<&Edns>,
    limit: u16,
) -> Option<usize> {
    // Encode exactly as hickory-server will (it re-emits the query as received, which changes
    // name compression), with no size limit, and measure.
    let encoded_len = |answer_count: usize, with_authority: bool| {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = edns {
            builder.edns(edns.clone());
        }
        let authority = if with_authority { authority } else { &[] };
        let response = builder.build(
            *header,
            answers[..answer_count].iter(),
            std::iter::empty(),
            authority.iter(),
            std::iter::empty(),
        );
        let mut buffer = Vec::with_capacity(4096);
        let mut encoder = BinEncoder::new(&mut buffer);
        match response.destructive_emit(&mut encoder) {
            Ok(_) => buffer.len(),
            Err(_) => usize::MAX,
        }
    };
    let limit = usize::from(limit);
    if encoded_len(answers.len(), true) <= limit {
        return None;
    }
    // Largest count that fits: the length grows with the count, so bisect.
    let (mut fits, mut too_many) = (0, answers.len());
    while too_many - fits > 1 {
        let middle = (fits + too_many) / 2;
        if encoded_len(middle, false) <= limit {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    Some(fits)
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.zone.queries.fetch_add(1, Ordering::SeqCst);
        if request.protocol() == Protocol::Tcp {
            self.zone.tcp_queries.fetch_add(1, Ordering::SeqCst);
        }
        let mode = DnsMode::from_u8(self.zone.mode.load(Ordering::SeqCst));
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        header.set_recursion_available(true);
        if mode == DnsMode::Drop {
            // Send nothing: the client sees a dead server and times out.
            return header.into();
        }

        let Answer {
            code,
            mut answers,
            mut authority,
        } = self.answer(request, mode);
        header.set_response_code(code);

        // Offer EDNS back only to EDNS clients; its payload is what both sides can handle.
        let edns = request.edns().map(|query_edns| {
            let mut edns = Edns::new();
            edns.set_max_payload(query_edns.max_payload().min(MAX_EDNS_PAYLOAD));
            edns.set_version(0);
            edns
        });

        // hickory-server truncates (and sets TC) at the EDNS payload, but without EDNS it allows
        // 4096 bytes over UDP instead of RFC 1035's 512: apply the limit here for both cases.
        if request.protocol() == Protocol::Udp {
            let limit = edns.as_ref().map_or(CLASSIC_UDP_PAYLOAD, Edns::max_payload);
            if let Some(fit) =
                answers_that_fit(&header, request, &answers, &authority, edns.as_ref(), limit)
            {
                header.set_truncated(true);
                answers.truncate(fit);
                authority.clear();
            }
        }

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = edns {
            builder.edns(edns);
        }
        let response = builder.build(
            header,
            answers.iter(),
            std::iter::empty(),
            authority.iter(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                log::warn!("harness DNS server: cannot send a response: {e}");
                header.into()
            }
        }
    }
}

/// Resolves `name` through a hickory resolver that asks only `server` (UDP, then TCP when the
/// answer is truncated; no cache; A then AAAA as `lookup_ip` does), the way the gateway's
/// resolver does. Timeout 2 s, 1 attempt, no EDNS. Handy for checking the DNS server itself.
pub fn resolve(
    server: SocketAddr,
    name: &str,
) -> Result<Vec<IpAddr>, hickory_resolver::ResolveError> {
    resolve_with_timeout(server, name, Duration::from_secs(2))
}

/// [`resolve`] with another per-query timeout. A silent server costs several timeouts (A and
/// AAAA, UDP and TCP): keep it short in tests of [`DnsMode::Drop`] or of a stopped server.
pub fn resolve_with_timeout(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, hickory_resolver::ResolveError> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::Resolver;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime for resolve: {e}"));
    runtime.block_on(async {
        let config = ResolverConfig::from_parts(
            None,
            Vec::new(),
            NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
        );
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        options.timeout = timeout;
        options.attempts = 1;
        let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(options)
            .build();
        resolver
            .lookup_ip(name)
            .await
            .map(|lookup| lookup.iter().collect())
    })
}
