//! The conf file: pingora's server keys at the top level, headway's under `gateway:`.
//!
//! Loading is two steps. `raw` reads the YAML strictly (unknown keys are errors); [`validate`]
//! turns it into the typed [`Config`] the runtime uses, filling defaults from [`defaults`] (the
//! only place they live) and collecting *every* problem as `path: reason` before anything binds.

pub mod duration;
mod raw;
mod routes;

pub use routes::{PathMatch, Route, RouteAction};

use pingora::server::configuration::ServerConf;
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every default of the conf file, with the Envoy setting it corresponds to.
pub mod defaults {
    use std::time::Duration;

    /// `gateway.listen` (Envoy: listener `socket_address`).
    pub const LISTEN: &str = "0.0.0.0:8000";
    /// `gateway.h2c`: plain listeners also accept HTTP/2 with prior knowledge (Envoy: `codec_type:
    /// AUTO`). Off by default: pingora then waits for 24 bytes (the HTTP/2 preface's length)
    /// before anything else, with no timeout, so a shorter request — `OPTIONS / HTTP/1.0` as
    /// HAProxy's health check sends it — would never be answered.
    pub const H2C: bool = false;
    /// `gateway.admin.listen` (Envoy: `admin.address`; loopback so it is never public by accident).
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";
    /// `gateway.drain_time`: after SIGTERM, how long the listeners keep serving while `/ready`
    /// answers 503, so load balancers stop sending before they close (Envoy: `--drain-time-s`).
    pub const DRAIN_TIME: Duration = Duration::from_secs(2);
    /// `gateway.request_headers_timeout`: a new connection's request headers must be complete
    /// within this (Envoy: HCM `request_headers_timeout`, off by default; nginx:
    /// `client_header_timeout`, 60 s).
    pub const REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
    /// `gateway.idle_timeout`: a kept-alive client connection may wait this long for its next
    /// request, and a response its client does not read for this long is abandoned (Envoy: HCM
    /// `idle_timeout`, 1 h; nginx: `keepalive_timeout`, 75 s).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `gateway.max_request_headers_kb`: larger request headers get 431 (Envoy: same name, 60).
    pub const MAX_REQUEST_HEADERS_KB: u32 = 60;
    /// `gateway.max_headers_count`: more request headers get 431 (Envoy: same name, 100).
    pub const MAX_HEADERS_COUNT: u32 = 100;
    /// `gateway.max_uri_length`: longer request targets get 414 (nginx's large buffer: 8 KiB).
    pub const MAX_URI_LENGTH: u32 = 8192;
    /// `gateway.access_log.path`: `stderr`, or a file appended to.
    pub const ACCESS_LOG_PATH: &str = "stderr";
    /// `gateway.resolver.resolv_conf`: search domains, ndots and nameservers, as a pod's resolver.
    pub const RESOLV_CONF: &str = "/etc/resolv.conf";
    /// `gateway.resolver.timeout`: one DNS query attempt.
    pub const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);
    /// `gateway.resolver.attempts`: query attempts per lookup before it counts as a failure.
    pub const RESOLVER_ATTEMPTS: u32 = 2;
    /// `dns_refresh_rate` (Envoy: same name, 5000 ms).
    pub const DNS_REFRESH_RATE: Duration = Duration::from_secs(5);
    /// `dns_failure_refresh_rate`: first retry after a resolver error; doubles on each further
    /// failure up to `dns_refresh_rate` (Envoy: `dns_failure_refresh_rate.base_interval`).
    pub const DNS_FAILURE_REFRESH_RATE: Duration = Duration::from_secs(1);
    /// `dns_min_refresh_rate`: floor under the TTL when `respect_dns_ttl` is on (Envoy: same name, 5 s).
    pub const DNS_MIN_REFRESH_RATE: Duration = Duration::from_secs(1);
    /// `respect_dns_ttl` (Envoy: same name, false).
    pub const RESPECT_DNS_TTL: bool = false;
    /// `connect_timeout` (Envoy: same name, 5 s; pods answer a SYN in well under a second).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// `timeout` (Envoy: route `timeout`, 15 s).
    pub const TIMEOUT: Duration = Duration::from_secs(15);
    /// A cluster's `idle_timeout`: how long an idle upstream connection stays pooled (Envoy:
    /// `common_http_protocol_options.idle_timeout`, 1 h; nginx: upstream `keepalive_timeout`,
    /// 60 s). Below the keep-alive timeouts of common backends (Node's `http` 5 s, Apache 5 s,
    /// nginx 75 s, Go 90 s) so the gateway, not the backend, usually closes an idle connection:
    /// a backend that closes one just as a request is sent on it costs a retry.
    pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    /// `tunnel_timeout`: an upgraded connection (WebSocket) with no traffic either way is
    /// closed after this long; `timeout` no longer applies once it is upgraded (HAProxy:
    /// `timeout tunnel`; Envoy: `stream_idle_timeout`, 5 min; nginx: `proxy_read_timeout`, 60 s).
    pub const TUNNEL_TIMEOUT: Duration = Duration::from_secs(3600);
    /// `retries` (Envoy: `retry_policy.num_retries`, 1).
    pub const RETRIES: u32 = 1;
    /// Upper bound on `retries`, so a typo cannot turn one request into a storm.
    pub const MAX_RETRIES: u32 = 10;
    /// `retry_on` (Envoy: `retry_policy.retry_on`, empty there without a retry policy).
    pub const RETRY_ON: &str = "connect-failure, reset, gateway-error";
    /// `retry_budget.budget_percent` (Envoy: same name, 20 %).
    pub const RETRY_BUDGET_PERCENT: u32 = 20;
    /// `retry_budget.min_retry_concurrency` (Envoy: same name, 3).
    pub const MIN_RETRY_CONCURRENCY: u32 = 3;
    /// `outlier_detection.consecutive_failures` (Envoy: `consecutive_5xx`, 5); 0 turns passive
    /// health off.
    pub const CONSECUTIVE_FAILURES: u32 = 5;
    /// `outlier_detection.base_ejection_time` (Envoy: same name, 30 s).
    pub const BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
    /// `outlier_detection.max_ejection_time` (Envoy: same name, 300 s).
    pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
    /// `outlier_detection.max_ejection_percent` (Envoy: same name, 10 %; one backend can always
    /// be ejected).
    pub const MAX_EJECTION_PERCENT: u32 = 10;
    /// `circuit_breakers.max_*` (Envoy: same names, 1024 each).
    pub const CIRCUIT_BREAKER_LIMIT: u32 = 1024;
    /// `healthy_panic_threshold` in percent (Envoy: same name, 50 %); 0 turns panic mode off.
    pub const HEALTHY_PANIC_THRESHOLD: u32 = 50;
    /// `health_check.path` (Envoy: `http_health_check.path`, required there).
    pub const HEALTH_PATH: &str = "/healthz";
    /// `health_check.interval` (Envoy: `interval`, required there).
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
    /// `health_check.timeout` (Envoy: `timeout`, required there).
    pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);
    /// `health_check.healthy_threshold` (Envoy: same name).
    pub const HEALTHY_THRESHOLD: u32 = 1;
    /// `health_check.unhealthy_threshold` (Envoy: same name).
    pub const UNHEALTHY_THRESHOLD: u32 = 2;
    /// pingora's `grace_period_seconds` when the conf omits it (pingora's own default is 300 s,
    /// which would stall every SIGTERM for five minutes).
    pub const GRACE_PERIOD_SECONDS: u64 = 5;
    /// pingora's `graceful_shutdown_timeout_seconds` when the conf omits it.
    pub const GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;
    /// pingora's `work_stealing` when the conf omits it (pingora's own default is true): each
    /// worker thread runs its own connections, as Envoy's and HAProxy's workers do. Measured
    /// with one thread, ~5% more keep-alive throughput than the work-stealing runtime
    /// (bench/README.md); set `work_stealing: true` when a few long, busy connections would
    /// leave other threads idle.
    pub const WORK_STEALING: bool = false;
    /// pingora's `fast_timeout_to_tokio_threshold_seconds` when the conf omits it (pingora: 900):
    /// 0 puts every I/O timeout on tokio's timer. pingora's own timer runs a clock thread that
    /// wakes 100 times a second for ever, which was the idle gateway's whole CPU (~3 ms/s);
    /// per request the two cost the same (callgrind: 94k vs 96k instructions).
    pub const FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS: u64 = 0;
    /// pingora's `pid_file` when the conf omits it.
    pub const PID_FILE: &str = "/tmp/headway.pid";
    /// pingora's `upgrade_sock` when the conf omits it.
    pub const UPGRADE_SOCK: &str = "/tmp/headway_upgrade.sock";
}

