//! Typed confs: the `routes:` and `clusters:` entries of a test's `gateway:` section, built with
//! methods named after the conf keys and rendered to YAML by serde, so that a test reads as the
//! scenario rather than as `format!`ed YAML:
//!
//! ```ignore
//! Gateway::builder()
//!     .nameserver(dns.addr())
//!     .route(Route::prefix("/").to("service1"))
//!     .cluster(
//!         Cluster::new("service1")
//!             .dns("service1.test", port)
//!             .refresh("300ms")
//!             .retries(2)
//!             .health_check(HealthCheck::http().interval("200ms").timeout("200ms")),
//!     )
//!     .start();
//! ```
//!
//! Only the keys a test sets are written: every other key keeps headway's default, exactly as
//! when the test wrote the YAML by hand. Durations are conf strings (`"300ms"`, `"30s"`). A key
//! without a method here can still be set raw with `.key(name, yaml)`.
//!
//! A route's `filters:` are [`Filter`]s, in order: the filter's name, then its own settings,
//! each a key of that filter and a typed value (a number, a string, a path, a list, a [`map`]):
//!
//! ```ignore
//! Route::prefix("/api").to("api").filter(
//!     Filter::new("rate_limit")
//!         .set("requests_per_unit", 2)
//!         .set("unit", "second")
//!         .set("burst", 3),
//! )
//! ```

use serde::Serialize;
use serde_yaml::{Mapping, Value};

/// One entry of `gateway.clusters`.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lb_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_policy: Option<Vec<HashKey>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_refresh_rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_failure_refresh_rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_min_refresh_rate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    respect_dns_ttl: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_on: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_try_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_budget: Option<RetryBudget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outlier_detection: Option<Outlier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit_breakers: Option<CircuitBreakers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy_panic_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<UpstreamTls>,
    /// Keys set raw with [`Cluster::key`].
    #[serde(flatten)]
    more: Mapping,
}

impl Cluster {
    /// `name: <name>`; nothing else set.
    pub fn new(name: &str) -> Cluster {
        Cluster {
            name: name.to_owned(),
            address: None,
            port: None,
            protocol: None,
            lb_policy: None,
            hash_policy: None,
            dns_refresh_rate: None,
            dns_failure_refresh_rate: None,
            dns_min_refresh_rate: None,
            respect_dns_ttl: None,
            connect_timeout: None,
            timeout: None,
            idle_timeout: None,
            tunnel_timeout: None,
            retries: None,
            retry_on: None,
            per_try_timeout: None,
            retry_budget: None,
            outlier_detection: None,
            circuit_breakers: None,
            healthy_panic_threshold: None,
            health_check: None,
            tls: None,
            more: Mapping::new(),
        }
    }

    /// `address: <name>` (found by DNS) and `port: <port>`.
    pub fn dns(self, name: &str, port: u16) -> Cluster {
        self.address(name, port)
    }

    /// `address: <address>` (a DNS name or an IP) and `port: <port>`.
    pub fn address(mut self, address: &str, port: u16) -> Cluster {
        self.address = Some(address.to_owned());
        self.port = Some(port);
        self
    }

    /// `address: <name>` and `discovery: srv`: backends and their ports from the SRV records
    /// of `name` (no `port`).
    pub fn srv(mut self, name: &str) -> Cluster {
        self.address = Some(name.to_owned());
        self.key("discovery", "srv")
    }

    /// `protocol: <protocol>` (`http1`, `h2c`, …).
    pub fn protocol(mut self, protocol: &str) -> Cluster {
        self.protocol = Some(protocol.to_owned());
        self
    }

    /// `lb_policy: <policy>`.
    pub fn lb_policy(mut self, policy: &str) -> Cluster {
        self.lb_policy = Some(policy.to_owned());
        self
    }

    /// `hash_policy: [<keys>]` (for `ring_hash` and `maglev`).
    pub fn hash_policy(mut self, keys: &[HashKey]) -> Cluster {
        self.hash_policy = Some(keys.to_vec());
        self
    }

