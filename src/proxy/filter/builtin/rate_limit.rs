//! `rate_limit`: a local token bucket per route, per client address, per header value, or one
//! for the whole route; over the limit, `429` with `Retry-After` (Envoy's `local_ratelimit`;
//! nginx's `limit_req … nodelay`). Limits are per gateway replica, or, with a `store:`, shared
//! by every replica in Redis (`redis_store.rs`), with `failure_mode` saying what happens while
//! Redis is away: `allow`, `deny` (503), or `local` (the replica's own bucket, the limit shared
//! out among `expected_replicas`).

use super::buckets::{Buckets, Decision, Rate};
use super::redis_store::{Reason, RedisStore, StoreConf};
use crate::proxy::filter::{Answer, Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use prometheus::IntCounter;
use serde::Deserialize;
use sha2::Digest;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

/// How many keys a route's table holds unless the conf says otherwise.
const DEFAULT_MAX_KEYS: u64 = 100_000;
/// IPv6 clients are keyed by their /64, the block one subscriber gets.
const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The period `requests_per_unit` counts over.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Second,
    Minute,
    Hour,
}

impl Unit {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
        })
    }
}

/// What a bucket is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeyKind {
    /// The client's address (after `gateway.trusted_proxies`).
    #[default]
    Client,
    /// The value of the request header `header:`.
    Header,
    /// One bucket for the whole route.
    Route,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    requests_per_unit: u64,
    #[serde(default = "second", deserialize_with = "unit_key")]
    unit: Unit,
    burst: Option<u64>,
    #[serde(default, deserialize_with = "key_key")]
    key: KeyKind,
    header: Option<String>,
    max_keys: Option<u64>,
    ipv6_prefix: Option<u8>,
    #[serde(default)]
    headers: bool,
    store: Option<StoreConf>,
    #[serde(default, deserialize_with = "failure_key")]
    failure_mode: FailureMode,
    expected_replicas: Option<u64>,
}

/// What a limit counted in Redis does while Redis is away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FailureMode {
    /// Lets every request through.
    Allow,
    /// Refuses every request (503).
    Deny,
    /// Counts in the replica: the limit divided by `expected_replicas`.
    #[default]
    Local,
}

fn failure_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FailureMode, D::Error> {
    FailureMode::deserialize(d).map_err(|e| serde::de::Error::custom(format!("failure_mode: {e}")))
}

/// A limit counted in Redis.
struct Shared {
    store: Arc<RedisStore>,
    failure_mode: FailureMode,
    /// `headway_rate_limit_store_errors_total{route, reason}`, in `Reason::ALL`'s order.
    errors: Vec<IntCounter>,
    /// The bucket's shape in Redis (the local one's is the limit's share).
    rate: Rate,
}

fn second() -> Unit {
    Unit::Second
}

// serde_yaml reads a filter's keys from a `Value`, which keeps no path: these name the key.
fn unit_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Unit, D::Error> {
    Unit::deserialize(d).map_err(|e| serde::de::Error::custom(format!("unit: {e}")))
}

fn key_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<KeyKind, D::Error> {
    KeyKind::deserialize(d).map_err(|e| serde::de::Error::custom(format!("key: {e}")))
}

/// A bucket's key. Header values are kept as a keyed hash, so a long value costs no memory
/// and no one can choose values that collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    /// A client whose address is not known (not an IP listener): one shared bucket.
    NoClient,
    Header(u64),
    /// A request without the header: one shared bucket.
    NoHeader,
}

/// How a request's key is found.
enum KeyBy {
    Client { ipv6_prefix: u8 },
    Header(HeaderName),
    Route,
}

/// The limit of one route.
pub struct RateLimit {
    /// Kept across reloads while the limit's conf is the same (`FilterSetup::keep`): a reload
    /// hands no client a fresh burst.
    state: Arc<State>,
    shared: Option<Shared>,
    key: KeyBy,
    headers: bool,
    limited: IntCounter,
    allowed: IntCounter,
}

/// The buckets, and the hasher that turns header values into their keys (kept with them: a
/// new one would file every client under another key).
struct State {
    buckets: Buckets<Key>,
    hasher: std::collections::hash_map::RandomState,
}

