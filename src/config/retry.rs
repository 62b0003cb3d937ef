//! A cluster's retry keys: `retry_on`, `per_try_timeout` and `retry_budget`.

use super::defaults;
use super::duration::{positive, ConfDuration};
use super::errors::not_one_of;
use super::errors::Errors;
use super::names::names;
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// When a failed attempt is tried again on another backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `retry_on`: default `[connect-failure, reset, gateway-error]` (Envoy:
    /// `retry_policy.retry_on`).
    pub on: RetryOn,
    /// `per_try_timeout`: each attempt's limit until response headers; `None` (the default):
    /// only the request's `timeout` (Envoy: `retry_policy.per_try_timeout`).
    pub per_try_timeout: Option<Duration>,
    /// `retry_budget.budget_percent`: retries that re-send a request stay under this share of
    /// the requests in progress…; default 20 (Envoy: same name).
    pub budget_percent: u32,
    /// `retry_budget.min_retry_concurrency`: …or under this many, whichever is larger;
    /// default 3 (Envoy: same name).
    pub min_retry_concurrency: u32,
}

/// The conditions of a cluster's `retry_on`, named as Envoy's `retry_policy.retry_on`. All but
/// `connect-failure` apply only to idempotent requests whose response has not started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// `connect-failure`: the connection could not be made (nothing was sent: safe for any
    /// method).
    pub connect_failure: bool,
    /// `reset`: the connection broke or timed out before the response headers.
    pub reset: bool,
    /// `gateway-error`: 502, 503 or 504 from the upstream, or a per-try timeout.
    pub gateway_error: bool,
    /// `5xx`: any 5xx from the upstream, or a per-try timeout.
    pub any_5xx: bool,
    /// Statuses listed as numbers (`429`): these from the upstream (Envoy:
    /// `retriable_status_codes`).
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

    fn add(&mut self, condition: RetryCondition) {
        match condition {
            RetryCondition::Named(RetryName::ConnectFailure) => self.connect_failure = true,
            RetryCondition::Named(RetryName::Reset) => self.reset = true,
            RetryCondition::Named(RetryName::GatewayError) => self.gateway_error = true,
            RetryCondition::Named(RetryName::Any5xx) => self.any_5xx = true,
            RetryCondition::Status(code) => self.statuses.push(code),
        }
    }
}

/// The named conditions of `retry_on`, as Envoy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RetryName {
    ConnectFailure,
    Reset,
    GatewayError,
    #[serde(rename = "5xx")]
    Any5xx,
}

/// One entry of `retry_on`: a named condition, or an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RetryCondition {
    Named(RetryName),
    Status(u16),
}

impl<'de> Deserialize<'de> for RetryCondition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ConditionVisitor)
    }
}

struct ConditionVisitor;

impl Visitor<'_> for ConditionVisitor {
    type Value = RetryCondition;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "one of: {}, or a status such as 503",
            names::<RetryName>().join(", ")
        )
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<RetryCondition, E> {
        RetryName::deserialize(name.into_deserializer())
            .map(RetryCondition::Named)
            .map_err(|_: E| {
                E::custom(not_one_of(
                    name,
                    names::<RetryName>(),
                    ", or a status such as 503",
                ))
            })
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<RetryCondition, E> {
        match u16::try_from(n) {
            Ok(code @ 100..=599) => Ok(RetryCondition::Status(code)),
            _ => Err(E::custom(format!("{n} is not an HTTP status"))),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<RetryCondition, E> {
        Err(E::custom(format!("{n} is not an HTTP status")))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetryBudget {
    budget_percent: Option<u32>,
    min_retry_concurrency: Option<u32>,
}

pub(super) fn retry_policy(
    retry_on: Option<Vec<RetryCondition>>,
    per_try_timeout: Option<ConfDuration>,
    budget: Option<RawRetryBudget>,
    path: &str,
    errors: &mut Errors,
) -> RetryPolicy {
    let mut on = RetryOn::default();
    for condition in retry_on.unwrap_or_else(default_retry_on) {
        on.add(condition);
    }
    let budget = budget.unwrap_or_default();
    let budget_percent = budget
        .budget_percent
        .unwrap_or(defaults::RETRY_BUDGET_PERCENT);
    if budget_percent > 100 {
        errors.push(
            format!("{path}.retry_budget.budget_percent"),
            format!("{budget_percent} is not a percentage (0 to 100)"),
        );
    }
    RetryPolicy {
        on,
        per_try_timeout: positive(per_try_timeout, &format!("{path}.per_try_timeout"), errors),
        budget_percent,
        min_retry_concurrency: budget
            .min_retry_concurrency
            .unwrap_or(defaults::MIN_RETRY_CONCURRENCY),
    }
}

/// [`defaults::RETRY_ON`], read as the conf's own `retry_on` is.
fn default_retry_on() -> Vec<RetryCondition> {
    defaults::RETRY_ON
        .split(", ")
        .filter_map(|name| {
            let read: Result<_, de::value::Error> = ConditionVisitor.visit_str(name);
            read.ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retry_on_reads_whole() {
        assert_eq!(
            default_retry_on().len(),
            defaults::RETRY_ON.split(", ").count()
        );
    }
}