    /// `dns_refresh_rate: <rate>`.
    pub fn refresh(mut self, rate: &str) -> Cluster {
        self.dns_refresh_rate = Some(rate.to_owned());
        self
    }

    /// `dns_failure_refresh_rate: <rate>`.
    pub fn failure_refresh(mut self, rate: &str) -> Cluster {
        self.dns_failure_refresh_rate = Some(rate.to_owned());
        self
    }

    /// `dns_min_refresh_rate: <rate>`.
    pub fn min_refresh(mut self, rate: &str) -> Cluster {
        self.dns_min_refresh_rate = Some(rate.to_owned());
        self
    }

    /// `respect_dns_ttl: <respect>`.
    pub fn respect_dns_ttl(mut self, respect: bool) -> Cluster {
        self.respect_dns_ttl = Some(respect);
        self
    }

    /// `connect_timeout: <timeout>`.
    pub fn connect_timeout(mut self, timeout: &str) -> Cluster {
        self.connect_timeout = Some(timeout.to_owned());
        self
    }

    /// `timeout: <timeout>` (the whole request).
    pub fn timeout(mut self, timeout: &str) -> Cluster {
        self.timeout = Some(timeout.to_owned());
        self
    }

    /// `idle_timeout: <timeout>`.
    pub fn idle_timeout(mut self, timeout: &str) -> Cluster {
        self.idle_timeout = Some(timeout.to_owned());
        self
    }

    /// `tunnel_timeout: <timeout>`: how long an upgraded connection (WebSocket) may be silent.
    pub fn tunnel_timeout(mut self, timeout: &str) -> Cluster {
        self.tunnel_timeout = Some(timeout.to_owned());
        self
    }

    /// `retries: <retries>`.
    pub fn retries(mut self, retries: u32) -> Cluster {
        self.retries = Some(retries);
        self
    }

    /// `retry_on: [<conditions>]`.
    pub fn retry_on(mut self, conditions: &[&str]) -> Cluster {
        self.retry_on = Some(conditions.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    /// `per_try_timeout: <timeout>`.
    pub fn per_try_timeout(mut self, timeout: &str) -> Cluster {
        self.per_try_timeout = Some(timeout.to_owned());
        self
    }

    /// `retry_budget: { budget_percent: <percent>, min_retry_concurrency: <min> }`.
    pub fn retry_budget(mut self, budget_percent: u32, min_retry_concurrency: u32) -> Cluster {
        self.retry_budget = Some(RetryBudget {
            budget_percent,
            min_retry_concurrency,
        });
        self
    }

    /// `outlier_detection: { .. }`.
    pub fn outlier(mut self, outlier: Outlier) -> Cluster {
        self.outlier_detection = Some(outlier);
        self
    }

    /// `circuit_breakers: { max_requests: <max> }` (beside the breakers' other keys set here).
    pub fn max_requests(mut self, max: u32) -> Cluster {
        self.circuit_breakers
            .get_or_insert_with(CircuitBreakers::default)
            .max_requests = Some(max);
        self
    }

    /// `circuit_breakers: { max_connections: <max> }` (beside the breakers' other keys set here).
    pub fn max_connections(mut self, max: u32) -> Cluster {
        self.circuit_breakers
            .get_or_insert_with(CircuitBreakers::default)
            .max_connections = Some(max);
        self
    }

    /// `circuit_breakers: { max_pending_requests: <max> }` (beside the breakers' other keys).
    pub fn max_pending_requests(mut self, max: u32) -> Cluster {
        self.circuit_breakers
            .get_or_insert_with(CircuitBreakers::default)
            .max_pending_requests = Some(max);
        self
    }

    /// `healthy_panic_threshold: <percent>`.
    pub fn healthy_panic_threshold(mut self, percent: u32) -> Cluster {
        self.healthy_panic_threshold = Some(percent);
        self
    }

    /// `health_check: { .. }`.
    pub fn health_check(mut self, check: HealthCheck) -> Cluster {
        self.health_check = Some(check);
        self
    }

    /// `health_check: { type: http, path: <path>, interval: <interval> }`.
    pub fn health_http(self, path: &str, interval: &str) -> Cluster {
        self.health_check(HealthCheck::http().path(path).interval(interval))
    }

    /// `tls: { … }`: the backends are reached over TLS.
    pub fn tls(mut self, tls: UpstreamTls) -> Cluster {
        self.tls = Some(tls);
        self
    }

    /// Any other key, its value raw YAML (e.g. `.key("hash_policy", "[{ header: x-user }]")`).
    pub fn key(mut self, key: &str, yaml: &str) -> Cluster {
        self.more.insert(Value::from(key), raw(key, yaml));
        self
    }
}

/// A cluster's `tls`: only the keys set are written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpn: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_version: Option<String>,
}

impl UpstreamTls {
    /// `tls: {}`: the system roots, SNI from the cluster's address, `[http/1.1]`.
    pub fn new() -> UpstreamTls {
        UpstreamTls::default()
    }

