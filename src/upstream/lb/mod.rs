//! Load-balancing policies: how a cluster picks one backend among the ready ones.
//!
//! Two kinds. Round robin and random walk the members in the backend table themselves
//! ([`rotation`]): no hashing per request. Ring hash and maglev pick by the request's key
//! through a pingora `BackendSelection` (ring hash is pingora's, maglev is [`maglev`]). Adding
//! a keyed policy: a file here implementing `BackendSelection`, a variant of
//! `config::LbPolicy`, and its arm in [`balancer`]; a rotation: a variant of
//! [`rotation::Rotation`] and its arm in [`rotation_for`].

pub mod maglev;
pub mod rotation;

use crate::config::LbPolicy;
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::selection::consistent::KetamaHashing;
use pingora::lb::selection::{BackendIter, BackendSelection, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::Result;

/// pingora's load balancer for one policy, as the cluster uses it.
#[async_trait]
pub trait Balancer: Send + Sync {
    /// The backends discovery found, with pingora's health.
    fn backends(&self) -> &Backends;
    /// Sets the active health check (once, before the first probe).
    fn set_health_check(&mut self, check: Box<dyn HealthCheck + Send + Sync>);
    /// Runs discovery once.
    async fn update(&self) -> Result<()>;
    /// Picks a backend for `key` that `accept` takes, trying at most `max_iterations`.
    fn select_with(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: &dyn Fn(&Backend, bool) -> bool,
    ) -> Option<Backend>;
}

#[async_trait]
impl<S> Balancer for LoadBalancer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    fn backends(&self) -> &Backends {
        LoadBalancer::backends(self)
    }

    fn set_health_check(&mut self, check: Box<dyn HealthCheck + Send + Sync>) {
        LoadBalancer::set_health_check(self, check);
    }

    async fn update(&self) -> Result<()> {
        LoadBalancer::update(self).await
    }

    fn select_with(
        &self,
        key: &[u8],
        max_iterations: usize,
        accept: &dyn Fn(&Backend, bool) -> bool,
    ) -> Option<Backend> {
        LoadBalancer::select_with(self, key, max_iterations, accept)
    }
}

/// The rotation `policy` picks with, if it is one (least request draws its two candidates at
/// random); None for the keyed policies.
pub fn rotation_for(policy: LbPolicy) -> Option<rotation::Rotation> {
    match policy {
        LbPolicy::RoundRobin => Some(rotation::Rotation::RoundRobin(Default::default())),
        LbPolicy::Random | LbPolicy::LeastRequest => Some(rotation::Rotation::Random),
        LbPolicy::RingHash | LbPolicy::Maglev => None,
    }
}

/// The balancer for `policy` over what `discovery` finds: discovery and active health checks
/// for every policy, and the pick itself for the keyed ones.
pub fn balancer(
    policy: LbPolicy,
    discovery: Box<dyn ServiceDiscovery + Send + Sync>,
) -> Box<dyn Balancer> {
    let backends = Backends::new(discovery);
    match policy {
        LbPolicy::RoundRobin => Box::new(LoadBalancer::<RoundRobin>::from_backends(backends)),
        LbPolicy::Random | LbPolicy::LeastRequest => {
            Box::new(LoadBalancer::<Random>::from_backends(backends))
        }
        LbPolicy::RingHash => Box::new(LoadBalancer::<KetamaHashing>::from_backends(backends)),
        LbPolicy::Maglev => Box::new(LoadBalancer::<maglev::Maglev>::from_backends(backends)),
    }
}
