//! `handshake_timeout`: a TLS client must finish its handshake in time, or its connection is
//! closed. pingora gives every handshake 60 s, so a client that sends the first byte of a
//! ClientHello and stops held its connection for a minute.
//!
//! Before each handshake (pingora's pre-TLS hook) a timer is armed for the connection, keyed by
//! its socket digest (the same `Arc` the finished stream carries); the connection's arrival at
//! the application (`HandshakeDone`) disarms it, and so does pingora's drop of a connection
//! whose handshake failed. A timer that fires first shuts the socket down through a duplicate
//! of its descriptor, which ends pingora's handshake read at once.

use async_trait::async_trait;
use log::debug;
use pingora::apps::ServerApp;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::SocketDigest;
use pingora::protocols::{GetSocketDigest, Stream};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The handshakes under way at one listener and their limit.
pub struct Handshakes {
    /// Milliseconds (a reload may change it).
    timeout_ms: AtomicU64,
    /// By the address of the connection's socket digest: which timer (its id) waits for it.
    pending: Mutex<HashMap<usize, (u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
    timeouts: IntCounter,
}

impl Handshakes {
    /// `timeouts` counts the connections closed for a handshake not finished in `timeout`.
    pub fn new(timeout: Duration, timeouts: IntCounter) -> Arc<Handshakes> {
        Arc::new(Handshakes {
            timeout_ms: AtomicU64::new(millis(timeout)),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
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
        if let Some((_, done)) = crate::lock(&self.pending).remove(&key) {
            let _ = done.send(());
        }
    }

    /// Removes the entry at `key` if it is still timer `id`'s.
    fn forget(&self, key: usize, id: u64) -> bool {
        let mut pending = crate::lock(&self.pending);
        if pending.get(&key).is_some_and(|(owner, _)| *owner == id) {
            pending.remove(&key);
            return true;
        }
        false
    }

    /// One connection's timer. It ends when the handshake finishes (told through `finished`),
    /// when pingora drops the connection (a failed handshake: its socket digest is gone, and
    /// the duplicate must not keep the socket open), or at the deadline: then the socket is
    /// shut down. pingora's drop is looked for at 50 ms, then at doubling intervals: a failed
    /// handshake is closed within a few tens of milliseconds, a stalled one costs a handful of
    /// wake-ups.
    async fn watch(
        &self,
        key: usize,
        id: u64,
        connection: Weak<SocketDigest>,
        mut finished: oneshot::Receiver<()>,
        socket: OwnedFd,
    ) {
        let deadline = Instant::now() + self.timeout();
        let mut wait = Duration::from_millis(50);
        loop {
            let nap = wait.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = &mut finished => return, // finished, or another timer took the key
                _ = tokio::time::sleep(nap) => {}
            }
            if connection.strong_count() == 0 {
                self.forget(key, id);
                return;
            }
            if Instant::now() >= deadline {
                if self.forget(key, id) {
                    self.timeouts.inc();
                    debug!(
                        "tls: handshake not finished in {:?}: closing",
                        self.timeout()
                    );
                    let _ = std::net::TcpStream::from(socket).shutdown(std::net::Shutdown::Both);
                }
                return;
            }
            wait *= 2;
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
        let id = handshakes.next_id.fetch_add(1, Relaxed);
        let (done, finished) = oneshot::channel();
        crate::lock(&handshakes.pending).insert(key, (id, done));
        let watched = Arc::downgrade(&digest);
        drop(digest);
        tokio::spawn(async move {
            handshakes.watch(key, id, watched, finished, socket).await;
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
