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
//! A kept-alive plaintext HTTP/1 connection waiting for its next request is *parked*: it waits
//! for its socket to become readable before pingora's request future (14 kB) and its header
//! buffer (4 kB) exist, so thousands of idle clients cost a fraction of the memory. The wait
//! goes through a duplicate of the socket registered once per connection (the original is
//! pingora's, already registered with the runtime). Duplicates count against the open-files
//! limit, so at most a quarter of it goes to them (see [`Parking`]); past that,
//! idle connections wait as pingora has them wait.

use super::socket::{answer_request_timeout, ParkedSocket, Parking};
use crate::connection::ClientStream;
use async_trait::async_trait;
use log::debug;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// Told of each answer given before any of the proxy's hooks ran — pingora's 400 to a request
/// its HTTP/1 parser refused, this wrapper's 408 to headers that never came — with the status,
/// the client's address and why, so that every answer is logged and counted.
pub type OnOwnAnswer = Box<dyn Fn(u16, Option<std::net::IpAddr>, &'static str) + Send + Sync>;

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
        }
    }
}

#[async_trait]
impl<A> HttpServerApp for ClientLimits<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if session.is_http2() {
            // An HTTP/2 stream arrives with its headers complete; its connection's limits are
            // pingora's (h2 keep-alive pings, idle timeout).
            return self.inner.process_new_http(session, shutdown).await;
        }
        // The listener's wrapper: the socket (plaintext only) and the connection's shared state.
        let Some((socket, connection)) =
            ClientStream::of(&session).map(|s| (s.socket(), s.connection().clone()))
        else {
            return self.inner.process_new_http(session, shutdown).await;
        };
        let reused = connection.begin_request() > 0;
        let mut parked = false;
        if reused {
            // TLS may hold decrypted bytes the socket no longer shows (no socket here then).
            if connection.listener_state::<ParkedSocket>().is_none() {
                if let Some(fd) = socket {
                    match ParkedSocket::new(fd, &self.parking) {
                        Ok(Some(p)) => {
                            connection.set_listener_state(p);
                        }
                        Ok(None) => {}
                        Err(e) => debug!("cannot park an idle connection: {e}"),
                    }
                }
            }
            if let Some(socket) = connection.listener_state::<ParkedSocket>() {
                parked = true;
                // Closed when the server shuts down, as pingora closes connections waiting
                // for a request then: their clients reconnect to whoever serves next.
                let mut shutdown = shutdown.clone();
                let stopping = async move {
                    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
                        // No server left to say so: never.
                        std::future::pending::<()>().await;
                    }
                };
                let woken = tokio::select! {
                    biased;
                    woken = socket.wait_readable(self.idle_timeout) => woken,
                    () = stopping => false,
                };
                if !woken {
                    debug!("idle kept-alive connection closed (idle_timeout or shutdown)");
                    return None;
                }
            }
        }
        let waits_for_next_request = reused && !parked;
        if !*shutdown.borrow() {
            // pingora's timeout on each read of the request head. Where this wrapper's own
            // deadline is the headers' (new and parked connections), pingora's comes a clear
            // second later, so that the deadline below decides — with a 408 — whatever order
            // equal timers fire in. A kept-alive connection that could not be parked still
            // waits for its next request in pingora's read: there it is the idle limit.
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
        // What pingora writes from here on: a request that never reaches the proxy and still
        // got bytes got pingora's own answer (its HTTP/1 parser's 400).
        let written_before = connection.written();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());

        let work = self.inner.process_new_http(session, shutdown);
        tokio::pin!(work);
        // The request's own bytes are usually in the socket already (a parked connection is
        // woken by them): then the first poll reads the headers, and no deadline needs arming.
        let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
        let done = match first {
            Poll::Ready(done) => done,
            Poll::Pending if connection.headers_read() => work.await,
            Poll::Pending => {
                tokio::select! {
                    biased;
                    done = &mut work => done,
                    _ = tokio::time::sleep(limit) => {
                        if connection.headers_read() {
                            work.await
                        } else {
                            self.timeouts.inc();
                            debug!("client sent no complete request headers within {limit:?}: closing");
                            // `work` still owns the stream, so the descriptor is open.
                            if plain_fd.is_some_and(answer_request_timeout) {
                                (self.on_own_answer)(408, client, "request headers not complete in time");
                            }
                            return None;
                        }
                    }
                }
            }
        };
        if done.is_none() && !connection.headers_read() && connection.written() > written_before {
            (self.on_own_answer)(400, client, "request refused by the HTTP/1 parser");
        }
        done
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner
            .clone()
            .process_custom_session(stream, shutdown)
            .await
    }
}
