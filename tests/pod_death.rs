//! Pods dying the ways real pods die, with real peers behind the real binary (issue 13).
//!
//! The chaos suite's pods die politely; none of its scenarios breaks a *pooled* upstream
//! connection. Here they do:
//!
//! - stock nginx pods (tests/support/nginx.rs) stopped by SIGTERM (nginx's fast shutdown closes
//!   every connection at once, idle kept-alive ones the gateway pools included), SIGKILL, SIGSTOP,
//!   and all of them restarted on the same IPs;
//! - Node's `http` server (tests/support/node.rs), which closes a kept-alive connection 5 s
//!   after its last response, as the gateway may be sending the next request on it;
//! - the harness's own pod (tests/support/backend.rs) closing a pooled connection exactly as the
//!   next request arrives on it (FIN or RST, HTTP/1 and h2c, GET, HEAD and POST), dying
//!   mid-response, closing between headers and body, and killed with pooled connections open.
//!
//! Every test with a third-party peer also runs the same client against a pod directly, as its
//! control: it must see no failure (a kept-alive connection closed by the pod and resent once by
//! the client is normal client behaviour, and counted). Through the gateway the bar is higher: no
//! failed idempotent request (a request whose response had started when the pod died is counted
//! apart), and no client connection closed under the client's feet. After each test the
//! gateway's log must hold no `panicked`, and `/metrics` must say `headway_panics_total 0` where
//! that series exists. Each test prints one `pod_death | …` line with its figures.
//!
//! Addresses: 127.0.13.0/24, a distinct block of ten per test, so the tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::admin;
use support::backend::{Backend, Close, Fault};
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::DnsServer;
use support::gateway::{Gateway, GatewayBuilder};
use support::http::{self, Response};
use support::nginx::{self, Nginx};
use support::node::{self, NodePod};
use support::{free_port, wait_until};

// ---------------------------------------------------------------------------------------------
// A keep-alive client that tells failures apart.
// ---------------------------------------------------------------------------------------------

/// Connect, read and write timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Failure {
    /// Not a byte of a response: the connect, the write or the read failed, or EOF came first.
    NoResponse(String),
    /// Part of a response arrived, then the connection failed or ended.
    Truncated(String),
}

/// One kept-alive connection at a time, as browsers and HTTP libraries keep them: a request
/// that gets no byte of a response on a *reused* connection is resent once on a new one
/// (counted in `stale_retries`). Through the gateway that count must stay 0: the gateway must
/// not close a client's connection unannounced.
struct KeepAlive {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    stale_retries: u64,
    stale_reasons: Vec<String>,
    connects: u64,
}

impl KeepAlive {
    fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            addr,
            conn: None,
            stale_retries: 0,
            stale_reasons: Vec::new(),
            connects: 0,
        }
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Response, Failure> {
        let reused = self.conn.is_some();
        match self.attempt(method, path, body) {
            Err(Failure::NoResponse(reason)) if reused => {
                self.stale_retries += 1;
                self.stale_reasons.push(reason);
                self.attempt(method, path, body)
            }
            other => other,
        }
    }

    fn attempt(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Response, Failure> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                self.connects += 1;
                let stream = TcpStream::connect_timeout(&self.addr, CLIENT_TIMEOUT)
                    .and_then(|s| {
                        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                        s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
                        s.set_nodelay(true)?;
                        Ok(s)
                    })
                    .map_err(|e| Failure::NoResponse(format!("connect: {e}")))?;
                BufReader::new(stream)
            }
        };
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: pod.test\r\n");
        if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        conn.get_mut()
            .write_all(&bytes)
            .map_err(|e| Failure::NoResponse(format!("write: {e}")))?;
        match conn.fill_buf() {
            Ok([]) => {
                return Err(Failure::NoResponse(
                    "EOF before any response byte".to_string(),
                ))
            }
            Err(e) => return Err(Failure::NoResponse(format!("read: {e}"))),
            Ok(_) => {}
        }
        let reply = http::read_response(&mut conn, method)
            .map_err(|e| Failure::Truncated(format!("response cut: {e}")))?;
        if !reply.closes_connection() && !reply.ran_to_close() {
            self.conn = Some(conn);
        }
        Ok(reply)
    }
}

// ---------------------------------------------------------------------------------------------
// Tallies and load.
// ---------------------------------------------------------------------------------------------

/// What a client (or many) saw.
#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    ok: u64,
    /// Answers other than 200, by status, with a sample body.
    statuses: BTreeMap<u16, (u64, String)>,
    /// Requests that got no byte of a response (after the client's one stale retry).
    no_response: Vec<String>,
    /// Requests whose response had started when the connection broke.
    truncated: Vec<String>,
    stale_retries: u64,
    stale_reasons: Vec<String>,
    connects: u64,
}

impl Tally {
    fn record(&mut self, result: &Result<Response, Failure>) {
        self.sent += 1;
        match result {
            Ok(reply) if reply.status == 200 => self.ok += 1,
            Ok(reply) => {
                let entry = self
                    .statuses
                    .entry(reply.status)
                    .or_insert((0, reply.body.trim().to_string()));
                entry.0 += 1;
            }
            Err(Failure::NoResponse(e)) => self.no_response.push(e.clone()),
            Err(Failure::Truncated(e)) => self.truncated.push(e.clone()),
        }
    }