/// A loaded, validated conf file.
#[derive(Debug)]
pub struct Config {
    /// pingora's own settings (threads, pid file, grace periods, …).
    pub server: ServerConf,
    pub gateway: Gateway,
}

/// A proxy listener: plain TCP, or TLS-terminating with HTTP/2 offered by ALPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
}

/// PEM files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub listen: Vec<Listener>,
    /// Accept HTTP/2 with prior knowledge (h2c) on plain listeners, beside HTTP/1.1.
    pub h2c: bool,
    pub admin: Admin,
    pub resolver: ResolverSettings,
    /// After SIGTERM: serve on with `/ready` at 503 and `Connection: close` for this long.
    pub drain_time: Duration,
    pub request_headers_timeout: Duration,
    pub idle_timeout: Duration,
    pub limits: RequestLimits,
    /// Peers whose `X-Forwarded-For` is kept (and appended to); anyone else's is replaced.
    pub trusted_proxies: Vec<Cidr>,
    pub access_log: AccessLogConfig,
    /// In order: the first matching route wins.
    pub routes: Vec<Route>,
    pub clusters: Vec<ClusterConfig>,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// Limits on a request's head, each answered with its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// 431 above this many bytes of headers (names and values).
    pub max_header_bytes: usize,
    /// 431 above this many headers.
    pub max_headers: usize,
    /// 414 above this many bytes of request target.
    pub max_uri: usize,
}

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{text}` is not an address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// One line per request; see `crate::access_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// None: stderr.
    pub path: Option<PathBuf>,
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs after a timestamp.
    Plain,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// When empty, the nameservers of `resolv_conf` are used.
    pub nameservers: Vec<SocketAddr>,
    /// Read for search domains and ndots always, and for nameservers when none are configured.
    pub resolv_conf: PathBuf,
    pub timeout: Duration,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub address: Address,
    pub port: u16,
    pub protocol: UpstreamProtocol,
    pub lb_policy: LbPolicy,
    /// For `ring_hash` and `maglev`: where the key comes from; the first that yields one wins.
    pub hash_policy: Vec<HashKey>,
    pub dns: DnsSettings,
    pub connect_timeout: Duration,
    /// Whole request, retries included, until the upstream's response headers arrive.
    pub timeout: Duration,
    /// How long an idle upstream connection stays in the pool.
    pub idle_timeout: Duration,
    /// How long an upgraded connection may go without traffic.
    pub tunnel_timeout: Duration,
    /// Further attempts, each on a different backend.
    pub retries: u32,
    pub retry: RetryPolicy,
    pub outlier: OutlierDetection,
    pub breakers: CircuitBreakers,
    /// Percent of probed backends below which health is ignored (0: never).
    pub healthy_panic_threshold: u32,
    pub health_check: Option<HealthCheckConfig>,
}