    /// `ca: <file>`.
    pub fn ca(mut self, file: &std::path::Path) -> UpstreamTls {
        self.ca = Some(file.display().to_string());
        self
    }

    /// `sni: <name>`.
    pub fn sni(mut self, name: &str) -> UpstreamTls {
        self.sni = Some(name.to_owned());
        self
    }

    /// `cert: <file>` and `key: <file>`: the client certificate (mutual TLS).
    pub fn client_cert(mut self, cert: &std::path::Path, key: &std::path::Path) -> UpstreamTls {
        self.cert = Some(cert.display().to_string());
        self.key = Some(key.display().to_string());
        self
    }

    /// `alpn: [<protocols>]`.
    pub fn alpn(mut self, protocols: &[&str]) -> UpstreamTls {
        self.alpn = Some(protocols.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// `min_version: <version>`.
    pub fn min_version(mut self, version: &str) -> UpstreamTls {
        self.min_version = Some(version.to_owned());
        self
    }
}

/// A cluster's `health_check`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unhealthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reuse_connection: Option<bool>,
}

impl HealthCheck {
    /// `type: http`, the other keys at their defaults.
    pub fn http() -> HealthCheck {
        HealthCheck::of("http")
    }

    /// `type: tcp`, the other keys at their defaults.
    pub fn tcp() -> HealthCheck {
        HealthCheck::of("tcp")
    }

    fn of(kind: &'static str) -> HealthCheck {
        HealthCheck {
            kind,
            path: None,
            host: None,
            interval: None,
            timeout: None,
            healthy_threshold: None,
            unhealthy_threshold: None,
            reuse_connection: None,
        }
    }

    pub fn path(mut self, path: &str) -> HealthCheck {
        self.path = Some(path.to_owned());
        self
    }

    pub fn host(mut self, host: &str) -> HealthCheck {
        self.host = Some(host.to_owned());
        self
    }

    pub fn interval(mut self, interval: &str) -> HealthCheck {
        self.interval = Some(interval.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: &str) -> HealthCheck {
        self.timeout = Some(timeout.to_owned());
        self
    }

    pub fn healthy_threshold(mut self, probes: u32) -> HealthCheck {
        self.healthy_threshold = Some(probes);
        self
    }

    pub fn unhealthy_threshold(mut self, probes: u32) -> HealthCheck {
        self.unhealthy_threshold = Some(probes);
        self
    }

    /// `reuse_connection: <keep>` (default true: a probe connection kept per backend).
    #[allow(dead_code)] // not every test target uses it
    pub fn reuse_connection(mut self, keep: bool) -> HealthCheck {
        self.reuse_connection = Some(keep);
        self
    }
}

/// A cluster's `outlier_detection`; [`Outlier::new`] sets no key (all defaults).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outlier {
    #[serde(skip_serializing_if = "Option::is_none")]
    consecutive_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_ejection_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ejection_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ejection_percent: Option<u32>,
}

impl Outlier {
    pub fn new() -> Outlier {
        Outlier::default()
    }

