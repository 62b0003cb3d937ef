//! Upstreams: clusters of backends found by DNS, their health, limits and balancing.

pub mod backends;
pub mod breaker;
pub mod cluster;
pub mod discovery;
pub mod health;
pub mod lb;
pub mod outlier;
pub mod resolver;
pub mod snapshot;

use crate::config::{Address, Gateway as GatewayConfig};
use crate::metrics::Metrics;
use cluster::Cluster;
use resolver::build_resolver;
use std::sync::Arc;

/// Every cluster of the conf, in its order (routes refer to them by index).
pub struct Clusters(Vec<Arc<Cluster>>);

impl Clusters {
    /// Builds every cluster and its resolver. Fails on what the conf cannot express, such as a
    /// missing resolv.conf when no nameservers are configured.
    pub fn build(config: &GatewayConfig, metrics: &Metrics) -> Result<Clusters, String> {
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let resolver = match c.address {
                Address::Name(_) => Some(
                    build_resolver(&config.resolver, c.dns.lookup_family)
                        .map_err(|e| format!("gateway.resolver: {e}"))?,
                ),
                Address::Ip(_) => None,
            };
            let cluster_metrics = metrics.cluster(&c.name);
            clusters.push(Arc::new(Cluster::new(
                c.clone(),
                resolver,
                cluster_metrics,
            )?));
        }
        Ok(Clusters(clusters))
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
