//! What keeps a cluster current: discovery and probes, each on its own clock (refreshes at the
//! name's instants, probes with jitter), until the server stops or a reload removes the cluster.

use crate::upstream::cluster::Cluster;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The wait between a cluster's rounds of probes: `interval`, give or take a tenth at random
/// (Envoy's `interval_jitter_percent`), so clusters that started together drift apart instead
/// of probing every backend of the gateway in the same millisecond.
fn probe_wait(interval: Duration) -> Duration {
    on_grid(interval.mul_f64(0.9 + fastrand::f64() * 0.2))
}

/// `wait`, lengthened to end on the 50 ms grid of the wall clock: clusters whose probes fall
/// due within one step go in one wake-up of the runtime (batched), as refreshes do.
fn on_grid(wait: Duration) -> Duration {
    const STEP: u128 = 50;
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d + wait).as_millis());
    let extra = (STEP - end % STEP) % STEP;
    wait + Duration::from_millis(u64::try_from(extra).unwrap_or(0))
}

/// The wait before the second round of probes: anywhere within one interval, so that 1,000
/// clusters started together are spread over the interval from the start.
fn first_probe_wait(interval: Duration) -> Duration {
    on_grid(interval.mul_f64(fastrand::f64()).max(interval / 10))
}

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
                let at = dns.next_refresh_at(Instant::now());
                dns.set_next_refresh(at);
                tokio::time::sleep_until(at.into()).await;
                if self.refresh().await {
                    self.probe_now.notify_one();
                }
            }
        };
        let probes = async {
            let Some(hc) = &self.config.health_check else {
                return std::future::pending::<()>().await;
            };
            let mut wait = first_probe_wait(hc.interval);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.probe_now.notified() => {}
                }
                self.probe().await;
                wait = probe_wait(hc.interval);
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
