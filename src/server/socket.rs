//! The one module with unsafe code: a client socket duplicated by its descriptor, to park an
//! idle connection (wait for it to become readable without pingora's read), to write a 408
//! into a connection pingora is still reading, and to close a stalled TLS handshake. Each `unsafe` block borrows a descriptor that the
//! caller's pingora session holds open for the borrow.
#![allow(unsafe_code)]

use prometheus::IntGauge;
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// A duplicate of a client socket, registered with the runtime, to wait for readability
/// without reading. Its lifetime is the connection's: it lives in the connection's context,
/// which is dropped with the connection (a stray duplicate would keep the socket open).
pub struct ParkedSocket {
    fd: AsyncFd<OwnedFd>,
    parking: Arc<Parking>,
}

/// How many idle connections may be parked at once, and how many are.
pub struct Parking {
    budget: usize,
    parked: AtomicUsize,
    gauge: IntGauge,
}

impl Parking {
    /// A quarter of the process's open-files limit, so duplicates can never starve `accept`
    /// (0 turns parking off). `gauge` shows how many are parked.
    pub fn new(open_files_limit: u64, gauge: IntGauge) -> Arc<Parking> {
        Arc::new(Parking {
            budget: usize::try_from(open_files_limit / 4).unwrap_or(usize::MAX),
            parked: AtomicUsize::new(0),
            gauge,
        })
    }

    /// How many may be parked.
    pub fn budget(&self) -> usize {
        self.budget
    }

    fn release(&self) {
        self.parked.fetch_sub(1, Relaxed);
        self.gauge.dec();
    }
}

impl Drop for ParkedSocket {
    fn drop(&mut self) {
        self.parking.release();
    }
}

/// A duplicate of `fd`, the socket of a connection the caller holds open for the call: it stays
/// open, the same socket, until dropped (a TLS handshake's timer shuts it down through it).
pub fn duplicate(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: `fd` is the socket of the connection the caller holds, open for this borrow.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    socket.try_clone_to_owned()
}

impl ParkedSocket {
    /// None when the budget is spent.
    pub fn new(fd: RawFd, parking: &Arc<Parking>) -> std::io::Result<Option<ParkedSocket>> {
        if parking.parked.fetch_add(1, Relaxed) >= parking.budget {
            parking.parked.fetch_sub(1, Relaxed);
            return Ok(None);
        }
        parking.gauge.inc();
        match ParkedSocket::register(fd) {
            Ok(fd) => Ok(Some(ParkedSocket {
                fd,
                parking: parking.clone(),
            })),
            Err(e) => {
                parking.release();
                Err(e)
            }
        }
    }

    fn register(fd: RawFd) -> std::io::Result<AsyncFd<OwnedFd>> {
        let duplicate = duplicate(fd)?;
        // SAFETY: the `OwnedFd` is a fresh duplicate owned by the `AsyncFd` alone: it stays
        // open, and the same descriptor, until the `AsyncFd` is dropped.
        let registered =
            unsafe { AsyncFd::register_with_interest(duplicate, tokio::io::Interest::READABLE) };
        Ok(registered?)
    }

    /// Ready when the client has sent something (or hung up). The readiness is consumed:
    /// pingora reads the bytes through its own registration, and the next wait returns on the
    /// next arrival. Ready also when the registration failed: then pingora reads as it would.
    /// (Polled rather than awaited: tokio's `readable()` future keeps a waiter list, and this
    /// runs between every two requests of a kept-alive connection.)
    pub fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.fd.poll_read_ready(cx) {
            std::task::Poll::Ready(Ok(mut ready)) => {
                ready.clear_ready();
                std::task::Poll::Ready(())
            }
            std::task::Poll::Ready(Err(_)) => std::task::Poll::Ready(()),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// The whole answer to a request whose headers did not arrive in time.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n";

/// Sends `REQUEST_TIMEOUT` on a plaintext connection whose client has sent some bytes (the
/// kernel counts them); a connection that never sent any is left to close silently. Best
/// effort: the answer is one small write into an idle socket's buffer, never waited for.
pub fn answer_request_timeout(fd: RawFd) -> bool {
    let sent_something = pingora::protocols::l4::ext::get_tcp_info(fd)
        .map(|info| info.tcpi_bytes_received > 0)
        .unwrap_or(false);
    if !sent_something {
        return false;
    }
    // SAFETY: `fd` is the socket of a pingora stream that the caller's pending session still
    // owns, so it stays open for this borrow; the duplicate made here is closed on return and
    // never closes the connection itself.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    socket.try_clone_to_owned().is_ok_and(|dup| {
        std::net::TcpStream::from(dup)
            .write(REQUEST_TIMEOUT)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[tokio::test]
    async fn parking_stays_within_its_budget_and_wakes_on_data() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let fd = server.as_raw_fd();

        let gauge = || prometheus::IntGauge::new("parked", "parked").unwrap();
        let parking = Parking::new(4, gauge()); // one parked socket
        let first = ParkedSocket::new(fd, &parking)
            .unwrap()
            .expect("within the budget");
        assert!(
            ParkedSocket::new(fd, &parking).unwrap().is_none(),
            "over the budget"
        );
        assert_eq!(parking.gauge.get(), 1);
        let wait =
            |limit| tokio::time::timeout(limit, std::future::poll_fn(|cx| first.poll_readable(cx)));
        assert!(
            wait(Duration::from_millis(50)).await.is_err(),
            "nothing sent yet"
        );
        client.write_all(b"GET").unwrap();
        assert!(wait(Duration::from_secs(5)).await.is_ok());
        drop(first);
        assert_eq!(parking.gauge.get(), 0);
        assert!(
            ParkedSocket::new(fd, &parking).unwrap().is_some(),
            "freed on drop"
        );
        let off = Parking::new(0, gauge());
        assert!(ParkedSocket::new(fd, &off).unwrap().is_none(), "off");
    }
}
