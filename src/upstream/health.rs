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
use pingora::connectors::http::Connector as HttpConnector;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::BasicPeer;
use pingora::{Error, ErrorType, Result};
use prometheus::IntCounter;
use std::sync::Arc;
use std::time::Duration;

/// The connectors every cluster's probes use. pingora's own checks build connectors of their
/// own, each loading the system's CA certificates: about 400 kB and a read of every CA file per
/// health-checked cluster. Probes carry their TLS settings (CA, client certificate, SNI) on
/// their peer, so one set serves every cluster.
pub struct ProbeConnectors {
    tcp: TransportConnector,
    /// Its pool keeps one idle connection per probed backend between HTTP probes
    /// (`reuse_connection`), keyed by the peer's reuse hash (address, TLS settings).
    http: HttpConnector,
}

/// Idle probe connections the pool keeps: 1,000 services of 3 pods each, and room. Beyond it
/// the least recently used is closed, and its next probe connects afresh.
const KEPT_PROBE_CONNECTIONS: usize = 4096;

impl ProbeConnectors {
    /// One set for the gateway.
    pub fn new() -> Arc<ProbeConnectors> {
        Arc::new(ProbeConnectors {
            tcp: TransportConnector::new(None),
            http: HttpConnector::new(Some(ConnectorOptions::new(KEPT_PROBE_CONNECTIONS))),
        })
    }
}

/// How a probe checks a backend: a connection (and handshake), or an HTTP request.
enum Probe {
    Tcp(Box<BasicPeer>),
    Http(Box<(HttpPeer, RequestHeader)>),
}

/// One cluster's probe: a TCP or HTTP check through the shared connectors, bounded by
/// `timeout`, recorded in the table. Thresholds apply as pingora's checks apply them.
pub struct RecordedHealthCheck {
    cluster: String,
    probe: Probe,
    connectors: Arc<ProbeConnectors>,
    /// Passes in a row to become healthy, failures in a row to become unhealthy.
    thresholds: (usize, usize),
    timeout: Duration,
    /// HTTP probes keep their connection for the next probe this long (none: a new one each).
    keep: Option<Duration>,
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
        connectors: Arc<ProbeConnectors>,
    ) -> Result<RecordedHealthCheck> {
        let probe = match &config.kind {
            HealthCheckKind::Tcp => {
                let mut peer = BasicPeer::new("0.0.0.0:1");
                if let Some(tls) = &tls {
                    tls.apply_basic(&mut peer);
                }
                peer.options.connection_timeout = Some(config.timeout);
                peer.options.total_connection_timeout = Some(config.timeout);
                Probe::Tcp(Box::new(peer))
            }
            HealthCheckKind::Http { path, host: custom } => {
                let host = custom.as_deref().unwrap_or(host);
                let mut peer = HttpPeer::new("0.0.0.0:1", false, String::new());
                if let Some(tls) = &tls {
                    tls.apply(&mut peer);
                }
                let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
                req.append_header("Host", host)?;
                req.append_header("User-Agent", "headway-health-check")?;
                peer.options.connection_timeout = Some(config.timeout);
                peer.options.read_timeout = Some(config.timeout);
                peer.options.write_timeout = Some(config.timeout);
                Probe::Http(Box::new((peer, req)))
            }
        };
        Ok(RecordedHealthCheck {
            cluster: cluster.to_owned(),
            probe,
            connectors,
            thresholds: (
                config.healthy_threshold as usize,
                config.unhealthy_threshold as usize,
            ),
            timeout: config.timeout,
            // Past two intervals (and a probe's time) a kept connection waits for no probe: a
            // backend that left DNS, a cluster a reload removed.
            keep: config
                .reuse_connection
                .then(|| 2 * config.interval + config.timeout),
            tls,
            table,
            transitions,
        })
    }

    /// One probe of `target`, as pingora's `TcpHealthCheck` and `HttpHealthCheck` do it: a TCP
    /// probe is a new connection every time; an HTTP probe wants a 2xx answer whose body is
    /// read to its end, on the backend's kept connection when `reuse_connection` is on (as
    /// Envoy's checker does). A kept connection the backend closed or broke does not count
    /// against it: the probe is made again on a fresh connection.
    async fn probe(&self, target: &Backend) -> Result<()> {
        match &self.probe {
            Probe::Tcp(template) => {
                let mut peer = (**template).clone();
                peer._address = target.addr.clone();
                self.connectors.tcp.get_stream(&peer).await.map(|_| ())
            }
            Probe::Http(probe) => {
                let (template, req) = &**probe;
                let mut peer = template.clone();
                peer._address = target.addr.clone();
                loop {
                    // Each kept connection is taken out of the pool once, so this ends with
                    // the first fresh connection at the latest.
                    let (mut session, reused) =
                        self.connectors.http.get_http_session(&peer).await?;
                    match http_probe(&mut session, &peer, req).await {
                        Ok(()) => {
                            if self.keep.is_some() {
                                let http = &self.connectors.http;
                                http.release_http_session(session, &peer, self.keep).await;
                            }
                            return Ok(());
                        }
                        // An answer is the backend's word, whatever connection carried it.
                        Err(e) if !reused || matches!(e.etype(), ErrorType::CustomCode(..)) => {
                            return Err(e)
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
}

/// The request of an HTTP probe on `session`, its answer read to the end of its body.
async fn http_probe(session: &mut HttpSession, peer: &HttpPeer, req: &RequestHeader) -> Result<()> {
    session.set_write_timeout(peer.options.write_timeout);
    session.write_request_header(Box::new(req.clone())).await?;
    session.finish_request_body().await?;
    session.set_read_timeout(peer.options.read_timeout);
    session.read_response_header().await?;
    match session.response_header() {
        Some(resp) => expect_2xx(resp)?,
        None => return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header"),
    }
    while session.read_response_body().await?.is_some() {}
    Ok(())
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
        let result = match tokio::time::timeout(self.timeout, self.probe(target)).await {
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
        if success {
            self.thresholds.0
        } else {
            self.thresholds.1
        }
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
