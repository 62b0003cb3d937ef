//! `handshake_timeout`: a TLS client must finish its handshake in time, or its connection is
//! closed. pingora gives every handshake 60 s, so a client that sends the first byte of a
//! ClientHello and stops held its connection for a minute.
//!
//! Before each handshake (pingora's pre-TLS hook) a timer is armed for the connection, keyed by
//! its socket digest (the same `Arc` the finished stream carries); the connection's arrival at
//! the application (`HandshakeDone`) disarms it. A timer that fires first shuts the socket
//! down through a duplicate of its descriptor, which ends pingora's handshake read at once.

use async_trait::async_trait;
use log::debug;
use pingora::apps::ServerApp;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The handshakes under way at one listener and their limit.
pub struct Handshakes {
    /// Milliseconds (a reload may change it).
    timeout_ms: AtomicU64,
    pending: Mutex<HashMap<usize, oneshot::Sender<()>>>,
    timeouts: IntCounter,
}

impl Handshakes {
    /// `timeouts` counts the connections closed for a handshake not finished in `timeout`.
    pub fn new(timeout: Duration, timeouts: IntCounter) -> Arc<Handshakes> {
        Arc::new(Handshakes {
            timeout_ms: AtomicU64::new(millis(timeout)),
            pending: Mutex::new(HashMap::new()),
            timeouts,
        })
    }

    /// Handshakes that start from now on get `timeout`.
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms.store(millis(timeout), Relaxed);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Relaxed))
    }

    /// The handshake of the connection whose socket digest is at `key` has finished.
    fn finished(&self, key: usize) {
        if let Some(done) = crate::lock(&self.pending).remove(&key) {
            let _ = done.send(());
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Arms the timer of each TLS connection before its handshake: pingora has one such hook for
/// all of a service's listeners, so each connection finds its listener by its local address.
pub struct ArmTimer(pub Vec<(SocketAddr, Arc<Handshakes>)>);

impl ArmTimer {
    fn of(&self, local: Option<&SocketAddr>) -> Option<&Arc<Handshakes>> {
        let local = local?;
        self.0
            .iter()
            .find(|(addr, _)| {
                addr.port() == local.port()
                    && (addr.ip() == local.ip() || addr.ip().is_unspecified())
            })
            .map(|(_, h)| h)
    }
}

#[async_trait]
impl PreTlsProcess for ArmTimer {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let Some(digest) = stream.get_socket_digest() else {
            return Ok(()); // pingora's own 60 s applies
        };
        let Some(handshakes) = self
            .of(digest.local_addr().and_then(|a| a.as_inet()))
            .cloned()
        else {
            return Ok(());
        };
        let socket = match crate::server::socket::duplicate(stream.as_raw_fd()) {
            Ok(socket) => socket,
            Err(e) => {
                debug!("tls: no handshake timer (cannot duplicate the socket: {e})");
                return Ok(());
            }
        };
        let key = Arc::as_ptr(&digest) as usize;
        let (done, finished) = oneshot::channel();
        crate::lock(&handshakes.pending).insert(key, done);
        let timeout = handshakes.timeout();
        tokio::spawn(async move {
            // The digest is held until the timer ends, so its address names this connection.
            let _digest = digest;
            if tokio::time::timeout(timeout, finished).await.is_err()
                && crate::lock(&handshakes.pending).remove(&key).is_some()
            {
                let socket = std::net::TcpStream::from(socket);
                // A client that hung up (or whose handshake failed and was dropped) is no
                // timeout: only a peer still there and silent is counted.
                let _ = socket.set_nonblocking(true);
                if !matches!(socket.peek(&mut [0u8; 1]), Ok(0)) {
                    handshakes.timeouts.inc();
                    debug!("tls: handshake not finished in {timeout:?}: closing");
                }
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        });
        Ok(())
    }
}

/// Wraps the listener's application: a connection that reaches it has finished its handshake.
pub struct HandshakeDone<A> {
    inner: Arc<A>,
    handshakes: Vec<Arc<Handshakes>>,
}

impl<A> HandshakeDone<A> {
    /// `inner`, told of finished handshakes for each of `handshakes` (one per TLS listener).
    pub fn new(inner: A, handshakes: Vec<Arc<Handshakes>>) -> HandshakeDone<A> {
        HandshakeDone {
            inner: Arc::new(inner),
            handshakes,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HandshakeDone<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.get_ssl_digest().is_some() {
            if let Some(digest) = stream.get_socket_digest() {
                let key = Arc::as_ptr(&digest) as usize;
                self.handshakes.iter().for_each(|h| h.finished(key));
            }
        }
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
