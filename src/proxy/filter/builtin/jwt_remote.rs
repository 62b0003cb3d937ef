//! `jwt`'s `remote_jwks`: the keys an identity provider publishes at a URL (Keycloak's
//! `/realms/<realm>/protocol/openid-connect/certs`, Auth0's and Google's JWKS), fetched through
//! a cluster of the conf — its discovery, health and TLS — and cached (Envoy's `remote_jwks`
//! with `async_fetch`).
//!
//! Nothing here runs on a request's path. A task fetches at start, then every `refresh`; after
//! a failure sooner (`retry_interval`, doubling up to `refresh`); and when a request brings a
//! token whose `kid` (or algorithm) no key has, at most once per `min_refetch_interval`, so
//! that made-up kids cannot make the gateway hammer its provider. That request is answered from
//! the keys at hand. A fetch that fails (no backend, refused, timeout, a status but 200, no
//! JWKS, no usable key) keeps the last good set. The set outlives a reload while `remote_jwks`
//! is unchanged. Every fetch is counted by result, and stamped (see [`Counters`]).

use super::jwt_keys::{self, KeySet};
use crate::config::duration;
use crate::proxy::filter::FilterSetup;
use crate::upstream::client::{CallFailure, ClusterClient};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, HOST};
use prometheus::{Gauge, IntCounter};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// `remote_jwks: { cluster, path, host, timeout, refresh, retry_interval,
/// min_refetch_interval }`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConf {
    cluster: String,
    path: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_refresh")]
    refresh: String,
    #[serde(default = "default_retry")]
    retry_interval: String,
    #[serde(default = "default_min_refetch")]
    min_refetch_interval: String,
}

fn default_timeout() -> String {
    "2s".into()
}
fn default_refresh() -> String {
    "5m".into()
}
fn default_retry() -> String {
    "1s".into()
}
fn default_min_refetch() -> String {
    "30s".into()
}

/// Why a fetch kept the old keys: the `jwks_fetch_<label>` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchFailure {
    NoBackend,
    Unreachable,
    Timeout,
    BadStatus,
    Invalid,
}

impl FetchFailure {
    const ALL: [FetchFailure; 5] = [
        FetchFailure::NoBackend,
        FetchFailure::Unreachable,
        FetchFailure::Timeout,
        FetchFailure::BadStatus,
        FetchFailure::Invalid,
    ];

    fn label(self) -> &'static str {
        match self {
            FetchFailure::NoBackend => "no_backend",
            FetchFailure::Unreachable => "unreachable",
            FetchFailure::Timeout => "timeout",
            FetchFailure::BadStatus => "bad_status",
            FetchFailure::Invalid => "invalid",
        }
    }

    fn of(call: CallFailure) -> FetchFailure {
        match call {
            CallFailure::NotRunning | CallFailure::NoBackend => FetchFailure::NoBackend,
            CallFailure::Connect | CallFailure::Protocol => FetchFailure::Unreachable,
            CallFailure::Timeout => FetchFailure::Timeout,
            CallFailure::TooLarge => FetchFailure::Invalid,
        }
    }
}

/// What outlives a reload: the keys fetched, and when.
pub struct Fetched {
    set: ArcSwap<KeySet>,
    /// XXH3 of the body that made `set`: the same JWKS again keeps the set (and its serial).
    digest: AtomicU64,
    /// Milliseconds since `epoch`, plus one (0: never), of the last good fetch.
    last_good: AtomicU64,
    /// The same, of the last fetch started.
    last_started: AtomicU64,
    /// Which build's task refreshes: the latest one to start.
    generation: AtomicU64,
    epoch: Instant,
}