/// When a failed attempt is tried again on another backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub on: RetryOn,
    /// Each attempt's limit until response headers; None: only the request's `timeout`.
    pub per_try_timeout: Option<Duration>,
    pub budget_percent: u32,
    pub min_retry_concurrency: u32,
}

/// The conditions of `retry_on`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// The connection could not be made (nothing was sent: safe for any method).
    pub connect_failure: bool,
    /// The connection broke or timed out before the response headers.
    pub reset: bool,
    /// 502, 503 or 504 from the upstream, or a per-try timeout.
    pub gateway_error: bool,
    /// Any 5xx from the upstream, or a per-try timeout.
    pub any_5xx: bool,
    /// These statuses from the upstream.
    pub statuses: Vec<u16>,
}

impl RetryOn {
    /// Whether an upstream response with `status` is worth another backend.
    pub fn status(&self, status: u16) -> bool {
        (self.any_5xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || self.statuses.contains(&status)
    }

    /// Whether a per-try timeout is worth another backend.
    pub fn timeout(&self) -> bool {
        self.any_5xx || self.gateway_error || self.reset
    }
}

/// Passive health: backends failing in a row are ejected for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Failures in a row (5xx, connect failures, resets, timeouts) that eject; 0: off.
    pub consecutive_failures: u32,
    /// Ejection time = base × times ejected so far, up to `max_ejection_time`.
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// Overflow is answered at once with 503, never queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Upstream connections in use at once (one per request in flight over HTTP/1.1).
    pub max_connections: u32,
    /// Requests waiting for an upstream connection.
    pub max_pending_requests: u32,
    /// Requests to the cluster at once, retries included.
    pub max_requests: u32,
}

/// What a cluster's `address` names.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Consistent hashing on a ring (Ketama).
    RingHash,
    /// Consistent hashing with Maglev's lookup table.
    Maglev,
}

impl LbPolicy {
    pub fn name(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::Random => "random",
            LbPolicy::LeastRequest => "least_request",
            LbPolicy::RingHash => "ring_hash",
            LbPolicy::Maglev => "maglev",
        }
    }

    pub fn hashes(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// What a consistent-hashing policy hashes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value (name lowercase).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    SourceIp,
}

