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
pub mod names;
pub mod outlier;
pub mod resolver;
pub mod slow_start;
pub mod snapshot;
pub mod srv;
pub mod tls;

use crate::config::{Address, Gateway as GatewayConfig};
use crate::metrics::Metrics;
use cluster::Cluster;
use health::ProbeConnectors;
use names::Names;
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

/// Every cluster of the conf, in its order (routes refer to them by index), and what they
/// share: the DNS lookups (one resolver per family, one lookup per name) and the probes'
/// connectors.
pub struct Clusters {
    list: Vec<Arc<Cluster>>,
    names: Arc<Names>,
    probes: Arc<ProbeConnectors>,
}

impl Clusters {
    /// Builds every cluster, and the resolvers they share. Fails on what the conf cannot
    /// express, such as a missing resolv.conf when no nameservers are configured.
    pub fn build(config: &GatewayConfig, metrics: &Metrics) -> Result<Clusters, String> {
        let names = Names::new(&config.resolver).map_err(|e| format!("gateway.resolver: {e}"))?;
        let probes = ProbeConnectors::new();
        let list = config
            .clusters
            .iter()
            .map(|c| Clusters::build_one(c, &names, &probes, metrics))
            .collect::<Result<_, _>>()?;
        Ok(Clusters {
            list,
            names,
            probes,
        })
    }

    fn build_one(
        c: &crate::config::ClusterConfig,
        names: &Arc<Names>,
        probes: &Arc<ProbeConnectors>,
        metrics: &Metrics,
    ) -> Result<Arc<Cluster>, String> {
        let dns = matches!(c.address, Address::Name(_)).then(|| names.clone());
        let cluster = Cluster::new(c.clone(), dns, probes.clone(), metrics.cluster(&c.name))?;
        cluster.set_conf_key(format!("{c:?} {:?}", names.resolvers().settings()));
        Ok(Arc::new(cluster))
    }

    /// The clusters of `config`, keeping each of these whose conf (and the resolver's) did not
    /// change: its backends, health, ejections and counters stay. Returns the new set, the
    /// clusters made for it (to start: they have run no discovery yet) and those it no longer
    /// has (to retire once requests on them end). A changed `gateway.resolver` makes new
    /// resolvers, and every cluster that resolves a name is made anew with them.
    pub fn rebuild(&self, config: &GatewayConfig, metrics: &Metrics) -> Result<Rebuilt, String> {
        let names = if self.names.resolvers().settings() == config.resolver {
            self.names.clone()
        } else {
            Names::new(&config.resolver).map_err(|e| format!("gateway.resolver: {e}"))?
        };
        // The conf types hold durations, addresses and names only: their Debug form is a
        // faithful key for "unchanged".
        let key = |c: &crate::config::ClusterConfig| format!("{c:?} {:?}", config.resolver);
        let mut kept = Vec::with_capacity(config.clusters.len());
        let mut added = Vec::new();
        for c in &config.clusters {
            let same = self
                .list
                .iter()
                .find(|old| old.config.name == c.name && old.same_conf(&key(c)));
            match same {
                Some(old) => kept.push(old.clone()),
                None => {
                    let fresh = Clusters::build_one(c, &names, &self.probes, metrics)?;
                    added.push(fresh.clone());
                    kept.push(fresh);
                }
            }
        }
        let removed = self
            .list
            .iter()
            .filter(|old| !kept.iter().any(|k| Arc::ptr_eq(k, old)))
            .cloned()
            .collect();
        Ok(Rebuilt {
            clusters: Clusters {
                list: kept,
                names,
                probes: self.probes.clone(),
            },
            added,
            removed,
        })
    }

    /// The cluster at `index` in the conf's order.
    pub fn get(&self, index: usize) -> Option<&Arc<Cluster>> {
        self.list.get(index)
    }

    /// Every cluster, in the conf's order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.list.iter()
    }

    /// How many clusters there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Clusters that have not finished their first discovery yet.
    pub fn pending(&self) -> Vec<&str> {
        self.list
            .iter()
            .filter(|c| !c.is_ready())
            .map(|c| c.name())
            .collect()
    }
}
