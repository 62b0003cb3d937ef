//! The last minute of a route's or a backend's traffic, for the admin dashboard: requests,
//! errors and latencies in one-second buckets of atomics. Recording is a few relaxed atomic
//! adds (no lock, no allocation); reading sums the buckets still inside the minute.

use crate::lock;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds a window remembers.
pub const SECONDS: usize = 60;

/// Upper bounds of the latency buckets, in microseconds; one more bucket takes the rest.
const BOUNDS_US: [u64; 15] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// One second's counts. `tag` is the second (on the window's clock) plus one that the counts
/// belong to; 0: never used.
#[derive(Default)]
struct Second {
    tag: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; BOUNDS_US.len() + 1],
}

/// A ring of [`SECONDS`] one-second buckets. A bucket is reset by the first record of a new
/// second that lands on it; records racing with that reset may be lost (a statistic, not an
/// account).
pub struct Window {
    epoch: Instant,
    seconds: Box<[Second]>,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            epoch: Instant::now(),
            seconds: (0..SECONDS).map(|_| Second::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Window")
    }
}

/// A window's last minute, as `/stats` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Requests in the last 60 s (the current second included).
    pub requests: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// `requests` over the seconds the window has existed, up to 60.
    pub requests_per_second: f64,
    /// `errors / requests`; 0 without requests.
    pub error_rate: f64,
    /// Median latency in milliseconds, interpolated in its bucket; None without latencies.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds; None without latencies.
    pub p99_ms: Option<f64>,
    /// Requests in each of the last 60 seconds, oldest first, the current second last.
    pub per_second: Vec<u32>,
}

impl Window {
    /// Counts `requests` and `errors` now, and one latency when given.
    pub fn record(&self, requests: u32, errors: u32, latency: Option<Duration>) {
        let second = self.epoch.elapsed().as_secs();
        let Some(bucket) = self.seconds.get((second % SECONDS as u64) as usize) else {
            return;
        };
        let tag = second + 1;
        let seen = bucket.tag.load(Relaxed);
        if seen != tag
            && bucket
                .tag
                .compare_exchange(seen, tag, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.requests.store(0, Relaxed);
            bucket.errors.store(0, Relaxed);
            for b in &bucket.latency {
                b.store(0, Relaxed);
            }
        }
        if requests > 0 {
            bucket.requests.fetch_add(requests, Relaxed);
        }
        if errors > 0 {
            bucket.errors.fetch_add(errors, Relaxed);
        }
        if let Some(latency) = latency {
            let us = latency.as_micros() as u64;
            let i = BOUNDS_US.partition_point(|&bound| bound < us);
            if let Some(b) = bucket.latency.get(i) {
                b.fetch_add(1, Relaxed);
            }
        }
    }

    /// The last minute's counts and quantiles.
    pub fn summary(&self) -> Summary {
        let now = self.epoch.elapsed().as_secs();
        let mut per_second = vec![0u32; SECONDS];
        let mut latency = [0u64; BOUNDS_US.len() + 1];
        let (mut requests, mut errors) = (0u64, 0u64);
        for (age, slot) in per_second.iter_mut().rev().enumerate() {
            let Some(second) = now.checked_sub(age as u64) else {
                break;
            };
            let Some(bucket) = self.seconds.get((second % SECONDS as u64) as usize) else {
                continue;
            };
            if bucket.tag.load(Relaxed) != second + 1 {
                continue;
            }
            *slot = bucket.requests.load(Relaxed);
            requests += u64::from(*slot);
            errors += u64::from(bucket.errors.load(Relaxed));
            for (sum, b) in latency.iter_mut().zip(&bucket.latency) {
                *sum += u64::from(b.load(Relaxed));
            }
        }
        let covered = (self.epoch.elapsed().as_secs_f64()).clamp(1.0, SECONDS as f64);
        Summary {
            requests,
            errors,
            requests_per_second: round(requests as f64 / covered),
            error_rate: if requests == 0 {
                0.0
            } else {
                round(errors as f64 / requests as f64)
            },
            p50_ms: quantile(&latency, 0.5),
            p99_ms: quantile(&latency, 0.99),
            per_second,
        }
    }
}

/// Three decimals are plenty for a dashboard, and keep the JSON short.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The `q` quantile of the bucket counts, in milliseconds, interpolated linearly inside its
/// bucket; the last (open) bucket answers its lower bound.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let low = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
            let Some(&high) = BOUNDS_US.get(i) else {
                return Some(round(low as f64 / 1000.0));
            };
            let share = (rank - below as f64) / n as f64;
            return Some(round((low as f64 + (high - low) as f64 * share) / 1000.0));
        }
        below += n;
    }
    None
}

