//! pingora's server keys, the conf's top level: headway's defaults for them, and no unknown key.

use super::defaults;
use super::errors::{did_you_mean, Errors};
use super::reader::{self, key_name};
use pingora::server::configuration::ServerConf;
use serde_yaml::{Mapping, Value};

/// Reads pingora's keys (the top level without `gateway`). Anything pingora does not know is an
/// error here, although pingora itself would silently ignore it, so that
/// `grace_period_second: 5` cannot pass unnoticed.
pub(super) fn server_conf(top: Mapping, errors: &mut Errors) -> Option<ServerConf> {
    let known = known_keys();
    let mut keys = Mapping::new();
    for (key, value) in top {
        let name = key_name(&key);
        if known.contains(&name) {
            keys.insert(key, value);
        } else {
            let hint = did_you_mean(&name, known.iter().map(String::as_str).chain(["gateway"]));
            errors.push(
                &name,
                format!("unknown key{hint}: top-level keys are pingora's server settings; headway's go under `gateway:`"),
            );
        }
    }
    let headway_defaults = [
        (
            "grace_period_seconds",
            Value::from(defaults::GRACE_PERIOD_SECONDS),
        ),
        (
            "graceful_shutdown_timeout_seconds",
            Value::from(defaults::GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS),
        ),
        ("work_stealing", Value::from(defaults::WORK_STEALING)),
        (
            "fast_timeout_to_tokio_threshold_seconds",
            Value::from(defaults::FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS),
        ),
        ("pid_file", Value::from(defaults::PID_FILE)),
        ("upgrade_sock", Value::from(defaults::UPGRADE_SOCK)),
    ];
    for (key, value) in headway_defaults {
        if !keys.contains_key(key) {
            keys.insert(Value::from(key), value);
        }
    }
    let before = errors.count();
    let conf = reader::read::<ServerConf>(&Value::Mapping(keys), "", errors)?;
    if errors.count() > before {
        return None;
    }
    errors.check("conf", conf.validate())
}

/// pingora's keys, as its `ServerConf` writes them.
fn known_keys() -> Vec<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}
