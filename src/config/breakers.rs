//! A cluster's `circuit_breakers`: how much may be in flight before it answers 503 at once.

use super::defaults;
use super::errors::Errors;
use serde::Deserialize;

/// A cluster's `circuit_breakers` (Envoy: `circuit_breakers.thresholds`). Overflow is answered
/// at once with 503, never queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// `max_connections`: upstream connections in use at once (one per request in flight over
    /// HTTP/1.1); default 1024.
    pub max_connections: u32,
    /// `max_pending_requests`: requests waiting for an upstream connection; default 1024.
    pub max_pending_requests: u32,
    /// `max_requests`: requests to the cluster at once, retries included; default 1024.
    pub max_requests: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCircuitBreakers {
    max_connections: Option<u32>,
    max_pending_requests: Option<u32>,
    max_requests: Option<u32>,
}

pub(super) fn circuit_breakers(
    raw: Option<RawCircuitBreakers>,
    path: &str,
    errors: &mut Errors,
) -> CircuitBreakers {
    let raw = raw.unwrap_or_default();
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
    CircuitBreakers {
        max_connections: limit(raw.max_connections, "max_connections"),
        max_pending_requests: limit(raw.max_pending_requests, "max_pending_requests"),
        max_requests: limit(raw.max_requests, "max_requests"),
    }
}