impl Fetched {
    fn new() -> Fetched {
        Fetched {
            set: ArcSwap::from_pointee(KeySet {
                keys: Vec::new(),
                serial: 0,
            }),
            digest: AtomicU64::new(0),
            last_good: AtomicU64::new(0),
            last_started: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// How long ago the last good fetch was, if there was one.
    fn age(&self) -> Option<Duration> {
        match self.last_good.load(Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(self.now().saturating_sub(at))),
        }
    }
}

/// The filter's events: `jwks_fetch_ok` (stamped: its timestamp is the key set's age),
/// `jwks_keys_changed` (stamped), `jwks_fetch_<failure>`, `jwks_refetch_unknown_kid`.
struct Counters {
    ok: IntCounter,
    ok_at: Gauge,
    changed: IntCounter,
    changed_at: Gauge,
    failed: [IntCounter; 5],
    unknown_kid: IntCounter,
}

/// One `jwt` filter's remote keys.
pub struct RemoteJwks {
    fetched: Arc<Fetched>,
    client: ClusterClient,
    path: String,
    host: Option<HeaderValue>,
    timeout: Duration,
    refresh: Duration,
    retry: Duration,
    min_refetch: Duration,
    /// Wakes the task for a refetch.
    wake: Arc<Notify>,
    counters: Counters,
    /// `route=… filter=…`, for the log.
    whose: String,
}

fn positive(key: &str, text: &str) -> Result<Duration, String> {
    match duration::parse(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("remote_jwks.{key}: must be more than 0")),
        Err(e) => Err(format!("remote_jwks.{key}: {e}")),
    }
}

impl RemoteJwks {
    /// Checks `conf`, takes the keys kept from before a reload, and queues the refresh task.
    pub fn build(setup: &FilterSetup<'_>, conf: &RemoteConf) -> Result<Arc<RemoteJwks>, String> {
        let client = setup
            .cluster(&conf.cluster)
            .map_err(|e| format!("remote_jwks.cluster: {e}"))?;
        if !conf.path.starts_with('/') || conf.path.parse::<http::Uri>().is_err() {
            return Err(format!(
                "remote_jwks.path: `{}` is not a path (`/.well-known/jwks.json`)",
                conf.path
            ));
        }
        let host = match &conf.host {
            None => None,
            Some(h) => Some(
                HeaderValue::from_str(h)
                    .map_err(|_| format!("remote_jwks.host: `{h}` is not a host name"))?,
            ),
        };
        let event = |e: &str| setup.counter(&format!("jwks_{e}"));
        let remote = Arc::new(RemoteJwks {
            fetched: setup.keep_for(conf, Fetched::new),
            client,
            path: conf.path.clone(),
            host,
            timeout: positive("timeout", &conf.timeout)?,
            refresh: positive("refresh", &conf.refresh)?,
            retry: positive("retry_interval", &conf.retry_interval)?,
            min_refetch: positive("min_refetch_interval", &conf.min_refetch_interval)?,
            wake: Arc::new(Notify::new()),
            counters: Counters {
                ok: event("fetch_ok"),
                ok_at: setup.timestamp("jwks_fetch_ok"),
                changed: event("keys_changed"),
                changed_at: setup.timestamp("jwks_keys_changed"),
                failed: FetchFailure::ALL.map(|f| event(&format!("fetch_{}", f.label()))),
                unknown_kid: event("refetch_unknown_kid"),
            },
            whose: format!(
                "route={} filter={}",
                setup.route.matcher.describe(),
                setup.name
            ),
        });
        setup.spawn(RemoteJwks::refresher(Arc::downgrade(&remote)));
        Ok(remote)
    }

