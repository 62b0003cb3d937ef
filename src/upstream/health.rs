//! Active health checks: the conf's `health_check` → pingora's TCP or HTTP check, wrapped so that
//! every probe's result reaches the cluster's [`BackendTable`].
//!
//! pingora trusts a new backend at once (its health starts as healthy). A pod that has just
//! appeared in DNS may not be listening yet, so the table keeps a backend out of rotation until
//! one probe has passed; pingora's own counters then apply the thresholds.

use crate::config::{duration, HealthCheckConfig, HealthCheckKind};
use crate::upstream::backends::BackendTable;
use crate::upstream::tls::PeerTls;
use async_trait::async_trait;
use log::info;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::{Error, ErrorType, Result};
use prometheus::IntCounter;
use std::sync::Arc;
use std::time::Duration;

/// One cluster's probe: pingora's check, bounded by `timeout`, recorded in the table.
pub struct RecordedHealthCheck {
    cluster: String,
    inner: Box<dyn HealthCheck + Send + Sync>,
    timeout: Duration,
    tls: Option<Arc<PeerTls>>,
    table: Arc<BackendTable>,
    /// Threshold crossings: (became healthy, became unhealthy).
    transitions: (IntCounter, IntCounter),
}

impl RecordedHealthCheck {
    /// `host` is the Host header of HTTP probes when the conf sets none: the cluster's address.
    /// `tls`: probes speak the cluster's TLS, so a backend whose certificate fails is unhealthy.
    pub fn new(
        cluster: &str,
        config: &HealthCheckConfig,
        host: &str,
        tls: Option<Arc<PeerTls>>,
        table: Arc<BackendTable>,
        transitions: (IntCounter, IntCounter),
    ) -> Result<RecordedHealthCheck> {
        let success = config.healthy_threshold as usize;
        let failure = config.unhealthy_threshold as usize;
        let inner: Box<dyn HealthCheck + Send + Sync> = match &config.kind {
            HealthCheckKind::Tcp => {
                let mut check = TcpHealthCheck::new();
                if let Some(tls) = &tls {
                    tls.apply_basic(&mut check.peer_template);
                }
                check.consecutive_success = success;
                check.consecutive_failure = failure;
                check.peer_template.options.connection_timeout = Some(config.timeout);
                check.peer_template.options.total_connection_timeout = Some(config.timeout);
                check
            }
            HealthCheckKind::Http { path, host: custom } => {
                let host = custom.as_deref().unwrap_or(host);
                let mut check = HttpHealthCheck::new(host, false);
                if let Some(tls) = &tls {
                    tls.apply(&mut check.peer_template);
                }
                let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
                req.append_header("Host", host)?;
                req.append_header("User-Agent", "headway-health-check")?;
                check.req = req;
                check.consecutive_success = success;
                check.consecutive_failure = failure;
                check.peer_template.options.connection_timeout = Some(config.timeout);
                check.peer_template.options.read_timeout = Some(config.timeout);
                check.peer_template.options.write_timeout = Some(config.timeout);
                // A fresh connection per probe: a pooled one could hide a pod that stopped accepting.
                check.reuse_connection = false;
                check.validator = Some(Box::new(expect_2xx));
                Box::new(check)
            }
        };
        Ok(RecordedHealthCheck {
            cluster: cluster.to_owned(),
            inner,
            timeout: config.timeout,
            tls,
            table,
            transitions,
        })
    }
}

fn expect_2xx(resp: &ResponseHeader) -> Result<()> {
    if resp.status.is_success() {
        Ok(())
    } else {
        Error::e_explain(
            ErrorType::CustomCode("non-2xx health check", resp.status.as_u16()),
            format!("health check answered {}", resp.status.as_u16()),
        )
    }
}

#[async_trait]
impl HealthCheck for RecordedHealthCheck {
    async fn check(&self, target: &Backend) -> Result<()> {
        let result = match tokio::time::timeout(self.timeout, self.inner.check(target)).await {
            Ok(result) => result,
            Err(_) => Error::e_explain(
                ErrorType::ReadTimedout,
                format!(
                    "health check timed out after {}",
                    duration::display(self.timeout)
                ),
            ),
        };
        if let Some(addr) = target.addr.as_inet() {
            let error = result.as_ref().err().map(|e| {
                // A failed handshake says why in the words an answer would use.
                match self.tls.as_ref().and_then(|tls| tls.count_failure(e)) {
                    Some(failure) => format!("upstream TLS error: {}", failure.text()),
                    None => e.to_string(),
                }
            });
            let first_pass = self.table.record_probe(*addr, error);
            if first_pass {
                self.transitions.0.inc();
                info!(
                    "health cluster={} backend={addr} first check passed: in rotation",
                    self.cluster
                );
            }
        }
        result
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if let Some(addr) = target.addr.as_inet() {
            // pingora logs the transition itself, with `backend_summary` below.
            if self.table.record_transition(*addr, healthy) {
                if healthy {
                    self.transitions.0.inc();
                } else {
                    self.transitions.1.inc();
                }
            }
        }
    }

    fn backend_summary(&self, target: &Backend) -> String {
        format!("health cluster={} backend={}", self.cluster, target.addr)
    }
}