    fn absorb_client(&mut self, client: &KeepAlive) {
        self.stale_retries += client.stale_retries;
        self.stale_reasons
            .extend(client.stale_reasons.iter().take(3).cloned());
        self.connects += client.connects;
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.ok += other.ok;
        for (status, (count, body)) in other.statuses {
            self.statuses.entry(status).or_insert((0, body)).0 += count;
        }
        self.no_response.extend(other.no_response);
        self.truncated.extend(other.truncated);
        self.stale_retries += other.stale_retries;
        self.stale_reasons.extend(other.stale_reasons);
        self.connects += other.connects;
    }

    /// Failed requests: not answered 200, or not answered at all. Truncated ones are apart.
    fn failed(&self) -> u64 {
        self.statuses.values().map(|(n, _)| n).sum::<u64>() + self.no_response.len() as u64
    }

    fn summary(&self) -> String {
        let mut parts = vec![format!(
            "sent {}, 200 {}, failed {}, truncated {}, stale retries {}, connects {}",
            self.sent,
            self.ok,
            self.failed(),
            self.truncated.len(),
            self.stale_retries,
            self.connects
        )];
        for (status, (count, body)) in &self.statuses {
            parts.push(format!("{count}× {status} {body:?}"));
        }
        if !self.no_response.is_empty() {
            let mut kinds = self.no_response.clone();
            kinds.sort();
            kinds.dedup();
            parts.push(format!("no response: {:?}", &kinds[..kinds.len().min(3)]));
        }
        if !self.truncated.is_empty() {
            parts.push(format!("truncated: {:?}", &self.truncated[..1]));
        }
        if !self.stale_reasons.is_empty() {
            parts.push(format!("stale: {:?}", &self.stale_reasons[..1]));
        }
        parts.join("; ")
    }
}

/// `clients` kept-alive clients sending `GET path` until `stop` is set, each bounded by
/// `max_per_client` requests and `max_time`.
fn load(
    addr: SocketAddr,
    clients: usize,
    path: &'static str,
    stop: Arc<AtomicBool>,
    max_per_client: u64,
    max_time: Duration,
) -> Vec<JoinHandle<Tally>> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = KeepAlive::new(addr);
                let mut tally = Tally::default();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed)
                    && tally.sent < max_per_client
                    && started.elapsed() < max_time
                {
                    tally.record(&client.request("GET", path, b""));
                }
                tally.absorb_client(&client);
                tally
            })
        })
        .collect()
}

fn join_all(handles: Vec<JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for handle in handles {
        total.merge(handle.join().unwrap());
    }
    total
}

/// The control: the same client, `clients` of them, the same number of requests in all,
/// straight to `addr` (a pod).
fn control(addr: SocketAddr, clients: usize, total: u64) -> Tally {
    let per_client = total.div_ceil(clients as u64).max(1);
    let never = Arc::new(AtomicBool::new(false));
    join_all(load(
        addr,
        clients,
        "/control",
        never,
        per_client,
        Duration::from_secs(20),
    ))
}

// ---------------------------------------------------------------------------------------------
// The gateway, and what its log and metrics say.
// ---------------------------------------------------------------------------------------------

/// The cluster `pods`: the pods of `pods.test`, found by DNS every second, 2 retries.
fn pods_cluster(port: u16) -> Cluster {
    Cluster::new("pods")
        .dns("pods.test", port)
        .refresh("1s")
        .connect_timeout("250ms")
        .retries(2)
}

/// Everything (`/`) to `cluster`, which must be named `pods`.
fn gateway(dns: &DnsServer, cluster: Cluster) -> GatewayBuilder {
    Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("pods"))
        .cluster(cluster)
}

/// Health checks as the brief's pods have them: every second.
fn health_1s() -> HealthCheck {
    HealthCheck::http()
        .interval("1s")
        .timeout("500ms")
        .unhealthy_threshold(2)
}

/// Lines of the gateway's log worth reporting: panics, exhausted retry budgets, and the
/// gateway's own 5xx answers. Counts and a sample of each.
fn notable_log(gw: &Gateway) -> String {
    let log = gw.stderr_log();
    let kinds = [
        "panicked",
        "retry budget",
        "status=502",
        "status=503",
        "status=504",
    ];
    let mut out = Vec::new();
    for kind in kinds {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(kind)).collect();
        if let Some(first) = lines.first() {
            let sample: String = first.chars().take(300).collect();
            out.push(format!("{}× `{kind}` (e.g. {sample})", lines.len()));
        }
    }
    if out.is_empty() {
        "gateway log: nothing notable".to_string()
    } else {
        format!("gateway log: {}", out.join(" | "))
    }
}

/// The gateway is still running, its log holds no `panicked`, and `headway_panics_total` is 0
/// where that series exists.
fn assert_gateway_sound(gw: &mut Gateway) {
    assert!(gw.is_running(), "the gateway exited");
    let log = gw.stderr_log();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        panics.is_empty(),
        "the gateway panicked {} times: {:?}",
        panics.len(),
        &panics[..panics.len().min(3)]
    );
    let metrics = http::get(gw.admin_addr(), "/metrics").unwrap().body;
    if let Some(line) = metrics
        .lines()
        .find(|l| l.starts_with("headway_panics_total"))
    {
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value, 0.0, "{line}");
    }
}

/// What `/clusters` says of backend `addr`'s health (`None`: not listed).
fn backend_healthy(gw: &Gateway, addr: SocketAddr) -> Option<bool> {
    admin::cluster(gw, "pods")
        .backend(&addr.to_string())
        .map(|b| b.healthy)
}

