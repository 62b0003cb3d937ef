//! One HTTP request to a cluster, sent by the gateway itself rather than for a client: a
//! filter's own calls (the `jwt` filter's JWKS fetch; proxy-wasm's `http_call` later).
//!
//! The backend is picked as the proxy picks it (discovery, health, ejections), its peer built
//! as the proxy builds it ([`Cluster::peer`]: the cluster's TLS, its HTTP version), and the
//! request goes through pingora's own connector. A backend that cannot be reached is left for
//! another one, once; a TLS failure is counted in `headway_upstream_tls_errors_total` as the
//! proxy counts it. Each call opens its own connection: calls are rare (a refresh every few
//! minutes), and a pooled connection gone stale would need a retry of its own.

use super::cluster::Cluster;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Backends tried per call: the first pick, and one other when it cannot be reached.
const ATTEMPTS: usize = 2;

/// How often a call made before the cluster's first discovery looks again.
const READY_POLL: Duration = Duration::from_millis(20);

/// Why a call got no response, as a closed set (a counter's label, a log's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// The client belongs to a conf that was only checked (`headway -t`): it sends nothing.
    NotRunning,
    /// The cluster has no ready backend (none discovered, none healthy).
    NoBackend,
    /// No backend could be connected to (refused, unreachable, TLS handshake failed).
    Connect,
    /// The whole call took longer than its timeout.
    Timeout,
    /// The exchange failed after connecting (reset, malformed response).
    Protocol,
    /// The response body is longer than the client accepts.
    TooLarge,
}

impl CallFailure {
    /// A short label: `not_running`, `no_backend`, `connect`, `timeout`, `protocol`,
    /// `too_large`.
    pub fn label(self) -> &'static str {
        match self {
            CallFailure::NotRunning => "not_running",
            CallFailure::NoBackend => "no_backend",
            CallFailure::Connect => "connect",
            CallFailure::Timeout => "timeout",
            CallFailure::Protocol => "protocol",
            CallFailure::TooLarge => "too_large",
        }
    }
}

/// A call that got no response: why, and what happened in words (cluster, backend, error).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// Why, as a closed set.
    pub failure: CallFailure,
    message: String,
}

impl CallError {
    fn new(failure: CallFailure, message: String) -> CallError {
        CallError { failure, message }
    }
}

/// Sends requests to one cluster. Cheap to clone (clones share one connector).
#[derive(Clone)]
pub struct ClusterClient {
    name: Arc<str>,
    /// None: the conf was only checked.
    cluster: Option<Arc<Cluster>>,
    /// Made at the first call, so that a conf only checked makes none.
    connector: Arc<OnceLock<Connector>>,
    max_response_bytes: usize,
    /// Whether the response body is kept (false: read and dropped, whatever its length).
    keep_body: bool,
}

impl ClusterClient {
    /// A client of `cluster`; responses up to 1 MiB.
    pub fn new(cluster: Arc<Cluster>) -> ClusterClient {
        ClusterClient {
            name: cluster.name().into(),
            cluster: Some(cluster),
            connector: Arc::default(),
            max_response_bytes: 1 << 20,
            keep_body: true,
        }
    }

    /// A client of a cluster named in a conf that is only being checked: every call fails
    /// with [`CallFailure::NotRunning`].
    pub fn checked_only(name: &str) -> ClusterClient {
        ClusterClient {
            name: name.into(),
            cluster: None,
            connector: Arc::default(),
            max_response_bytes: 1 << 20,
            keep_body: true,
        }
    }

    /// Accepts response bodies up to `bytes` (default 1 MiB); a longer one fails the call.
    pub fn max_response_bytes(mut self, bytes: usize) -> ClusterClient {
        self.max_response_bytes = bytes;
        self
    }

    /// Reads response bodies to their end and drops them (a mirror's copies): the response
    /// comes back with an empty body, and no length is too long.
    pub fn discarding_response_body(mut self) -> ClusterClient {
        self.keep_body = false;
        self
    }

    /// The cluster's name.
    pub fn cluster_name(&self) -> &str {
        &self.name
    }

    /// The `Host` a request gets when it has none: the cluster's TLS name (SNI) if it speaks
    /// TLS, else its address (without a trailing dot).
    pub fn default_host(&self) -> String {
        match &self.cluster {
            Some(cluster) => cluster.config.default_host(),
            None => self.name.to_string(),
        }
    }

