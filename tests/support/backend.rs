//! A real HTTP/1.1 backend ("pod") on a loopback address: says who it is, echoes the request
//! headers, can be slowed down, marked unhealthy, killed and restarted on the same address — and
//! made to die the ways real pods die ([`Fault`]), over HTTP/1.1 or h2c ([`Backend::start_h2c`]).
//!
//! Hand-rolled on tokio (request line, headers, Content-Length or chunked bodies, keep-alive):
//! enough HTTP for a gateway to proxy to, and no dependency that could hide what goes on the wire.
//! The h2c flavour uses the `h2` crate's server, with the same answers and the same faults.
//!
//! Ways to die, and what a peer (the gateway) sees:
//!
//! | how | call | on the wire |
//! |---|---|---|
//! | every connection closed at once, idle kept-alive ones included (nginx's fast shutdown on SIGTERM, SIGKILL) | [`Backend::kill`] | FIN on every connection (RST where unread request bytes remain), then connects refused |
//! | the same with RST everywhere | [`Backend::set_reset_on_close`] then [`Backend::kill`] | RST on every connection |
//! | a kept-alive connection closed as the next request arrives on it (Node's `http` after its `keepAliveTimeout`, a pod's proxy closing at its request limit) | [`Fault::CloseOnNextRequest`], [`Fault::CloseWhenIdleFor`] | the next request is read (FIN) or its first line is read (RST), never answered |
//! | killed mid-response | [`Fault::DieMidResponse`] | status line, headers and part of the body, then RST |
//! | closed between headers and body | [`Fault::CloseAfterHeaders`] | status line and headers announcing a body, then FIN |
//! | hung (SIGSTOP, a deadlock) | [`Fault::Hang`] | connects succeed (the kernel accepts), nothing is read or answered until the fault is lifted |
//! | back on the same IP | [`Backend::restart`] | serves again |

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;

use super::{lock, new_runtime, shutdown_runtime};

/// Longest request line or header line accepted, in bytes.
const MAX_LINE: usize = 16 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 200;

/// How a kept-alive connection is closed by [`Fault::CloseOnNextRequest`] and
/// [`Fault::CloseWhenIdleFor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// The whole request is read first (HTTP/1: head and body), then the socket is closed:
    /// the peer reads EOF where it expected the response.
    Fin,
    /// Only the request line (h2c: the request's HEADERS) is read, then the socket is closed
    /// with `SO_LINGER` 0: the peer gets a reset.
    Rst,
    /// h2c: the request's stream is reset with `REFUSED_STREAM` — RFC 9113 §8.7: closed before
    /// any processing, so any request, a POST included, can be retried safely — then the
    /// connection is shut down gracefully (GOAWAY) and closed. HTTP/1 has no way to say this:
    /// there it closes as [`Close::Fin`] does.
    RefusedStream,
}

/// A way for the backend to misbehave, chosen at run time with [`Backend::set_fault`]. Faults
/// never touch `GET /healthz` unless said so: a pod can pass its probe and still break requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers normally (the default).
    None,
    /// Each connection serves `after` requests (not counting `/healthz`); when the next request
    /// arrives on it, the connection is closed as `close` says, the request unanswered. With
    /// `after: 0` every request on a fresh connection is dropped too. This is the race a proxy
    /// meets with a backend that closes idle kept-alive connections on its own timer (Node's
    /// `http` server: `keepAliveTimeout` 5 s), made deterministic: the pooled connection looks
    /// alive until the request is on it.
    CloseOnNextRequest { after: u64, close: Close },
    /// When a request arrives on a connection that has been idle (since its last response, or
    /// since it was accepted) for at least `idle`, the connection is closed as `close` says,
    /// the request unanswered. Node's keep-alive timeout, except that the close waits for the
    /// request instead of racing it.
    CloseWhenIdleFor { idle: Duration, close: Close },
    /// Sends the status line and headers (with the `Content-Length` of the whole body) and the
    /// first `body_bytes` bytes of the body, then resets the connection: SIGKILL mid-response.
    DieMidResponse { body_bytes: usize },
    /// Sends the status line and headers (announcing a body), then closes with FIN before the
    /// body.
    CloseAfterHeaders,
    /// Connections are accepted by the kernel but nothing is read or answered (`/healthz`
    /// included) until the fault is lifted, as with a process under SIGSTOP: new connections
    /// and kept-alive ones alike. A request already being answered is finished.
    Hang,
}

impl BackendState {
    fn fault(&self) -> Fault {
        *lock(&self.fault)
    }
}

