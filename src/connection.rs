//! The client's connection as the gateway holds it: pingora's stream, wrapped with what the
//! listener and the proxy share about the connection (bytes written, request headers read).
//!
//! pingora answers a request its HTTP/1 parser refuses with `400` and closes before any of the
//! proxy's hooks run; nothing in its API tells. Every accepted stream (plaintext or TLS, after
//! the handshake) is wrapped here before pingora's HTTP layer sees it: the wrapper counts the
//! plaintext bytes written through it, one relaxed atomic add per write, and the client
//! limits compare the count before and after a request that never reached the proxy.

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef, ALPN};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client stream with its [`Connection`].
#[derive(Debug)]
pub struct ClientStream {
    inner: Stream,
    connection: Arc<Connection>,
    socket: Option<RawFd>,
}

/// What the listener and the proxy share about one client connection. It outlives pingora's
/// session of each request (the listener holds it across a request).
#[derive(Debug, Default)]
pub struct Connection {
    written: AtomicU64,
    headers_read: AtomicBool,
}

impl Connection {
    /// Bytes written to the client so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// A request begins: its headers are not read yet.
    pub fn begin_request(&self) {
        self.headers_read.store(false, Relaxed);
    }

    /// The current request's headers are complete (the proxy saw them).
    pub fn mark_headers_read(&self) {
        self.headers_read.store(true, Relaxed);
    }

    /// Whether the current request's headers are complete.
    pub fn headers_read(&self) -> bool {
        self.headers_read.load(Relaxed)
    }
}

/// Tells the listener that this HTTP/1 request's headers are complete (HTTP/2 streams arrive
/// with theirs).
pub fn mark_headers_read(session: &ServerSession) {
    if let Some(c) = ClientStream::of(session) {
        c.connection.mark_headers_read();
    }
}

impl ClientStream {
    fn new(inner: Stream) -> ClientStream {
        // A plaintext connection is pingora's TCP stream itself; a TLS one keeps its socket
        // to itself (nothing here needs it).
        let socket = inner
            .as_any()
            .downcast_ref::<pingora::protocols::l4::stream::Stream>()
            .map(AsRawFd::as_raw_fd);
        ClientStream {
            inner,
            connection: Arc::default(),
            socket,
        }
    }

    /// The wrapper under `session`, if the listener put one there.
    pub fn of(session: &ServerSession) -> Option<&ClientStream> {
        session.stream()?.as_any().downcast_ref::<ClientStream>()
    }

    /// The connection's shared state, to read after pingora has taken the stream.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The socket of a plaintext connection, open for as long as the session holding this
    /// stream lives.
    pub fn socket(&self) -> Option<RawFd> {
        self.socket
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = done {
            self.connection.written.fetch_add(n as u64, Relaxed);
        }
        done
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let done = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = done {
            self.connection.written.fetch_add(n as u64, Relaxed);
        }
        done
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// A listener's application with every accepted stream wrapped in a [`ClientStream`], and
/// the connections open counted in a gauge.
pub struct ClientStreams<A>(Arc<A>, prometheus::IntGauge);

impl<A> ClientStreams<A> {
    /// Wraps `app`, the application the proxy listeners' service runs; `open` counts the
    /// connections it serves now.
    pub fn new(app: A, open: prometheus::IntGauge) -> ClientStreams<A> {
        ClientStreams(Arc::new(app), open)
    }
}

/// Counts one open connection while it lives (whatever way `process_new` ends).
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A> ServerApp for ClientStreams<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.1.inc();
        let _open = Open(self.1.clone());
        // pingora hands back a stream only for protocols it cannot serve itself; none here.
        self.0
            .process_new(Box::new(ClientStream::new(stream)), shutdown)
            .await
    }

    async fn cleanup(&self) {
        self.0.cleanup().await;
    }
}
