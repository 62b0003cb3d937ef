//! A cluster's `outlier_detection`: passive health, ejecting backends that fail in a row.

use super::defaults;
use super::duration::{positive_or, ConfDuration};
use super::errors::Errors;
use serde::Deserialize;
use std::time::Duration;

/// A cluster's `outlier_detection`: passive health, backends failing in a row are ejected
/// for a while (Envoy: `outlier_detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `consecutive_failures`: failures in a row (5xx, connect failures, resets, timeouts)
    /// that eject; 0: off; default 5 (Envoy: `consecutive_5xx`).
    pub consecutive_failures: u32,
    /// `base_ejection_time`: ejection time is this × times ejected so far, up to
    /// `max_ejection_time`; default 30 s (Envoy: same name).
    pub base_ejection_time: Duration,
    /// `max_ejection_time`: the longest ejection; default 300 s (Envoy: same name).
    pub max_ejection_time: Duration,
    /// `max_ejection_percent`: never more of the cluster ejected at once, though one backend
    /// always can be; default 10 (Envoy: same name).
    pub max_ejection_percent: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlierDetection {
    consecutive_failures: Option<u32>,
    base_ejection_time: Option<ConfDuration>,
    max_ejection_time: Option<ConfDuration>,
    max_ejection_percent: Option<u32>,
}

pub(super) fn outlier_detection(
    raw: Option<RawOutlierDetection>,
    path: &str,
    errors: &mut Errors,
) -> OutlierDetection {
    let raw = raw.unwrap_or_default();
    let path = format!("{path}.outlier_detection");
    let (base_path, max_path) = (
        format!("{path}.base_ejection_time"),
        format!("{path}.max_ejection_time"),
    );
    let base = positive_or(
        raw.base_ejection_time,
        defaults::BASE_EJECTION_TIME,
        &base_path,
        errors,
    );
    let max = positive_or(
        raw.max_ejection_time,
        defaults::MAX_EJECTION_TIME,
        &max_path,
        errors,
    );
    // Compared only as written: a default standing in for a bad value proves nothing.
    if max < base && !errors.at(&base_path) && !errors.at(&max_path) {
        errors.push(&max_path, "must not be shorter than base_ejection_time");
    }
    let percent = raw
        .max_ejection_percent
        .unwrap_or(defaults::MAX_EJECTION_PERCENT);
    if percent > 100 {
        errors.push(
            format!("{path}.max_ejection_percent"),
            format!("{percent} is not a percentage (0 to 100)"),
        );
    }
    OutlierDetection {
        consecutive_failures: raw
            .consecutive_failures
            .unwrap_or(defaults::CONSECUTIVE_FAILURES),
        base_ejection_time: base,
        max_ejection_time: max,
        max_ejection_percent: percent,
    }
}