/// What the response's `x-ratelimit-*` headers say, kept in the request's vars.
#[derive(Clone, Copy)]
struct Quota {
    limit: u64,
    remaining: u64,
    reset: u64,
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    if conf.requests_per_unit == 0 {
        return Err("requests_per_unit: must be at least 1".into());
    }
    // By default a bucket holds one unit's worth: Envoy's `max_tokens = tokens_per_fill`.
    let burst = conf.burst.unwrap_or(conf.requests_per_unit);
    if burst == 0 {
        return Err("burst: must be at least 1".into());
    }
    let rate = Rate::new(conf.requests_per_unit, conf.unit.duration(), burst)
        .ok_or("burst: too large for this rate (the bucket would take centuries to fill)")?;
    let key = match (conf.key, &conf.header) {
        (KeyKind::Header, Some(name)) => KeyBy::Header(
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header: `{name}` is not a header name"))?,
        ),
        (KeyKind::Header, None) => return Err("header: required with `key: header`".into()),
        (_, Some(_)) => return Err("header: only with `key: header`".into()),
        (KeyKind::Client, None) => KeyBy::Client {
            ipv6_prefix: conf.ipv6_prefix.unwrap_or(DEFAULT_IPV6_PREFIX),
        },
        (KeyKind::Route, None) => KeyBy::Route,
    };
    match (&key, conf.ipv6_prefix) {
        (KeyBy::Client { .. }, Some(p)) if !(1..=128).contains(&p) => {
            return Err(format!("ipv6_prefix: {p} is not a prefix from 1 to 128"))
        }
        (KeyBy::Client { .. }, _) | (_, None) => {}
        (_, Some(_)) => return Err("ipv6_prefix: only with `key: client`".into()),
    }
    let max_keys = match (&key, conf.max_keys) {
        (KeyBy::Route, Some(_)) => return Err("max_keys: `key: route` has a single bucket".into()),
        (KeyBy::Route, None) => None,
        (_, Some(0)) => return Err("max_keys: must be at least 1".into()),
        (_, max) => Some(max.unwrap_or(DEFAULT_MAX_KEYS)),
    };
    let shared = match &conf.store {
        None if conf.expected_replicas.is_some() => {
            return Err("expected_replicas: only with a `store:`".into())
        }
        None => None,
        Some(store) => {
            let prefix = format!(
                "headway:rl:{}:{}/{}/{}:",
                setup.route.matcher.describe(),
                conf.requests_per_unit,
                conf.unit.duration().as_secs(),
                burst
            );
            let built = store.build(prefix)?;
            let store = setup.keep_for(store, || built);
            setup.spawn(RedisStore::keep_connected(Arc::downgrade(&store)));
            Some(Shared {
                store,
                failure_mode: conf.failure_mode,
                errors: Reason::ALL
                    .iter()
                    .map(|r| setup.rate_limit_store_errors(r.label()))
                    .collect(),
                rate,
            })
        }
    };
    // With a store, the local buckets are the fallback: each replica's share of the limit.
    let rate = match conf.expected_replicas {
        Some(0) => return Err("expected_replicas: must be at least 1".into()),
        Some(n) => Rate::new(
            conf.requests_per_unit.div_ceil(n),
            conf.unit.duration(),
            burst.div_ceil(n),
        )
        .ok_or("expected_replicas: leaves no rate")?,
        None => rate,
    };
    let state = setup.keep(|| State {
        buckets: match max_keys {
            None => Buckets::single(rate),
            Some(max) => Buckets::keyed(rate, max),
        },
        hasher: Default::default(),
    });
    Ok(Arc::new(RateLimit {
        state,
        shared,
        key,
        headers: conf.headers,
        limited: setup.counter("limited"),
        allowed: setup.counter("allowed"),
    }))
}

