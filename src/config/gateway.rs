//! The `gateway:` section: its own limits and timeouts, and the sections inside it in order.

use super::access_log::{access_log, AccessLogConfig, RawAccessLog};
use super::cidr::Cidr;
use super::cluster::{cluster, ClusterConfig, RawCluster};
use super::defaults;
use super::duration::{positive_or, ConfDuration};
use super::errors::Errors;
use super::listeners::{admin, listeners, Admin, Listener, RawAdmin};
use super::reader;
use super::resolver::{resolver, RawResolver, ResolverSettings};
use super::routes::{route, Earlier, RawRoute, Route};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The `gateway:` section: everything of headway's in the conf file.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// `listen`: the proxy listeners; default `["0.0.0.0:8000"]`, never empty (Envoy:
    /// `listeners[].address`).
    pub listen: Vec<Listener>,
    /// `h2c`: accept HTTP/2 with prior knowledge on plain listeners, beside HTTP/1.1; default
    /// `false` (Envoy: `codec_type: AUTO`).
    pub h2c: bool,
    /// `watch_conf`: reload in place when the conf file's content changes (checked four
    /// times a second, through symlinks: a mounted ConfigMap's update is seen); default `false`.
    pub watch_conf: bool,
    /// `admin`: where `/ready`, `/clusters` and `/metrics` are served.
    pub admin: Admin,
    /// `resolver`: the DNS servers and settings every cluster's lookups use.
    pub resolver: ResolverSettings,
    /// `drain_time`: after SIGTERM, how long the listeners keep serving with `/ready` at 503
    /// and `Connection: close` on responses; default 2 s (Envoy: `--drain-time-s`).
    pub drain_time: Duration,
    /// `request_headers_timeout`: a new connection's request headers must be complete within
    /// this, else `408`; default 10 s (Envoy: HCM `request_headers_timeout`).
    pub request_headers_timeout: Duration,
    /// `idle_timeout`: how long a kept-alive client connection may wait for its next request;
    /// default 60 s (Envoy: HCM `idle_timeout`).
    pub idle_timeout: Duration,
    /// `max_request_headers_kb`, `max_headers_count`, `max_uri_length`.
    pub limits: RequestLimits,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` is kept (and appended to); anyone
    /// else's is replaced. Default: none (Envoy: `xff_num_trusted_hops`).
    pub trusted_proxies: Vec<Cidr>,
    /// `access_log`: the one line per request.
    pub access_log: AccessLogConfig,
    /// `routes`: in order, the first matching route wins (Envoy:
    /// `route_config.virtual_hosts[].routes`).
    pub routes: Vec<Route>,
    /// `clusters`: the upstream services routes send to, names unique.
    pub clusters: Vec<ClusterConfig>,
}

/// Limits on a request's head, each answered with its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// `max_request_headers_kb` × 1024: 431 above this many bytes of headers (names and
    /// values); default 60 KiB (Envoy: same key).
    pub max_header_bytes: usize,
    /// `max_headers_count`: 431 above this many headers; default 100 (Envoy:
    /// `common_http_protocol_options.max_headers_count`).
    pub max_headers: usize,
    /// `max_uri_length`: 414 above this many bytes of request target; default 8192.
    pub max_uri: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    /// Listeners, routes and clusters are read entry by entry, so each keeps its index.
    listen: Option<Vec<Value>>,
    h2c: Option<bool>,
    watch_conf: Option<bool>,
    admin: Option<RawAdmin>,
    resolver: Option<RawResolver>,
    drain_time: Option<ConfDuration>,
    request_headers_timeout: Option<ConfDuration>,
    idle_timeout: Option<ConfDuration>,
    max_request_headers_kb: Option<u32>,
    max_headers_count: Option<u32>,
    max_uri_length: Option<u32>,
    trusted_proxies: Option<Vec<Cidr>>,
    access_log: Option<RawAccessLog>,
    #[serde(default)]
    routes: Vec<Value>,
    #[serde(default)]
    clusters: Vec<Value>,
}

/// Reads and checks `gateway:`, each section inside it by that section's file; every error of
/// every section is kept.
pub(super) fn gateway(value: &Value, errors: &mut Errors) -> Option<Gateway> {
    let before = errors.count();
    let raw = reader::read::<RawGateway>(value, "gateway", errors)?;
    let listen = listeners(raw.listen, errors);
    let admin = admin(raw.admin, &listen, errors);
    let resolver = resolver(raw.resolver, errors);
    let drain_time = raw.drain_time.map_or(defaults::DRAIN_TIME, |d| d.0);
    let access_log = access_log(raw.access_log, errors);
    let request_headers_timeout = positive_or(
        raw.request_headers_timeout,
        defaults::REQUEST_HEADERS_TIMEOUT,
        "gateway.request_headers_timeout",
        errors,
    );
    let idle_timeout = positive_or(
        raw.idle_timeout,
        defaults::IDLE_TIMEOUT,
        "gateway.idle_timeout",
        errors,
    );
    let mut limit = |value: Option<u32>, default: u32, key: &str| {
        let v = value.unwrap_or(default);
        if v == 0 {
            errors.push(format!("gateway.{key}"), "must be at least 1");
        }
        v as usize
    };
    let limits = RequestLimits {
        max_header_bytes: limit(
            raw.max_request_headers_kb,
            defaults::MAX_REQUEST_HEADERS_KB,
            "max_request_headers_kb",
        ) * 1024,
        max_headers: limit(
            raw.max_headers_count,
            defaults::MAX_HEADERS_COUNT,
            "max_headers_count",
        ),
        max_uri: limit(
            raw.max_uri_length,
            defaults::MAX_URI_LENGTH,
            "max_uri_length",
        ),
    };
    let (clusters, defined) = clusters(&raw.clusters, errors);
    let routes = routes(&raw.routes, &defined, errors);

    if errors.count() > before {
        return None;
    }
    Some(Gateway {
        listen,
        h2c: raw.h2c.unwrap_or(defaults::H2C),
        watch_conf: raw.watch_conf.unwrap_or(defaults::WATCH_CONF),
        admin: admin?,
        resolver: resolver?,
        drain_time,
        request_headers_timeout,
        idle_timeout,
        limits,
        trusted_proxies: raw.trusted_proxies.unwrap_or_default(),
        access_log,
        routes,
        clusters,
    })
}

/// The clusters that passed, and where every named one is defined: a cluster with a bad key
/// still defines its name, so routes to it are not "unknown".
fn clusters(values: &[Value], errors: &mut Errors) -> (Vec<ClusterConfig>, HashMap<String, usize>) {
    let mut clusters = Vec::new();
    let mut defined: HashMap<String, usize> = HashMap::new();
    for (i, value) in values.iter().enumerate() {
        let path = format!("gateway.clusters[{i}]");
        let Some(raw) = reader::read::<RawCluster>(value, &path, errors) else {
            continue;
        };
        if let Some(name) = &raw.name {
            match defined.get(name) {
                Some(first) => errors.push(
                    format!("{path}.name"),
                    format!(
                        "duplicate cluster name `{name}` (first defined at gateway.clusters[{first}])"
                    ),
                ),
                None => {
                    defined.insert(name.clone(), i);
                }
            }
        }
        if let Some(c) = cluster(raw, &path, errors) {
            clusters.push(c);
        }
    }
    (clusters, defined)
}

fn routes(values: &[Value], clusters: &HashMap<String, usize>, errors: &mut Errors) -> Vec<Route> {
    let mut routes = Earlier::default();
    for (i, value) in values.iter().enumerate() {
        let path = format!("gateway.routes[{i}]");
        let Some(raw) = reader::read::<RawRoute>(value, &path, errors) else {
            continue;
        };
        if let Some(r) = route(raw, &path, clusters, &routes, errors) {
            routes.push(path, r);
        }
    }
    routes.into_routes()
}
