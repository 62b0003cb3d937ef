//! Client connections: how long a client may take to send its request headers, how long a
//! kept-alive connection may sit idle, and how long a client may leave a response unread.
//!
//! pingora arms only a per-read timeout while reading request headers, so a client sending one
//! byte every few seconds ("slow loris") holds its connection for as long as it likes. This
//! wrapper bounds the whole header read: the proxy marks the headers as read in
//! `early_request_filter` (on the connection's state, `crate::connection`), and a session that has not got
//! that far when its limit expires is dropped — its connection closed, its memory freed. A new plaintext
//! connection that had sent part of a request first gets `408 Request Timeout` (as HAProxy
//! answers); one that sent nothing, or a kept-alive one waiting for its next request, is closed
//! without a word (as nginx does), since a client may be about to reuse it.
//!
//! The wrapper runs an HTTP/1 connection's requests itself, one session after another, as
//! pingora's own loop does (HTTP/2 and custom protocols are handed to pingora's). Between two
//! requests a kept-alive plaintext connection is *parked*: it waits for its socket to become
//! readable before pingora's request session (and its header buffer) exists, so thousands of
//! idle clients cost a fraction of the memory (nor is pingora's finished request future kept).
//! The wait goes through a duplicate of the socket registered once per connection (the original
//! is pingora's, already registered with the runtime): no system call of its own. Duplicates
//! count against the open-files limit, so at most a quarter of it goes to them (see
//! [`Parking`]); past that, a connection waits on its own stream with a read of nothing, ready
//! when the client sends (one more system call per request). One timer per connection serves
//! every deadline of it, moved on in place (a later deadline costs no timer-wheel work).

use super::socket::{answer_request_timeout, ParkedSocket, Parking};
use crate::connection::ClientStream;
use async_trait::async_trait;
use log::debug;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Told of each answer given before any of the proxy's hooks ran — pingora's 400 to a request
/// its HTTP/1 parser refused, this wrapper's 408 to headers that never came — with the status,
/// the client's address and why, so that every answer is logged and counted.
pub type OnOwnAnswer = Box<dyn Fn(u16, Option<std::net::IpAddr>, &'static str) + Send + Sync>;

/// What an HTTP/2 client sends first (RFC 9113 §3.4), as pingora looks for it on h2c listeners.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Wraps the proxy's HTTP application with the client-side limits.
pub struct ClientLimits<A> {
    inner: Arc<A>,
    /// A new connection's first request headers must be complete within this.
    headers_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request; a response nobody
    /// reads for this long is abandoned.
    idle_timeout: Duration,
    timeouts: IntCounter,
    on_own_answer: OnOwnAnswer,
    parking: Arc<Parking>,
    /// The server is shutting down (set, then `stop` notified, by `cleanup`): parked
    /// connections close.
    stopping: AtomicBool,
    stop: Notify,
}

impl<A> ClientLimits<A> {
    /// Wraps `inner` (pingora's HTTP proxy app) with the limits; `timeouts` counts connections
    /// closed for headers not complete in time, `on_own_answer` logs the answers given before
    /// the proxy's hooks ran, `parking` bounds the idle connections parked.
    pub fn new(
        inner: Arc<A>,
        headers_timeout: Duration,
        idle_timeout: Duration,
        timeouts: IntCounter,
        on_own_answer: OnOwnAnswer,
        parking: Arc<Parking>,
    ) -> ClientLimits<A> {
        ClientLimits {
            inner,
            headers_timeout,
            idle_timeout,
            timeouts,
            on_own_answer,
            parking,
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }
}

impl<A> ClientLimits<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Whether pingora would serve `stream` as HTTP/1, decided as pingora decides it: not a
    /// custom protocol, not HTTP/2 by ALPN, and on an h2c listener not opening with HTTP/2's
    /// preface (peeked, not read).
    async fn speaks_http1(&self, stream: &mut Stream) -> bool {
        let options = self.inner.server_options();
        if options.is_some_and(|o| o.force_custom)
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2 | ALPN::Custom(_))
            )
        {
            return false;
        }
        if stream.get_ssl_digest().is_some() || !options.is_some_and(|o| o.h2c) {
            return true;
        }
        let mut preface = [0u8; H2_PREFACE.len()];
        // Anything but a clear "not HTTP/2" goes to pingora, which decides it again.
        matches!(stream.try_peek(&mut preface).await, Ok(true)) && preface != H2_PREFACE
    }
}