/// How the gateway talks to a cluster's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 cleartext with prior knowledge (h2c), as gRPC backends and Envoy's
    /// `http2_protocol_options` expect.
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSettings {
    pub refresh_rate: Duration,
    pub failure_refresh_rate: Duration,
    pub min_refresh_rate: Duration,
    pub respect_ttl: bool,
    pub lookup_family: LookupFamily,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFamily {
    /// A records only (the default: Kubernetes clusters are IPv4 unless told otherwise).
    V4Only,
    /// AAAA records only.
    V6Only,
    /// A records, or AAAA when there are none.
    V4Preferred,
    /// AAAA records, or A when there are none (Envoy's `AUTO`).
    Auto,
    /// Both A and AAAA records.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `GET path` with `Host: host` (the cluster's address unless set); any 2xx passes.
    Http { path: String, host: Option<String> },
    /// A TCP connect passes.
    Tcp,
}

/// Everything wrong with a conf file, one `path: reason` line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(f, "{n} error{} in conf:", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects `path: reason` lines.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    /// One line per error, whatever the conf text it echoes: control characters are escaped.
    fn push(&mut self, path: impl fmt::Display, reason: impl fmt::Display) {
        let line = format!("{path}: {reason}");
        self.0.push(if line.chars().any(char::is_control) {
            line.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            line
        });
    }

    /// Runs a parse, keeps its value, records its error under `path`.
    fn check<T>(&mut self, path: impl fmt::Display, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|reason| self.push(path, reason)).ok()
    }
}

impl Config {
    /// Reads and validates the conf file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            errors: vec![format!("{}: cannot read conf file: {e}", path.display())],
        })?;
        Config::from_yaml(&text)
    }

    /// Parses and validates conf text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let mut errors = Errors::default();
        let config = parse(text, &mut errors);
        match config {
            Some(config) if errors.0.is_empty() => Ok(config),
            _ => Err(ConfigError { errors: errors.0 }),
        }
    }
}

fn parse(text: &str, errors: &mut Errors) -> Option<Config> {
    let document: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errors.push("conf", format!("not valid YAML: {e}"));
            return None;
        }
    };
    let Value::Mapping(mut top) = document else {
        errors.push(
            "conf",
            "expected a mapping of keys (version, threads, gateway, …)",
        );
        return None;
    };
    let gateway = top.remove("gateway");
    let server = server_conf(top, errors);
    let Some(gateway) = gateway else {
        errors.push("gateway", "missing: headway's settings go under `gateway:`");
        return None;
    };
    let gateway = deserialize::<raw::Gateway>(gateway, "gateway", errors)?;
    let gateway = validate(gateway, errors);
    Some(Config {
        server: server?,
        gateway: gateway?,
    })
}

/// pingora's keys: anything it does not know is an error here, although pingora itself would
/// silently ignore it, so that `grace_period_second: 5` cannot pass unnoticed.
fn server_conf(mut top: Mapping, errors: &mut Errors) -> Option<ServerConf> {
    let known = known_server_keys();
    let mut unknown = false;
    for key in top.keys() {
        // A key that would not read as a path (empty, spaced, with `:` or control characters)
        // is quoted, so the error line stays `path: reason`.
        let name = match key {
            Value::String(s)
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) =>
            {
                s.clone()
            }
            Value::String(s) => format!("{s:?}"),
            other => format!("{other:?}"),
        };
        if !known.contains(&name) {
            unknown = true;
            let hint = closest(&name, known.iter().map(String::as_str).chain(["gateway"]))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            errors.push(
                &name,
                format!("unknown key{hint}: top-level keys are pingora's server settings; headway's go under `gateway:`"),
            );
        }
    }
    if unknown {
        return None;
    }
    let mut apply_default = |key: &str, value: Value| {
        if !top.contains_key(key) {
            top.insert(Value::from(key), value);
        }
    };
    apply_default(
        "grace_period_seconds",
        Value::from(defaults::GRACE_PERIOD_SECONDS),
    );
    apply_default(
        "graceful_shutdown_timeout_seconds",
        Value::from(defaults::GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS),
    );
    apply_default("work_stealing", Value::from(defaults::WORK_STEALING));
    apply_default(
        "fast_timeout_to_tokio_threshold_seconds",
        Value::from(defaults::FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS),
    );
    apply_default("pid_file", Value::from(defaults::PID_FILE));
    apply_default("upgrade_sock", Value::from(defaults::UPGRADE_SOCK));
    let conf = deserialize::<ServerConf>(Value::Mapping(top), "", errors)?;
    match conf.validate() {
        Ok(conf) => Some(conf),
        Err(e) => {
            errors.push("conf", e);
            None
        }
    }
}

fn known_server_keys() -> Vec<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Deserializes `value`, reporting a failure with its full path below `prefix`.
fn deserialize<T: serde::de::DeserializeOwned>(
    value: Value,
    prefix: &str,
    errors: &mut Errors,
) -> Option<T> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| {
            let inner = e.path().to_string();
            let path = match (prefix.is_empty(), inner.as_str()) {
                (true, ".") => "conf".to_owned(),
                (true, _) => inner,
                (false, ".") => prefix.to_owned(),
                (false, _) if inner.starts_with('[') => format!("{prefix}{inner}"),
                (false, _) => format!("{prefix}.{inner}"),
            };
            errors.push(path, e.into_inner());
        })
        .ok()
}