/// Brings a killed pod back as a kubelet would, once probes have seen it down (a restart
/// takes seconds): waits until the gateway marks it unhealthy, restarts it, then sends
/// requests until it serves one. Returns whether it did within 5 s, and those requests.
fn restart_once_probes_saw_it_down(
    gw: &Gateway,
    pod: &mut Backend,
    client: &mut KeepAlive,
) -> (bool, Tally) {
    let seen_down = wait_until(Duration::from_secs(5), || {
        backend_healthy(gw, pod.addr()) == Some(false)
    });
    assert!(seen_down, "the probes never marked the killed pod down");
    pod.restart();
    let hits = pod.hits();
    let mut tally = Tally::default();
    let back = wait_until(Duration::from_secs(5), || {
        tally.record(&client.request("GET", "/back", b""));
        pod.hits() > hits
    });
    (back, tally)
}

/// The gateway's own 502: a body that names the cluster and says what broke.
fn is_clear_502(status: u16, body: &str) -> bool {
    status == 502 && body.contains("cluster pods")
}

fn report(scenario: &str, text: &str) {
    println!("pod_death | {scenario} | {text}");
}

/// The 16-client load tests take turns: on a 2-core machine, three of them at once would
/// measure the machine rather than the gateway.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// a, b, c: one of three nginx pods dies under load.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Death {
    /// SIGTERM: nginx's fast shutdown.
    Term,
    /// SIGKILL, master and worker.
    Kill,
    /// SIGSTOP, master and worker: hung.
    Hang,
}

const LOAD_CLIENTS: usize = 16;

