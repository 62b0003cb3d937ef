//! `gateway.clusters[]`: one upstream service, where its backends are and how they are called.

use super::balancing::{hash_policy, HashKey};
use super::breakers::{circuit_breakers, CircuitBreakers, RawCircuitBreakers};
use super::choices::{Discovery, LbPolicy, LookupFamily, UpstreamProtocol};
use super::defaults;
use super::dns::{dns, DnsSettings, RawDns};
use super::duration::{positive_or, ConfDuration};
use super::errors::Errors;
use super::health_check::{health_check, HealthCheckConfig, HealthCheckKind, RawHealthCheck};
use super::outlier::{outlier_detection, OutlierDetection, RawOutlierDetection};
use super::retry::{retry_policy, RawRetryBudget, RetryCondition, RetryPolicy};
use super::slow_start::{slow_start, SlowStart};
use super::upstream_tls::{upstream_tls, AddressKind, RawUpstreamTls, UpstreamTls};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One entry of `gateway.clusters`: an upstream service, where its backends are and how they
/// are called (Envoy: a `clusters` entry with `type: STRICT_DNS`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `name`: unique among the clusters; what routes, logs, metrics and `/clusters` call it.
    pub name: String,
    /// `address`: the DNS name resolved for backends (a headless service), or one IP.
    pub address: Address,
    /// `port`: the backends' port, 1–65535 (Envoy: `socket_address.port_value`); 0 with
    /// `discovery: srv`, where each backend's port is its SRV record's.
    pub port: u16,
    /// `discovery`: what `address` names: A/AAAA records (`dns`, the default) or SRV records
    /// (`srv`).
    pub discovery: Discovery,
    /// `protocol`: `http1` (the default) or `http2` (h2c).
    pub protocol: UpstreamProtocol,
    /// `lb_policy`: default `round_robin`.
    pub lb_policy: LbPolicy,
    /// `hash_policy`, for `ring_hash` and `maglev`: where the key comes from; the first that
    /// yields one wins. Empty (the default), or no key: a random pick.
    pub hash_policy: Vec<HashKey>,
    /// The `dns_*` and `respect_dns_ttl` keys: how often and how `address` is resolved.
    pub dns: DnsSettings,
    /// `connect_timeout`: TCP connect to one backend; default 1 s (Envoy: same name, 5 s).
    pub connect_timeout: Duration,
    /// `timeout`: the whole request, retries included, until the upstream's response headers
    /// arrive, and the longest wait for each read of the body; default 15 s (Envoy: route
    /// `timeout`). A route's own `timeout` overrides it.
    pub timeout: Duration,
    /// `idle_timeout`: how long an idle upstream connection stays in the pool; default 4 s
    /// (Envoy: `common_http_protocol_options.idle_timeout`).
    pub idle_timeout: Duration,
    /// `tunnel_timeout`: how long an upgraded connection (WebSocket) may go without traffic
    /// either way; default 1 h (Envoy: `stream_idle_timeout`).
    pub tunnel_timeout: Duration,
    /// `retries`: further attempts that re-send the request, each on a backend not tried yet;
    /// default 1, at most 10 (Envoy: `retry_policy.num_retries`).
    pub retries: u32,
    /// `retry_on`, `per_try_timeout` and `retry_budget`.
    pub retry: RetryPolicy,
    /// `outlier_detection`: passive health.
    pub outlier: OutlierDetection,
    /// `circuit_breakers`: limits on what is in flight to the cluster.
    pub breakers: CircuitBreakers,
    /// `healthy_panic_threshold`: the percent of probed backends healthy below which health
    /// and ejections are ignored; default 50, 0: never (Envoy:
    /// `common_lb_config.healthy_panic_threshold`).
    pub healthy_panic_threshold: u32,
    /// `health_check`: active probes; `None` (the default): DNS alone decides.
    pub health_check: Option<HealthCheckConfig>,
    /// `slow_start_window` and `slow_start_min_weight_percent`: a joining backend's share
    /// grows over the window; `None` (the default): full share at once.
    pub slow_start: Option<SlowStart>,
    /// `tls`: the backends are reached over TLS; `None` (the default): cleartext.
    pub tls: Option<UpstreamTls>,
}

