//! headway: a pingora gateway that routes path prefixes to DNS-discovered, health-checked pods.
//!
//! The data path runs one way: [`config`] (the conf file, typed and checked) → [`upstream`]
//! (clusters: DNS discovery, health, outlier detection, limits, balancing) → [`proxy`] (the
//! request path: route, filters, select, retry, answer) → [`server`] (listeners, client
//! limits, signals: the assembly). [`admin`] reads [`upstream`]; nothing imports [`server`].
//!
//! As a library, a gateway of your own is [`Headway`] with your [`filter::Filter`]s registered
//! by name, run from the same command line and conf as the `headway` binary; routes name them
//! in their `filters:` (`examples/custom_filter.rs`). Each key under `gateway:`, with its
//! default and its Envoy equivalent, is documented on the [`config`] type that holds it.

#![deny(unsafe_code)] // but for server/socket.rs: see ARCHITECTURE.md
#![deny(missing_docs)]

mod app;
mod cli;
pub use app::Headway;
pub use proxy::filter;

pub mod admin;
pub mod certificates;
pub mod client_cert;
pub mod config;
pub mod connection;
pub mod lifecycle;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod upstream;
pub mod window;

/// Locks a mutex, going on with the data if a panicking thread poisoned it: every value guarded
/// here is a plain status record that stays consistent field by field.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The one time format of the admin's JSON (`/clusters`, `/stats`): RFC 3339 in UTC, to the
/// millisecond (`2026-12-07T19:55:16.123Z`).
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Seconds since the Unix epoch, for `/metrics` gauges.
pub(crate) fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