    /// Sends `request` (its URI in origin form: a path and a query) to a ready backend and
    /// reads the whole response, all within `timeout`. A request without `Host` gets
    /// [`ClusterClient::default_host`]; a body gets its `Content-Length`. Waits for the
    /// cluster's first discovery, within `timeout`.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, CallError> {
        let Some(cluster) = &self.cluster else {
            return Err(CallError::new(
                CallFailure::NotRunning,
                format!("cluster {}: the conf was only checked", self.name),
            ));
        };
        let (parts, body) = request.into_parts();
        let mut header = RequestHeader::from(parts);
        if header.headers.get(http::header::HOST).is_none() {
            let host = self.default_host();
            header
                .insert_header(http::header::HOST, host)
                .map_err(|e| CallError::new(CallFailure::Protocol, e.to_string()))?;
        }
        if !body.is_empty() {
            header
                .insert_header(http::header::CONTENT_LENGTH, body.len())
                .map_err(|e| CallError::new(CallFailure::Protocol, e.to_string()))?;
        }
        let call = self.send_to(cluster, &header, body, timeout);
        match tokio::time::timeout(timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(CallError::new(
                CallFailure::Timeout,
                format!(
                    "cluster {}: no response within {}",
                    self.name,
                    crate::config::duration::display(timeout)
                ),
            )),
        }
    }

    async fn send_to(
        &self,
        cluster: &Cluster,
        header: &RequestHeader,
        body: Bytes,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, CallError> {
        while !cluster.is_ready() {
            tokio::time::sleep(READY_POLL).await;
        }
        let connector = self.connector.get_or_init(|| Connector::new(None));
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut failed = None;
        while tried.len() < ATTEMPTS {
            let Some((addr, _)) = cluster.select(&tried, None) else {
                break;
            };
            tried.push(addr);
            let mut peer = cluster.peer(addr);
            let connect = cluster.config.connect_timeout.min(timeout);
            peer.options.connection_timeout = Some(connect);
            peer.options.total_connection_timeout = Some(connect);
            peer.options.read_timeout = Some(timeout);
            peer.options.write_timeout = Some(timeout);
            let mut session = match connector.get_http_session(&peer).await {
                Ok((session, _)) => session,
                Err(e) => {
                    cluster.metrics.connect_failures.inc();
                    let why = match cluster.tls.as_ref().and_then(|t| t.count_failure(&e)) {
                        Some(tls) => format!("TLS error: {}", tls.text()),
                        None => e.to_string(),
                    };
                    failed = Some(format!(
                        "cluster {}: cannot connect to {addr}: {why}",
                        self.name
                    ));
                    continue;
                }
            };
            let exchanged = self
                .exchange(&mut session, header.clone(), body.clone())
                .await;
            session.shutdown().await;
            return exchanged.map_err(|(failure, e)| {
                CallError::new(failure, format!("cluster {}: {addr}: {e}", self.name))
            });
        }
        Err(match failed {
            Some(message) => CallError::new(CallFailure::Connect, message),
            None => CallError::new(
                CallFailure::NoBackend,
                format!("no healthy upstream for cluster {}", self.name),
            ),
        })
    }

    /// Writes the request, reads the whole response.
    async fn exchange(
        &self,
        session: &mut pingora::protocols::http::client::HttpSession,
        header: RequestHeader,
        body: Bytes,
    ) -> Result<http::Response<Bytes>, (CallFailure, String)> {
        let protocol = |e: Box<pingora::Error>| (CallFailure::Protocol, e.to_string());
        session
            .write_request_header(Box::new(header))
            .await
            .map_err(protocol)?;
        if !body.is_empty() {
            session
                .write_request_body(body, true)
                .await
                .map_err(protocol)?;
        }
        session.finish_request_body().await.map_err(protocol)?;
        session.read_response_header().await.map_err(protocol)?;
        let mut received = Vec::new();
        while let Some(piece) = session.read_response_body().await.map_err(protocol)? {
            if !self.keep_body {
                continue;
            }
            if received.len() + piece.len() > self.max_response_bytes {
                return Err((
                    CallFailure::TooLarge,
                    format!("response body over {} bytes", self.max_response_bytes),
                ));
            }
            received.extend_from_slice(&piece);
        }
        let Some(head) = session.response_header() else {
            return Err((CallFailure::Protocol, "no response header".into()));
        };
        let parts: http::response::Parts = head.clone().into();
        Ok(http::Response::from_parts(parts, Bytes::from(received)))
    }
}
