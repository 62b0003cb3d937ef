//! Client connections: how long a client may take to send its request headers, how long a
//! kept-alive connection may sit idle, and how long a client may leave a response unread.
//!
//! pingora arms only a per-read timeout while reading request headers, so a client sending one
//! byte every few seconds ("slow loris") holds its connection for as long as it likes. This
//! wrapper bounds the whole header read: the proxy marks the headers as read in
//! `early_request_filter` (a task-local flag), and a session that has not got that far when its
//! limit expires is dropped — its connection closed, its memory freed. A new plaintext
//! connection that had sent part of a request first gets `408 Request Timeout` (as HAProxy
//! answers); one that sent nothing, or a kept-alive one waiting for its next request, is closed
//! without a word (as nginx does), since a client may be about to reuse it.

use async_trait::async_trait;
use log::debug;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::io::Write;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    static HEADERS_READ: Arc<AtomicBool>;
}

/// Called by the proxy once a request's headers are complete.
pub fn mark_headers_read() {
    let _ = HEADERS_READ.try_with(|read| read.store(true, Relaxed));
}

/// What the proxy leaves on a kept-alive connection so the next request knows it is not the
/// first (see [`ClientLimits`]).
pub struct KeptAlive;

/// Wraps the proxy's HTTP application with the client-side limits.
pub struct ClientLimits<A> {
    inner: Arc<A>,
    /// A new connection's first request headers must be complete within this.
    headers_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request; a response nobody
    /// reads for this long is abandoned.
    idle_timeout: Duration,
    timeouts: IntCounter,
}

impl<A> ClientLimits<A> {
    pub fn new(
        inner: Arc<A>,
        headers_timeout: Duration,
        idle_timeout: Duration,
        timeouts: IntCounter,
    ) -> ClientLimits<A> {
        ClientLimits {
            inner,
            headers_timeout,
            idle_timeout,
            timeouts,
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
        // The proxy's marker comes back on every request after the first of a connection.
        let kept_alive = session.take_connection_user_context();
        let reused = kept_alive.is_some();
        session.set_connection_user_context(kept_alive);
        if !*shutdown.borrow() {
            session.set_keepalive(Some(self.idle_timeout.as_secs().max(1)));
        }
        session.set_write_timeout(Some(self.idle_timeout));
        let limit = if reused {
            self.idle_timeout + self.headers_timeout
        } else {
            self.headers_timeout
        };

        // The socket of a new plaintext HTTP/1 connection, for a 408 if its headers never come.
        let plain_fd = (!reused && !session.is_http2())
            .then(|| {
                let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
                session.stream().filter(|_| !tls).map(|s| s.id())
            })
            .flatten();

        let read = Arc::new(AtomicBool::new(false));
        let work = HEADERS_READ.scope(read.clone(), self.inner.process_new_http(session, shutdown));
        tokio::pin!(work);
        tokio::select! {
            biased;
            done = &mut work => done,
            _ = tokio::time::sleep(limit) => {
                if read.load(Relaxed) {
                    work.await
                } else {
                    self.timeouts.inc();
                    debug!("client sent no complete request headers within {limit:?}: closing");
                    if let Some(fd) = plain_fd {
                        // `work` still owns the stream, so the descriptor is open.
                        answer_request_timeout(fd);
                    }
                    None
                }
            }
        }
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

/// The whole answer to a request whose headers did not arrive in time.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n";

/// Sends [`REQUEST_TIMEOUT`] on a plaintext connection whose client has sent some bytes (the
/// kernel counts them); a connection that never sent any is left to close silently. Best
/// effort: the answer is one small write into an idle socket's buffer, never waited for.
fn answer_request_timeout(fd: RawFd) {
    let sent_something = pingora::protocols::l4::ext::get_tcp_info(fd)
        .map(|info| info.tcpi_bytes_received > 0)
        .unwrap_or(false);
    if !sent_something {
        return;
    }
    // SAFETY: `fd` is the socket of a pingora stream that the caller's pending session still
    // owns, so it stays open for this borrow; the duplicate made here is closed on return and
    // never closes the connection itself.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Ok(dup) = socket.try_clone_to_owned() {
        let _ = std::net::TcpStream::from(dup).write(REQUEST_TIMEOUT);
    }
}
