//! Upstreams: clusters of backends found by DNS, their health, limits and balancing.

pub mod breaker;
pub mod cluster;
pub mod discovery;
pub mod health;
pub mod lb;
pub mod outlier;
