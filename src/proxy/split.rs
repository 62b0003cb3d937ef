//! A route's weighted split: which of its clusters a request goes to — at random by weight, or
//! by its sticky key hashed into the weights — and each pick counted.

use crate::config::{HashKey, Split};
use crate::upstream::cluster::Cluster;
use crate::window::{SplitShare, Window};
use prometheus::IntCounter;
use std::sync::Arc;

/// The clusters of a split route, each owning the points `[from, upto)` of `[0, total)`.
pub(super) struct WeightedClusters {
    choices: Vec<Choice>,
    total: u32,
    sticky: Option<HashKey>,
}

struct Choice {
    cluster: Arc<Cluster>,
    /// The end (exclusive) of the cluster's points: the sum of its weight and those before it.
    upto: u32,
    /// `headway_route_cluster_requests_total{route, cluster}`.
    picks: IntCounter,
    /// Its picks in the last minute, for the realised share.
    window: Arc<Window>,
}

impl WeightedClusters {
    /// `split` over the running clusters (`cluster` finds one by name); `counter` gives each
    /// cluster's pick counter, and `previous` the windows the route had (so a reload that
    /// changes weights keeps the minute). None when a cluster is not running (the conf's checks
    /// refuse that first).
    pub(super) fn new(
        split: &Split,
        cluster: impl Fn(&str) -> Option<Arc<Cluster>>,
        counter: impl Fn(&str) -> IntCounter,
        previous: &[SplitShare],
    ) -> Option<WeightedClusters> {
        let mut upto = 0u32;
        let mut choices = Vec::with_capacity(split.clusters.len());
        for c in &split.clusters {
            let cluster = cluster(&c.name)?;
            upto = upto.checked_add(c.weight)?;
            let window = previous
                .iter()
                .find(|p| p.cluster == c.name)
                .map_or_else(Arc::default, |p| p.window.clone());
            choices.push(Choice {
                picks: counter(&c.name),
                cluster,
                upto,
                window,
            });
        }
        (upto > 0).then_some(WeightedClusters {
            choices,
            total: upto,
            sticky: split.sticky.clone(),
        })
    }

    /// The key a request is kept on its cluster by, if the split is sticky.
    pub(super) fn sticky(&self) -> Option<&HashKey> {
        self.sticky.as_ref()
    }

    /// The cluster a request goes to: by `key` (its sticky key) hashed into the weights, so a
    /// user stays while the weights stay; at random by weight without one. Counted.
    pub(super) fn pick(&self, key: Option<&[u8]>) -> Option<&Arc<Cluster>> {
        let point = match key {
            // Multiply-shift: the hash mapped onto [0, total) without a division.
            Some(key) => {
                ((u128::from(xxhash_rust::xxh3::xxh3_64(key)) * u128::from(self.total)) >> 64)
                    as u32
            }
            None => fastrand::u32(..self.total),
        };
        // Weights are few: a scan. A cluster of weight 0 owns no point and is never found.
        let choice = self
            .choices
            .iter()
            .find(|c| point < c.upto)
            .or(self.choices.last())?;
        choice.picks.inc();
        choice.window.record(1, 0, None);
        Some(&choice.cluster)
    }

    /// What the dashboard shows of the split: each cluster's weight and last minute of picks.
    pub(super) fn shares(&self) -> Vec<SplitShare> {
        let mut from = 0;
        self.choices
            .iter()
            .map(|c| {
                let share = SplitShare {
                    cluster: c.cluster.name().to_owned(),
                    weight: c.upto - from,
                    window: c.window.clone(),
                };
                from = c.upto;
                share
            })
            .collect()
    }
}
