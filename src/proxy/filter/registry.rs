//! The filters a conf may name: a factory per name, headway's built-ins and a program's own.

use super::{builtin, Chain, Filter};
use crate::config::Route;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a factory gets to build one filter of one route.
pub struct FilterSetup<'a> {
    /// The filter's own keys in the conf (the `filters:` entry without `name`): a mapping, or
    /// null when the entry has no other key.
    pub config: &'a serde_yaml::Value,
    /// The route the filter is for.
    pub route: &'a Route,
}

impl FilterSetup<'_> {
    /// The filter's keys read into `T` (a `serde::Deserialize` type; `#[serde(deny_unknown_fields)]`
    /// makes a misspelt key an error). Null reads as an empty mapping.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let config = match self.config {
            serde_yaml::Value::Null => serde_yaml::Value::Mapping(Default::default()),
            other => other.clone(),
        };
        serde_yaml::from_value(config).map_err(|e| e.to_string())
    }
}

/// Builds a filter from its conf; the error says what is wrong (its path is added).
pub type Factory = Arc<dyn Fn(&FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> + Send + Sync>;

/// Filter factories by name.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    /// A registry with headway's built-in filters.
    pub fn new() -> Registry {
        let mut registry = Registry {
            factories: BTreeMap::new(),
        };
        builtin::register(&mut registry);
        registry
    }

    /// Adds (or replaces) the filter called `name`.
    pub fn register(
        &mut self,
        name: &str,
        factory: impl Fn(&FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    ) -> &mut Registry {
        self.factories.insert(name.to_owned(), Arc::new(factory));
        self
    }

    /// The names a conf may use.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Builds the filter a `filters:` entry names. `path` is the entry's, for the error.
    pub fn build(
        &self,
        name: &str,
        config: &serde_yaml::Value,
        route: &Route,
        path: &str,
    ) -> Result<Arc<dyn Filter>, String> {
        let Some(factory) = self.factories.get(name) else {
            let closest = self
                .names()
                .map(|known| (strsim::levenshtein(name, known), known))
                .min()
                .filter(|(distance, _)| *distance <= 3)
                .map(|(_, known)| format!(" (did you mean {known}?)"))
                .unwrap_or_default();
            let known: Vec<&str> = self.names().collect();
            return Err(format!(
                "{path}.name: unknown filter `{name}`{closest}; known filters: {}",
                known.join(", ")
            ));
        };
        factory(&FilterSetup { config, route }).map_err(|e| format!("{path}: {e}"))
    }

    /// The filters of `route` (at `path` in the conf), in the order they run: the route's own
    /// keys (`max_request_body_bytes`, header changes, rewrites) as built-in filters, then its
    /// `filters:` list, then its `direct_response`. Every error, each with its path.
    pub fn chain(&self, route: &Route) -> Result<Chain, Vec<String>> {
        let mut filters = builtin::from_route_keys(route);
        let mut errors = Vec::new();
        for spec in &route.filters {
            match self.build(&spec.name, &spec.config, route, &spec.path) {
                Ok(f) => filters.push(f),
                Err(e) => errors.push(e),
            }
        }
        filters.extend(builtin::direct_response(route));
        if errors.is_empty() {
            Ok(Chain::new(filters))
        } else {
            Err(errors)
        }
    }
}