impl RateLimit {
    fn key(&self, req: &RequestHeader, cx: &Context<'_>) -> Key {
        match &self.key {
            KeyBy::Client { ipv6_prefix } => match cx.client {
                Some(ip) => Key::Client(masked(ip, *ipv6_prefix)),
                None => Key::NoClient,
            },
            KeyBy::Header(name) => match req.headers.get(name) {
                Some(value) => Key::Header(self.state.hasher.hash_one(value.as_bytes())),
                None => Key::NoHeader,
            },
            KeyBy::Route => Key::NoClient,
        }
    }
    /// The bucket's key in Redis: the store's prefix, then the client's address, or a digest of
    /// the header's value (any bytes, any length, one short key), or the route's one bucket.
    fn shared_key(&self, prefix: &str, req: &RequestHeader, cx: &Context<'_>) -> Vec<u8> {
        let mut k = Vec::with_capacity(prefix.len() + 48);
        k.extend_from_slice(prefix.as_bytes());
        match &self.key {
            KeyBy::Client { ipv6_prefix } => match cx.client {
                Some(ip) => {
                    k.extend_from_slice(format!("c:{}", masked(ip, *ipv6_prefix)).as_bytes())
                }
                None => k.extend_from_slice(b"c-"),
            },
            KeyBy::Header(name) => match req.headers.get(name) {
                Some(value) => {
                    k.extend_from_slice(b"h:");
                    let digest = sha2::Sha256::digest(value.as_bytes());
                    for b in &digest[..16] {
                        k.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                }
                None => k.extend_from_slice(b"h-"),
            },
            KeyBy::Route => k.push(b'r'),
        }
        k
    }

    /// The decision for this request: from Redis when there is a store and it answers, else
    /// from the replica's buckets; None lets the request through uncounted (`allow`), an
    /// `Answer` refuses it (`deny`).
    async fn decide(
        &self,
        req: &RequestHeader,
        cx: &Context<'_>,
    ) -> Result<(Decision, u64), Option<Answer>> {
        let local = |this: &RateLimit| {
            let buckets = &this.state.buckets;
            (buckets.take(this.key(req, cx)), buckets.rate().burst())
        };
        let Some(shared) = &self.shared else {
            return Ok(local(self));
        };
        let key = self.shared_key(&shared.store.prefix, req, cx);
        match shared.store.take(&key, &shared.rate).await {
            Ok(decision) => Ok((decision, shared.rate.burst())),
            Err(reason) => {
                if let Some(counter) = shared.errors.get(reason as usize) {
                    counter.inc();
                }
                match shared.failure_mode {
                    FailureMode::Local => Ok(local(self)),
                    FailureMode::Allow => Err(None),
                    FailureMode::Deny => Err(Some(
                        Answer::new(503, "rate limit store unavailable\n")
                            .header(http::header::RETRY_AFTER, HeaderValue::from(1)),
                    )),
                }
            }
        }
    }
}

/// The address a client is counted under: IPv4 as it is (a v4-mapped IPv6 address as its
/// IPv4), IPv6 cut to its first `prefix` bits.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// Whole seconds, rounded up: a client told 0 would come back at once.
fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[async_trait]
impl Filter for RateLimit {
    async fn on_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<Flow> {
        let (decision, limit) = match self.decide(req, cx).await {
            Ok(decided) => decided,
            Err(None) => {
                self.allowed.inc();
                return Ok(Flow::Continue);
            }
            Err(Some(answer)) => {
                self.limited.inc();
                return Ok(Flow::Respond(answer));
            }
        };
        match decision {
            Decision::Allowed { remaining, full_in } => {
                self.allowed.inc();
                if self.headers {
                    cx.vars.insert(Quota {
                        limit,
                        remaining,
                        reset: seconds_up(full_in),
                    });
                }
                Ok(Flow::Continue)
            }
            Decision::Limited { retry_in, full_in } => {
                self.limited.inc();
                let retry = seconds_up(retry_in).max(1);
                if self.headers {
                    cx.vars.insert(Quota {
                        limit,
                        remaining: 0,
                        reset: seconds_up(full_in),
                    });
                }
                Ok(Flow::Respond(
                    Answer::new(429, format!("rate limit exceeded: retry in {retry} s\n"))
                        .header(http::header::RETRY_AFTER, HeaderValue::from(retry)),
                ))
            }
        }
    }

    fn on_response(&self, resp: &mut ResponseHeader, cx: &mut Context<'_>) -> Result<()> {
        if let Some(quota) = self.headers.then(|| cx.vars.get::<Quota>()).flatten() {
            resp.insert_header("x-ratelimit-limit", quota.limit)?;
            resp.insert_header("x-ratelimit-remaining", quota.remaining)?;
            resp.insert_header("x-ratelimit-reset", quota.reset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_block_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::V4(0.into()));
        let b: IpAddr = "2001:db8:1:2:bbbb::2"
            .parse()
            .unwrap_or(IpAddr::V4(0.into()));
        assert_eq!(masked(a, 64), masked(b, 64));
        assert_ne!(masked(a, 128), masked(b, 128));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap_or(a);
        assert_eq!(masked(mapped, 64), IpAddr::V4([10, 1, 2, 3].into()));
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_secs(2)), 2);
    }
}
