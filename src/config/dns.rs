//! A cluster's DNS keys: how often its name is resolved, and for which address families.

use super::cluster::RawCluster;
use super::defaults;
use super::duration::positive_or;
use super::errors::Errors;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSettings {
    pub refresh_rate: Duration,
    pub failure_refresh_rate: Duration,
    pub min_refresh_rate: Duration,
    pub respect_ttl: bool,
    pub lookup_family: LookupFamily,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
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

pub(super) fn dns(raw: &RawCluster, path: &str, errors: &mut Errors) -> DnsSettings {
    DnsSettings {
        refresh_rate: positive_or(
            raw.dns_refresh_rate,
            defaults::DNS_REFRESH_RATE,
            &format!("{path}.dns_refresh_rate"),
            errors,
        ),
        failure_refresh_rate: positive_or(
            raw.dns_failure_refresh_rate,
            defaults::DNS_FAILURE_REFRESH_RATE,
            &format!("{path}.dns_failure_refresh_rate"),
            errors,
        ),
        min_refresh_rate: positive_or(
            raw.dns_min_refresh_rate,
            defaults::DNS_MIN_REFRESH_RATE,
            &format!("{path}.dns_min_refresh_rate"),
            errors,
        ),
        respect_ttl: raw.respect_dns_ttl.unwrap_or(defaults::RESPECT_DNS_TTL),
        lookup_family: raw.dns_lookup_family.unwrap_or(defaults::DNS_LOOKUP_FAMILY),
    }
}
