//! `gateway.access_log`: whether, where and how the one line per request is written.

use super::choices::AccessLogFormat;
use super::defaults;
use super::errors::Errors;
use serde::Deserialize;
use std::path::PathBuf;

/// `gateway.access_log`: one line per request, written by [`crate::proxy::access_log`]
/// (Envoy: an `access_log` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// `enabled`: whether the lines are written at all; default `true`.
    pub enabled: bool,
    /// `path`: the file the lines are appended to; `None` (`stderr`, the default): stderr.
    pub path: Option<PathBuf>,
    /// `format`: `plain` (the default) or `json` (Envoy: `log_format`).
    pub format: AccessLogFormat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    enabled: Option<bool>,
    path: Option<String>,
    format: Option<AccessLogFormat>,
}

pub(super) fn access_log(raw: Option<RawAccessLog>, errors: &mut Errors) -> AccessLogConfig {
    let raw = raw.unwrap_or_default();
    let path = match raw.path.as_deref().unwrap_or(defaults::ACCESS_LOG_PATH) {
        "stderr" => None,
        "" => {
            errors.push(
                "gateway.access_log.path",
                "empty: give a file path or `stderr`",
            );
            None
        }
        p => Some(PathBuf::from(p)),
    };
    AccessLogConfig {
        enabled: raw.enabled.unwrap_or(defaults::ACCESS_LOG_ENABLED),
        path,
        format: raw.format.unwrap_or(defaults::ACCESS_LOG_FORMAT),
    }
}