struct BackendState {
    name: String,
    /// HTTP/1.1 (false) or h2c with prior knowledge (true).
    h2c: bool,
    fault: Mutex<Fault>,
    /// Every connection accepted from now on closes with RST instead of FIN.
    reset_on_close: AtomicBool,
    /// Times a fault fired: connections closed on a request, responses cut short.
    faults: AtomicU64,
    healthy: AtomicBool,
    delay: Mutex<Duration>,
    /// When non-zero, every request but /healthz gets this status instead of its answer.
    fail_with: AtomicU16,
    hits: AtomicU64,
    health_hits: AtomicU64,
    connections: AtomicU64,
}

/// An HTTP/1.1 server on `ip:port`, standing in for one pod. Dropping it kills it.
///
/// - `GET /healthz` → 200 `ok`, or 503 `unhealthy` after `set_healthy(false)`; counted in
///   [`Backend::health_hits`], never delayed.
/// - anything else → after the delay (default none), 200 with body `"<name> <ip>\n"` and headers
///   `x-backend: <name>`, `x-served-by: <ip>:<port>`, `x-request-method`, `x-request-target`
///   (the request target as received, e.g. `/service/1?a=b`), `x-request-body-bytes`, and
///   `x-echo-<header>: <value>` for every request header (name lowercased, repeats kept).
///   Counted in [`Backend::hits`] when the request has been read, before the delay.
/// - keep-alive as HTTP/1.1 says (`Connection: close` or HTTP/1.0 closes after the response).
///
/// With [`Backend::set_fault`], it dies in the ways listed in the module documentation;
/// [`Backend::start_h2c`] serves the same over h2c (HTTP/2 with prior knowledge).
pub struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
    runtime: Option<Runtime>,
}

impl Backend {
    /// Binds `ip:port` (port 0 = ephemeral; the port chosen is kept for `restart()`) and serves.
    /// Several backends may share one port on different loopback IPs (127.0.0.11, .12, …), like
    /// the pods of a headless service. Panics if the address cannot be bound within 5 s.
    pub fn start(ip: &str, port: u16, name: &str) -> Backend {
        Backend::start_with(ip, port, name, false)
    }

    /// Like [`Backend::start`], but speaks HTTP/2 with prior knowledge (h2c) only, as gRPC
    /// servers do: for clusters with `protocol: http2`. Same answers (HEAD gets no body), same
    /// faults, same counters.
    pub fn start_h2c(ip: &str, port: u16, name: &str) -> Backend {
        Backend::start_with(ip, port, name, true)
    }

