//! A small blocking HTTP/1.1 client on `std::net`: one request per connection (`get`,
//! `get_with_headers`, `request`) or a keep-alive [`Client`]. Every I/O failure is an `Err`,
//! never a panic, so tests can assert on refused connections and resets.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connect, read and write timeout of every request.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A response, body read in full (decoded from chunked if need be, lossily as UTF-8).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// In the order received; names as sent by the server.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body had no length and ran until the server closed the connection.
    ran_to_close: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Whether the server said `Connection: close`.
    pub fn closes_connection(&self) -> bool {
        self.header_all("connection")
            .iter()
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("close"))
    }
}

impl Response {
    /// Whether the body had neither a length nor chunks and so ended with the connection: the
    /// connection cannot carry another request, `Connection: close` or not.
    pub fn ran_to_close(&self) -> bool {
        self.ran_to_close
    }
}

/// `GET path` on a fresh connection with `Connection: close`.
pub fn get(addr: impl ToSocketAddrs, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, &[], b"")
}

/// `GET path` with extra request headers (a `Host` given here replaces the default one).
pub fn get_with_headers(
    addr: impl ToSocketAddrs,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    request(addr, "GET", path, headers, b"")
}

/// Any method, headers and body (sent with Content-Length), on a fresh connection that is closed
/// after the response.
pub fn request(
    addr: impl ToSocketAddrs,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let addr = first_addr(addr)?;
    let mut stream = connect(addr)?;
    write_request(&mut stream, addr, method, path, headers, body, false)?;
    read_response(&mut BufReader::new(stream), method)
}

/// `GET path`, expecting 200 and a JSON body. Panics otherwise (with the status and body).
pub fn get_json(addr: impl ToSocketAddrs, path: &str) -> serde_json::Value {
    let response = get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    if response.status != 200 {
        panic!(
            "GET {path}: status {} body {:?}",
            response.status, response.body
        );
    }
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {:?}", response.body))
}

/// A keep-alive client: requests reuse one connection; when sending on it fails (e.g. the server
/// closed it), it reconnects once and retries.
pub struct Client {
    addr: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
    connects: u64,
    stale_retries: u64,
}

impl Client {
    /// Connects lazily, on the first request. Panics if `addr` does not resolve.
    pub fn new(addr: impl ToSocketAddrs) -> Client {
        let addr = first_addr(addr).unwrap_or_else(|e| panic!("Client::new: {e}"));
        Client {
            addr,
            connection: None,
            connects: 0,
            stale_retries: 0,
        }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    pub fn get_with_headers(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<Response> {
        self.request("GET", path, headers, b"")
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let reused = self.connection.is_some();
        match self.try_request(method, path, headers, body) {
            Err(_) if reused => {
                self.stale_retries += 1;
                self.try_request(method, path, headers, body)
            }
            result => result,
        }
    }

    /// Requests retried on a new connection because the kept-alive one failed (as browsers do
    /// for idempotent requests); tests report it beside their failure counts.
    pub fn stale_retries(&self) -> u64 {
        self.stale_retries
    }

    /// Connections opened so far (1 after any number of requests on one kept-alive connection).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Drops the current connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        self.connection = None;
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                self.connects += 1;
                BufReader::new(connect(self.addr)?)
            }
        };
        write_request(
            connection.get_mut(),
            self.addr,
            method,
            path,
            headers,
            body,
            true,
        )?;
        let response = read_response(&mut connection, method)?;
        if !response.closes_connection() {
            self.connection = Some(connection);
        }
        Ok(response)
    }
}

fn first_addr(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing"))
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn write_request(
    stream: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(key, _)| key.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (key, value) in headers {
        head.push_str(&format!("{key}: {value}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    stream.flush()
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response to a `method` request (interim 1xx responses skipped), its body in full:
/// by `Content-Length`, by chunks, or to the end of the connection. For tests that write their
/// own requests on their own connections.
pub fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Response> {
    loop {
        let response = read_one_response(reader, method)?;
        // 1xx are interim: the real response follows.
        if !(100..200).contains(&response.status) {
            return Ok(response);
        }
    }
}

fn read_one_response(reader: &mut impl BufRead, method: &str) -> io::Result<Response> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("bad status line {status_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {status_line:?}")));
    }
    let status: u16 = status
        .parse()
        .map_err(|_| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(invalid(format!("bad header line {line:?}")));
        };
        headers.push((key.trim().to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: String::new(),
        ran_to_close: false,
    };
    let no_body =
        method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return Ok(response);
    }
    let chunked = response
        .header_all("transfer-encoding")
        .iter()
        .any(|value| value.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        response.ran_to_close = true;
        body
    };
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            loop {
                if read_line(reader)?.is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}
