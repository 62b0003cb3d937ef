//! The server: one UDP socket and one TCP listener on the same address, answering from a [`Zone`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::ServerFuture;

use crate::answer::ZoneHandler;
use crate::zone::Zone;

/// TCP connections idle for this long are closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// With port 0, how many ephemeral UDP ports to try before giving up finding one free on TCP too.
const EPHEMERAL_TRIES: usize = 100;

/// A DNS server answering from a [`Zone`] on one address, UDP and TCP.
///
/// Its tasks run on the tokio runtime that bound it. Dropping it aborts them (the sockets close
/// as soon as the runtime drops the tasks); [`DnsServer::stop`] also waits for that.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Zone,
    server: ServerFuture<ZoneHandler>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` and starts answering from `zone`. With port 0, picks a port
    /// free for both. The TCP listener uses SO_REUSEADDR so that binding the same port again
    /// after [`DnsServer::stop`] is not blocked by connections lingering in TIME_WAIT; the UDP
    /// socket does not, so a port already taken by another DNS server is an error.
    pub async fn bind(addr: SocketAddr, zone: Zone) -> io::Result<DnsServer> {
        let (udp, tcp, addr) = if addr.port() == 0 {
            bind_ephemeral(addr).await?
        } else {
            let udp = tokio::net::UdpSocket::bind(addr).await?;
            let tcp = bind_tcp(addr)?;
            (udp, tcp, addr)
        };
        let mut server = ServerFuture::new(ZoneHandler { zone: zone.clone() });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT);
        Ok(DnsServer { addr, zone, server })
    }

    /// The server's address (the same for UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The records it answers from (a handle shared with whoever bound it).
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Stops answering: both sockets are closed when this returns, and open TCP connections are
    /// aborted.
    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            log::warn!("headless-dns on {}: ended with an error: {e}", self.addr);
        }
    }
}

async fn bind_ephemeral(
    addr: SocketAddr,
) -> io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr)> {
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no port tried");
    for _ in 0..EPHEMERAL_TRIES {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let bound = udp.local_addr()?;
        match bind_tcp(bound) {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            // The UDP port may be taken on TCP by someone else: try another one.
            Err(e) => last_error = e,
        }
    }
    Err(io::Error::new(
        last_error.kind(),
        format!(
            "no port free for both UDP and TCP on {}: {last_error}",
            addr.ip()
        ),
    ))
}

fn bind_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    bound_tcp_socket(addr)?.listen(128)
}

/// A TCP socket bound to `addr` with SO_REUSEADDR, not listening: what the server listens on.
/// Bound this way, another such socket may share the address while neither listens, so a
/// stopped server's port can be held by one and the restarted server bind beside it.
pub fn bound_tcp_socket(addr: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}