fn validate(raw: raw::Gateway, errors: &mut Errors) -> Option<Gateway> {
    let before = errors.0.len();

    let listen_values = raw
        .listen
        .unwrap_or_else(|| vec![Value::from(defaults::LISTEN)]);
    if listen_values.is_empty() {
        errors.push(
            "gateway.listen",
            "empty: give at least one address, e.g. [\"0.0.0.0:8000\"]",
        );
    }
    let mut listen: Vec<Listener> = Vec::new();
    for (i, value) in listen_values.into_iter().enumerate() {
        let path = format!("gateway.listen[{i}]");
        let listener = match value {
            Value::String(text) => errors
                .check(&path, socket_addr(&text))
                .map(|addr| Listener { addr, tls: None }),
            other => deserialize::<raw::Listener>(other, &path, errors).and_then(|l| {
                let addr = errors.check(format!("{path}.address"), socket_addr(&l.address))?;
                let tls = l.tls.map(|t| TlsFiles {
                    cert: PathBuf::from(t.cert),
                    key: PathBuf::from(t.key),
                });
                Some(Listener { addr, tls })
            }),
        };
        if let Some(l) = listener {
            if listen.iter().any(|e| same_socket(e.addr, l.addr)) {
                errors.push(&path, format!("`{}` is listed twice", l.addr));
            }
            listen.push(l);
        }
    }

    let admin_text = raw
        .admin
        .and_then(|a| a.listen)
        .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_owned());
    let admin = errors.check("gateway.admin.listen", socket_addr(&admin_text));
    if let Some(admin) = admin {
        if listen.iter().any(|l| same_socket(l.addr, admin)) {
            errors.push(
                "gateway.admin.listen",
                format!("`{admin}` clashes with a proxy listener: the admin endpoints must never be served on the public listener"),
            );
        }
    }

    let resolver = resolver(raw.resolver, errors);
    let drain_time = optional_duration(
        raw.drain_time,
        defaults::DRAIN_TIME,
        "gateway.drain_time",
        errors,
    );
    let access_log = access_log(raw.access_log, errors);
    let request_headers_timeout = positive_duration(
        raw.request_headers_timeout,
        defaults::REQUEST_HEADERS_TIMEOUT,
        "gateway.request_headers_timeout",
        errors,
    );
    let idle_timeout = positive_duration(
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
    let trusted_proxies: Vec<Cidr> = raw
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, t)| errors.check(format!("gateway.trusted_proxies[{i}]"), Cidr::parse(t)))
        .collect();

    let mut clusters: Vec<ClusterConfig> = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    for (i, value) in raw.clusters.into_iter().enumerate() {
        let path = format!("gateway.clusters[{i}]");
        // A cluster with a bad key still defines its name: routes to it are not "unknown".
        let name = value.get("name").and_then(Value::as_str).map(str::to_owned);
        let Some(raw_cluster) = deserialize::<raw::Cluster>(value, &path, errors) else {
            if let Some(name) = name {
                first_seen.entry(name).or_insert(i);
            }
            continue;
        };
        if let Some(first) = first_seen.get(&raw_cluster.name) {
            errors.push(
                format!("{path}.name"),
                format!(
                    "duplicate cluster name `{}` (first defined at gateway.clusters[{first}])",
                    raw_cluster.name
                ),
            );
        } else {
            first_seen.insert(raw_cluster.name.clone(), i);
        }
        if let Some(c) = cluster(raw_cluster, &path, errors) {
            clusters.push(c);
        }
    }

    let mut routes: Vec<Route> = Vec::new();
    for (i, value) in raw.routes.into_iter().enumerate() {
        let path = format!("gateway.routes[{i}]");
        let Some(r) = deserialize::<raw::Route>(value, &path, errors) else {
            continue;
        };
        if let Some(route) = routes::route(r, &path, &first_seen, &routes, errors) {
            routes.push(route);
        }
    }

    if errors.0.len() > before {
        return None;
    }
    Some(Gateway {
        listen,
        h2c: raw.h2c.unwrap_or(defaults::H2C),
        admin: Admin {
            listen: admin.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901))),
        },
        resolver: resolver?,
        drain_time: drain_time?,
        request_headers_timeout: request_headers_timeout?,
        idle_timeout: idle_timeout?,
        limits,
        trusted_proxies,
        access_log: access_log?,
        routes,
        clusters,
    })
}

