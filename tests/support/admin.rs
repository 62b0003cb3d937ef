//! What the admin listener's `GET /clusters` says, read into types: a test names the fields it
//! checks (`cluster.healthy_backends`, `backend.times_ejected`) instead of indexing JSON.
//!
//! The types mirror `src/upstream/snapshot.rs` and `DnsSnapshot` in `src/upstream/discovery.rs`;
//! a field renamed or dropped there fails every test that reads `/clusters`, with the JSON.

use serde::Deserialize;

use super::gateway::Gateway;
use super::http;

/// One cluster of `/clusters`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterView {
    pub name: String,
    /// The conf's `address`: a DNS name or an IP.
    pub address: String,
    pub port: u16,
    pub lb_policy: String,
    /// First discovery round done.
    pub ready: bool,
    /// `None` for an IP-literal address.
    pub dns: Option<DnsView>,
    /// The health check in words; `None` without one.
    pub health_check: Option<String>,
    /// Backends getting traffic now: healthy and not ejected.
    pub healthy_backends: usize,
    pub panic_mode: bool,
    pub requests_in_progress: u32,
    pub retries_in_progress: u32,
    /// Sorted by address.
    pub backends: Vec<BackendView>,
}

impl ClusterView {
    /// The backend at `address` (`ip:port`), if listed.
    pub fn backend(&self, address: &str) -> Option<&BackendView> {
        self.backends.iter().find(|b| b.address == address)
    }
}

/// One backend of a [`ClusterView`].
#[derive(Debug, Clone, Deserialize)]
pub struct BackendView {
    /// `ip:port`.
    pub address: String,
    pub healthy: bool,
    /// Has passed a probe since it was discovered.
    pub probed: bool,
    /// When `healthy` last changed (RFC 3339).
    pub since: Option<String>,
    pub last_error: Option<String>,
    /// Requests sent to it since it was discovered, each attempt counted.
    pub requests: u64,
    pub in_flight: i64,
    /// Seconds left of an outlier ejection; `None` when not ejected.
    pub ejected_for_seconds: Option<f64>,
    pub times_ejected: u32,
    pub consecutive_failures: u32,
    /// Its weight in percent while it ramps up (`slow_start_window`); absent at full weight.
    #[serde(default)]
    pub slow_start_weight_percent: Option<u32>,
}

/// A cluster's DNS, as `/clusters` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct DnsView {
    /// `answer`, `empty` or `error`.
    pub last_outcome: String,
    /// RFC 3339, as every time in `/clusters`.
    pub last_success: Option<String>,
    pub last_answer: Vec<String>,
    pub last_ttl_seconds: Option<u64>,
    /// When (RFC 3339) and the message.
    pub last_error: Option<(String, String)>,
    pub consecutive_failures: u32,
    pub stale: bool,
    pub next_refresh_in_seconds: Option<f64>,
    pub refreshes_answer: u64,
    pub refreshes_empty: u64,
    pub refreshes_error: u64,
}

/// Every cluster of `GET /clusters`, in the conf's order. Panics if the admin listener does not
/// answer 200 with JSON of that shape.
pub fn clusters(gateway: &Gateway) -> Vec<ClusterView> {
    #[derive(Deserialize)]
    struct Body {
        clusters: Vec<ClusterView>,
    }
    let json = http::get_json(gateway.admin_addr(), "/clusters");
    let body: Body = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("GET /clusters: unexpected shape ({e}):\n{json:#}"));
    body.clusters
}

/// Cluster `name` of `GET /clusters`. Panics if it is not listed.
pub fn cluster(gateway: &Gateway, name: &str) -> ClusterView {
    let clusters = clusters(gateway);
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    let names = names.join(", ");
    clusters
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("GET /clusters: no cluster {name} (only: {names})"))
}
