//! A cluster's DNS keys: how often its name is resolved, and for which address families.

use super::choices::LookupFamily;
use super::defaults;
use super::duration::positive_or;
use super::duration::ConfDuration;
use super::errors::Errors;
use std::time::Duration;

/// A cluster's DNS keys: how often its `address` is resolved, and for which address families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSettings {
    /// `dns_refresh_rate`: time between lookups; default 5 s (Envoy: same name).
    pub refresh_rate: Duration,
    /// `dns_failure_refresh_rate`: first retry after a resolver error, doubling per failure up
    /// to `refresh_rate`; default 1 s (Envoy: `dns_failure_refresh_rate.base_interval`).
    pub failure_refresh_rate: Duration,
    /// `dns_min_refresh_rate`: floor under the TTL when `respect_ttl` is on; default 1 s
    /// (Envoy: same name, 5 s).
    pub min_refresh_rate: Duration,
    /// `respect_dns_ttl`: refresh at the answer's TTL instead of `refresh_rate`; default
    /// `false` (Envoy: same name).
    pub respect_ttl: bool,
    /// `dns_lookup_family`: default `v4_only`.
    pub lookup_family: LookupFamily,
}

/// A cluster's DNS keys as the conf writes them.
pub(super) struct RawDns {
    pub dns_refresh_rate: Option<ConfDuration>,
    pub dns_failure_refresh_rate: Option<ConfDuration>,
    pub dns_min_refresh_rate: Option<ConfDuration>,
    pub respect_dns_ttl: Option<bool>,
    pub dns_lookup_family: Option<LookupFamily>,
}

pub(super) fn dns(raw: RawDns, path: &str, errors: &mut Errors) -> DnsSettings {
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
