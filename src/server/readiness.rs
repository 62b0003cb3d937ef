//! When the gateway is ready: every cluster has run its first discovery (then pingora may open
//! the proxy listeners), and every proxy listener answers as this process (then `/ready`).

use crate::lifecycle::Lifecycle;
use crate::proxy::{SELF_CHECK_HEADER, SELF_CHECK_PATH};
use crate::upstream::cluster::Cluster;
use crate::upstream::Clusters;
use async_trait::async_trait;
use log::info;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Runs discovery and health checks of every cluster on one background runtime, and signals
/// pingora once all of them finished their first round so the proxy listeners can open.
pub struct ClusterSupervisor {
    /// The clusters whose discovery and health checks it runs.
    pub clusters: Arc<Clusters>,
    /// Marked listening once every proxy listener answers as this process.
    pub lifecycle: Arc<Lifecycle>,
    /// The proxy listeners (address, TLS), to check once they open.
    pub listen: Vec<(SocketAddr, bool)>,
    /// The proxy's self-check token.
    pub self_check: String,
    /// Clusters a reload added, to run beside the others.
    pub added: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Arc<Cluster>>>>,
}

impl ClusterSupervisor {
    async fn answers_self_check(&self, addr: SocketAddr, tls: bool) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            return false;
        };
        if tls {
            return true;
        }
        let request = format!(
            "GET {SELF_CHECK_PATH} HTTP/1.1\r\nHost: headway\r\n{SELF_CHECK_HEADER}: {}\r\nConnection: close\r\n\r\n",
            self.self_check
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.is_ok() && &answer == b"HTTP/1.1 204"
    }

    /// Waits until every proxy listener is this process's (pingora opens them once the first
    /// discovery is done; another process may hold the port meanwhile), then marks the gateway
    /// as listening. Plain listeners must answer the self-check; TLS ones must accept.
    async fn wait_for_listeners(&self) {
        let reachable = |addr: SocketAddr| {
            let mut to = addr;
            if to.ip().is_unspecified() {
                to.set_ip(match to {
                    SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                });
            }
            to
        };
        for &(addr, tls) in &self.listen {
            let addr = reachable(addr);
            loop {
                let attempt = tokio::time::timeout(
                    std::time::Duration::from_millis(500),
                    self.answers_self_check(addr, tls),
                );
                if matches!(attempt.await, Ok(true)) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        self.lifecycle.set_listening();
        info!("proxy listeners accept connections: ready");
    }
}

#[async_trait]
impl BackgroundService for ClusterSupervisor {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let waiting = AtomicUsize::new(self.clusters.len());
        let ready = Mutex::new(Some(ready));
        let signal_ready = || {
            if let Some(ready) = crate::lock(&ready).take() {
                info!("every cluster has run its first discovery: opening the proxy listeners");
                ready.notify_ready();
            }
        };
        if self.clusters.is_empty() {
            signal_ready();
        }
        let runs = self.clusters.iter().map(|cluster| {
            cluster.run(shutdown.clone(), || {
                if waiting.fetch_sub(1, Relaxed) == 1 {
                    signal_ready();
                }
            })
        });
        let mut drain_watch = shutdown.clone();
        let drain = async {
            while !*drain_watch.borrow() {
                if drain_watch.changed().await.is_err() {
                    return;
                }
            }
            self.lifecycle.start_draining();
        };
        let listeners = async {
            while !self.clusters.pending().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            self.wait_for_listeners().await;
        };
        // Clusters a reload adds run here too, for as long as the server does.
        let added = crate::lock(&self.added).take();
        let more = async {
            let Some(mut added) = added else {
                return;
            };
            let mut running = futures::stream::FuturesUnordered::new();
            let mut stopping = shutdown.clone();
            loop {
                tokio::select! {
                    // No cluster starts once the server stops; those running see it too.
                    _ = stopping.wait_for(|stop| *stop) => break,
                    cluster = added.recv() => match cluster {
                        Some(cluster) => {
                            let shutdown = shutdown.clone();
                            running.push(async move { cluster.run(shutdown, || {}).await });
                        }
                        None => break,
                    },
                    Some(()) = futures::StreamExt::next(&mut running), if !running.is_empty() => {}
                }
            }
            while futures::StreamExt::next(&mut running).await.is_some() {}
        };
        tokio::join!(futures::future::join_all(runs), drain, listeners, more);
    }
}
