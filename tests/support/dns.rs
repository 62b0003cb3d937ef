//! A real, authoritative DNS server on 127.0.0.1 whose records a test changes at will: A/AAAA per
//! name, CNAME chains with a TTL per name, NXDOMAIN, SERVFAIL/REFUSED/silence, stop and restart
//! on the same port.
//!
//! A synchronous face for plain `#[test]` fns over the `headless-dns` crate, the DNS server the
//! local demo serves its pods with: UDP and TCP share one port, and large UDP answers are
//! truncated with the TC bit set, so resolvers retry over TCP, as they must against a headless
//! service with hundreds of pods.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use headless_dns::Zone;
use tokio::runtime::Runtime;

pub use headless_dns::DnsMode;

use super::{new_runtime, shutdown_runtime};

/// A DNS server on `127.0.0.1:<ephemeral port>`, UDP and TCP. Dropping it stops it.
///
/// Defaults: no names (everything is NXDOMAIN), TTL 1 s, [`DnsMode::Normal`].
/// Every answer is authoritative (AA), has RA set, echoes the query id and question, and carries
/// an OPT record when the query had one. Negative answers (NXDOMAIN, or an existing name without
/// records of the asked type) carry an SOA of the root zone whose TTL and minimum are the TTL.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Zone,
    /// The server and the runtime its tasks run on, while it runs. Shutting the runtime down
    /// drops every task, which closes every socket and connection at once.
    running: Option<(Runtime, headless_dns::DnsServer)>,
    /// While stopped: the port, held so that nothing else takes it before the restart.
    held: Option<HeldPort>,
}

/// A stopped server's port, held without serving. The UDP socket is connected to a peer that
/// never sends, so queries find no socket and get ICMP port unreachable; the TCP socket is bound
/// but not listening, so connects are refused. Neither can then be given to anyone else: not to
/// a `bind(0)`, nor as the source port of an outgoing connection, whose TIME_WAIT would hold the
/// port for a minute and make the restart fail.
struct HeldPort {
    /// Let go of just before the server binds again: UDP allows no second bind.
    udp: Option<std::net::UdpSocket>,
    _tcp: tokio::net::TcpSocket,
}

impl HeldPort {
    fn hold(addr: SocketAddr) -> std::io::Result<HeldPort> {
        let udp = std::net::UdpSocket::bind(addr)?;
        udp.connect((addr.ip(), 9))?;
        // Bound as the server's listener is, so the restart binds beside it before letting go.
        Ok(HeldPort {
            udp: Some(udp),
            _tcp: headless_dns::bound_tcp_socket(addr)?,
        })
    }
}

impl DnsServer {
    /// Starts a server on 127.0.0.1 with a fresh port free for both UDP and TCP.
    pub fn start() -> DnsServer {
        let zone = Zone::new();
        let runtime = new_runtime("dns");
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        match runtime.block_on(headless_dns::DnsServer::bind(any_port, zone.clone())) {
            Ok(server) => DnsServer {
                addr: server.addr(),
                zone,
                running: Some((runtime, server)),
                held: None,
            },
            Err(e) => panic!("DnsServer: no port free for both UDP and TCP on 127.0.0.1: {e}"),
        }
    }

    /// Starts a server on `addr` (UDP and TCP), or says why it cannot: a resolv.conf names
    /// nameservers on port 53 only, which needs the right to bind a low port.
    #[allow(dead_code)] // not every test target uses it
    pub fn start_at(addr: SocketAddr) -> std::io::Result<DnsServer> {
        let zone = Zone::new();
        let runtime = new_runtime("dns");
        let server = runtime.block_on(headless_dns::DnsServer::bind(addr, zone.clone()))?;
        Ok(DnsServer {
            addr: server.addr(),
            zone,
            running: Some((runtime, server)),
            held: None,
        })
    }

    /// Makes `name` an alias: a CNAME record to `target`, followed by the server within its
    /// records (a chain, when `target` is an alias too).
    #[allow(dead_code)] // not every test target uses it
    pub fn set_cname(&self, name: &str, target: &str) {
        self.zone.set_cname(name, target);
    }

    /// Misbehaves for `name`: its A records are answered as owned by `other`, with no CNAME
    /// linking them.
    #[allow(dead_code)] // not every test target uses it
    pub fn set_answered_as(&self, name: &str, other: &str) {
        self.zone.set_answered_as(name, other);
    }

    /// The TTL of `name`'s own records (its CNAME or its addresses), instead of the server's.
    #[allow(dead_code)] // not every test target uses it
    pub fn set_name_ttl(&self, name: &str, secs: u32) {
        self.zone.set_name_ttl(name, secs);
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
        let ips: Vec<Ipv4Addr> = ips
            .iter()
            .map(|ip| {
                Ipv4Addr::from_str(ip)
                    .unwrap_or_else(|e| panic!("DnsServer::set_a({name}): bad IPv4 {ip:?}: {e}"))
            })
            .collect();
        self.zone.set_a(name, ips);
    }

