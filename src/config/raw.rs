//! The conf file's `gateway:` section exactly as serde reads it: strict, no defaults, no meaning.
//!
//! Every field that needs interpretation (durations, addresses, enums with a helpful error) is a
//! plain string or number here; `super::validate` turns it into the typed [`super::Config`] and
//! reports every problem with its path. Unknown keys are rejected by `deny_unknown_fields`.

use serde::Deserialize;

/// A duration as written: normally a string such as `5s`; a bare number is read too, so that
/// validation can say it lacks a unit instead of reporting a type error.
pub type Value = serde_yaml::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Each entry `"ip:port"` or a [`Listener`] mapping; read by hand in validation.
    pub listen: Option<Vec<Value>>,
    pub h2c: Option<bool>,
    pub admin: Option<Admin>,
    pub resolver: Option<Resolver>,
    pub drain_time: Option<Value>,
    pub request_headers_timeout: Option<Value>,
    pub idle_timeout: Option<Value>,
    pub max_request_headers_kb: Option<u32>,
    pub max_headers_count: Option<u32>,
    pub max_uri_length: Option<u32>,
    pub trusted_proxies: Option<Vec<String>>,
    pub access_log: Option<AccessLog>,
    /// Kept as raw values so one bad route or cluster does not hide the errors of the others.
    #[serde(default)]
    pub routes: Vec<Value>,
    #[serde(default)]
    pub clusters: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolver {
    pub nameservers: Option<Vec<String>>,
    pub resolv_conf: Option<String>,
    pub timeout: Option<Value>,
    pub attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub regex: Option<String>,
    pub domains: Option<Vec<String>>,
    pub cluster: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub host_rewrite: Option<String>,
    pub timeout: Option<Value>,
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderValue>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
    pub direct_response: Option<DirectResponse>,
    pub max_request_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    pub status: u16,
    pub body: Option<String>,
}

/// A listener given as a mapping instead of `"ip:port"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: String,
    pub tls: Option<Tls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashPolicy {
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub source_ip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    pub address: String,
    pub port: u32,
    pub lb_policy: Option<String>,
    pub hash_policy: Option<Vec<HashPolicy>>,
    pub protocol: Option<String>,
    pub dns_refresh_rate: Option<Value>,
    pub dns_failure_refresh_rate: Option<Value>,
    pub dns_min_refresh_rate: Option<Value>,
    pub respect_dns_ttl: Option<bool>,
    pub dns_lookup_family: Option<String>,
    pub connect_timeout: Option<Value>,
    pub timeout: Option<Value>,
    pub idle_timeout: Option<Value>,
    pub tunnel_timeout: Option<Value>,
    pub retries: Option<u32>,
    pub retry_on: Option<Vec<Value>>,
    pub per_try_timeout: Option<Value>,
    pub retry_budget: Option<RetryBudget>,
    pub outlier_detection: Option<OutlierDetection>,
    pub circuit_breakers: Option<CircuitBreakers>,
    pub healthy_panic_threshold: Option<u32>,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    pub budget_percent: Option<u32>,
    pub min_retry_concurrency: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    pub consecutive_failures: Option<u32>,
    pub base_ejection_time: Option<Value>,
    pub max_ejection_time: Option<Value>,
    pub max_ejection_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval: Option<Value>,
    pub timeout: Option<Value>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}
