//! A real HTTP/1.1 backend ("pod") on a loopback address: says who it is, echoes the request
//! headers, can be slowed down, marked unhealthy, killed and restarted on the same address.
//!
//! Hand-rolled on tokio (request line, headers, Content-Length or chunked bodies, keep-alive):
//! enough HTTP for a gateway to proxy to, and no dependency that could hide what goes on the wire.

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

struct BackendState {
    name: String,
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
        let addr: SocketAddr = format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("Backend::start({ip}, {port}): bad address: {e}"));
        let state = Arc::new(BackendState {
            name: name.to_string(),
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
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    // Client-side resets and the like are the client's business.
                    let _ = serve_connection(stream, state, served_by).await;
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

async fn serve_connection(
    stream: TcpStream,
    state: Arc<BackendState>,
    served_by: SocketAddr,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let request = match read_request(&mut stream).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let response = simple_response(400, "bad request\n", false);
                stream.get_mut().write_all(&response).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let keep_alive = request.keep_alive();
        let response = if request.path() == "/healthz" {
            state.health_hits.fetch_add(1, Ordering::SeqCst);
            if state.healthy.load(Ordering::SeqCst) {
                simple_response(200, "ok\n", keep_alive)
            } else {
                simple_response(503, "unhealthy\n", keep_alive)
            }
        } else {
            state.hits.fetch_add(1, Ordering::SeqCst);
            let delay = *lock(&state.delay);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match state.fail_with.load(Ordering::SeqCst) {
                0 => identity_response(&state.name, served_by, &request, keep_alive),
                status => simple_response(status, "failing on purpose\n", keep_alive),
            }
        };
        stream.get_mut().write_all(&response).await?;
        stream.get_mut().flush().await?;
        if !keep_alive {
            let _ = stream.get_mut().shutdown().await;
            return Ok(());
        }
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
    format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n{body}",
        status_text(status),
        body.len(),
        connection_header(keep_alive),
    )
    .into_bytes()
}

fn identity_response(
    name: &str,
    served_by: SocketAddr,
    request: &HttpRequest,
    keep_alive: bool,
) -> Vec<u8> {
    let body = format!("{name} {}\n", served_by.ip());
    let mut head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {}\r\n\
         x-backend: {name}\r\nx-served-by: {served_by}\r\nx-request-method: {}\r\n\
         x-request-target: {}\r\nx-request-body-bytes: {}\r\n",
        body.len(),
        connection_header(keep_alive),
        request.method,
        request.target,
        request.body.len(),
    );
    for (key, value) in &request.headers {
        head.push_str(&format!("x-echo-{}: {value}\r\n", key.to_ascii_lowercase()));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    if request.method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    response
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

/// Reads one request. `Ok(None)` when the client closed the connection between requests.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<HttpRequest>> {
    // RFC 9112 §2.2: ignore empty lines before a request line.
    let request_line = loop {
        match read_line(reader).await? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
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
    Ok(Some(request))
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
