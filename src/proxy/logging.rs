//! What a finished request leaves behind: its count by status class, its latency, and its
//! access-log line.

use super::access_log::Entry;
use super::answers::client_gone;
use super::attempt::Attempt;
use super::context::RequestCtx;
use super::Proxy;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};
use std::fmt::Write as _;

impl Proxy {
    /// Counts the request, observes its latencies and writes its access-log line.
    pub(super) fn record(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let routing = std::sync::Arc::clone(&ctx.routing);
        if let Some(attempt) = ctx.upstream.as_mut() {
            attempt.finish();
        }
        if ctx.self_check {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let route_metrics = ctx.route().map_or(&routing.unrouted, |r| &r.metrics);
        route_metrics.count(status, Some(elapsed));
        let tunnel_timed_out = status == 101
            && e.is_some_and(|e| {
                matches!(
                    e.etype(),
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout
                )
            });
        if let Some(attempt) = &ctx.upstream {
            let c = &attempt.cluster;
            if tunnel_timed_out {
                c.metrics.tunnel_timeouts.inc();
            }
            c.metrics.request_duration.observe(elapsed.as_secs_f64());
            if let Some(t) = attempt.upstream_time() {
                c.metrics.upstream_duration.observe(t.as_secs_f64());
            }
        }

        if !routing.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let upstream_time = ctx.upstream.as_ref().and_then(Attempt::upstream_time);
        // Written on the stack: no allocation per request.
        let mut client = Text::new();
        match session.client_addr().and_then(|a| a.as_inet()) {
            Some(a) => client.ip(a.ip()),
            None => client.text("-"),
        }
        let mut backend = Text::new();
        match ctx.upstream.as_ref().and_then(Attempt::backend) {
            Some(std::net::SocketAddr::V4(a)) => {
                backend.ip(std::net::IpAddr::V4(*a.ip()));
                backend.text(":");
                backend.number(a.port());
            }
            Some(a) => backend.show(a), // [v6]:port, as std writes it
            None => backend.text("-"),
        }
        // nginx's 499: the client closed the request before it had an answer.
        let cancelled = status == 0 && e.is_some_and(client_gone);
        let error = e.map(|e| match (e.etype(), &e.context) {
            _ if cancelled => "client closed the request".to_owned(),
            (ErrorType::HTTPStatus(_), Some(why)) => why.as_str().to_owned(),
            _ => e.etype().as_str().to_owned(),
        });
        routing.access_log.write(&Entry {
            client: client.as_str(),
            method: req.method.as_str(),
            path: req.uri.path(),
            status: if cancelled { 499 } else { status },
            cluster: ctx.cluster_name(),
            backend: backend.as_str(),
            attempts: ctx.upstream.as_ref().map_or(0, Attempt::tries),
            upstream_ms: upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            request_id: ctx.request_id.as_str(),
            bytes_received: session.body_bytes_read(),
            bytes_sent: session.body_bytes_sent(),
            error: error.as_deref(),
        });
    }
}

/// Up to 64 bytes of text on the stack: an address as the access log shows it (the longest,
/// `[ffff:…%scope]:port`, fits; anything longer is cut off).
struct Text {
    bytes: [u8; 64],
    len: usize,
}

impl Text {
    fn new() -> Text {
        Text {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn show(&mut self, value: impl std::fmt::Display) {
        let _ = write!(self, "{value}");
    }

    fn text(&mut self, s: &str) {
        let _ = self.write_str(s);
    }

    fn number(&mut self, n: impl itoa::Integer) {
        self.text(itoa::Buffer::new().format(n));
    }

    /// An IPv4 address octet by octet (std's `Display` goes through the formatting machinery:
    /// several times the cost); IPv6 as std writes it.
    fn ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.text(".");
                    }
                    self.number(octet);
                }
            }
            std::net::IpAddr::V6(v6) => self.show(v6),
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("-")
    }
}

impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let Some(to) = self.bytes.get_mut(self.len..end) else {
            return Err(std::fmt::Error);
        };
        to.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Text;
    use std::net::IpAddr;

    #[test]
    fn addresses_read_as_std_writes_them() {
        for ip in ["10.0.0.9", "0.0.0.0", "255.255.255.255", "::1", "fe80::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut text = Text::new();
            text.ip(ip);
            assert_eq!(text.as_str(), ip.to_string());
        }
    }
}
