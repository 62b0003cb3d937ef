//! The filters a conf may name: a factory per name, headway's built-ins and a program's own.

use super::build::Build;
use super::stages::Filter;
use crate::config::Route;
use crate::upstream::client::ClusterClient;
use prometheus::IntCounter;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a factory gets to build one filter of one route.
pub struct FilterSetup<'a> {
    /// The filter's own keys in the conf (the `filters:` entry without `name`): a mapping, or
    /// null when the entry has no other key.
    pub config: &'a serde_yaml::Value,
    /// The route the filter is for.
    pub route: &'a Route,
    /// The name the conf gave the filter (`filters[].name`).
    pub name: &'a str,
    /// The filter's place in its route's `filters:`.
    index: usize,
    /// Its conf's kept state, series, clusters and tasks.
    build: &'a Build<'a>,
}

impl FilterSetup<'_> {
    /// The counter `headway_filter_events_total{route, filter, event}` for this route and
    /// filter: `route` as the route's match is written (`/service/1`, `=/exact`, `~regex`),
    /// `filter` the filter's name. Take counters here, once, and keep them: counting is then
    /// one atomic add. The series survives a reload (a rebuilt filter gets the same one).
    pub fn counter(&self, event: &str) -> IntCounter {
        let route = self.route.matcher.describe();
        self.build
            .series
            .events
            .with_label_values(&[route.as_str(), self.name, event])
    }

    /// The gauge `headway_filter_event_timestamp_seconds{route, filter, event}`: set it to the
    /// Unix time when the event happens, and `time() - …` is its age (`jwt` stamps its last
    /// good JWKS fetch). Like [`FilterSetup::counter`], take it once and keep it.
    pub fn timestamp(&self, event: &str) -> prometheus::Gauge {
        let route = self.route.matcher.describe();
        self.build
            .series
            .timestamps
            .with_label_values(&[route.as_str(), self.name, event])
    }

    /// The counter `headway_rate_limit_store_errors_total{route, reason}` for this route: a
    /// request `rate_limit` could not count in its shared store, for `reason`.
    pub fn rate_limit_store_errors(&self, reason: &str) -> IntCounter {
        let route = self.route.matcher.describe();
        self.build
            .series
            .store_errors
            .with_label_values(&[route.as_str(), reason])
    }

    /// State that outlives a reload: the value this filter kept before the conf was reloaded,
    /// when its route, its place in the route's `filters:`, its name and its keys are the same
    /// (and the value is a `T`); else `make()`'s. Take it once, at setup, and keep the `Arc`:
    /// a rate limit keeps its buckets this way, so that a reload hands no client a fresh burst.
    pub fn keep<T: std::any::Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        self.keep_for(self.config, make)
    }

    /// [`FilterSetup::keep`], but the value carries over while `part` (the part of the
    /// filter's conf it depends on) is the same, whatever its other keys: `jwt` keeps the keys
    /// it fetched while its `remote_jwks` is unchanged.
    pub fn keep_for<T: std::any::Any + Send + Sync>(
        &self,
        part: &impl serde::Serialize,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let keys = serde_yaml::to_string(part).unwrap_or_default();
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{keys}",
            self.route.matcher.describe(),
            self.route.domains.join(","),
            self.index,
            self.name
        );
        self.build.keeper.keep(key, make)
    }

    /// A client of the conf's cluster `name`, to send requests of the filter's own (through
    /// the cluster's discovery, health and TLS); an error names the clusters there are. The
    /// client of a conf only checked (`headway -t`) sends nothing. Call it from a task
    /// ([`FilterSetup::spawn`]), never on a request's path: a call waits for the network.
    pub fn cluster(&self, name: &str) -> Result<ClusterClient, String> {
        self.build.cluster(name)
    }

    /// Runs `task` in the background once the gateway serves this conf (at start, once the
    /// server runs; on a reload, when the new conf is swapped in); never for a conf that is
    /// only checked. The task must end on its own when the filter is gone: hold the filter's
    /// state by `Weak`, and return when it no longer upgrades.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.build.spawn(Box::pin(task));
    }

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

/// A filter name that [`Registry::register`] found taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter `{0}` is already registered (a built-in filter, or one added before): choose a name of your own, or replace it explicitly (Headway::replace_filter)")]
pub struct NameTaken(pub String);

/// Filter factories by name.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    /// A registry with no filter at all (see `Registry::new` for one with headway's own).
    pub fn empty() -> Registry {
        Registry {
            factories: BTreeMap::new(),
        }
    }

    /// Adds the filter called `name`; a name already taken (a built-in's, or one registered
    /// before) is refused: [`Registry::replace`] says so when that is meant.
    pub fn register(
        &mut self,
        name: &str,
        factory: impl Fn(&FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> + Send + Sync + 'static,
    ) -> Result<&mut Registry, NameTaken> {
        if self.factories.contains_key(name) {
            return Err(NameTaken(name.to_owned()));
        }
        Ok(self.replace(name, factory))
    }

    /// Adds the filter called `name`, replacing the one of that name if there is one.
    pub fn replace(
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

    /// Builds the filter a `filters:` entry names, the `index`th of its route. `path` is the
    /// entry's, for the error; `build` holds what its conf's filters are built with.
    pub(crate) fn build(
        &self,
        name: &str,
        config: &serde_yaml::Value,
        route: &Route,
        path: &str,
        index: usize,
        build: &Build<'_>,
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
        let setup = FilterSetup {
            config,
            route,
            name,
            index,
            build,
        };
        factory(&setup).map_err(|e| format!("{path}: {e}"))
    }
}
