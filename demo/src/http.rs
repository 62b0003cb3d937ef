//! A tiny HTTP/1.1 client for the demo's own checks (`/healthz`, `/ready`, `/clusters`) and its
//! tests: one GET per connection.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr`, the whole exchange bounded by `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    match tokio::time::timeout(timeout, exchange(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("GET http://{addr}{path}: no answer within {timeout:?}"),
        )),
    }
}

async fn exchange(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return parse(&buffer, true)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed mid-response",
                )
            });
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(response) = parse(&buffer, false)? {
            return Ok(response);
        }
    }
}

/// The response in `bytes` if complete (by Content-Length, chunked encoding, or `eof`).
fn parse(bytes: &[u8], eof: bool) -> io::Result<Option<Response>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = &bytes[head_end + 4..];
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(body) {
            Some(body) => body,
            None if eof => return Err(invalid("truncated chunked body")),
            None => return Ok(None),
        }
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| invalid("bad content-length"))?;
        if body.len() < length {
            return if eof {
                Err(invalid("body shorter than content-length"))
            } else {
                Ok(None)
            };
        }
        body[..length].to_vec()
    } else if eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
    }))
}

/// The body of a complete chunked encoding, `None` if more is to come.
fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if bytes.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_eof_bodies() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let response = parse(full, false).unwrap().unwrap();
        assert_eq!((response.status, response.body.as_str()), (200, "hello"));
        assert_eq!(response.header("x-a"), Some("b"));
        assert_eq!(parse(&full[..full.len() - 1], false).unwrap(), None);

        let chunked = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nno \r\n4\r\npods\r\n0\r\n\r\n";
        let response = parse(chunked, false).unwrap().unwrap();
        assert_eq!((response.status, response.body.as_str()), (503, "no pods"));
        assert_eq!(parse(&chunked[..chunked.len() - 5], false).unwrap(), None);

        let until_eof = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse(until_eof, false).unwrap(), None);
        assert_eq!(parse(until_eof, true).unwrap().unwrap().body, "all of it");
    }
}
