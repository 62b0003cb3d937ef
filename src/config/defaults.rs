//! Every default of the conf file, with the Envoy setting it corresponds to: the one place they live.

use super::choices::{AccessLogFormat, Discovery, LbPolicy, LookupFamily, UpstreamProtocol};
use std::time::Duration;

/// `gateway.listen` (Envoy: listener `socket_address`).
pub const LISTEN: &str = "0.0.0.0:8000";
/// `gateway.h2c`: plain listeners also accept HTTP/2 with prior knowledge (Envoy: `codec_type:
/// AUTO`). Off by default: pingora then waits for 24 bytes (the HTTP/2 preface's length)
/// before anything else, with no timeout, so a shorter request — `OPTIONS / HTTP/1.0` as
/// HAProxy's health check sends it — would never be answered.
pub const H2C: bool = false;
/// `gateway.listen[].tls.handshake_timeout`: a TLS client must finish its handshake within this
/// (Envoy: listener `transport_socket_connect_timeout`, off; nginx: `ssl_handshake_timeout`,
/// 60 s). pingora alone holds a stalled handshake for 60 s.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `gateway.listen[].tls.unknown_server_name`: the first certificate for a client whose SNI no
/// certificate carries, or that sends none (nginx's default server).
pub const UNKNOWN_SERVER_NAME: super::choices::UnknownServerName =
    super::choices::UnknownServerName::Default;
/// `gateway.listen[].tls.client_auth.mode`: a client certificate is required once `client_auth`
/// is given (Envoy: `require_client_certificate: true`).
pub fn client_auth_mode() -> super::choices::ClientAuthMode {
    super::choices::ClientAuthMode::Required
}
/// `gateway.admin.listen` (Envoy: `admin.address`; loopback so it is never public by accident).
pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// `gateway.admin.reload`: `POST /reload` off (a state-changing endpoint on a port the whole
/// cluster may reach); SIGHUP reloads whatever this says.
pub const ADMIN_RELOAD: bool = false;
/// `gateway.watch_conf`: off; on, a change of the conf file's content reloads it in place.
pub const WATCH_CONF: bool = false;
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
/// `gateway.access_log.enabled` (Envoy: an `access_log` entry).
pub const ACCESS_LOG_ENABLED: bool = true;
/// `gateway.access_log.format`: `plain` (`key=value`) or `json` (Envoy: `log_format`).
pub const ACCESS_LOG_FORMAT: AccessLogFormat = AccessLogFormat::Plain;
/// `gateway.access_log.path`: `stderr`, or a file appended to.
pub const ACCESS_LOG_PATH: &str = "stderr";
/// `gateway.resolver.resolv_conf`: search domains, ndots and nameservers, as a pod's resolver.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// `gateway.resolver.timeout`: one DNS query attempt.
pub const RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);
/// `gateway.resolver.attempts`: query attempts per lookup before it counts as a failure.
pub const RESOLVER_ATTEMPTS: u32 = 2;
/// `discovery`: A/AAAA records of `address`, on `port` (Envoy: STRICT_DNS).
pub const DISCOVERY: Discovery = Discovery::Dns;
/// `protocol` to the backends (Envoy: HTTP/1.1 unless `http2_protocol_options`).
pub const PROTOCOL: UpstreamProtocol = UpstreamProtocol::Http1;
/// `lb_policy` (Envoy: same name, `ROUND_ROBIN`).
pub const LB_POLICY: LbPolicy = LbPolicy::RoundRobin;
/// `dns_lookup_family` (Envoy: same name, `AUTO`; Kubernetes clusters are IPv4 unless told).
pub const DNS_LOOKUP_FAMILY: LookupFamily = LookupFamily::V4Only;
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
/// `slow_start_min_weight_percent`: a joining backend's first share, in percent of a full one
/// (Envoy: `slow_start_config.min_weight_percent`, 10 %). `slow_start_window` has no default:
/// slow start is off unless it is set (Envoy: same).
pub const SLOW_START_MIN_WEIGHT_PERCENT: u32 = 10;
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
/// `gateway.routes[].mirror[].percent`: every request is copied (Envoy:
/// `request_mirror_policies[].runtime_fraction`, 100% when unset).
pub const MIRROR_PERCENT: f64 = 100.0;
/// `gateway.routes[].mirror[].body_limit`: a copy carries the first 64 KiB of the request's
/// body (Envoy streams the whole body; nginx's `mirror` buffers it whole; the Gateway API
/// leaves it to the implementation): enough for the JSON of an API call, while a large upload
/// is not held twice.
pub const MIRROR_BODY_LIMIT: u64 = 64 << 10;
/// `gateway.routes[].mirror[].max_in_flight`: copies of one route to one shadow cluster that
/// may be unanswered at once; more are dropped and counted (`dropped_full`), so a shadow that
/// hangs costs at most this many tasks and connections.
pub const MIRROR_MAX_IN_FLIGHT: u32 = 64;
