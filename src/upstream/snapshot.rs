//! A cluster as `/clusters` shows it: JSON for scripts, Envoy's text form for people who grep.

use crate::config::{duration, HealthCheckConfig, HealthCheckKind};
use crate::lock;
use crate::upstream::cluster::Cluster;
use crate::upstream::discovery::DnsSnapshot;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

impl Cluster {
    /// The cluster as `/clusters` shows it.
    pub fn snapshot(&self) -> ClusterSnapshot {
        self.snapshot_of(false)
    }

    /// The cluster as `/stats` shows it: [`Cluster::snapshot`] with each backend's last minute,
    /// and the backends that left DNS but still serve requests (draining).
    pub fn stats(&self) -> ClusterSnapshot {
        self.snapshot_of(true)
    }

    fn snapshot_of(&self, stats: bool) -> ClusterSnapshot {
        let backends = self.balancer.backends();
        let table = self.table.map.load();
        let ramping = self.table.ramping();
        let mut list: Vec<BackendSnapshot> = backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let addr = *b.addr.as_inet()?;
                let state = table.get(&addr);
                let admitted = self.table.admitted(&addr);
                Some(BackendSnapshot {
                    draining: false,
                    last_minute: stats
                        .then(|| state.as_ref().map(|s| s.window.summary()))
                        .flatten(),
                    srv_record: self.dns.as_ref().and_then(|d| d.srv_record(&addr)),
                    address: addr.to_string(),
                    // What selection reads: admitted and not marked down (pingora's verdict is
                    // mirrored there as probes report it).
                    healthy: state.as_ref().is_some_and(|s| s.healthy()),
                    probed: admitted,
                    since: state.as_ref().map(|s| crate::rfc3339(*lock(&s.since))),
                    last_error: state.as_ref().and_then(|s| lock(&s.last_error).clone()),
                    requests: state.as_ref().map_or(0, |s| s.requests.load(Relaxed)),
                    in_flight: state.as_ref().map_or(0, |s| s.in_flight.load(Relaxed)),
                    ejected_for_seconds: state.as_ref().and_then(|s| {
                        s.ejection
                            .remaining(self.outlier.now_ms())
                            .map(|d| d.as_secs_f64())
                    }),
                    times_ejected: state.as_ref().map_or(0, |s| s.ejection.times_ejected()),
                    consecutive_failures: state
                        .as_ref()
                        .map_or(0, |s| s.ejection.consecutive_failures()),
                    slow_start_weight_percent: ramping.zip(state.as_ref()).and_then(|(now, s)| {
                        let weight = self.table.weight(s, now);
                        (weight < 1.0).then(|| (weight * 100.0).round() as u32)
                    }),
                })
            })
            .collect();
        if stats {
            list.extend(
                self.table
                    .draining()
                    .into_iter()
                    .map(|(addr, s)| BackendSnapshot {
                        address: addr.to_string(),
                        healthy: false,
                        probed: s.admitted.load(Relaxed),
                        since: None,
                        last_error: None,
                        requests: s.requests.load(Relaxed),
                        in_flight: s.in_flight.load(Relaxed),
                        ejected_for_seconds: None,
                        times_ejected: s.ejection.times_ejected(),
                        consecutive_failures: s.ejection.consecutive_failures(),
                        srv_record: None,
                        slow_start_weight_percent: None,
                        draining: true,
                        last_minute: Some(s.window.summary()),
                    }),
            );
        }
        list.sort_by(|a, b| a.address.cmp(&b.address));
        ClusterSnapshot {
            name: self.config.name.clone(),
            address: self.config.address.to_string(),
            port: self.config.port,
            lb_policy: self.config.lb_policy.name(),
            ready: self.is_ready(),
            dns: self.dns.as_ref().map(|d| d.snapshot()),
            health_check: self.config.health_check.as_ref().map(describe_health_check),
            healthy_backends: list
                .iter()
                .filter(|b| b.healthy && b.ejected_for_seconds.is_none())
                .count(),
            panic_mode: self.panic.load(Relaxed),
            requests_in_progress: self.load.requests(),
            retries_in_progress: self.load.retries(),
            backends: list,
        }
    }
}

