//! A cluster's `slow_start_window` and `slow_start_min_weight_percent`: a backend that joins
//! gets a share that grows over the window instead of its full share at once.

use super::choices::LbPolicy;
use super::defaults;
use super::duration::{positive, ConfDuration};
use super::errors::Errors;
use std::time::Duration;

/// Slow start (Envoy: `round_robin_lb_config.slow_start_config` / `least_request_lb_config.
/// slow_start_config`, `aggression` 1.0; HAProxy: `server … slowstart`): a backend that joins
/// is weighted `max(min_weight_percent, elapsed / window)` until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowStart {
    /// `slow_start_window`: how long a joining backend's share takes to grow to a full one
    /// (Envoy: `slow_start_window`).
    pub window: Duration,
    /// `slow_start_min_weight_percent`: the share it starts with, in percent of a full one;
    /// default 10 (Envoy: `min_weight_percent`, 10 %).
    pub min_weight_percent: u32,
}

/// Checks the slow-start keys: None when `slow_start_window` is not set (the default: off).
pub(super) fn slow_start(
    window: Option<ConfDuration>,
    min_weight_percent: Option<u32>,
    lb_policy: Option<LbPolicy>,
    path: &str,
    errors: &mut Errors,
) -> Option<SlowStart> {
    let window_path = format!("{path}.slow_start_window");
    let min_path = format!("{path}.slow_start_min_weight_percent");
    let Some(written) = window else {
        if min_weight_percent.is_some() {
            errors.push(&min_path, "does nothing without slow_start_window");
        }
        return None;
    };
    let min_weight_percent = min_weight_percent.unwrap_or(defaults::SLOW_START_MIN_WEIGHT_PERCENT);
    if !(1..=100).contains(&min_weight_percent) {
        errors.push(
            &min_path,
            format!("{min_weight_percent} is not a percentage (1 to 100)"),
        );
    }
    let window = positive(Some(written), &window_path, errors)?;
    let policy = lb_policy.unwrap_or(defaults::LB_POLICY);
    if policy.hashes() {
        // A keyed pick sends a key to its backend whatever the weights: ramping one would move
        // keys, which is what hashing is there to avoid (Envoy has no slow start for them either).
        errors.push(
            &window_path,
            format!(
                "not with lb_policy: {}: slow start is for round_robin, random and least_request",
                policy.name()
            ),
        );
        return None;
    }
    Some(SlowStart {
        window,
        min_weight_percent,
    })
}