impl ClusterConfig {
    /// The `Host` a request to this cluster gets when it has none (an HTTP/1.0 client may leave
    /// it out; the gateway's own calls): the cluster's TLS name (SNI) if it speaks TLS, else its
    /// address without a trailing dot — nginx's `$proxy_host`.
    pub fn default_host(&self) -> String {
        match &self.tls {
            Some(tls) => tls.sni.clone(),
            None => self.address.to_string().trim_end_matches('.').to_owned(),
        }
    }
}

/// What a cluster's `address` names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Address {
    /// A DNS name, resolved again every refresh (a headless service).
    Name(String),
    /// A fixed address: no DNS at all.
    Ip(IpAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Name(name) => f.write_str(name),
            Address::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a cluster's `address` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address carries a port, which goes in `port:`.
    #[error("`{0}` must be a bare name or IP: put the port in `port:`")]
    HasPort(String),
    /// Neither an IP address nor a valid DNS name.
    #[error("`{0}` is not a valid DNS name or IP address")]
    NotAName(String),
}

impl TryFrom<String> for Address {
    type Error = AddressError;

    fn try_from(text: String) -> Result<Address, AddressError> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Address::Ip(ip));
        }
        if text.parse::<SocketAddr>().is_ok() || text.rsplit_once(':').is_some() {
            return Err(AddressError::HasPort(text));
        }
        let name = text.strip_suffix('.').unwrap_or(&text);
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(AddressError::NotAName(text));
        }
        Ok(Address::Name(text))
    }
}

/// A cluster as the conf writes it. Its required keys are optional here so that a cluster
/// without one still has its other keys checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub name: Option<String>,
    address: Option<Address>,
    port: Option<u32>,
    discovery: Option<Discovery>,
    lb_policy: Option<LbPolicy>,
    hash_policy: Option<Vec<HashKey>>,
    protocol: Option<UpstreamProtocol>,
    pub dns_refresh_rate: Option<ConfDuration>,
    pub dns_failure_refresh_rate: Option<ConfDuration>,
    pub dns_min_refresh_rate: Option<ConfDuration>,
    pub respect_dns_ttl: Option<bool>,
    pub dns_lookup_family: Option<LookupFamily>,
    connect_timeout: Option<ConfDuration>,
    timeout: Option<ConfDuration>,
    idle_timeout: Option<ConfDuration>,
    tunnel_timeout: Option<ConfDuration>,
    retries: Option<u32>,
    retry_on: Option<Vec<RetryCondition>>,
    per_try_timeout: Option<ConfDuration>,
    retry_budget: Option<RawRetryBudget>,
    outlier_detection: Option<RawOutlierDetection>,
    circuit_breakers: Option<RawCircuitBreakers>,
    healthy_panic_threshold: Option<u32>,
    slow_start_window: Option<ConfDuration>,
    slow_start_min_weight_percent: Option<u32>,
    health_check: Option<RawHealthCheck>,
    tls: Option<RawUpstreamTls>,
}

