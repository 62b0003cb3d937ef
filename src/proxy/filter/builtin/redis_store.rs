//! `rate_limit`'s shared store: buckets counted in Redis, so that every replica of the gateway
//! takes from the same ones (Envoy's `envoyproxy/ratelimit`, Traefik's `redis` limiter).
//!
//! A request costs one round trip: an atomic Lua script (EVALSHA, loaded when the connection
//! is made) runs the same GCRA as the local buckets on one key, the time at which the bucket
//! is full again, in microseconds of Redis's own clock (`TIME`: the replicas' clocks may
//! differ, Redis's is one). The key expires when its bucket is full: Redis holds only the
//! buckets that are in use.
//!
//! One multiplexed connection per store carries every request of every worker (pipelined, no
//! pool to size). It is held as an `ArcSwapOption`: while it is gone the request path does not
//! try Redis at all (no connect attempt per request), it falls back at once and counts why; a
//! background task reconnects, with a backoff of 50 ms doubling to 500 ms, so that counting is
//! global again within one backoff of Redis's return. A request never waits longer than
//! `timeout` for Redis; three timeouts in a row drop the connection as well (a Redis that
//! stopped answering is treated as gone, and reconnected to, not waited for).

use super::buckets::{Decision, Rate};
use crate::config::duration;
use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The GCRA of `buckets.rs` as one atomic script. KEYS[1]: the bucket; ARGV: the interval and
/// the capacity (burst × interval), in microseconds. Returns `{1, remaining, full_in}` or
/// `{0, retry_in, full_in}`, times in microseconds.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local full_at = tonumber(redis.call('GET', KEYS[1]) or 0)
local next = math.max(full_at, now) + interval
local ahead = next - now
if ahead > capacity then
  return {0, ahead - capacity, math.max(full_at - now, 0)}
end
redis.call('SET', KEYS[1], next, 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((capacity - ahead) / interval), ahead}
";

/// How long a request waits for Redis unless the conf says otherwise.
const DEFAULT_TIMEOUT: &str = "20ms";
/// How long a (re)connection may take, the script's loading included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The reconnection's backoff: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(500));
/// Timeouts in a row after which the connection is dropped and made again.
const TIMEOUTS_TO_DROP: u32 = 3;

/// `store: { redis: { … } }`: where a limit is counted when not in the replica.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConf {
    #[serde(deserialize_with = "redis_key")]
    redis: RedisConf,
}

// serde_yaml reads a filter's keys from a `Value`, which keeps no path: this names the key.
fn redis_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RedisConf, D::Error> {
    RedisConf::deserialize(d).map_err(|e| serde::de::Error::custom(format!("store.redis: {e}")))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RedisConf {
    url: String,
    timeout: Option<String>,
    key_prefix: Option<String>,
}

/// Why a request could not be counted in Redis: the `reason` label of
/// `headway_rate_limit_store_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// No answer within `timeout`.
    Timeout,
    /// Redis refuses connections (not running, or nothing listens there).
    Refused,
    /// The connection broke (Redis stopped or restarted, the network dropped it).
    Dropped,
    /// Redis answered with an error, or a connection failed for another reason (DNS, AUTH).
    Error,
    /// The first connection is not made yet.
    Connecting,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 5] = [
        Reason::Timeout,
        Reason::Refused,
        Reason::Dropped,
        Reason::Error,
        Reason::Connecting,
    ];

    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Dropped => "dropped",
            Reason::Error => "error",
            Reason::Connecting => "connecting",
        }
    }

    fn from_u8(n: u8) -> Reason {
        Reason::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(Reason::Error)
    }

    fn of(e: &RedisError) -> Reason {
        if e.is_timeout() {
            Reason::Timeout
        } else if e.is_connection_refusal() {
            Reason::Refused
        } else if e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error() {
            Reason::Dropped
        } else {
            Reason::Error
        }
    }
}

/// A Redis that limits are counted in, and its connection.
pub struct RedisStore {
    client: redis::Client,
    script: redis::Script,
    timeout: Duration,
    /// Prepended to every bucket's key.
    pub prefix: String,
    /// The connection; none while Redis is away.
    conn: ArcSwapOption<MultiplexedConnection>,
    /// Why there is no connection (a `Reason` as its `u8`).
    outage: AtomicU8,
    timeouts: AtomicU32,
    /// Wakes the reconnection task when the connection is dropped.
    wake: Arc<Notify>,
    /// Whether a reconnection task runs (a store kept across a reload has one already).
    task: AtomicBool,
}

impl StoreConf {
    /// The store; a URL that does not parse, or a bad timeout, is an error naming its key.
    /// `default_prefix` is the key prefix unless the conf names one.
    pub fn build(&self, default_prefix: String) -> Result<RedisStore, String> {
        let client = redis::Client::open(self.redis.url.as_str())
            .map_err(|e| format!("store.redis.url: `{}`: {e}", self.redis.url))?;
        let text = self.redis.timeout.as_deref().unwrap_or(DEFAULT_TIMEOUT);
        let timeout = duration::parse(text).map_err(|e| format!("store.redis.timeout: {e}"))?;
        if timeout.is_zero() {
            return Err("store.redis.timeout: must be more than 0".into());
        }
        Ok(RedisStore {
            client,
            script: redis::Script::new(SCRIPT),
            timeout,
            prefix: self.redis.key_prefix.clone().unwrap_or(default_prefix),
            conn: ArcSwapOption::empty(),
            outage: AtomicU8::new(Reason::Connecting as u8),
            timeouts: AtomicU32::new(0),
            wake: Arc::new(Notify::new()),
            task: AtomicBool::new(false),
        })
    }
}