#[async_trait]
impl<A> ServerApp for ClientLimits<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // The listener's wrapper: the socket (plaintext only) and the connection's shared state.
        let wrapped = stream
            .as_any()
            .downcast_ref::<ClientStream>()
            .map(|s| (s.socket(), s.connection().clone()));
        let Some((socket, connection)) = wrapped else {
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        };
        if !self.speaks_http1(&mut stream).await {
            // HTTP/2 streams arrive with their headers complete; the connection's limits are
            // pingora's (h2 keep-alive pings, idle timeout).
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        // For the log line of an answer of our own (looked up then: it may take a syscall).
        let digest = stream.get_socket_digest();
        let client = || {
            digest
                .as_ref()
                .and_then(|d| d.peer_addr())
                .and_then(|a| a.as_inet())
                .map(|a| a.ip())
        };
        // The connection's one timer: the header deadline, or the parked wait's idle limit.
        let deadline = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(deadline);
        let mut parked_socket: Option<ParkedSocket> = None;
        // What a request leaves to the next: the stream and pingora's settings for it. (A
        // session is made and handed to pingora within one step, never held across a wait:
        // so this future, which a parked connection keeps, has no room for one.)
        let (mut stream, mut persistent): (Stream, Option<HttpPersistentSettings>) = (stream, None);
        // Whether this request follows another on the connection, and whether the wait for it
        // was parked.
        let (mut reused, mut parked) = (false, false);
        loop {
            let mut session = ServerSession::new_http1(stream);
            if !reused {
                session.set_keepalive_reuses_remaining(
                    self.inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
            } else if let Some(settings) = persistent.take() {
                settings.apply_to_session(&mut session);
            }
            connection.begin_request();
            let waits_for_next_request = reused && !parked;
            if !*shutdown.borrow() {
                // pingora's timeout on each read of the request head. Where this wrapper's own
                // deadline is the headers' (new and parked connections), pingora's comes a
                // clear second later, so that the deadline below decides — with a 408 —
                // whatever order equal timers fire in. A kept-alive connection that could not
                // be parked still waits for its next request in pingora's read: there it is
                // the idle limit.
                let per_read = if waits_for_next_request {
                    self.idle_timeout
                } else {
                    self.headers_timeout + Duration::from_secs(2)
                };
                session.set_keepalive(Some(per_read.as_secs().max(1)));
            }
            session.set_write_timeout(Some(self.idle_timeout));
            let limit = if waits_for_next_request {
                self.idle_timeout + self.headers_timeout
            } else {
                self.headers_timeout
            };
            // The socket of a new plaintext connection, for a 408 if its headers never come.
            let plain_fd = socket.filter(|_| !reused);
            // What pingora writes from here on: a request that never reaches the proxy and
            // still got bytes got pingora's own answer (its HTTP/1 parser's 400).
            let written_before = connection.written();

            let mut work = self.inner.process_new_http(session, shutdown);
            // The request's own bytes are usually in the socket already (a parked connection
            // is woken by them): then the first poll reads the headers, and no deadline needs
            // arming.
            let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
            let done = match first {
                Poll::Ready(done) => done,
                Poll::Pending if connection.headers_read() => (&mut work).await,
                Poll::Pending => {
                    deadline.as_mut().reset(Instant::now() + limit);
                    tokio::select! {
                        biased;
                        done = &mut work => done,
                        () = deadline.as_mut() => {
                            if connection.headers_read() {
                                (&mut work).await
                            } else {
                                self.timeouts.inc();
                                debug!("client sent no complete request headers within {limit:?}: closing");
                                // `work` still owns the stream, so the descriptor is open.
                                if plain_fd.is_some_and(answer_request_timeout) {
                                    (self.on_own_answer)(408, client(), "request headers not complete in time");
                                }
                                return None;
                            }
                        }
                    }
                }
            };
            // pingora's request future, done, is several kilobytes: freed now, not kept while
            // the connection is parked (that cost 12 kB per idle client).
            drop(work);
            if done.is_none() && !connection.headers_read() && connection.written() > written_before
            {
                (self.on_own_answer)(400, client(), "request refused by the HTTP/1 parser");
            }
            (stream, persistent) = done?.consume();
            reused = true;

            // Between requests: park until the next one's bytes come.
            // TLS may hold decrypted bytes the socket no longer shows (no socket here then).
            if parked_socket.is_none() {
                if let Some(fd) = socket {
                    match ParkedSocket::new(fd, &self.parking) {
                        Ok(p) => parked_socket = p,
                        Err(e) => debug!("cannot park an idle connection: {e}"),
                    }
                }
            }
            // Past the duplicates' budget a plaintext connection waits on its own stream: a
            // read of nothing, ready when the client sends (one more system call per request,
            // no descriptor).
            parked = socket.is_some();
            if parked {
                // Closed when the server shuts down, as pingora closes connections waiting
                // for a request then: their clients reconnect to whoever serves next. (A
                // `Notified` made before the flag is read gets the notification sent after.)
                let stop = self.stop.notified();
                if self.stopping.load(Acquire) {
                    return None;
                }
                deadline.as_mut().reset(Instant::now() + self.idle_timeout);
                let readable = std::future::poll_fn(|cx| match &parked_socket {
                    Some(waiting) => waiting.poll_readable(cx),
                    None => {
                        let mut nothing = ReadBuf::new(&mut []);
                        Pin::new(&mut stream)
                            .poll_read(cx, &mut nothing)
                            .map(|_| ())
                    }
                });
                let woken = tokio::select! {
                    biased;
                    () = readable => true,
                    () = deadline.as_mut() => false,
                    () = stop => false,
                };
                if !woken {
                    debug!("idle kept-alive connection closed (idle_timeout or shutdown)");
                    return None;
                }
            }
        }
    }

    /// pingora calls this when the server starts shutting down (its listeners stopped).
    async fn cleanup(&self) {
        self.stopping.store(true, Release);
        self.stop.notify_waiters();
        self.inner.http_cleanup().await
    }
}