fn access_log(raw: Option<raw::AccessLog>, errors: &mut Errors) -> Option<AccessLogConfig> {
    let raw = raw.unwrap_or(raw::AccessLog {
        enabled: None,
        path: None,
        format: None,
    });
    let format = match raw.format.as_deref() {
        None | Some("plain") => Some(AccessLogFormat::Plain),
        Some("json") => Some(AccessLogFormat::Json),
        Some(other) => {
            errors.push(
                "gateway.access_log.format",
                format!("`{other}` is not one of: plain, json"),
            );
            None
        }
    };
    let path = match raw.path.as_deref() {
        None | Some("stderr") => None,
        Some("") => {
            errors.push(
                "gateway.access_log.path",
                "empty: give a file path or `stderr`",
            );
            None
        }
        Some(p) => Some(PathBuf::from(p)),
    };
    Some(AccessLogConfig {
        enabled: raw.enabled.unwrap_or(true),
        path,
        format: format?,
    })
}

fn resolver(raw: Option<raw::Resolver>, errors: &mut Errors) -> Option<ResolverSettings> {
    let raw = raw.unwrap_or(raw::Resolver {
        nameservers: None,
        resolv_conf: None,
        timeout: None,
        attempts: None,
    });
    let mut nameservers = Vec::new();
    for (i, text) in raw.nameservers.unwrap_or_default().iter().enumerate() {
        let parsed = socket_addr(text).or_else(|_| {
            text.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
                .map_err(|_| format!("`{text}` is not an IP address or ip:port"))
        });
        if let Some(addr) = errors.check(format!("gateway.resolver.nameservers[{i}]"), parsed) {
            nameservers.push(addr);
        }
    }
    let timeout = optional_duration(
        raw.timeout,
        defaults::RESOLVER_TIMEOUT,
        "gateway.resolver.timeout",
        errors,
    );
    let attempts = raw.attempts.unwrap_or(defaults::RESOLVER_ATTEMPTS);
    if attempts == 0 {
        errors.push("gateway.resolver.attempts", "must be at least 1");
    }
    Some(ResolverSettings {
        nameservers,
        resolv_conf: PathBuf::from(
            raw.resolv_conf
                .unwrap_or_else(|| defaults::RESOLV_CONF.to_owned()),
        ),
        timeout: timeout?,
        attempts,
    })
}

