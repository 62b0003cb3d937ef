//! `gateway.resolver`: the DNS servers and resolver settings every cluster's lookups use.

use super::defaults;
use super::duration::ConfDuration;
use super::errors::Errors;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `gateway.resolver`: the DNS servers and settings every cluster's lookups use (Envoy:
/// `dns_resolution_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// `nameservers`: `ip` (port 53) or `ip:port`; empty (the default): those of
    /// `resolv_conf`.
    pub nameservers: Vec<SocketAddr>,
    /// `resolv_conf`: read for search domains and ndots always, and for nameservers when none
    /// are configured; default `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `timeout`: one query attempt; default 2 s.
    pub timeout: Duration,
    /// `attempts`: query attempts per lookup before it counts as a failure; default 2.
    pub attempts: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolver {
    nameservers: Option<Vec<Nameserver>>,
    resolv_conf: Option<PathBuf>,
    timeout: Option<ConfDuration>,
    attempts: Option<u32>,
}

/// `ip:port`, or an IP on port 53.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
struct Nameserver(SocketAddr);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or ip:port")]
struct NotANameserver(String);

impl TryFrom<String> for Nameserver {
    type Error = NotANameserver;

    fn try_from(text: String) -> Result<Nameserver, NotANameserver> {
        text.parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map(Nameserver)
            .map_err(|_| NotANameserver(text))
    }
}

pub(super) fn resolver(raw: Option<RawResolver>, errors: &mut Errors) -> Option<ResolverSettings> {
    let raw = raw.unwrap_or_default();
    let attempts = raw.attempts.unwrap_or(defaults::RESOLVER_ATTEMPTS);
    if attempts == 0 {
        errors.push("gateway.resolver.attempts", "must be at least 1");
    }
    Some(ResolverSettings {
        nameservers: raw
            .nameservers
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.0)
            .collect(),
        resolv_conf: raw
            .resolv_conf
            .unwrap_or_else(|| PathBuf::from(defaults::RESOLV_CONF)),
        timeout: raw.timeout.map_or(defaults::RESOLVER_TIMEOUT, |t| t.0),
        attempts,
    })
}