    /// `consecutive_failures: <n>` (0 turns outlier detection off).
    pub fn consecutive_failures(mut self, n: u32) -> Outlier {
        self.consecutive_failures = Some(n);
        self
    }

    pub fn base_ejection_time(mut self, time: &str) -> Outlier {
        self.base_ejection_time = Some(time.to_owned());
        self
    }

    pub fn max_ejection_time(mut self, time: &str) -> Outlier {
        self.max_ejection_time = Some(time.to_owned());
        self
    }

    pub fn max_ejection_percent(mut self, percent: u32) -> Outlier {
        self.max_ejection_percent = Some(percent);
        self
    }
}

/// One key of a cluster's `hash_policy`: `{ header: <name> }`, `{ cookie: <name> }` or
/// `{ source_ip: true }`.
/// (A struct, not an enum: serde_yaml would write an enum's variant as a YAML tag.)
#[derive(Debug, Clone, Default, Serialize)]
pub struct HashKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_ip: Option<bool>,
}

impl HashKey {
    pub fn header(name: &str) -> HashKey {
        HashKey {
            header: Some(name.to_owned()),
            ..HashKey::default()
        }
    }

    pub fn cookie(name: &str) -> HashKey {
        HashKey {
            cookie: Some(name.to_owned()),
            ..HashKey::default()
        }
    }