fn cluster(raw: raw::Cluster, path: &str, errors: &mut Errors) -> Option<ClusterConfig> {
    let before = errors.0.len();
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        errors.push(
            format!("{path}.name"),
            format!(
                "`{}` is not a valid name: use letters, digits, `_`, `-` and `.`",
                raw.name
            ),
        );
    }
    let address = errors.check(format!("{path}.address"), address(&raw.address));
    let port = u16::try_from(raw.port).ok().filter(|p| *p != 0);
    if port.is_none() {
        errors.push(
            format!("{path}.port"),
            format!("{} is not a port (1 to 65535)", raw.port),
        );
    }
    let lb_policy = match raw.lb_policy.as_deref() {
        None | Some("round_robin") => Some(LbPolicy::RoundRobin),
        Some("random") => Some(LbPolicy::Random),
        Some("least_request") => Some(LbPolicy::LeastRequest),
        Some("ring_hash") => Some(LbPolicy::RingHash),
        Some("maglev") => Some(LbPolicy::Maglev),
        Some(other) => {
            errors.push(
                format!("{path}.lb_policy"),
                format!(
                    "`{other}` is not one of: round_robin, random, least_request, ring_hash, maglev"
                ),
            );
            None
        }
    };
    let protocol = match raw.protocol.as_deref() {
        None | Some("http1") => Some(UpstreamProtocol::Http1),
        Some("http2") => Some(UpstreamProtocol::Http2),
        Some(other) => {
            errors.push(
                format!("{path}.protocol"),
                format!("`{other}` is not one of: http1, http2"),
            );
            None
        }
    };
    let mut hash_policy = Vec::new();
    if let Some(policies) = raw.hash_policy {
        if lb_policy.is_some_and(|p| !p.hashes()) {
            errors.push(
                format!("{path}.hash_policy"),
                "only ring_hash and maglev hash: set lb_policy to one of them",
            );
        }
        for (i, p) in policies.into_iter().enumerate() {
            let key = match (p.header, p.cookie, p.source_ip) {
                (Some(h), None, None) => http::HeaderName::from_bytes(h.as_bytes())
                    .ok()
                    .map(|n| HashKey::Header(n.as_str().to_owned())),
                (None, Some(c), None) if !c.is_empty() => Some(HashKey::Cookie(c)),
                (None, None, Some(true)) => Some(HashKey::SourceIp),
                _ => None,
            };
            match key {
                Some(k) => hash_policy.push(k),
                None => errors.push(
                    format!("{path}.hash_policy[{i}]"),
                    "give exactly one of: header: <name>, cookie: <name>, source_ip: true",
                ),
            }
        }
    }
    let lookup_family = match raw.dns_lookup_family.as_deref() {
        None | Some("v4_only") => Some(LookupFamily::V4Only),
        Some("v6_only") => Some(LookupFamily::V6Only),
        Some("v4_preferred") => Some(LookupFamily::V4Preferred),
        Some("auto") => Some(LookupFamily::Auto),
        Some("all") => Some(LookupFamily::All),
        Some(other) => {
            errors.push(
                format!("{path}.dns_lookup_family"),
                format!("`{other}` is not one of: v4_only, v6_only, v4_preferred, auto, all"),
            );
            None
        }
    };
    let mut positive = |text: Option<Value>, default: Duration, key: &str| {
        positive_duration(text, default, &format!("{path}.{key}"), errors)
    };
    let refresh_rate = positive(
        raw.dns_refresh_rate,
        defaults::DNS_REFRESH_RATE,
        "dns_refresh_rate",
    );
    let failure_refresh_rate = positive(
        raw.dns_failure_refresh_rate,
        defaults::DNS_FAILURE_REFRESH_RATE,
        "dns_failure_refresh_rate",
    );
    let min_refresh_rate = positive(
        raw.dns_min_refresh_rate,
        defaults::DNS_MIN_REFRESH_RATE,
        "dns_min_refresh_rate",
    );
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
    let health_check = raw
        .health_check
        .map(|hc| health_check(hc, &format!("{path}.health_check"), errors));

    if errors.0.len() > before {
        return None;
    }
    Some(ClusterConfig {
        name: raw.name,
        address: address?,
        port: port?,
        protocol: protocol?,
        lb_policy: lb_policy?,
        hash_policy,
        dns: DnsSettings {
            refresh_rate: refresh_rate?,
            failure_refresh_rate: failure_refresh_rate?,
            min_refresh_rate: min_refresh_rate?,
            respect_ttl: raw.respect_dns_ttl.unwrap_or(defaults::RESPECT_DNS_TTL),
            lookup_family: lookup_family?,
        },
        connect_timeout: connect_timeout?,
        timeout: timeout?,
        idle_timeout: idle_timeout?,
        tunnel_timeout: tunnel_timeout?,
        retries,
        retry: retry?,
        outlier: outlier?,
        breakers: breakers?,
        healthy_panic_threshold,
        health_check: health_check.flatten(),
    })
}

fn retry_policy(
    retry_on: Option<Vec<Value>>,
    per_try_timeout: Option<Value>,
    budget: Option<raw::RetryBudget>,
    path: &str,
    errors: &mut Errors,
) -> Option<RetryPolicy> {
    let before = errors.0.len();
    let mut on = RetryOn::default();
    let default_on: Vec<Value> = defaults::RETRY_ON
        .split(", ")
        .map(|s| Value::from(s.to_owned()))
        .collect();
    for (i, item) in retry_on.as_ref().unwrap_or(&default_on).iter().enumerate() {
        let item_path = format!("{path}.retry_on[{i}]");
        match item {
            Value::String(s) if s == "connect-failure" => on.connect_failure = true,
            Value::String(s) if s == "reset" => on.reset = true,
            Value::String(s) if s == "gateway-error" => on.gateway_error = true,
            Value::String(s) if s == "5xx" => on.any_5xx = true,
            Value::Number(n) => match n.as_u64().and_then(|c| u16::try_from(c).ok()) {
                Some(code @ 100..=599) => on.statuses.push(code),
                _ => errors.push(&item_path, format!("{n} is not an HTTP status")),
            },
            other => errors.push(
                &item_path,
                format!(
                    "`{}` is not one of: connect-failure, reset, gateway-error, 5xx, or a status such as 503",
                    serde_yaml::to_string(other).unwrap_or_default().trim()
                ),
            ),
        }
    }
    let per_try_timeout = match per_try_timeout {
        None => None,
        Some(v) => positive_duration(
            Some(v),
            Duration::ZERO,
            &format!("{path}.per_try_timeout"),
            errors,
        ),
    };
    let budget = budget.as_ref();
    let budget_percent = budget
        .and_then(|b| b.budget_percent)
        .unwrap_or(defaults::RETRY_BUDGET_PERCENT);
    if budget_percent > 100 {
        errors.push(
            format!("{path}.retry_budget.budget_percent"),
            format!("{budget_percent} is not a percentage (0 to 100)"),
        );
    }
    if errors.0.len() > before {
        return None;
    }
    Some(RetryPolicy {
        on,
        per_try_timeout,
        budget_percent,
        min_retry_concurrency: budget
            .and_then(|b| b.min_retry_concurrency)
            .unwrap_or(defaults::MIN_RETRY_CONCURRENCY),
    })
}

