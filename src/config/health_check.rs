//! A cluster's `health_check`: active probes of every backend, over HTTP or a bare TCP connect.

use super::defaults;
use super::duration::{positive_or, ConfDuration};
use super::errors::Errors;
use serde::Deserialize;
use std::time::Duration;

/// A cluster's `health_check`: active probes of every backend (Envoy: `health_checks`). A
/// newly discovered address needs one passing probe before it gets traffic; after that the
/// thresholds apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// `type`, with `path` and `host` for `http`.
    pub kind: HealthCheckKind,
    /// `interval`: time between probes of each backend; default 1 s.
    pub interval: Duration,
    /// `timeout`: the limit on one probe; default 500 ms.
    pub timeout: Duration,
    /// `healthy_threshold`: passes in a row that mark a backend up again; default 1.
    pub healthy_threshold: u32,
    /// `unhealthy_threshold`: failures in a row that mark a backend down; default 2.
    pub unhealthy_threshold: u32,
    /// `reuse_connection`: an HTTP probe keeps its connection (and TLS session) for the next
    /// probe of the same backend; default true (Envoy: `reuse_connection`). A kept connection
    /// that fails is retried once on a fresh one.
    pub reuse_connection: bool,
}

/// `health_check.type`: what a probe does and what passes (Envoy: `http_health_check` /
/// `tcp_health_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `GET path` with `Host: host` (the cluster's address unless set); any 2xx passes.
    Http {
        /// `path`: default `/healthz`.
        path: String,
        /// `host`: the `Host` header; `None`: the cluster's `address`.
        host: Option<String>,
    },
    /// A TCP connect passes.
    Tcp,
}

/// `health_check.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CheckType {
    Http,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    #[serde(rename = "type")]
    kind: Option<CheckType>,
    path: Option<String>,
    host: Option<String>,
    interval: Option<ConfDuration>,
    timeout: Option<ConfDuration>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    reuse_connection: Option<bool>,
}

pub(super) fn health_check(
    raw: RawHealthCheck,
    path: &str,
    errors: &mut Errors,
) -> Option<HealthCheckConfig> {
    let before = errors.count();
    let kind = match errors.required(raw.kind, path, "type") {
        Some(CheckType::Http) => {
            let check_path = raw.path.unwrap_or_else(|| defaults::HEALTH_PATH.to_owned());
            if !check_path.starts_with('/') {
                errors.push(
                    format!("{path}.path"),
                    format!("`{check_path}` must start with `/`"),
                );
            }
            Some(HealthCheckKind::Http {
                path: check_path,
                host: raw.host,
            })
        }
        Some(CheckType::Tcp) => {
            if raw.path.is_some() {
                errors.push(
                    format!("{path}.path"),
                    "only http health checks have a path",
                );
            }
            if raw.host.is_some() {
                errors.push(
                    format!("{path}.host"),
                    "only http health checks have a host",
                );
            }
            Some(HealthCheckKind::Tcp)
        }
        None => None,
    };
    let interval = positive_or(
        raw.interval,
        defaults::HEALTH_INTERVAL,
        &format!("{path}.interval"),
        errors,
    );
    let timeout = positive_or(
        raw.timeout,
        defaults::HEALTH_TIMEOUT,
        &format!("{path}.timeout"),
        errors,
    );
    let mut threshold = |value: Option<u32>, default: u32, key: &str| {
        let v = value.unwrap_or(default);
        if v == 0 {
            errors.push(format!("{path}.{key}"), "must be at least 1");
        }
        v
    };
    let healthy_threshold = threshold(
        raw.healthy_threshold,
        defaults::HEALTHY_THRESHOLD,
        "healthy_threshold",
    );
    let unhealthy_threshold = threshold(
        raw.unhealthy_threshold,
        defaults::UNHEALTHY_THRESHOLD,
        "unhealthy_threshold",
    );
    if errors.count() > before {
        return None;
    }
    Some(HealthCheckConfig {
        kind: kind?,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
        reuse_connection: raw.reuse_connection.unwrap_or(true),
    })
}