fn one_of_three_nginx_pods_dies_under_load(test: &str, ips: [&str; 3], death: Death) {
    if !nginx::available(test) {
        return;
    }
    let _turn = heavy();
    let dns = DnsServer::start();
    let port = free_port();
    let mut pods: Vec<Nginx> = ips.iter().map(|ip| Nginx::start(ip, port)).collect();
    dns.set_a("pods.test", &ips);
    let cluster = match death {
        // Within one per-try timeout nearly every client lands on the hung pod, so nearly all
        // need a failover at once: beyond any retry budget, which is why failover away from a
        // pod that fails alone is not rationed by it (the default budget refused 7 of ~5,800).
        Death::Hang => pods_cluster(port)
            .per_try_timeout("500ms")
            .health_check(health_1s()),
        Death::Term | Death::Kill => pods_cluster(port).health_check(health_1s()),
    };
    let mut gw = gateway(&dns, cluster).start();

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(
        gw.listen_addr(),
        LOAD_CLIENTS,
        "/load",
        stop.clone(),
        50_000,
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = pods[1].requests().len();
    let died = Instant::now();
    match death {
        Death::Term => pods[1].stop_term(),
        Death::Kill => pods[1].kill9(),
        Death::Hang => pods[1].hang(),
    }
    let took = died.elapsed();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let through = join_all(clients);
    let after = pods[1].requests().len();

    let direct = control(pods[0].addr(), LOAD_CLIENTS, through.sent);
    let served: Vec<usize> = pods.iter().map(|p| p.requests().len()).collect();
    report(
        test,
        &format!(
            "{death:?} of 1 of 3 nginx pods after 1 s of load, 4 s more ({LOAD_CLIENTS} keep-alive clients; the pod took {took:?} to die) | gateway: {} | control (straight to a pod): {} | requests per pod (access logs) {served:?}, the dying pod's before/after the signal {before}/{after} | {}",
            through.summary(),
            direct.summary(),
            notable_log(&gw)
        ),
    );
    assert!(
        before > 0,
        "the pod had no traffic before it died: the scenario did not happen"
    );
    assert_eq!(direct.failed(), 0, "control: {}", direct.summary());
    assert_gateway_sound(&mut gw);
    assert_eq!(
        through.failed(),
        0,
        "failed requests through the gateway: {}",
        through.summary()
    );
    assert_eq!(
        through.stale_retries,
        0,
        "the gateway closed client connections unannounced: {}",
        through.summary()
    );
    assert!(
        through.sent > 100,
        "the load barely ran: {}",
        through.summary()
    );
}

#[test]
fn nginx_pod_stopped_by_sigterm_fast_shutdown_under_load_fails_no_request() {
    one_of_three_nginx_pods_dies_under_load(
        "nginx_pod_stopped_by_sigterm_fast_shutdown_under_load_fails_no_request",
        ["127.0.13.11", "127.0.13.12", "127.0.13.13"],
        Death::Term,
    );
}

#[test]
fn nginx_pod_killed_by_sigkill_under_load_fails_no_request() {
    one_of_three_nginx_pods_dies_under_load(
        "nginx_pod_killed_by_sigkill_under_load_fails_no_request",
        ["127.0.13.21", "127.0.13.22", "127.0.13.23"],
        Death::Kill,
    );
}

#[test]
fn nginx_pod_hung_by_sigstop_under_load_is_timed_out_per_try_and_fails_no_request() {
    one_of_three_nginx_pods_dies_under_load(
        "nginx_pod_hung_by_sigstop_under_load_is_timed_out_per_try_and_fails_no_request",
        ["127.0.13.31", "127.0.13.32", "127.0.13.33"],
        Death::Hang,
    );
}

// ---------------------------------------------------------------------------------------------
// g: every nginx pod stopped, then back on the same IPs.
// ---------------------------------------------------------------------------------------------

#[test]
fn all_nginx_pods_stopped_by_sigterm_and_restarted_on_the_same_ips_serve_again_within_a_refresh_and_a_probe(
) {
    let test = "all_nginx_pods_stopped_by_sigterm_and_restarted_on_the_same_ips_serve_again";
    if !nginx::available(test) {
        return;
    }
    let _turn = heavy();
    let ips = ["127.0.13.71", "127.0.13.72", "127.0.13.73"];
    let dns = DnsServer::start();
    let port = free_port();
    let mut pods: Vec<Nginx> = ips.iter().map(|ip| Nginx::start(ip, port)).collect();
    dns.set_a("pods.test", &ips);
    let mut gw = gateway(&dns, pods_cluster(port).health_check(health_1s())).start();
    let (dns_refresh, health_interval) = (Duration::from_secs(1), Duration::from_secs(1));

    // Pooled connections to every pod.
    let mut client = KeepAlive::new(gw.listen_addr());
    let mut warm = Tally::default();
    for _ in 0..30 {
        warm.record(&client.request("GET", "/warm", b""));
    }
    assert_eq!(warm.failed(), 0, "{}", warm.summary());
    assert!(pods.iter().all(|p| !p.requests().is_empty()));

    // Down long enough for the probes to mark every pod down (2 failures, 1 s apart).
    for pod in &mut pods {
        pod.stop_term();
    }
    let mut down = Tally::default();
    let went_down = Instant::now();
    while went_down.elapsed() < Duration::from_secs(3) {
        down.record(&client.request("GET", "/down", b""));
        std::thread::sleep(Duration::from_millis(100));
    }
    for pod in &mut pods {
        pod.restart();
    }
    let back = Instant::now();
    let bound = dns_refresh + health_interval + Duration::from_millis(500);
    // Until every pod has served again: the first answer, then all three.
    let mut first_served = None;
    let mut recovering = Tally::default();
    let all_back = wait_until(Duration::from_secs(10), || {
        let result = client.request("GET", "/back", b"");
        if first_served.is_none() && result.as_ref().is_ok_and(|r| r.status == 200) {
            first_served = Some(back.elapsed());
        }
        recovering.record(&result);
        pods.iter()
            .all(|p| p.requests().iter().any(|l| l.contains(" /back ")))
    });
    let recovery = back.elapsed();
    // Then no stale connection is left to trip on.
    let mut after = Tally::default();
    for _ in 0..30 {
        after.record(&client.request("GET", "/after", b""));
    }
    after.absorb_client(&client);
    let direct = {
        let mut direct = KeepAlive::new(pods[0].addr());
        let mut tally = Tally::default();
        for _ in 0..30 {
            tally.record(&direct.request("GET", "/control", b""));
        }
        tally.absorb_client(&direct);
        tally
    };
    report(
        test,
        &format!(
            "3 nginx pods SIGTERMed, down 3 s, restarted on the same IPs | while down: {} | first answer {:?}, every pod serving again {:.2} s after the restart (bound: DNS refresh {dns_refresh:?} + health interval {health_interval:?} + 0.5 s); meanwhile: {} | the 30 requests after: {} | control: {} | {}",
            down.summary(),
            first_served,
            recovery.as_secs_f64(),
            recovering.summary(),
            after.summary(),
            direct.summary(),
            notable_log(&gw)
        ),
    );
    assert_eq!(direct.failed(), 0, "control: {}", direct.summary());
    assert_gateway_sound(&mut gw);
    assert!(all_back, "not every pod serving 10 s after they came back");
    assert!(
        recovery <= bound,
        "every pod serving again only after {recovery:?} (bound {bound:?})"
    );
    assert_eq!(after.failed(), 0, "{}", after.summary());
    assert!(after.truncated.is_empty(), "{}", after.summary());
    assert_eq!(after.stale_retries, 0, "{}", after.summary());
}

// ---------------------------------------------------------------------------------------------
// Control for a: nginx's fast shutdown does close idle kept-alive connections.
// ---------------------------------------------------------------------------------------------

#[test]
fn nginx_fast_shutdown_closes_idle_kept_alive_connections_control() {
    let test = "nginx_fast_shutdown_closes_idle_kept_alive_connections_control";
    if !nginx::available(test) {
        return;
    }
    let port = free_port();
    let mut pod = Nginx::start("127.0.13.91", port);
    let mut idle = KeepAlive::new(pod.addr());
    let reply = idle.request("GET", "/x", b"").unwrap();
    assert_eq!(reply.body, pod.body());
    assert_eq!(reply.header("connection"), Some("keep-alive"));
    let mut raw = idle.conn.take().unwrap().into_inner();
    let started = Instant::now();
    pod.stop_term();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut byte = [0u8; 1];
    let read = raw.read(&mut byte);
    report(
        test,
        &format!(
            "SIGTERM took {:?}; the idle kept-alive connection then read {read:?}; access log {:?}",
            started.elapsed(),
            pod.access_log()
        ),
    );
    assert!(
        matches!(read, Ok(0))
            || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "nginx's fast shutdown closes idle kept-alive connections"
    );
    // Method, URI, status, request length (the bytes the client sent), connection serial, the
    // request's rank on its connection.
    let sent = "GET /x HTTP/1.1\r\nHost: pod.test\r\n\r\n".len();
    let requests = pod.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let fields: Vec<&str> = requests[0].split(' ').collect();
    assert_eq!(
        (fields[0], fields[1], fields[2], fields[3], fields[5]),
        ("GET", "/x", "200", sent.to_string().as_str(), "1"),
        "{requests:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// d: Node's http server closes idle kept-alive connections after 5 s.
// ---------------------------------------------------------------------------------------------

/// Whether this headway accepts `idle_timeout` on a cluster (`headway -t`).
fn cluster_accepts_idle_timeout() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("probe.yaml");
    std::fs::write(
        &conf,
        format!(
            "version: 1\ngateway:\n  listen: [\"127.0.0.1:{}\"]\n  admin: {{ listen: \"127.0.0.1:{}\" }}\n  routes:\n  - {{ prefix: /, cluster: a }}\n  clusters:\n  - {{ name: a, address: 127.0.0.1, port: 80, idle_timeout: 30s }}\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let (code, _, _) = support::run_headway(&["-t", "-c", conf.to_str().unwrap()]);
    code == 0
}

/// One client of the Node test: through the gateway or not, its method, what it saw, and the
/// outcome of each of its POSTs.
type NodeClient = (bool, &'static str, Tally, Vec<String>);

/// Node pods on `ips[0]`, `ips[1]` behind the gateway, `ips[2]` for the control. Twelve
/// clients through the gateway and twelve straight to the control pod (GET, HEAD, POST four
/// each) each open a connection with a slow request (so the gateway pools a dozen upstream
/// connections), then twice wait from 250 ms before to 300 ms after the moment Node closes an
/// idle connection (measured first: 5 s `keepAliveTimeout`, plus 1 s on Node versions with
/// `keepAliveTimeoutBuffer`), one client every 50 ms, and send their method: the pooled
/// connections meet Node's close before, as, and after the request arrives.
fn node_pods_close_pooled_connections(test: &str, ips: [&str; 3], pool_longer: bool) {
    if !node::available(test) {
        return;
    }
    let dns = DnsServer::start();
    let port = free_port();
    let pods: Vec<NodePod> = ips
        .iter()
        .map(|ip| NodePod::start(ip, port, "node"))
        .collect();
    let control_addr = pods[2].addr();
    let measuring = std::thread::spawn(move || {
        let probe = NodePod::start(&control_addr.ip().to_string(), free_port(), "probe");
        probe.idle_close_after()
    });
    dns.set_a("pods.test", &ips[..2]);
    let mut cluster = pods_cluster(port).health_check(health_1s());
    let pooling = if !pool_longer {
        "the gateway's default upstream pooling".to_string()
    } else if cluster_accepts_idle_timeout() {
        cluster = cluster.idle_timeout("30s");
        "cluster idle_timeout 30 s (pooled longer than Node keeps them)".to_string()
    } else {
        "no cluster idle_timeout in this headway: its default pooling".to_string()
    };
    let mut gw = gateway(&dns, cluster).start();
    let node_closes_after = measuring
        .join()
        .unwrap()
        .expect("Node never closed an idle kept-alive connection");

    const CLIENTS: usize = 12;
    const ROUNDS: usize = 2;
    let methods = ["GET", "HEAD", "POST"];
    let barrier = Arc::new(Barrier::new(2 * CLIENTS));
    let threads: Vec<JoinHandle<NodeClient>> = [(true, gw.listen_addr()), (false, pods[2].addr())]
        .into_iter()
        .flat_map(|(through_gateway, addr)| {
            let barrier = barrier.clone();
            (0..CLIENTS).map(move |i| {
                let barrier = barrier.clone();
                let method = methods[i % 3];
                std::thread::spawn(move || {
                    let wait = (node_closes_after + Duration::from_millis(50 * i as u64))
                        .saturating_sub(Duration::from_millis(250));
                    let mut client = KeepAlive::new(addr);
                    let mut tally = Tally::default();
                    let mut posts = Vec::new();
                    barrier.wait();
                    let first = client.request("GET", "/slow?ms=300", b"");
                    tally.record(&first);
                    let mut last = Instant::now();
                    for _ in 0..ROUNDS {
                        std::thread::sleep(wait.saturating_sub(last.elapsed()));
                        let body = if method == "POST" {
                            &[b'x'; 100][..]
                        } else {
                            b""
                        };
                        let result = client.request(method, "/slow?ms=700", body);
                        last = Instant::now();
                        if method == "POST" {
                            posts.push(match &result {
                                Ok(r) => format!("{} {}", r.status, r.body.trim()),
                                Err(e) => format!("{e:?}"),
                            });
                        }
                        tally.record(&result);
                    }
                    tally.absorb_client(&client);
                    (through_gateway, method, tally, posts)
                })
            })
        })
        .collect();

    let mut through: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut direct: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut posts_through = Vec::new();
    for thread in threads {
        let (through_gateway, method, tally, posts) = thread.join().unwrap();
        if through_gateway {
            through.entry(method).or_default().merge(tally);
            posts_through.extend(posts);
        } else {
            direct.entry(method).or_default().merge(tally);
        }
    }
    let closes = |pod: &NodePod| {
        pod.events()
            .iter()
            .filter(|e| e.starts_with("close "))
            .count()
    };
    let node_side = format!(
        "Node closed {}+{} connections behind the gateway ({} + {} requests received), {} of the control's",
        closes(&pods[0]),
        closes(&pods[1]),
        pods[0].requests().len(),
        pods[1].requests().len(),
        closes(&pods[2])
    );
    let show = |tallies: &BTreeMap<&str, Tally>| {
        tallies
            .iter()
            .map(|(m, t)| format!("{m}: {}", t.summary()))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    report(
        test,
        &format!(
            "{pooling}; Node closes idle connections after {node_closes_after:.2?}; {CLIENTS} clients × {ROUNDS} requests after that −250 ms to +300 ms idle | gateway: {} | POST outcomes through the gateway: {posts_through:?} | control (straight to Node): {} | {node_side} | {}",
            show(&through),
            show(&direct),
            notable_log(&gw)
        ),
    );
    for (method, tally) in &direct {
        assert_eq!(tally.failed(), 0, "control {method}: {}", tally.summary());
        assert!(
            tally.truncated.is_empty(),
            "control {method}: {}",
            tally.summary()
        );
    }
    assert_gateway_sound(&mut gw);
    for method in ["GET", "HEAD"] {
        let tally = &through[method];
        assert_eq!(
            tally.failed(),
            0,
            "{method} through the gateway: {}",
            tally.summary()
        );
        assert!(tally.truncated.is_empty(), "{method}: {}", tally.summary());
        assert_eq!(
            tally.stale_retries,
            0,
            "{method}: client connection closed unannounced: {}",
            tally.summary()
        );
    }
    let post = &through["POST"];
    assert!(
        post.no_response.is_empty() && post.truncated.is_empty() && post.stale_retries == 0,
        "POST through the gateway: a dropped connection instead of an answer: {}",
        post.summary()
    );
    for (status, (_, body)) in &post.statuses {
        assert!(
            is_clear_502(*status, body),
            "POST through the gateway: only 200 or the gateway's own 502 will do, got {status} {body:?}"
        );
    }
}

#[test]
fn node_pods_closing_idle_connections_after_5s_fail_no_get_or_head_and_no_post_silently() {
    node_pods_close_pooled_connections(
        "node_pods_closing_idle_connections_after_5s_fail_no_get_or_head_and_no_post_silently",
        ["127.0.13.41", "127.0.13.42", "127.0.13.43"],
        false,
    );
}

#[test]
fn node_pods_closing_connections_the_gateway_pools_for_longer_fail_no_get_or_head() {
    node_pods_close_pooled_connections(
        "node_pods_closing_connections_the_gateway_pools_for_longer_fail_no_get_or_head",
        ["127.0.13.44", "127.0.13.45", "127.0.13.46"],
        true,
    );
}

// ---------------------------------------------------------------------------------------------
// e: the harness's pod closes a pooled connection exactly as the next request arrives.
// ---------------------------------------------------------------------------------------------

/// One pod that serves one request per connection and closes the connection (as `close` says)
/// when the next request arrives on it, unanswered: every request after the first meets a
/// stale pooled connection. Twelve GETs, twelve HEADs, twelve POSTs in turn, on one kept-alive
/// client connection.
fn own_pod_closes_pooled_connection_on_next_request(test: &str, ip: &str, h2c: bool, close: Close) {
    let dns = DnsServer::start();
    let port = free_port();
    let pod = if h2c {
        Backend::start_h2c(ip, port, "pod")
    } else {
        Backend::start(ip, port, "pod")
    };
    pod.set_fault(Fault::CloseOnNextRequest { after: 1, close });
    dns.set_a("pods.test", &[ip]);
    let cluster = if h2c {
        pods_cluster(port).protocol("http2")
    } else {
        pods_cluster(port)
    };
    let mut gw = gateway(&dns, cluster).start();

    let mut client = KeepAlive::new(gw.listen_addr());
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut post_outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for method in ["GET", "HEAD", "POST"] {
        let tally = tallies.entry(method).or_default();
        for i in 0..12 {
            let body = if method == "POST" { &b"hello"[..] } else { b"" };
            let result = client.request(method, &format!("/{method}/{i}"), body);
            if let Ok(reply) = &result {
                let expected = if method == "HEAD" {
                    String::new()
                } else {
                    pod.body()
                };
                if reply.status == 200 && reply.body != expected {
                    wrong.push(format!("{method} {i}: body {:?}", reply.body));
                }
            }
            if method == "POST" {
                let outcome = match &result {
                    Ok(r) => format!("{} {}", r.status, r.body.trim()),
                    Err(e) => format!("{e:?}"),
                };
                *post_outcomes.entry(outcome).or_default() += 1;
            }
            tally.record(&result);
        }
    }
    let mut all = Tally::default();
    all.absorb_client(&client);
    report(
        test,
        &format!(
            "{} pod closing each pooled connection with {close:?} as the next request arrives: {} closes | {} | POST outcomes {post_outcomes:?} | client: stale retries {}, connects {} | {}",
            if h2c { "h2c" } else { "HTTP/1" },
            pod.faults(),
            tallies
                .iter()
                .map(|(m, t)| format!("{m}: {}", t.summary()))
                .collect::<Vec<_>>()
                .join(" / "),
            all.stale_retries,
            all.connects,
            notable_log(&gw)
        ),
    );
    assert_gateway_sound(&mut gw);
    assert!(
        pod.faults() >= 10,
        "the gateway rarely reused a pooled connection ({} closes): the scenario did not happen",
        pod.faults()
    );
    assert!(wrong.is_empty(), "{wrong:?}");
    for method in ["GET", "HEAD"] {
        let tally = &tallies[method];
        assert_eq!(
            (tally.ok, tally.sent),
            (12, 12),
            "{method}: every one answered, retried on a fresh connection: {}",
            tally.summary()
        );
    }
    let post = &tallies["POST"];
    assert!(
        post.no_response.is_empty() && post.truncated.is_empty(),
        "POST: a dropped connection instead of an answer: {}",
        post.summary()
    );
    if close == Close::RefusedStream {
        // REFUSED_STREAM proves the pod never processed the request: safe to send again.
        assert_eq!(
            (post.ok, post.sent),
            (12, 12),
            "POST refused by the pod (REFUSED_STREAM: not processed) must be retried: {}",
            post.summary()
        );
    }
    for (status, (_, body)) in &post.statuses {
        assert!(
            is_clear_502(*status, body),
            "POST: only 200 or the gateway's own 502 will do, got {status} {body:?}"
        );
    }
    assert_eq!(
        all.stale_retries, 0,
        "the gateway closed the client's connection unannounced"
    );
    // A POST answered 200 reached the pod's handler once.
    assert_eq!(
        pod.hits(),
        24 + post.ok,
        "requests processed by the pod: 12 GET + 12 HEAD + the POSTs answered 200"
    );
}

#[test]
fn own_http1_pod_closing_a_pooled_connection_with_fin_as_the_next_request_arrives() {
    own_pod_closes_pooled_connection_on_next_request(
        "own_http1_pod_closing_a_pooled_connection_with_fin_as_the_next_request_arrives",
        "127.0.13.51",
        false,
        Close::Fin,
    );
}

#[test]
fn own_http1_pod_closing_a_pooled_connection_with_rst_as_the_next_request_arrives() {
    own_pod_closes_pooled_connection_on_next_request(
        "own_http1_pod_closing_a_pooled_connection_with_rst_as_the_next_request_arrives",
        "127.0.13.52",
        false,
        Close::Rst,
    );
}

#[test]
fn own_h2c_pod_closing_a_pooled_connection_with_fin_as_the_next_request_arrives() {
    own_pod_closes_pooled_connection_on_next_request(
        "own_h2c_pod_closing_a_pooled_connection_with_fin_as_the_next_request_arrives",
        "127.0.13.53",
        true,
        Close::Fin,
    );
}

#[test]
fn own_h2c_pod_closing_a_pooled_connection_with_rst_as_the_next_request_arrives() {
    own_pod_closes_pooled_connection_on_next_request(
        "own_h2c_pod_closing_a_pooled_connection_with_rst_as_the_next_request_arrives",
        "127.0.13.54",
        true,
        Close::Rst,
    );
}

#[test]
fn own_h2c_pod_refusing_the_next_stream_gets_every_request_post_included_retried() {
    own_pod_closes_pooled_connection_on_next_request(
        "own_h2c_pod_refusing_the_next_stream_gets_every_request_post_included_retried",
        "127.0.13.56",
        true,
        Close::RefusedStream,
    );
}

/// Node's keep-alive timeout without Node's timing: the pod closes a connection idle for
/// 200 ms as the next request arrives on it; the client sends every 300 ms.
#[test]
fn own_pod_closing_connections_idle_200ms_as_the_next_request_arrives_fails_no_get() {
    let test = "own_pod_closing_connections_idle_200ms_as_the_next_request_arrives_fails_no_get";
    let dns = DnsServer::start();
    let port = free_port();
    let pod = Backend::start("127.0.13.55", port, "pod");
    pod.set_fault(Fault::CloseWhenIdleFor {
        idle: Duration::from_millis(200),
        close: Close::Fin,
    });
    dns.set_a("pods.test", &["127.0.13.55"]);
    let mut gw = gateway(&dns, pods_cluster(port)).start();
    let mut client = KeepAlive::new(gw.listen_addr());
    let mut tally = Tally::default();
    for method in ["GET", "HEAD"] {
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(300));
            tally.record(&client.request(method, "/idle", b""));
        }
    }
    tally.absorb_client(&client);
    report(
        test,
        &format!(
            "{} closes | {} | {}",
            pod.faults(),
            tally.summary(),
            notable_log(&gw)
        ),
    );
    assert_gateway_sound(&mut gw);
    assert!(pod.faults() >= 6, "the pooled connection was rarely reused");
    assert_eq!((tally.ok, tally.sent), (12, 12), "{}", tally.summary());
    assert_eq!(tally.stale_retries, 0, "{}", tally.summary());
}

// ---------------------------------------------------------------------------------------------
// f: a pod dies mid-response, or between headers and body.
// ---------------------------------------------------------------------------------------------

/// Two pods, one cutting its responses short as `fault` says. Requests alternate between them:
/// those the cut pod answers reach the client truncated (or as an error or a 502), never as a
/// complete-looking 200; then the pod is killed, and every request is answered by the other;
/// then it comes back (once probes saw it down) and serves again.
fn own_pod_dies_mid_response(test: &str, ips: [&str; 2], fault: Fault) {
    let dns = DnsServer::start();
    let port = free_port();
    let mut pods: Vec<Backend> = ips
        .iter()
        .map(|ip| Backend::start(ip, port, "pod"))
        .collect();
    pods[0].set_fault(fault);
    dns.set_a("pods.test", &ips);
    // Probes un-eject the pod once it is back (passive health ejects it while it is dead).
    let mut gw = gateway(&dns, pods_cluster(port).health_check(health_1s())).start();

    let mut client = KeepAlive::new(gw.listen_addr());
    let mut cut = Tally::default();
    let mut complete_but_wrong = Vec::new();
    for i in 0..8 {
        let result = client.request("GET", &format!("/cut/{i}"), b"");
        if let Ok(reply) = &result {
            if reply.status == 200 && reply.body != pods[0].body() && reply.body != pods[1].body() {
                complete_but_wrong.push(format!("{:?}", reply.body));
            }
        }
        cut.record(&result);
    }
    let faults = pods[0].faults();
    cut.absorb_client(&client);
    pods[0].set_fault(Fault::None);
    pods[0].kill();
    let mut client = KeepAlive::new(gw.listen_addr());
    let mut after_kill = Tally::default();
    for i in 0..12 {
        after_kill.record(&client.request("GET", &format!("/after-kill/{i}"), b""));
    }
    after_kill.absorb_client(&client);
    let (back, after_restart) = restart_once_probes_saw_it_down(&gw, &mut pods[0], &mut client);
    report(
        test,
        &format!(
            "{fault:?} on 1 of 2 pods: {faults} responses cut | while cutting: {} | after the kill: {} | after the restart: {} | {}",
            cut.summary(),
            after_kill.summary(),
            after_restart.summary(),
            notable_log(&gw)
        ),
    );
    assert_gateway_sound(&mut gw);
    assert!(
        faults > 0,
        "no response was cut: the scenario did not happen"
    );
    assert!(
        complete_but_wrong.is_empty(),
        "a cut response passed as a complete 200: {complete_but_wrong:?}"
    );
    // Those the healthy pod answered are complete; each cut one is truncated, an error or 502.
    assert!(cut.ok >= 8 - faults, "{}", cut.summary());
    for status in cut.statuses.keys() {
        assert_eq!(*status, 502, "{}", cut.summary());
    }
    assert_eq!(after_kill.failed(), 0, "{}", after_kill.summary());
    assert!(after_kill.truncated.is_empty(), "{}", after_kill.summary());
    assert_eq!(after_kill.stale_retries, 0, "{}", after_kill.summary());
    assert!(back, "the restarted pod never served again");
    assert_eq!(after_restart.failed(), 0, "{}", after_restart.summary());
}

#[test]
fn own_pod_killed_mid_response_truncates_that_response_only_and_the_gateway_carries_on() {
    own_pod_dies_mid_response(
        "own_pod_killed_mid_response_truncates_that_response_only_and_the_gateway_carries_on",
        ["127.0.13.61", "127.0.13.62"],
        Fault::DieMidResponse { body_bytes: 3 },
    );
}

#[test]
fn own_pod_closing_between_headers_and_body_truncates_that_response_only() {
    own_pod_dies_mid_response(
        "own_pod_closing_between_headers_and_body_truncates_that_response_only",
        ["127.0.13.63", "127.0.13.64"],
        Fault::CloseAfterHeaders,
    );
}

// ---------------------------------------------------------------------------------------------
// The harness's pod killed with the gateway's pooled connections open (FIN, then RST).
// ---------------------------------------------------------------------------------------------

fn own_pod_killed_with_pooled_connections(test: &str, ips: [&str; 2], reset: bool) {
    let dns = DnsServer::start();
    let port = free_port();
    let mut pods: Vec<Backend> = ips
        .iter()
        .map(|ip| Backend::start(ip, port, "pod"))
        .collect();
    for pod in &pods {
        pod.set_reset_on_close(reset);
    }
    dns.set_a("pods.test", &ips);
    // Probes un-eject the pod once it is back (passive health ejects it while it is dead).
    let mut gw = gateway(&dns, pods_cluster(port).health_check(health_1s())).start();
    let mut client = KeepAlive::new(gw.listen_addr());
    let mut warm = Tally::default();
    for _ in 0..10 {
        warm.record(&client.request("GET", "/warm", b""));
    }
    let pooled = pods[0].connections();
    pods[0].kill();
    let mut after = Tally::default();
    for i in 0..12 {
        after.record(&client.request("GET", &format!("/after/{i}"), b""));
    }
    after.absorb_client(&client);
    let (back, after_restart) = restart_once_probes_saw_it_down(&gw, &mut pods[0], &mut client);
    report(
        test,
        &format!(
            "pod killed with {pooled} connection(s) from the gateway, closed with {} | warm-up: {} | the 12 requests right after: {} | restarted once probes saw it down, served again: {back} ({}) | {}",
            if reset { "RST" } else { "FIN" },
            warm.summary(),
            after.summary(),
            after_restart.summary(),
            notable_log(&gw)
        ),
    );
    assert_gateway_sound(&mut gw);
    assert_eq!(warm.failed(), 0, "{}", warm.summary());
    assert!(pooled > 0, "the gateway had no connection to the pod");
    assert_eq!(after.failed(), 0, "{}", after.summary());
    assert!(after.truncated.is_empty(), "{}", after.summary());
    assert_eq!(after.stale_retries, 0, "{}", after.summary());
    assert!(back, "the restarted pod never served again");
    assert_eq!(after_restart.failed(), 0, "{}", after_restart.summary());
}

#[test]
fn own_pod_killed_with_pooled_connections_closed_by_fin_fails_no_request() {
    own_pod_killed_with_pooled_connections(
        "own_pod_killed_with_pooled_connections_closed_by_fin_fails_no_request",
        ["127.0.13.81", "127.0.13.82"],
        false,
    );
}

#[test]
fn own_pod_killed_with_pooled_connections_closed_by_rst_fails_no_request() {
    own_pod_killed_with_pooled_connections(
        "own_pod_killed_with_pooled_connections_closed_by_rst_fails_no_request",
        ["127.0.13.83", "127.0.13.84"],
        true,
    );
}