    pub fn source_ip() -> HashKey {
        HashKey {
            source_ip: Some(true),
            ..HashKey::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct RetryBudget {
    budget_percent: u32,
    min_retry_concurrency: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
struct CircuitBreakers {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pending_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_requests: Option<u32>,
}

/// One entry of `gateway.routes`: a match (`Route::prefix`, `Route::path`, `Route::regex`) and
/// the cluster it goes `to`.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domains: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_rewrite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_rewrite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    request_headers_to_add: Vec<Header>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    request_headers_to_remove: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    response_headers_to_add: Vec<Header>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    response_headers_to_remove: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direct_response: Option<DirectResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    filters: Vec<Filter>,
    /// Keys set raw with [`Route::key`].
    #[serde(flatten)]
    more: Mapping,
}

impl Route {
    /// `prefix: <prefix>`.
    pub fn prefix(prefix: &str) -> Route {
        Route {
            prefix: Some(prefix.to_owned()),
            ..Route::none()
        }
    }

    /// `path: <path>` (exact match).
    pub fn path(path: &str) -> Route {
        Route {
            path: Some(path.to_owned()),
            ..Route::none()
        }
    }

    /// `regex: <regex>`.
    pub fn regex(regex: &str) -> Route {
        Route {
            regex: Some(regex.to_owned()),
            ..Route::none()
        }
    }

    fn none() -> Route {
        Route {
            prefix: None,
            path: None,
            regex: None,
            domains: None,
            cluster: None,
            prefix_rewrite: None,
            host_rewrite: None,
            timeout: None,
            request_headers_to_add: Vec::new(),
            request_headers_to_remove: Vec::new(),
            response_headers_to_add: Vec::new(),
            response_headers_to_remove: Vec::new(),
            direct_response: None,
            max_request_body_bytes: None,
            filters: Vec::new(),
            more: Mapping::new(),
        }
    }

    /// `cluster: <cluster>`.
    pub fn to(mut self, cluster: &str) -> Route {
        self.cluster = Some(cluster.to_owned());
        self
    }

    /// `domains: [<domains>]`.
    pub fn domains(mut self, domains: &[&str]) -> Route {
        self.domains = Some(domains.iter().map(|d| (*d).to_owned()).collect());
        self
    }

    pub fn prefix_rewrite(mut self, rewrite: &str) -> Route {
        self.prefix_rewrite = Some(rewrite.to_owned());
        self
    }

    pub fn host_rewrite(mut self, host: &str) -> Route {
        self.host_rewrite = Some(host.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Route {
        self.timeout = Some(timeout.to_owned());
        self
    }

    /// `direct_response: { status: <status>, body: <body> }`: answered by the gateway itself.
    pub fn direct_response(mut self, status: u16, body: &str) -> Route {
        self.direct_response = Some(DirectResponse {
            status,
            body: Some(body.to_owned()),
        });
        self
    }

    /// One more `request_headers_to_add` entry: `{ key: <name>, value: <value> }`.
    pub fn add_request_header(mut self, name: &str, value: &str) -> Route {
        self.request_headers_to_add.push(Header::new(name, value));
        self
    }

    /// One more `request_headers_to_remove` entry.
    pub fn remove_request_header(mut self, name: &str) -> Route {
        self.request_headers_to_remove.push(name.to_owned());
        self
    }

    /// One more `response_headers_to_add` entry: `{ key: <name>, value: <value> }`.
    pub fn add_response_header(mut self, name: &str, value: &str) -> Route {
        self.response_headers_to_add.push(Header::new(name, value));
        self
    }

    /// One more `response_headers_to_remove` entry.
    pub fn remove_response_header(mut self, name: &str) -> Route {
        self.response_headers_to_remove.push(name.to_owned());
        self
    }

    /// `max_request_body_bytes: <bytes>`.
    pub fn max_request_body_bytes(mut self, bytes: u64) -> Route {
        self.max_request_body_bytes = Some(bytes);
        self
    }

    /// One more `filters` entry: the filters run in the order they are added.
    pub fn filter(mut self, filter: Filter) -> Route {
        self.filters.push(filter);
        self
    }

    /// Any other key, its value raw YAML (e.g. `.key("timout", "1s")`, for a conf that must be
    /// refused).
    pub fn key(mut self, key: &str, yaml: &str) -> Route {
        self.more.insert(Value::from(key), raw(key, yaml));
        self
    }
}

/// One entry of a route's `filters:`: `name: <name>` and the filter's own settings. The
/// settings are the filter's (a program may bring filters of its own), so their keys are named
/// here as the conf names them, their values typed.
#[derive(Debug, Clone, Serialize)]
pub struct Filter {
    name: String,
    #[serde(flatten)]
    settings: Mapping,
}

impl Filter {
    /// `name: <name>`, no settings: the filter's defaults.
    pub fn new(name: &str) -> Filter {
        Filter {
            name: name.to_owned(),
            settings: Mapping::new(),
        }
    }

    /// `<key>: <value>`, e.g. `.set("burst", 3)`, `.set("allow", ["10.0.0.0/8"])`,
    /// `.set("jwks_file", dir.join("jwks.json"))`, `.set("levels", map(&[("gzip", 1)]))`.
    pub fn set(mut self, key: &str, value: impl Serialize) -> Filter {
        self.settings.insert(Value::from(key), value_of(key, value));
        self
    }
}

/// A mapping among a filter's settings, its entries in order: `map(&[("claim", "sub"),
/// ("header", "x-user")])` is `{ claim: sub, header: x-user }`.
pub fn map<V: Serialize>(entries: &[(&str, V)]) -> Value {
    Value::Mapping(
        entries
            .iter()
            .map(|(key, value)| (Value::from(*key), value_of(key, value)))
            .collect(),
    )
}

fn value_of(key: &str, value: impl Serialize) -> Value {
    serde_yaml::to_value(value).unwrap_or_else(|e| panic!("conf: `{key}` has no YAML value: {e}"))
}

#[derive(Debug, Clone, Serialize)]
struct Header {
    key: String,
    value: String,
}

impl Header {
    fn new(key: &str, value: &str) -> Header {
        Header {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct DirectResponse {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// The items of a YAML list (`- ...` lines, flush-left), as serde_yaml writes them.
pub(crate) fn yaml_items<T: Serialize>(items: &[T]) -> String {
    if items.is_empty() {
        return String::new();
    }
    serde_yaml::to_string(items)
        .unwrap_or_else(|e| panic!("conf: cannot render {} items as YAML: {e}", items.len()))
}

fn raw(key: &str, yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("conf: `{key}: {yaml}` is not YAML: {e}"))
}
