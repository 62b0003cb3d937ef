//! A route as the request path serves it: one value holding what it sends to, its filters,
//! its counters and its shadows, built from the router's own table so that they cannot disagree.

use super::filter::Chain;
use super::mirror::RouteMirror;
use super::split::WeightedClusters;
use crate::config::HashKey;
use crate::metrics::RouteMetrics;
use crate::upstream::cluster::Cluster;
use std::sync::Arc;
use std::time::Duration;

/// One served route; the router's match at index `i` is `Routing::routes[i]`.
pub(super) struct ServedRoute {
    /// Where the request goes once the filters let it through.
    pub(super) target: Target,
    /// The route's `timeout`, overriding its cluster's.
    pub(super) timeout: Option<Duration>,
    /// The route's filters; None for a route without any (then no filter stage runs).
    pub(super) filters: Option<Chain>,
    /// The route's request counters and last minute.
    pub(super) metrics: RouteMetrics,
    /// Its shadows (`mirror`); None for a route without any.
    pub(super) mirror: Option<RouteMirror>,
}

/// What a route sends its requests to.
pub(super) enum Target {
    /// Nothing upstream: a filter answers (`direct_response`).
    Direct,
    /// One cluster.
    Cluster(Arc<Cluster>),
    /// One of several, by weight (`clusters`).
    Split(WeightedClusters),
}

impl Target {
    /// The cluster a request goes to, if any; `sticky` reads a split's sticky key from the
    /// request (asked only of a sticky split).
    pub(super) fn pick(
        &self,
        sticky: impl FnOnce(&HashKey) -> Option<Vec<u8>>,
    ) -> Option<&Arc<Cluster>> {
        match self {
            Target::Direct => None,
            Target::Cluster(c) => Some(c),
            Target::Split(split) => split.pick(split.sticky().and_then(sticky).as_deref()),
        }
    }
}