    /// The keys now (empty until the first good fetch).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.fetched.set.load()
    }

    /// A token named a key the set lacks: asks for a fetch, unless one started less than
    /// `min_refetch_interval` ago. Never waits.
    pub fn unknown_key(&self) {
        let now = self.fetched.now();
        let last = self.fetched.last_started.load(Relaxed);
        let window = u64::try_from(self.min_refetch.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < window {
            return;
        }
        let cas = self
            .fetched
            .last_started
            .compare_exchange(last, now, Relaxed, Relaxed);
        if cas.is_ok() {
            self.counters.unknown_kid.inc();
            self.wake.notify_one();
        }
    }

    /// The refresh loop: ends when the filter is dropped, or a newer build's loop has started.
    async fn refresher(remote: Weak<RemoteJwks>) {
        let Some(first) = remote.upgrade() else {
            return;
        };
        let me = first.fetched.generation.fetch_add(1, Relaxed) + 1;
        let wake = first.wake.clone();
        // A set kept from before a reload is refreshed when it is due, not at once.
        let mut wait = first
            .fetched
            .age()
            .map_or(Duration::ZERO, |age| first.refresh.saturating_sub(age));
        drop(first);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
            let Some(remote) = remote.upgrade() else {
                return;
            };
            if remote.fetched.generation.load(Relaxed) != me {
                return;
            }
            wait = if remote.fetch().await {
                failures = 0;
                remote.refresh
            } else {
                let backoff = remote.retry.saturating_mul(1 << failures.min(16));
                failures += 1;
                backoff.min(remote.refresh)
            };
        }
    }

    /// One fetch: the new keys installed, or the old ones kept. Counted and logged; true when
    /// it got a JWKS.
    async fn fetch(&self) -> bool {
        self.fetched.last_started.store(self.fetched.now(), Relaxed);
        let mut request = http::Request::get(self.path.as_str()).header(
            ACCEPT,
            HeaderValue::from_static("application/jwk-set+json, application/json"),
        );
        if let Some(host) = &self.host {
            request = request.header(HOST, host.clone());
        }
        let outcome = match request.body(Bytes::new()) {
            Err(e) => Err((FetchFailure::Invalid, format!("bad request: {e}"))),
            Ok(request) => match self.client.send(request, self.timeout).await {
                Err(e) => Err((FetchFailure::of(e.failure), e.to_string())),
                Ok(r) if r.status() != http::StatusCode::OK => {
                    Err((FetchFailure::BadStatus, format!("answered {}", r.status())))
                }
                Ok(r) => self.install(r.body()),
            },
        };
        match outcome {
            Ok(changed) => {
                self.fetched.last_good.store(self.fetched.now(), Relaxed);
                self.counters.ok.inc();
                self.counters.ok_at.set(unix_now());
                if changed {
                    self.counters.changed.inc();
                    self.counters.changed_at.set(unix_now());
                    let set = self.keys();
                    let kids: Vec<&str> =
                        set.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
                    log::info!(
                        "jwks {}: {} key(s) from {} of cluster {} (kids: {})",
                        self.whose,
                        set.keys.len(),
                        self.path,
                        self.client.cluster_name(),
                        kids.join(", ")
                    );
                }
                true
            }
            Err((failure, why)) => {
                self.counters.failed[failure as usize].inc();
                let kept = match self.fetched.age() {
                    Some(age) => format!(
                        "keeping the {} key(s) fetched {} ago",
                        self.keys().keys.len(),
                        duration::display(Duration::from_secs(age.as_secs()))
                    ),
                    None => "no key yet: every token is refused".to_owned(),
                };
                log::warn!(
                    "jwks {}: fetching {} from cluster {} failed ({}): {why}; {kept}",
                    self.whose,
                    self.path,
                    self.client.cluster_name(),
                    failure.label()
                );
                false
            }
        }
    }

    /// Installs the keys of `body` unless it is the JWKS already in use; true when they
    /// changed.
    fn install(&self, body: &Bytes) -> Result<bool, (FetchFailure, String)> {
        let digest = xxhash_rust::xxh3::xxh3_64(body);
        if self.fetched.last_good.load(Relaxed) != 0 && self.fetched.digest.load(Relaxed) == digest
        {
            return Ok(false);
        }
        let invalid = |why: String| (FetchFailure::Invalid, why);
        let text =
            std::str::from_utf8(body).map_err(|_| invalid("the body is not UTF-8".into()))?;
        let (keys, unusable) =
            jwt_keys::parse_jwks(text).map_err(|e| invalid(format!("the body {e}")))?;
        for why in &unusable {
            log::warn!("jwks {}: key skipped: {why}", self.whose);
        }
        if keys.is_empty() {
            return Err(invalid(
                "the JWKS has no key headway can verify with".into(),
            ));
        }
        let serial = self.fetched.set.load().serial + 1;
        self.fetched.set.store(Arc::new(KeySet { keys, serial }));
        self.fetched.digest.store(digest, Relaxed);
        Ok(true)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