fn outlier_detection(
    raw: Option<raw::OutlierDetection>,
    path: &str,
    errors: &mut Errors,
) -> Option<OutlierDetection> {
    let raw = raw.unwrap_or(raw::OutlierDetection {
        consecutive_failures: None,
        base_ejection_time: None,
        max_ejection_time: None,
        max_ejection_percent: None,
    });
    let path = format!("{path}.outlier_detection");
    let base = positive_duration(
        raw.base_ejection_time,
        defaults::BASE_EJECTION_TIME,
        &format!("{path}.base_ejection_time"),
        errors,
    );
    let max = positive_duration(
        raw.max_ejection_time,
        defaults::MAX_EJECTION_TIME,
        &format!("{path}.max_ejection_time"),
        errors,
    );
    let percent = raw
        .max_ejection_percent
        .unwrap_or(defaults::MAX_EJECTION_PERCENT);
    if percent > 100 {
        errors.push(
            format!("{path}.max_ejection_percent"),
            format!("{percent} is not a percentage (0 to 100)"),
        );
        return None;
    }
    let (base, max) = (base?, max?);
    if max < base {
        errors.push(
            format!("{path}.max_ejection_time"),
            "must not be shorter than base_ejection_time",
        );
        return None;
    }
    Some(OutlierDetection {
        consecutive_failures: raw
            .consecutive_failures
            .unwrap_or(defaults::CONSECUTIVE_FAILURES),
        base_ejection_time: base,
        max_ejection_time: max,
        max_ejection_percent: percent,
    })
}

fn circuit_breakers(
    raw: Option<raw::CircuitBreakers>,
    path: &str,
    errors: &mut Errors,
) -> Option<CircuitBreakers> {
    let raw = raw.unwrap_or(raw::CircuitBreakers {
        max_connections: None,
        max_pending_requests: None,
        max_requests: None,
    });
    let mut limit = |value: Option<u32>, key: &str| {
        let v = value.unwrap_or(defaults::CIRCUIT_BREAKER_LIMIT);
        if v == 0 {
            errors.push(
                format!("{path}.circuit_breakers.{key}"),
                "must be at least 1",
            );
        }
        v
    };
    let breakers = CircuitBreakers {
        max_connections: limit(raw.max_connections, "max_connections"),
        max_pending_requests: limit(raw.max_pending_requests, "max_pending_requests"),
        max_requests: limit(raw.max_requests, "max_requests"),
    };
    (breakers.max_connections > 0 && breakers.max_pending_requests > 0 && breakers.max_requests > 0)
        .then_some(breakers)
}

fn health_check(
    raw: raw::HealthCheck,
    path: &str,
    errors: &mut Errors,
) -> Option<HealthCheckConfig> {
    let before = errors.0.len();
    let kind = match raw.kind.as_str() {
        "http" => {
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
        "tcp" => {
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
        other => {
            errors.push(
                format!("{path}.type"),
                format!("`{other}` is not one of: http, tcp"),
            );
            None
        }
    };
    let interval = positive_duration(
        raw.interval,
        defaults::HEALTH_INTERVAL,
        &format!("{path}.interval"),
        errors,
    );
    let timeout = positive_duration(
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
    if errors.0.len() > before {
        return None;
    }
    Some(HealthCheckConfig {
        kind: kind?,
        interval: interval?,
        timeout: timeout?,
        healthy_threshold,
        unhealthy_threshold,
    })
}

fn optional_duration(
    value: Option<Value>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let text = match value {
        None => return Some(default),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            errors.push(path, "expected a duration such as `250ms` or `5s`");
            return None;
        }
    };
    errors.check(path, duration::parse(&text))
}

fn positive_duration(
    text: Option<Value>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let d = optional_duration(text, default, path, errors)?;
    if d.is_zero() {
        errors.push(path, "must be greater than zero");
        return None;
    }
    Some(d)
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an ip:port address (e.g. 0.0.0.0:8000 or [::]:8000)"))
}

/// Two listeners clash when they share a port and one of them covers the other's IP.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn address(text: &str) -> Result<Address, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Address::Ip(ip));
    }
    if text.parse::<SocketAddr>().is_ok() || text.rsplit_once(':').is_some() {
        return Err(format!(
            "`{text}` must be a bare name or IP: put the port in `port:`"
        ));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
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
        return Err(format!("`{text}` is not a valid DNS name or IP address"));
    }
    Ok(Address::Name(text.to_owned()))
}

/// The candidate nearest to `key` by edit distance, when it is near enough to be a typo.
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
