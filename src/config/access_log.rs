//! `gateway.access_log`: whether, where and how the one line per request is written.

use super::defaults;
use super::errors::Errors;
use serde::Deserialize;
use std::path::PathBuf;

/// One line per request; see `crate::access_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// None: stderr.
    pub path: Option<PathBuf>,
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// `key=value` pairs after a timestamp.
    Plain,
    /// One JSON object per line.
    Json,
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
