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
        Ok(Arc::new(cluster))
    }

    /// The clusters of `config`, keeping each of these whose conf did not change (and, for one
    /// that resolves a name, the resolver's): its backends, health, ejections and counters stay.
    /// Returns the new set, the clusters made for it (to start: they have run no discovery yet)
    /// and those it no longer has (to retire once requests on them end). A changed
    /// `gateway.resolver` makes new resolvers, and every cluster that resolves a name is made
    /// anew with them; a cluster with an IP address is kept.
    pub fn rebuild(&self, config: &GatewayConfig, metrics: &Metrics) -> Result<Rebuilt, String> {
        let same_resolver = self.names.resolvers().settings() == config.resolver;
        let names = if same_resolver {
            self.names.clone()
        } else {
            Names::new(&config.resolver).map_err(|e| format!("gateway.resolver: {e}"))?
        };
        let mut kept = Vec::with_capacity(config.clusters.len());
        let mut added = Vec::new();
        for c in &config.clusters {
            let same = self
                .list
                .iter()
                .find(|old| old.config == *c && (same_resolver || old.dns.is_none()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CONF: &str = r#"
version: 1
gateway:
  listen: ["127.0.0.1:8000"]
  admin: { listen: "127.0.0.1:9901" }
  resolver: { nameservers: ["127.0.0.1:15353"] }
  routes:
    - { prefix: /a, cluster: a }
    - { prefix: /b, cluster: b }
    - { prefix: /c, cluster: c }
  clusters:
    - { name: a, address: a.svc.cluster.local, port: 8080 }
    - { name: b, address: b.svc.cluster.local, port: 8080, connect_timeout: 250ms }
    - { name: c, address: 127.0.0.9, port: 8080 }
"#;

    fn rebuilt(from: &Clusters, text: &str) -> Rebuilt {
        let config = Config::from_yaml(text).unwrap_or_else(|e| panic!("{e}"));
        from.rebuild(
            &config.gateway,
            &Metrics::new().unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn kept(old: &Clusters, new: &Clusters) -> Vec<bool> {
        new.iter()
            .map(|n| old.iter().any(|o| Arc::ptr_eq(o, n)))
            .collect()
    }

    #[test]
    fn a_reload_keeps_each_cluster_whose_conf_is_equal_and_remakes_the_rest() {
        let config = Config::from_yaml(CONF).unwrap_or_else(|e| panic!("{e}"));
        let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        let first = Clusters::build(&config.gateway, &metrics).unwrap_or_else(|e| panic!("{e}"));

        let same = rebuilt(&first, CONF);
        assert_eq!(kept(&first, &same.clusters), [true, true, true]);
        assert!(same.added.is_empty() && same.removed.is_empty());

        let changed = rebuilt(&first, &CONF.replace("250ms", "300ms"));
        assert_eq!(kept(&first, &changed.clusters), [true, false, true]);
        assert_eq!(changed.added.len(), 1);
        assert_eq!(changed.removed.len(), 1);

        // A new resolver remakes the clusters that resolve a name; the IP-literal one stays.
        let resolver = rebuilt(&first, &CONF.replace("127.0.0.1:15353", "127.0.0.2:15353"));
        assert_eq!(kept(&first, &resolver.clusters), [false, false, true]);
    }
}
