//! The admin listener: `/ready`, `/clusters`, `/metrics`. It reads cluster state, never writes it.

use crate::gateway::GatewayState;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::fmt::Write;
use std::sync::Arc;

pub struct Admin {
    state: Arc<GatewayState>,
}

impl Admin {
    pub fn new(state: Arc<GatewayState>) -> Admin {
        Admin { state }
    }
}

/// An admin answer, built without any socket so it can be tested directly.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

/// Answers one admin request.
pub fn handle(state: &GatewayState, method: &str, path: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "admin endpoints are read-only: use GET\n",
        );
    }
    match path {
        "/ready" => ready(state),
        "/clusters" => clusters(state),
        "/metrics" => metrics(state),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /ready, /clusters or /metrics\n",
        ),
    }
}

fn ready(state: &GatewayState) -> Reply {
    if state.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let pending = state.pending_clusters();
    if pending.is_empty() {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "waiting for the first discovery of: {}\n",
                pending.join(", ")
            ),
        )
    }
}

fn clusters(state: &GatewayState) -> Reply {
    let clusters: Vec<_> = state.clusters.iter().map(|c| c.snapshot()).collect();
    match serde_json::to_string_pretty(&serde_json::json!({ "clusters": clusters })) {
        Ok(body) => Reply {
            status: StatusCode::OK,
            content_type: "application/json",
            body: body + "\n",
        },
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Cluster state in Prometheus' text format.
fn metrics(state: &GatewayState) -> Reply {
    let mut out = String::new();
    let snapshots: Vec<_> = state.clusters.iter().map(|c| c.snapshot()).collect();
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    family(
        "headway_cluster_backends",
        "gauge",
        "Backends currently discovered, per cluster.",
        &mut snapshots
            .iter()
            .map(|c| (format!("cluster=\"{}\"", c.name), c.backends.len() as f64)),
    );
    family(
        "headway_cluster_healthy_backends",
        "gauge",
        "Backends currently getting traffic, per cluster.",
        &mut snapshots
            .iter()
            .map(|c| (format!("cluster=\"{}\"", c.name), c.healthy_backends as f64)),
    );
    family(
        "headway_dns_refreshes_total",
        "counter",
        "DNS refreshes by result: answer, empty (NXDOMAIN or no records) or error.",
        &mut snapshots
            .iter()
            .filter_map(|c| c.dns.as_ref().map(|d| (c, d)))
            .flat_map(|(c, d)| {
                [
                    ("answer", d.refreshes_answer),
                    ("empty", d.refreshes_empty),
                    ("error", d.refreshes_error),
                ]
                .into_iter()
                .map(move |(result, n)| {
                    (
                        format!("cluster=\"{}\",result=\"{result}\"", c.name),
                        n as f64,
                    )
                })
            }),
    );
    family(
        "headway_backend_requests_total",
        "counter",
        "Requests sent to each current backend (every attempt counts).",
        &mut snapshots.iter().flat_map(|c| {
            c.backends.iter().map(move |b| {
                (
                    format!("cluster=\"{}\",backend=\"{}\"", c.name, b.address),
                    b.requests as f64,
                )
            })
        }),
    );
    Reply {
        status: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: out,
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let reply = handle(&self.state, req.method.as_str(), req.uri.path());
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