/// One route's window and what it is called.
#[derive(Clone)]
pub struct RouteWindow {
    /// The route as `/metrics` labels it (its prefix, or what it matches).
    pub route: String,
    /// Its cluster's name (`direct` for a route that answers itself, `none` for requests that
    /// matched no route).
    pub cluster: String,
    /// Its last minute.
    pub window: Arc<Window>,
    /// A route with `clusters`: each cluster's weight and picks (empty for any other route).
    pub splits: Vec<SplitShare>,
}

/// One cluster of a split route: its configured weight and its picks in the last minute.
#[derive(Clone)]
pub struct SplitShare {
    /// The cluster's name.
    pub cluster: String,
    /// Its `weight` in the conf served.
    pub weight: u32,
    /// The requests it was picked for.
    pub window: Arc<Window>,
}

/// The routes of the conf served, each with its window. A reload publishes its routes; a route
/// it keeps (same route, same cluster) keeps its window, so its minute goes on.
#[derive(Default)]
pub struct RouteWindows {
    current: Mutex<Vec<RouteWindow>>,
    /// The served windows by cluster, then route (the first of a name, as a scan would find):
    /// a reload of 10,000 routes looks each up instead of scanning 10,000 for each (1.5 s).
    by_name: Mutex<HashMap<String, HashMap<String, RouteWindow>>>,
}

impl RouteWindows {
    /// The window of (`cluster`, `route`): the served one, or a new one. Called when a conf's
    /// routing is built, never on the request path.
    /// A split route's served shares come with it, for the new split to keep.
    pub fn window(&self, cluster: &str, route: &str) -> RouteWindow {
        lock(&self.by_name)
            .get(cluster)
            .and_then(|routes| routes.get(route))
            .cloned()
            .unwrap_or_else(|| RouteWindow {
                route: route.to_owned(),
                cluster: cluster.to_owned(),
                window: Arc::default(),
                splits: Vec::new(),
            })
    }

    /// The routes of the conf now served, in its order.
    pub fn publish(&self, routes: Vec<RouteWindow>) {
        let mut by_name: HashMap<String, HashMap<String, RouteWindow>> = HashMap::new();
        for w in &routes {
            by_name
                .entry(w.cluster.clone())
                .or_default()
                .entry(w.route.clone())
                .or_insert_with(|| w.clone());
        }
        *lock(&self.by_name) = by_name;
        *lock(&self.current) = routes;
    }

    /// Each served route with its last minute.
    pub fn summaries(&self) -> Vec<(String, String, Summary)> {
        lock(&self.current)
            .iter()
            .map(|w| (w.route.clone(), w.cluster.clone(), w.window.summary()))
            .collect()
    }

    /// Each served split route (`clusters`) with its clusters' weights and windows.
    pub fn splits(&self) -> Vec<(String, Vec<SplitShare>)> {
        lock(&self.current)
            .iter()
            .filter(|w| !w.splits.is_empty())
            .map(|w| (w.route.clone(), w.splits.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_and_finds_its_quantiles() {
        let w = Window::default();
        for i in 0..100u64 {
            let error = u32::from(i % 10 == 0);
            w.record(
                1,
                error,
                Some(Duration::from_micros(if i < 98 { 300 } else { 40_000 })),
            );
        }
        let s = w.summary();
        assert_eq!((s.requests, s.errors), (100, 10));
        assert_eq!(s.error_rate, 0.1);
        assert_eq!(s.per_second.iter().map(|&n| u64::from(n)).sum::<u64>(), 100);
        assert_eq!(s.per_second.len(), SECONDS);
        let p50 = s.p50_ms.unwrap();
        assert!((0.25..=0.5).contains(&p50), "p50 {p50}");
        let p99 = s.p99_ms.unwrap();
        assert!((25.0..=50.0).contains(&p99), "p99 {p99}");
        assert_eq!(quantile(&[0; 16], 0.5), None);
        let mut open = [0u64; 16];
        open[15] = 1;
        assert_eq!(quantile(&open, 0.99), Some(10_000.0));
    }

    #[test]
    fn a_route_kept_by_a_reload_keeps_its_window() {
        let routes = RouteWindows::default();
        let a = routes.window("c", "/a");
        a.window.record(1, 0, None);
        routes.publish(vec![a]);
        assert_eq!(routes.window("c", "/a").window.summary().requests, 1);
        assert_eq!(routes.window("d", "/a").window.summary().requests, 0);
        assert_eq!(routes.summaries().len(), 1);
    }
}