    /// The zone behind the server, for records the helpers here do not make (SRV by hand).
    #[allow(dead_code)] // not every test target uses it
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// A headless Service's named port, as cluster DNS publishes it: `srv_name`
    /// (`_http._tcp.<service>`) answers one SRV record per pod in `ips` on `port`, with each
    /// target's A record in the additional section; NXDOMAIN for no pod.
    #[allow(dead_code)] // not every test target uses it
    pub fn set_headless_srv(&self, srv_name: &str, port: u16, ips: &[&str]) {
        let ips: Vec<Ipv4Addr> = ips
            .iter()
            .map(|ip| Ipv4Addr::from_str(ip).unwrap_or_else(|e| panic!("bad IPv4 {ip:?}: {e}")))
            .collect();
        self.zone.set_headless_srv(srv_name, port, &ips);
    }

    /// Replaces the AAAA records of `name`; see [`DnsServer::set_a`].
    pub fn set_aaaa(&self, name: &str, ips: &[&str]) {
        let ips: Vec<Ipv6Addr> = ips
            .iter()
            .map(|ip| {
                Ipv6Addr::from_str(ip)
                    .unwrap_or_else(|e| panic!("DnsServer::set_aaaa({name}): bad IPv6 {ip:?}: {e}"))
            })
            .collect();
        self.zone.set_aaaa(name, ips);
    }

    /// Makes `name` not exist any more: queries for it get NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.zone.remove(name);
    }

    /// TTL of every record served from now on (answers and the negative-caching SOA). Default 1.
    pub fn set_ttl(&self, secs: u32) {
        self.zone.set_ttl(secs);
    }

    /// Changes how every query is answered from now on.
    pub fn set_mode(&self, mode: DnsMode) {
        self.zone.set_mode(mode);
    }

    /// Queries received (any type, any mode, UDP and TCP), since start, across restarts.
    pub fn queries(&self) -> u64 {
        self.zone.queries()
    }

    /// Queries received over TCP (e.g. retries after a truncated UDP answer).
    pub fn tcp_queries(&self) -> u64 {
        self.zone.tcp_queries()
    }

    /// Whether the server is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Closes both sockets and every open TCP connection: the server is really gone (UDP
    /// queries get ICMP port unreachable, TCP connects are refused). Returns once they are closed.
    pub fn stop(&mut self) {
        if self.shut_down() {
            // Best effort: if the port cannot be held, the restart may have to wait for it.
            self.held = HeldPort::hold(self.addr).ok();
        }
    }

    /// Stops serving, holding nothing; whether it was running.
    fn shut_down(&mut self) -> bool {
        let Some((runtime, server)) = self.running.take() else {
            return false;
        };
        shutdown_runtime(runtime);
        drop(server);
        true
    }

    /// Starts the server again on the same port with the same records, mode and counters.
    /// Panics if the port cannot be bound again within 10 s. No-op if it is running.
    pub fn restart(&mut self) {
        if self.running.is_some() {
            return;
        }
        let runtime = new_runtime("dns");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(held) = self.held.as_mut() {
                held.udp = None;
            }
            match runtime.block_on(headless_dns::DnsServer::bind(self.addr, self.zone.clone())) {
                Ok(server) => {
                    self.running = Some((runtime, server));
                    self.held = None;
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
        // Gone for good: no port to hold for a restart.
        self.shut_down();
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

/// One lookup through a resolver that asks `server` only (no cache, one attempt).
fn with_resolver<T>(
    server: SocketAddr,
    timeout: Duration,
    lookup: impl AsyncFnOnce(
        &hickory_resolver::Resolver<hickory_resolver::name_server::TokioConnectionProvider>,
    ) -> T,
) -> T {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::Resolver;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime to resolve: {e}"));
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
        lookup(&resolver).await
    })
}

/// [`resolve`] with another per-query timeout. A silent server costs several timeouts (A and
/// AAAA, UDP and TCP): keep it short in tests of [`DnsMode::Drop`] or of a stopped server.
pub fn resolve_with_timeout(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, hickory_resolver::ResolveError> {
    with_resolver(server, timeout, async |resolver| {
        resolver
            .lookup_ip(name)
            .await
            .map(|lookup| lookup.iter().collect())
    })
}

/// An SRV answer: each record as (port, target), and the addresses it carried.
pub type SrvAnswer = (Vec<(u16, String)>, Vec<IpAddr>);

/// Asks `server` for the SRV records of `name` once: each record as (port, target), and the
/// addresses the answer carried (its additional section), as a client of cluster DNS sees them.
#[allow(dead_code)] // not every test target uses it
pub fn resolve_srv(
    server: SocketAddr,
    name: &str,
) -> Result<SrvAnswer, hickory_resolver::ResolveError> {
    with_resolver(server, Duration::from_secs(2), async |resolver| {
        let answer = resolver.srv_lookup(name).await?;
        let records = answer
            .iter()
            .map(|r| (r.port(), r.target().to_string()))
            .collect();
        Ok((records, answer.ip_iter().collect()))
    })
}
