//! What keeps a cluster current: discovery and probes, each on its own clock, until the server
//! stops or a reload removes the cluster.

use crate::upstream::cluster::Cluster;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

impl Cluster {
    /// One discovery round. Returns whether new addresses appeared.
    pub(super) async fn refresh(&self) -> bool {
        if let Err(e) = self.balancer.update().await {
            // DnsDiscovery has logged and counted it; the last known backends stay.
            log::debug!("cluster={} discovery failed: {e}", self.config.name);
        }
        let current = self.balancer.backends().get_backend();
        let added = self
            .table
            .sync(current.iter().filter_map(|b| b.addr.as_inet().copied()));
        self.update_panic();
        added
    }

    pub(super) async fn probe(&self) {
        self.balancer.backends().run_health_check(true).await;
        self.update_panic();
    }

    /// Runs discovery and probes until `shutdown` flips. Calls `on_ready` once the first round is
    /// done, whatever its outcome, so a DNS outage at start-up does not keep the gateway closed.
    pub async fn run(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        on_ready: impl FnOnce(),
    ) {
        self.refresh().await;
        if self.config.health_check.is_some() {
            self.probe().await;
        }
        self.ready.store(true, Relaxed);
        on_ready();

        let discovery = async {
            let Some(dns) = &self.dns else {
                return std::future::pending::<()>().await;
            };
            loop {
                let delay = dns.next_refresh_delay();
                dns.set_next_refresh(Instant::now() + delay);
                tokio::time::sleep(delay).await;
                if self.refresh().await {
                    self.probe_now.notify_one();
                }
            }
        };
        let probes = async {
            let Some(hc) = &self.config.health_check else {
                return std::future::pending::<()>().await;
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(hc.interval) => {}
                    _ = self.probe_now.notified() => {}
                }
                self.probe().await;
            }
        };
        let stopped = async {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    // The server is gone without a shutdown signal: keep serving what we have.
                    std::future::pending::<()>().await;
                }
            }
        };
        let mut retired = self.retired.subscribe();
        tokio::select! {
            _ = async { tokio::join!(discovery, probes) } => {}
            _ = stopped => {}
            _ = retired.wait_for(|r| *r) => {
                log::info!("cluster={}: removed by a reload, discovery and probes stop", self.config.name);
            }
        }
    }

    /// Stops the cluster's discovery and probes (a reload removed it). Requests still on it
    /// finish with the backends it has.
    pub fn retire(&self) {
        self.retired.send_replace(true);
    }
}
