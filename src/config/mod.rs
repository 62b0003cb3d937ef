//! The conf file: pingora's server keys at the top level, headway's under `gateway:`.
//!
//! Loading reads the YAML into strict serde types, section by section (`reader`: unknown keys
//! and names are errors, with the closest known one suggested), then checks what serde cannot
//! (ranges, clashes, references), filling defaults from [`defaults`], the only place they live.
//! Every problem is collected as `path: reason` before anything binds; one does not hide another.

pub mod defaults;
pub mod duration;

mod access_log;
mod balancing;
mod breakers;
mod choices;
mod cidr;
mod cluster;
mod dns;
mod errors;
mod filters;
mod gateway;
mod headers;
mod health_check;
mod listener_tls;
mod listeners;
mod mirror;
mod names;
mod outlier;
mod reader;
mod resolver;
mod retry;
mod route_match;
mod routes;
mod server;
mod slow_start;
mod split;
mod tls_files;
mod upstream_tls;

pub use access_log::AccessLogConfig;
pub use balancing::HashKey;
pub use breakers::CircuitBreakers;
pub use choices::{AccessLogFormat, Discovery, LbPolicy, LookupFamily, UpstreamProtocol};
pub use choices::{ClientAuthMode, UnknownServerName};
pub use cidr::{Cidr, CidrError};
pub use cluster::{Address, AddressError, ClusterConfig};
pub use dns::DnsSettings;
pub use errors::ConfigError;
pub use filters::FilterSpec;
pub use gateway::{Gateway, RequestLimits};
pub use health_check::{HealthCheckConfig, HealthCheckKind};
pub use listener_tls::{CertFiles, ClientAuth, ListenerTls};
pub use listeners::{Admin, Listener};
pub use mirror::Mirror;
pub use outlier::OutlierDetection;
pub use resolver::ResolverSettings;
pub use retry::{RetryOn, RetryPolicy};
pub use route_match::{HeaderMatch, QueryMatch, RequestMatch, ValueTest, REGEX_SIZE_LIMIT};
pub use routes::{PathMatch, Route, RouteAction};
pub use slow_start::SlowStart;
pub use split::{Split, WeightedCluster, MAX_TOTAL_WEIGHT};
pub use tls_files::{read_certs, read_key, CaBundle, ClientCertKey};
pub use upstream_tls::{Alpn, UpstreamTls};

use errors::Errors;
use pingora::server::configuration::ServerConf;
use serde_yaml::Value;
use std::path::Path;

/// A loaded, validated conf file.
#[derive(Debug)]
pub struct Config {
    /// pingora's own settings (threads, pid file, grace periods, …).
    pub server: ServerConf,
    /// headway's own settings: everything under `gateway:`.
    pub gateway: Gateway,
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
        match parse(text, &mut errors) {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors.into_error()),
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
    let server = server::server_conf(top, errors);
    let Some(gateway) = gateway else {
        errors.push("gateway", "missing: headway's settings go under `gateway:`");
        return None;
    };
    let gateway = gateway::gateway(&gateway, errors);
    Some(Config {
        server: server?,
        gateway: gateway?,
    })
}

#[cfg(test)]
mod tests;