    fn start_with(ip: &str, port: u16, name: &str, h2c: bool) -> Backend {
        let addr: SocketAddr = format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("Backend::start({ip}, {port}): bad address: {e}"));
        let state = Arc::new(BackendState {
            name: name.to_string(),
            h2c,
            fault: Mutex::new(Fault::None),
            reset_on_close: AtomicBool::new(false),
            faults: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            delay: Mutex::new(Duration::ZERO),
            fail_with: AtomicU16::new(0),
            hits: AtomicU64::new(0),
            health_hits: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let (runtime, addr) = serve(addr, &state, Duration::from_secs(5));
        Backend {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// The address it listens on (its real port, even when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"ip:port"`, as the gateway would list it in `/clusters`.
    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The body it answers to non-health requests: `"<name> <ip>\n"`.
    pub fn body(&self) -> String {
        format!("{} {}\n", self.state.name, self.addr.ip())
    }

    /// Requests other than `/healthz` received (since start, across restarts).
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// `/healthz` requests received (since start, across restarts).
    pub fn health_hits(&self) -> u64 {
        self.state.health_hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted (since start, across restarts).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Misbehaves from now on as `fault` says ([`Fault::None`] to behave again). Applies to
    /// connections already open as well as new ones, at their next request.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.state.fault) = fault;
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *lock(&self.state.fault)
    }

    /// Times a fault fired (connections closed on a request, responses cut short), since start.
    pub fn faults(&self) -> u64 {
        self.state.faults.load(Ordering::SeqCst)
    }

    /// When true, every connection accepted from then on is closed with RST (`SO_LINGER` 0)
    /// instead of FIN, whoever closes it: [`Backend::kill`], a fault, `Connection: close`.
    /// Connections accepted before keep closing with FIN.
    pub fn set_reset_on_close(&self, reset: bool) {
        self.state.reset_on_close.store(reset, Ordering::SeqCst);
    }

    /// `/healthz` answers 200 when true (the default), 503 when false.
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Delay before answering each non-health request (default zero).
    /// Answers every request but `/healthz` with `status` (e.g. 503) from now on; 0 restores
    /// normal answers. `/healthz` keeps following `set_healthy`.
    pub fn fail_with(&self, status: u16) {
        self.state.fail_with.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Whether it is serving (not killed).
    pub fn is_running(&self) -> bool {
        self.runtime.is_some()
    }

    /// Like a pod dying: closes the listener and every open connection (requests in flight get
    /// no response), and returns once they are closed. Connects are refused from then on.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            shutdown_runtime(runtime);
        }
    }

    /// Serves again on the same ip:port; counters, health and delay are kept. Panics if the
    /// address cannot be bound again within 10 s. No-op if it is running.
    pub fn restart(&mut self) {
        if self.runtime.is_none() {
            let (runtime, _) = serve(self.addr, &self.state, Duration::from_secs(10));
            self.runtime = Some(runtime);
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Binds `addr` (retrying until `patience` has passed) and spawns the accept loop on a fresh
/// runtime. Returns the runtime and the bound address.
fn serve(addr: SocketAddr, state: &Arc<BackendState>, patience: Duration) -> (Runtime, SocketAddr) {
    let runtime = new_runtime("backend");
    let deadline = Instant::now() + patience;
    let listener = loop {
        match runtime.block_on(async { bind(addr) }) {
            Ok(listener) => break listener,
            Err(e) if Instant::now() >= deadline => panic!("Backend: cannot bind {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let bound = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("Backend: local_addr of {addr}: {e}"));
    runtime.spawn(accept_loop(listener, Arc::clone(state), bound));
    (runtime, bound)
}

/// SO_REUSEADDR so that a restart is not blocked by the previous generation's TIME_WAIT sockets.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, state: Arc<BackendState>, served_by: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                state.connections.fetch_add(1, Ordering::SeqCst);
                if state.reset_on_close.load(Ordering::SeqCst) {
                    let _ = stream.set_zero_linger();
                }
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    // Client-side resets and the like are the client's business.
                    if state.h2c {
                        let _ = serve_h2c_connection(stream, state, served_by).await;
                    } else {
                        let _ = serve_connection(stream, state, served_by).await;
                    }
                });
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct HttpRequest {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    fn keep_alive(&self) -> bool {
        if self.version == "HTTP/1.0" {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Waits while the backend is hung ([`Fault::Hang`]).
async fn wait_while_hung(state: &BackendState) {
    while state.fault() == Fault::Hang {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the fault in force closes a connection on the request arriving now, and how.
/// `served`: requests (not `/healthz`) answered on the connection; `idle`: since its last one.
fn close_on_arrival(state: &BackendState, served: u64, idle: Duration) -> Option<Close> {
    match state.fault() {
        Fault::CloseOnNextRequest { after, close } if served >= after => Some(close),
        Fault::CloseWhenIdleFor { idle: limit, close } if idle >= limit => Some(close),
        _ => None,
    }
}

/// The path of a request line's target (`GET /a?b HTTP/1.1` → `/a`).
fn path_of(request_line: &str) -> &str {
    request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<BackendState>,
    served_by: SocketAddr,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut served = 0u64;
    let mut idle_since = Instant::now();
    loop {
        wait_while_hung(&state).await;
        let request_line = match read_request_line(&mut stream).await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let response = simple_response(400, "bad request\n", false);
                stream.get_mut().write_all(&response).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        // Hung while the request arrived: it waits, unanswered, as on a stopped process.
        wait_while_hung(&state).await;
        let health = path_of(&request_line) == "/healthz";
        if !health {
            if let Some(close) = close_on_arrival(&state, served, idle_since.elapsed()) {
                state.faults.fetch_add(1, Ordering::SeqCst);
                if close != Close::Rst {
                    // Read the whole request so that the close is a FIN, not a reset for unread
                    // bytes.
                    let _ = read_request_rest(&mut stream, request_line).await;
                    let _ = stream.get_mut().shutdown().await;
                } else {
                    let _ = stream.get_ref().set_zero_linger();
                }
                return Ok(());
            }
        }
        let request = match read_request_rest(&mut stream, request_line).await {
            Ok(request) => request,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let response = simple_response(400, "bad request\n", false);
                stream.get_mut().write_all(&response).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let keep_alive = request.keep_alive();
        let answer = answer(
            &state,
            served_by,
            &request.method,
            &request.target,
            &request.headers,
            request.body.len(),
        )
        .await;
        let response = answer.to_http1(keep_alive, request.method == "HEAD");
        if !health {
            let fault = *lock(&state.fault);
            match fault {
                Fault::DieMidResponse { body_bytes } => {
                    let cut = (answer.head_len(keep_alive) + body_bytes).min(response.len());
                    state.faults.fetch_add(1, Ordering::SeqCst);
                    return die_after(stream.into_inner(), &response[..cut], true).await;
                }
                Fault::CloseAfterHeaders => {
                    let cut = answer.head_len(keep_alive).min(response.len());
                    state.faults.fetch_add(1, Ordering::SeqCst);
                    return die_after(stream.into_inner(), &response[..cut], false).await;
                }
                _ => {}
            }
        }
        stream.get_mut().write_all(&response).await?;
        stream.get_mut().flush().await?;
        if !health {
            served += 1;
        }
        idle_since = Instant::now();
        if !keep_alive {
            let _ = stream.get_mut().shutdown().await;
            return Ok(());
        }
    }
}

/// Writes `bytes` (a response cut short), lets them reach the peer (and the peer forward them),
/// then closes: RST when `reset`, FIN otherwise.
async fn die_after(mut stream: TcpStream, bytes: &[u8], reset: bool) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    if reset {
        stream.set_zero_linger()?;
    } else {
        stream.shutdown().await?;
    }
    Ok(())
}

/// One answer, before it is put on the wire (HTTP/1.1 or HTTP/2).
struct Answer {
    status: u16,
    /// Besides `content-type: text/plain` and `content-length`.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn simple(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn http1_head(&self, keep_alive: bool) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {}\r\n",
            self.status,
            status_text(self.status),
            self.body.len(),
            connection_header(keep_alive),
        );
        for (key, value) in &self.headers {
            head.push_str(&format!("{key}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }

    fn head_len(&self, keep_alive: bool) -> usize {
        self.http1_head(keep_alive).len()
    }

    fn to_http1(&self, keep_alive: bool, head_request: bool) -> Vec<u8> {
        let mut response = self.http1_head(keep_alive).into_bytes();
        if !head_request {
            response.extend_from_slice(self.body.as_bytes());
        }
        response
    }
}

/// Answers one request as documented on [`Backend`]: counts it, applies the delay and
/// `fail_with` (not to `/healthz`).
async fn answer(
    state: &BackendState,
    served_by: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body_len: usize,
) -> Answer {
    if target.split('?').next() == Some("/healthz") {
        state.health_hits.fetch_add(1, Ordering::SeqCst);
        return if state.healthy.load(Ordering::SeqCst) {
            Answer::simple(200, "ok\n")
        } else {
            Answer::simple(503, "unhealthy\n")
        };
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match state.fail_with.load(Ordering::SeqCst) {
        0 => identity_answer(&state.name, served_by, method, target, headers, body_len),
        status => Answer::simple(status, "failing on purpose\n"),
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn connection_header(keep_alive: bool) -> &'static str {
    if keep_alive {
        "keep-alive"
    } else {
        "close"
    }
}

fn simple_response(status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    Answer::simple(status, body).to_http1(keep_alive, false)
}

fn identity_answer(
    name: &str,
    served_by: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body_len: usize,
) -> Answer {
    let mut answer = Answer {
        status: 200,
        headers: vec![
            ("x-backend".into(), name.into()),
            ("x-served-by".into(), served_by.to_string()),
            ("x-request-method".into(), method.into()),
            ("x-request-target".into(), target.into()),
            ("x-request-body-bytes".into(), body_len.to_string()),
        ],
        body: format!("{name} {}\n", served_by.ip()),
    };
    for (key, value) in headers {
        answer.headers.push((
            format!("x-echo-{}", key.to_ascii_lowercase()),
            value.clone(),
        ));
    }
    answer
}

/// Serves one h2c (prior knowledge) connection: every request on its own task, the faults as
/// for HTTP/1 (for [`Fault::CloseWhenIdleFor`], idle is since the previous request arrived;
/// [`Fault::DieMidResponse`] and [`Fault::CloseAfterHeaders`] reset the stream, as a dying
/// HTTP/2 server's connection would).
async fn serve_h2c_connection(
    mut stream: TcpStream,
    state: Arc<BackendState>,
    served_by: SocketAddr,
) -> Result<(), h2::Error> {
    wait_while_hung(&state).await;
    let close = {
        let mut connection = h2::server::handshake(&mut stream).await?;
        let mut served = 0u64;
        let mut idle_since = Instant::now();
        loop {
            let Some(next) = connection.accept().await else {
                break None;
            };
            let (request, respond) = next?;
            wait_while_hung(&state).await;
            if request.uri().path() != "/healthz" {
                if let Some(close) = close_on_arrival(&state, served, idle_since.elapsed()) {
                    state.faults.fetch_add(1, Ordering::SeqCst);
                    if close == Close::RefusedStream {
                        let mut respond = respond;
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        // GOAWAY, then serve out the connection: the reset and the GOAWAY reach
                        // the peer, and streams it opens meanwhile are refused by h2 itself.
                        connection.graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            while let Some(Ok((_, mut late))) = connection.accept().await {
                                late.send_reset(h2::Reason::REFUSED_STREAM);
                            }
                        })
                        .await;
                        break Some(Close::Fin);
                    }
                    break Some(close);
                }
                served += 1;
            }
            idle_since = Instant::now();
            tokio::spawn(answer_h2(request, respond, Arc::clone(&state), served_by));
        }
        // The connection is dropped here without a GOAWAY: the peer learns nothing from h2.
    };
    match close {
        Some(Close::Fin | Close::RefusedStream) => {
            // Drain what the peer sent (the request's body) so that the close is a FIN.
            let mut sink = [0u8; 16 * 1024];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(20), stream.read(&mut sink)).await
            {
                if n == 0 {
                    break;
                }
            }
            let _ = stream.shutdown().await;
        }
        Some(Close::Rst) => {
            let _ = stream.set_zero_linger();
        }
        None => {}
    }
    Ok(())
}

async fn answer_h2(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    state: Arc<BackendState>,
    served_by: SocketAddr,
) {
    let (parts, mut body) = request.into_parts();
    let mut body_len = 0;
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        body_len += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(authority) = parts.uri.authority() {
        if !parts.headers.contains_key(http::header::HOST) {
            headers.push(("host".into(), authority.to_string()));
        }
    }
    for (key, value) in &parts.headers {
        headers.push((
            key.as_str().to_string(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let method = parts.method.as_str().to_string();
    let answer = answer(&state, served_by, &method, &target, &headers, body_len).await;
    let mut response = http::Response::builder()
        .status(answer.status)
        .header("content-type", "text/plain")
        .header("content-length", answer.body.len());
    for (key, value) in &answer.headers {
        response = response.header(key.as_str(), value.as_str());
    }
    let Ok(response) = response.body(()) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let head_only = method == "HEAD" || answer.body.is_empty();
    let fault = if target.split('?').next() == Some("/healthz") {
        Fault::None
    } else {
        state.fault()
    };
    let Ok(mut send) = respond.send_response(response, head_only) else {
        return;
    };
    let cut = match fault {
        Fault::DieMidResponse { body_bytes } => Some(body_bytes.min(answer.body.len())),
        Fault::CloseAfterHeaders => Some(0),
        _ => None,
    };
    if head_only {
        return;
    }
    let body = bytes::Bytes::from(answer.body.into_bytes());
    match cut {
        Some(cut) => {
            state.faults.fetch_add(1, Ordering::SeqCst);
            if cut > 0 {
                let _ = send.send_data(body.slice(..cut), false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            send.send_reset(h2::Reason::INTERNAL_ERROR);
        }
        None => {
            let _ = send.send_data(body, true);
        }
    }
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Reads one CRLF- (or LF-) terminated line without its terminator. `None` at a clean EOF.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(invalid("line too long or truncated"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("line is not UTF-8"))
}

/// Reads a request line, skipping empty lines before it (RFC 9112 §2.2). `Ok(None)` when the
/// client closed the connection between requests.
async fn read_request_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<String>> {
    loop {
        match read_line(reader).await? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => return Ok(Some(line)),
        }
    }
}

/// Reads the rest of the request whose request line was `request_line`: headers and body.
async fn read_request_rest<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    request_line: String,
) -> std::io::Result<HttpRequest> {
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("unsupported version {version:?}")));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)
            .await?
            .ok_or_else(|| invalid("EOF in headers"))?;
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(invalid(format!("bad header line {line:?}")));
        };
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        headers.push((key.trim().to_string(), value.trim().to_string()));
    }
    let mut request = HttpRequest {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    };
    if request.has_token("transfer-encoding", "chunked") {
        request.body = read_chunked_body(reader).await?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok(request)
}

async fn read_chunked_body<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)
            .await?
            .ok_or_else(|| invalid("EOF in chunk size"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while let Some(trailer) = read_line(reader).await? {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let end = read_line(reader).await?;
        if end.as_deref() != Some("") {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}
