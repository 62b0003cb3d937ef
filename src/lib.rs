//! headway: a pingora gateway that routes path prefixes to DNS-discovered, health-checked pods.
//!
//! The data path runs one way: [`config`] → [`cluster`] (discovery + health per cluster) →
//! [`proxy`] (route, select, retry) — and [`admin`] reads cluster state, never writes it.

pub mod access_log;
pub mod admin;
pub mod breaker;
pub mod client_stream;
pub mod cluster;
pub mod config;
pub mod discovery;
pub mod downstream;
pub mod gateway;
pub mod health;
pub mod lifecycle;
pub mod maglev;
pub mod metrics;
pub mod outlier;
pub mod proxy;
pub mod router;

/// Locks a mutex, going on with the data if a panicking thread poisoned it: every value guarded
/// here is a plain status record that stays consistent field by field.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds since the Unix epoch, for JSON status fields.
pub(crate) fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
