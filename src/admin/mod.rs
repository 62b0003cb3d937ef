//! The admin listener: `/` (the dashboard), `/stats`, `/ready`, `/clusters`, `/metrics` read
//! the gateway's state; `POST /reload`, when the conf turns it on, re-reads the conf — the one
//! endpoint that changes anything.

pub mod page;
pub mod splits;
pub mod stats;

use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::upstream::Clusters;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;
use std::time::Instant;

/// What admin reads: the clusters, the metrics and the gateway's lifecycle.
pub struct AdminState {
    /// Every cluster (swapped by a reload), for `/clusters`, `/metrics`' per-cluster gauges,
    /// and `/ready`.
    pub clusters: Arc<ArcSwap<Clusters>>,
    /// The series `/metrics` encodes.
    pub metrics: Arc<Metrics>,
    /// Listening and draining, for `/ready`.
    pub lifecycle: Arc<Lifecycle>,
    /// `POST /reload`: set only when `gateway.admin.reload` is on.
    pub reload: Option<ReloadHook>,
    /// The certificates in use (TLS listeners), for `/clusters` and the dashboard.
    pub certificates: Arc<crate::certificates::Certificates>,
}

/// Re-reads the conf in place: what changed, or why nothing did.
pub type ReloadHook =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// The admin listener's application.
pub struct Admin {
    state: AdminState,
    /// When the gateway started (the admin application is made at start-up), for the uptime.
    started: Instant,
}

impl Admin {
    /// The application to serve on `gateway.admin.listen`.
    pub fn new(state: AdminState) -> Admin {
        Admin {
            state,
            started: Instant::now(),
        }
    }

    /// Answers one admin request (every one but `POST /reload`).
    pub fn handle(&self, method: &str, path: &str, query: Option<&str>) -> Reply {
        handle(&self.state, self.started, method, path, query)
    }
}

/// An admin answer, built without any socket so it can be tested directly.
#[derive(Debug)]
pub struct Reply {
    /// The response status.
    pub status: StatusCode,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The response body.
    pub body: String,
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

fn handle(
    state: &AdminState,
    started: Instant,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Reply {
    if method != "GET" && method != "HEAD" {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "admin endpoints are read-only: use GET\n",
        );
    }
    match path {
        "/ready" => ready(state),
        "/clusters" if query == Some("format=text") => clusters_text(state),
        "/clusters" => clusters(state),
        "/metrics" => metrics(state),
        "/" => Reply {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body: page::page(&stats::stats(state, started)),
        },
        "/stats" => json(&stats::stats(state, started)),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /stats, /ready, /clusters or /metrics\n",
        ),
    }
}

fn ready(state: &AdminState) -> Reply {
    if state.lifecycle.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let clusters = state.clusters.load();
    let pending = clusters.pending();
    if !pending.is_empty() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "waiting for the first discovery of: {}\n",
                pending.join(", ")
            ),
        )
    } else if !state.lifecycle.is_listening() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the proxy listeners to open\n",
        )
    } else {
        text(StatusCode::OK, "ready\n")
    }
}

fn clusters_text(state: &AdminState) -> Reply {
    let body: String = state
        .clusters
        .load()
        .iter()
        .map(|c| c.snapshot().to_text())
        .collect();
    text(StatusCode::OK, body)
}

fn clusters(state: &AdminState) -> Reply {
    /// Serialized as declared: each cluster's `name` first, its long `backends` list last
    /// (a `serde_json::Value` would sort the keys).
    #[derive(serde::Serialize)]
    struct Body {
        /// The conf served: its hash and when it was loaded.
        conf: Option<crate::lifecycle::ActiveConf>,
        /// Every certificate in use: subject, names, serial, expiry, days left.
        certificates: Vec<crate::certificates::CertInfo>,
        /// Every route with `clusters`: each cluster's weight and realised share.
        splits: Vec<splits::RouteSplit>,
        clusters: Vec<crate::upstream::snapshot::ClusterSnapshot>,
    }
    let clusters = state.clusters.load().iter().map(|c| c.snapshot()).collect();
    let conf = state.lifecycle.conf();
    let certificates = certificates_in_use(state);
    json(&Body {
        conf,
        certificates,
        splits: splits::splits(&state.metrics),
        clusters,
    })
}

fn json(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_string_pretty(value) {
        Ok(body) => Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            body: body + "\n",
        },
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Every certificate in use: the TLS listeners' (as last read) and each cluster's client
/// certificate, with their days left counted now.
pub fn certificates_in_use(state: &AdminState) -> Vec<crate::certificates::CertInfo> {
    let mut certs = state.certificates.list();
    let now = std::time::SystemTime::now();
    for cluster in state.clusters.load().iter() {
        if let Some(info) = cluster
            .tls
            .as_ref()
            .and_then(|t| t.client_cert_info.clone())
        {
            certs.push(info.as_of(now));
        }
    }
    certs
}

/// Every series in Prometheus' text format; state-derived gauges are set at scrape time.
fn metrics(state: &AdminState) -> Reply {
    let m = &state.metrics;
    // Certificates no longer in use (a removed cluster, a replaced file) lose their series.
    m.tls.expiry.reset();
    for c in certificates_in_use(state) {
        m.tls
            .expiry
            .with_label_values(&[c.used_by.as_str(), c.file.as_str(), c.subject.as_str()])
            .set(c.expires_at);
    }
    if let Some(conf) = state.lifecycle.conf() {
        m.conf_info.reset();
        m.conf_info.with_label_values(&[&conf.hash]).set(1);
        m.conf_loaded.set(conf.loaded_at_seconds);
    }
    for cluster in state.clusters.load().iter() {
        let snapshot = cluster.snapshot();
        let name = [cluster.name()];
        m.backends
            .with_label_values(&name)
            .set(snapshot.backends.len() as i64);
        m.healthy_backends
            .with_label_values(&name)
            .set(snapshot.healthy_backends as i64);
        if let Some((age, failures, stale)) = cluster.dns_staleness() {
            m.dns_stale.with_label_values(&name).set(i64::from(stale));
            m.dns_last_success_age
                .with_label_values(&name)
                .set(age.unwrap_or(-1.0));
            m.dns_consecutive_failures
                .with_label_values(&name)
                .set(i64::from(failures));
        }
    }
    Reply {
        status: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: m.encode(),
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let reply = match (&self.state.reload, req.method.as_str(), req.uri.path()) {
            (Some(reload), "POST", "/reload") => match reload().await {
                Ok(summary) => text(StatusCode::OK, format!("reloaded: {summary}\n")),
                Err(problems) => text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("not reloaded, the previous conf still serves:\n{problems}\n"),
                ),
            },
            (_, method, path) => self.handle(method, path, req.uri.query()),
        };
        let body = reply.body.into_bytes();
        Response::builder()
            .status(reply.status)
            .header("content-type", reply.content_type)
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}