impl RedisStore {
    /// Takes a token from the bucket `key` shaped by `rate`, in Redis; `Err` says why Redis
    /// could not count it. Never waits longer than the store's `timeout`.
    pub async fn take(&self, key: &[u8], rate: &Rate) -> Result<Decision, Reason> {
        let Some(conn) = self.conn.load_full() else {
            return Err(Reason::from_u8(self.outage.load(Ordering::Relaxed)));
        };
        let mut conn = MultiplexedConnection::clone(&conn);
        let interval = micros(rate.interval()).max(1);
        let capacity = micros(rate.refill_time()).max(interval);
        let mut call = self.script.key(key);
        call.arg(interval).arg(capacity);
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<(u8, u64, u64)>(&mut conn));
        match answer.await {
            Ok(Ok((allowed, a, b))) => {
                self.timeouts.store(0, Ordering::Relaxed);
                Ok(if allowed == 1 {
                    Decision::Allowed {
                        remaining: a,
                        full_in: Duration::from_micros(b),
                    }
                } else {
                    Decision::Limited {
                        retry_in: Duration::from_micros(a),
                        full_in: Duration::from_micros(b),
                    }
                })
            }
            Ok(Err(e)) => {
                let reason = Reason::of(&e);
                if reason != Reason::Error {
                    self.drop_connection(reason);
                }
                Err(reason)
            }
            Err(_) => {
                if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_TO_DROP {
                    self.drop_connection(Reason::Timeout);
                }
                Err(Reason::Timeout)
            }
        }
    }

    fn drop_connection(&self, reason: Reason) {
        self.outage.store(reason as u8, Ordering::Relaxed);
        if self.conn.swap(None).is_some() {
            log::warn!(
                "rate_limit: Redis at {} is away ({}): falling back until it is back",
                self.client.get_connection_info().addr,
                reason.label()
            );
        }
        self.wake.notify_one();
    }

    async fn connect(&self) -> Result<(), Reason> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(CONNECT_TIMEOUT);
        let attempt = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Loaded with a longer wait than a request's: the first EVALSHA then finds it.
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(SCRIPT)
                .exec_async(&mut conn)
                .await?;
            Ok::<_, RedisError>(conn)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                self.conn.store(Some(Arc::new(conn)));
                Ok(())
            }
            Ok(Err(e)) => Err(match Reason::of(&e) {
                Reason::Dropped if e.is_io_error() => Reason::Dropped,
                Reason::Dropped => Reason::Error,
                other => other,
            }),
            Err(_) => Err(Reason::Timeout),
        }
    }

    /// Connects, and connects again whenever the connection is dropped, with backoff; ends
    /// when the store is gone. Run it once the conf is served (`FilterSetup::spawn`).
    pub async fn keep_connected(store: Weak<RedisStore>) {
        match store.upgrade() {
            Some(s) if !s.task.swap(true, Ordering::Relaxed) => {}
            _ => return, // a store kept across a reload keeps its task
        }
        let mut backoff = BACKOFF.0;
        let mut failing = false;
        loop {
            let Some(s) = store.upgrade() else { return };
            if s.conn.load().is_some() {
                backoff = BACKOFF.0;
                let wake = s.wake.clone();
                drop(s);
                // Woken when the connection drops; the timeout lets the task see the store go.
                let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
                continue;
            }
            match s.connect().await {
                Ok(()) => {
                    log::info!(
                        "rate_limit: counting in Redis at {}",
                        s.client.get_connection_info().addr
                    );
                    failing = false;
                }
                Err(reason) => {
                    s.outage.store(reason as u8, Ordering::Relaxed);
                    if !failing {
                        log::warn!(
                            "rate_limit: cannot reach Redis at {} ({}): retrying with backoff",
                            s.client.get_connection_info().addr,
                            reason.label()
                        );
                    }
                    failing = true;
                    drop(s);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_u8_and_bad_urls_and_timeouts_are_refused() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_u8(reason as u8), reason);
        }
        assert_eq!(Reason::from_u8(200), Reason::Error);
        let conf = |yaml: &str| serde_yaml::from_str::<StoreConf>(yaml).map_err(|e| e.to_string());
        let built = |yaml: &str| conf(yaml).and_then(|c| c.build("p:".into()).map(|_| ()));
        assert!(built("redis: { url: 'redis://127.0.0.1:6379/2' }").is_ok());
        let err = built("redis: { url: 'redis://:::x' }")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("store.redis.url: "), "{err}");
        let err = built("redis: { url: 'redis://h', timeout: 0ms }")
            .err()
            .unwrap_or_default();
        assert_eq!(err, "store.redis.timeout: must be more than 0");
        let err = built("redis: { url: 'redis://h', pool: 4 }")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("store.redis: ") && err.contains("unknown field `pool`"),
            "{err}"
        );
    }
}
