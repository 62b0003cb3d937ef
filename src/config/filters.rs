//! A route's `filters:`: which filters run on its requests, each with its own settings.

use super::errors::Errors;
use serde_yaml::Value;

/// One entry of a route's `filters:`, such as `{ name: api_key, header: x-api-key }`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    /// Which filter: the registry's name for it.
    pub name: String,
    /// The entry without `name`, always a mapping: the filter's own settings.
    pub config: Value,
    /// Where the entry is, for the registry's errors: `gateway.routes[2].filters[0]`.
    pub path: String,
}

/// Reads `filters:` of the route at `route_path`; a bad entry is reported and left out. Only
/// the shape is checked here: the filter registry knows the names and reads the settings.
pub(super) fn filters(
    entries: Vec<Value>,
    route_path: &str,
    errors: &mut Errors,
) -> Vec<FilterSpec> {
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| filter(entry, format!("{route_path}.filters[{i}]"), errors))
        .collect()
}

fn filter(entry: Value, path: String, errors: &mut Errors) -> Option<FilterSpec> {
    let Value::Mapping(mut config) = entry else {
        errors.push(
            &path,
            "expected a mapping: `name:` (the filter) and its own settings",
        );
        return None;
    };
    let name = match config.remove("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        Some(Value::String(_)) => {
            errors.push(format!("{path}.name"), "empty: give the filter's name");
            return None;
        }
        Some(_) => {
            errors.push(
                format!("{path}.name"),
                "expected the filter's name, a string",
            );
            return None;
        }
        None => {
            errors.push(&path, "missing field `name`");
            return None;
        }
    };
    Some(FilterSpec {
        name,
        config: Value::Mapping(config),
        path,
    })
}