impl ClusterSnapshot {
    /// Envoy's `/clusters` text form, `cluster::host::stat::value`, for people who grep.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let n = &self.name;
        let _ = writeln!(out, "{n}::address::{}:{}", self.address, self.port);
        let _ = writeln!(out, "{n}::lb_policy::{}", self.lb_policy);
        if let Some(dns) = &self.dns {
            let outcome = serde_json::to_value(dns.last_outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "{n}::dns::last_outcome::{outcome}");
            let _ = writeln!(out, "{n}::dns::addresses::{}", dns.last_answer.len());
            let _ = writeln!(
                out,
                "{n}::dns::consecutive_failures::{}",
                dns.consecutive_failures
            );
            let _ = writeln!(out, "{n}::dns::stale::{}", dns.stale);
        }
        for b in &self.backends {
            let a = &b.address;
            let flags = match (b.healthy, b.probed, b.ejected_for_seconds.is_some()) {
                (true, _, false) => "healthy",
                (true, _, true) => "/failed_outlier_check",
                (false, false, _) => "/pending_active_hc",
                (false, true, _) => "/failed_active_hc",
            };
            let _ = writeln!(out, "{n}::{a}::health_flags::{flags}");
            let _ = writeln!(out, "{n}::{a}::rq_active::{}", b.in_flight);
            let _ = writeln!(out, "{n}::{a}::rq_total::{}", b.requests);
            if let Some(percent) = b.slow_start_weight_percent {
                let _ = writeln!(out, "{n}::{a}::slow_start_weight_percent::{percent}");
            }
        }
        out
    }
}

fn describe_health_check(hc: &HealthCheckConfig) -> String {
    let what = match &hc.kind {
        HealthCheckKind::Http { path, .. } => format!("http GET {path}"),
        HealthCheckKind::Tcp => "tcp connect".to_owned(),
    };
    format!(
        "{what} every {} (timeout {}, healthy after {}, unhealthy after {})",
        duration::display(hc.interval),
        duration::display(hc.timeout),
        hc.healthy_threshold,
        hc.unhealthy_threshold
    )
}

/// One cluster in `/clusters`: its settings as the conf writes them and its state now. The JSON
/// keys are the field names, in this order.
#[derive(Debug, Serialize)]
pub struct ClusterSnapshot {
    /// The cluster's `name`.
    pub name: String,
    /// The cluster's `address`: a DNS name or an IP.
    pub address: String,
    /// The backends' `port`.
    pub port: u16,
    /// The `lb_policy`, as the conf writes it (`round_robin`, …).
    pub lb_policy: &'static str,
    /// First discovery round done.
    pub ready: bool,
    /// None for an IP-literal address.
    pub dns: Option<DnsSnapshot>,
    /// The `health_check` in words (`http GET /healthz every 1s (timeout 500ms, healthy after
    /// 1, unhealthy after 2)`); `None` without one.
    pub health_check: Option<String>,
    /// Backends getting traffic now: healthy and not ejected.
    pub healthy_backends: usize,
    /// Too few healthy backends: traffic goes to every probed backend (healthy_panic_threshold).
    pub panic_mode: bool,
    /// Requests to the cluster now, counted against `circuit_breakers.max_requests`.
    pub requests_in_progress: u32,
    /// Requests now that have retried, counted against the retry budget.
    pub retries_in_progress: u32,
    /// Every discovered backend, sorted by address.
    pub backends: Vec<BackendSnapshot>,
}

/// One backend of a [`ClusterSnapshot`].
#[derive(Debug, Serialize)]
pub struct BackendSnapshot {
    /// `ip:port`.
    pub address: String,
    /// Gets new requests: in DNS, first probe passed, not marked down.
    pub healthy: bool,
    /// Has passed a probe since it was discovered (true when the cluster has no health check).
    pub probed: bool,
    /// When `healthy` last changed (RFC 3339, UTC).
    pub since: Option<String>,
    /// Why the last probe failed; `None` when it passed, or before any probe.
    pub last_error: Option<String>,
    /// Requests sent to this backend since it was discovered, each attempt counted.
    pub requests: u64,
    /// Requests this backend is serving now.
    pub in_flight: i64,
    /// Seconds left of an outlier ejection; None when not ejected.
    pub ejected_for_seconds: Option<f64>,
    /// Outlier ejections so far; each lasts `base_ejection_time` × this, up to
    /// `max_ejection_time`.
    pub times_ejected: u32,
    /// Failed requests in a row (passive health).
    pub consecutive_failures: u32,
    /// The SRV record the backend came from (`priority weight port target`), for a cluster
    /// with `discovery: srv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srv_record: Option<String>,
    /// Its weight in percent of a full one while it ramps up after joining
    /// (`slow_start_window`); absent once it has its full share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_start_weight_percent: Option<u32>,
    /// Left DNS; still serving the requests sent to it before (`/stats` only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// Attempts and failures (5xx, resets, timeouts, failed connects) of the last minute
    /// (`/stats` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_minute: Option<crate::window::Summary>,
}