/// Checks one cluster; its DNS, balancing, retry, outlier, breaker and health-check keys are
/// checked by their own files.
pub(super) fn cluster(raw: RawCluster, path: &str, errors: &mut Errors) -> Option<ClusterConfig> {
    let before = errors.count();
    let dns = dns(
        RawDns {
            dns_refresh_rate: raw.dns_refresh_rate,
            dns_failure_refresh_rate: raw.dns_failure_refresh_rate,
            dns_min_refresh_rate: raw.dns_min_refresh_rate,
            respect_dns_ttl: raw.respect_dns_ttl,
            dns_lookup_family: raw.dns_lookup_family,
        },
        path,
        errors,
    );
    let name = errors.required(raw.name, path, "name");
    if let Some(name) = &name {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            errors.push(
                format!("{path}.name"),
                format!("`{name}` is not a valid name: use letters, digits, `_`, `-` and `.`"),
            );
        }
    }
    let address = errors.required(raw.address, path, "address");
    let discovery = raw.discovery.unwrap_or(defaults::DISCOVERY);
    let port = match (discovery, raw.port) {
        (Discovery::Srv, None) => Some(0),
        (Discovery::Srv, Some(_)) => {
            errors.push(
                format!("{path}.port"),
                "not with discovery: srv: each backend's port is its SRV record's",
            );
            None
        }
        (Discovery::Dns, port) => errors.required(port, path, "port").and_then(|port| {
            let valid = u16::try_from(port).ok().filter(|p| *p != 0);
            if valid.is_none() {
                errors.push(
                    format!("{path}.port"),
                    format!("{port} is not a port (1 to 65535)"),
                );
            }
            valid
        }),
    };
    if discovery == Discovery::Srv && matches!(address, Some(Address::Ip(_))) {
        errors.push(
            format!("{path}.address"),
            "discovery: srv needs a DNS name (e.g. _http._tcp.service1.default.svc.cluster.local.)",
        );
    }
    let hash_policy = hash_policy(raw.lb_policy, raw.hash_policy, path, errors);
    let mut positive = |value: Option<ConfDuration>, default: Duration, key: &str| {
        positive_or(value, default, &format!("{path}.{key}"), errors)
    };
    let connect_timeout = positive(
        raw.connect_timeout,
        defaults::CONNECT_TIMEOUT,
        "connect_timeout",
    );
    let timeout = positive(raw.timeout, defaults::TIMEOUT, "timeout");
    let idle_timeout = positive(
        raw.idle_timeout,
        defaults::UPSTREAM_IDLE_TIMEOUT,
        "idle_timeout",
    );
    let tunnel_timeout = positive(
        raw.tunnel_timeout,
        defaults::TUNNEL_TIMEOUT,
        "tunnel_timeout",
    );
    let retries = raw.retries.unwrap_or(defaults::RETRIES);
    if retries > defaults::MAX_RETRIES {
        errors.push(
            format!("{path}.retries"),
            format!(
                "{retries} is more than the maximum of {}",
                defaults::MAX_RETRIES
            ),
        );
    }
    let retry = retry_policy(
        raw.retry_on,
        raw.per_try_timeout,
        raw.retry_budget,
        path,
        errors,
    );
    let outlier = outlier_detection(raw.outlier_detection, path, errors);
    let breakers = circuit_breakers(raw.circuit_breakers, path, errors);
    let healthy_panic_threshold = raw
        .healthy_panic_threshold
        .unwrap_or(defaults::HEALTHY_PANIC_THRESHOLD);
    if healthy_panic_threshold > 100 {
        errors.push(
            format!("{path}.healthy_panic_threshold"),
            format!("{healthy_panic_threshold} is not a percentage (0 to 100)"),
        );
    }
    let slow_start = slow_start(
        raw.slow_start_window,
        raw.slow_start_min_weight_percent,
        raw.lb_policy,
        path,
        errors,
    );
    let health_check = raw
        .health_check
        .map(|hc| health_check(hc, &format!("{path}.health_check"), errors));
    let protocol = raw.protocol.unwrap_or(defaults::PROTOCOL);
    let tls = raw.tls.and_then(|tls| {
        let http2 = protocol == UpstreamProtocol::Http2;
        let kind = match &address {
            // An SRV name's service and protocol labels (`_http._tcp.`) are no host's name.
            Some(Address::Name(name)) if discovery == Discovery::Srv => {
                let labels: Vec<&str> =
                    name.split('.').skip_while(|l| l.starts_with('_')).collect();
                AddressKind::Name(labels.join("."))
            }
            Some(Address::Name(name)) => AddressKind::Name(name.clone()),
            Some(Address::Ip(_)) => AddressKind::Ip,
            None => AddressKind::Unknown,
        };
        upstream_tls(tls, kind, http2, &format!("{path}.tls"), errors)
    });
    let tcp_probe = matches!(&health_check, Some(Some(hc)) if hc.kind == HealthCheckKind::Tcp);
    if tcp_probe && tls.as_ref().is_some_and(|t| t.client_cert.is_some()) {
        // pingora's TCP check has no client certificate: its probes would not be the
        // handshake requests make.
        errors.push(
            format!("{path}.health_check.type"),
            "a tcp probe cannot present tls.cert: use type: http",
        );
    }

    if errors.count() > before {
        return None;
    }
    Some(ClusterConfig {
        name: name?,
        address: address?,
        port: port?,
        discovery,
        protocol,
        lb_policy: raw.lb_policy.unwrap_or(defaults::LB_POLICY),
        hash_policy,
        dns,
        connect_timeout,
        timeout,
        idle_timeout,
        tunnel_timeout,
        retries,
        retry,
        outlier,
        breakers,
        healthy_panic_threshold,
        health_check: health_check.flatten(),
        slow_start,
        tls,
    })
}
