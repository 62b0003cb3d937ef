//! Upstreams: clusters of backends found by DNS, their health, limits and balancing.

pub mod backends;
pub mod breaker;
pub mod client;
pub mod cluster;
pub mod discovery;
mod driver;
pub mod health;
pub mod lb;
mod lookup;
pub mod outlier;
pub mod resolver;
pub mod slow_start;
pub mod snapshot;
pub mod srv;
pub mod tls;

use crate::config::{Address, Gateway as GatewayConfig};
use crate::metrics::Metrics;
use cluster::Cluster;
use resolver::build_resolver;
use std::sync::Arc;

/// What [`Clusters::rebuild`] made of a new conf.
pub struct Rebuilt {
    /// The new set, in the conf's order.
    pub clusters: Clusters,
    /// Clusters made for it: to start (they have run no discovery yet).
    pub added: Vec<Arc<Cluster>>,
    /// Clusters it no longer has: to retire.
    pub removed: Vec<Arc<Cluster>>,
}

/// Every cluster of the conf, in its order (routes refer to them by index).
pub struct Clusters(Vec<Arc<Cluster>>);

impl Clusters {
    /// Builds every cluster and its resolver. Fails on what the conf cannot express, such as a
    /// missing resolv.conf when no nameservers are configured.
    pub fn build(config: &GatewayConfig, metrics: &Metrics) -> Result<Clusters, String> {
        let clusters = config
            .clusters
            .iter()
            .map(|c| Clusters::build_one(config, c, metrics))
            .collect::<Result<_, _>>()?;
        Ok(Clusters(clusters))
    }

    fn build_one(
        config: &GatewayConfig,
        c: &crate::config::ClusterConfig,
        metrics: &Metrics,
    ) -> Result<Arc<Cluster>, String> {
        let resolver = match c.address {
            Address::Name(_) => Some(
                build_resolver(&config.resolver, c.dns.lookup_family)
                    .map_err(|e| format!("gateway.resolver: {e}"))?,
            ),
            Address::Ip(_) => None,
        };
        let cluster = Cluster::new(c.clone(), resolver, metrics.cluster(&c.name))?;
        cluster.set_conf_key(format!("{c:?} {:?}", config.resolver));
        Ok(Arc::new(cluster))
    }

    /// The clusters of `config`, keeping each of these whose conf (and the resolver's) did not
    /// change: its backends, health, ejections and counters stay. Returns the new set, the
    /// clusters made for it (to start: they have run no discovery yet) and those it no longer
    /// has (to retire once requests on them end).
    pub fn rebuild(&self, config: &GatewayConfig, metrics: &Metrics) -> Result<Rebuilt, String> {
        // The conf types hold durations, addresses and names only: their Debug form is a
        // faithful key for "unchanged".
        let key = |c: &crate::config::ClusterConfig| format!("{c:?} {:?}", config.resolver);
        let mut kept = Vec::with_capacity(config.clusters.len());
        let mut added = Vec::new();
        for c in &config.clusters {
            let same = self
                .0
                .iter()
                .find(|old| old.config.name == c.name && old.same_conf(&key(c)));
            match same {
                Some(old) => kept.push(old.clone()),
                None => {
                    let fresh = Clusters::build_one(config, c, metrics)?;
                    added.push(fresh.clone());
                    kept.push(fresh);
                }
            }
        }
        let removed = self
            .0
            .iter()
            .filter(|old| !kept.iter().any(|k| Arc::ptr_eq(k, old)))
            .cloned()
            .collect();
        Ok(Rebuilt {
            clusters: Clusters(kept),
            added,
            removed,
        })
    }

    /// The cluster at `index` in the conf's order.
    pub fn get(&self, index: usize) -> Option<&Arc<Cluster>> {
        self.0.get(index)
    }

    /// Every cluster, in the conf's order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.0.iter()
    }

    /// How many clusters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Clusters that have not finished their first discovery yet.
    pub fn pending(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|c| !c.is_ready())
            .map(|c| c.name())
            .collect()
    }
}
