//! Token buckets for `rate_limit`: one bucket as a single atomic (GCRA), and a table of them
//! by key, bounded in size.
//!
//! A bucket is the generic cell rate algorithm (what `governor` and nginx's `limit_req` run):
//! instead of a token count and a refill timer it keeps one number, the time at which the
//! bucket will be full again ("theoretical arrival time"). A request takes a token by pushing
//! that time one interval later, refused when it would land more than `burst` intervals in the
//! future. One compare-and-swap per request, no lock, no timer, refill continuous.
//!
//! The table is a `moka` cache (already in the build through hickory-resolver): at most
//! `max_keys` buckets, least-recently-used eviction behind a TinyLFU admission filter, so a
//! flood of one-time keys (an attacker rotating addresses or header values) is turned away at
//! admission instead of pushing out the buckets of keys that keep coming back; and every
//! bucket idle for as long as it takes to refill is dropped, losing nothing (a full bucket and
//! no bucket are the same). Lookups are lock-free reads of a sharded map.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A token bucket's shape: one token every `interval`, at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds per token.
    interval: u64,
    /// Nanoseconds for the whole bucket to refill: `burst × interval`.
    capacity: u64,
    burst: u64,
}

impl Rate {
    /// `requests` tokens per `per`, holding at most `burst`; None when a count is 0 or the
    /// bucket's refill time would not fit in 584 years of nanoseconds.
    pub fn new(requests: u64, per: Duration, burst: u64) -> Option<Rate> {
        if requests == 0 || burst == 0 {
            return None;
        }
        let per = u64::try_from(per.as_nanos()).ok()?;
        let interval = (per / requests).max(1);
        Some(Rate {
            interval,
            capacity: interval.checked_mul(burst)?,
            burst,
        })
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The time one token takes to come back.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// How long an emptied bucket takes to fill again.
    pub fn refill_time(&self) -> Duration {
        Duration::from_nanos(self.capacity)
    }
}

/// What a bucket said to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A token was taken.
    Allowed {
        /// Tokens left after this one.
        remaining: u64,
        /// Time until the bucket is full again.
        full_in: Duration,
    },
    /// No token: the request is refused.
    Limited {
        /// Time until the next token.
        retry_in: Duration,
        /// Time until the bucket is full again.
        full_in: Duration,
    },
}

/// One bucket: the time (nanoseconds after its table's epoch) at which it is full again.
/// 0, the epoch, is a full bucket.
#[derive(Debug, Default)]
pub struct Bucket(AtomicU64);

impl Bucket {
    /// Takes a token at `now` (nanoseconds after the epoch), if there is one.
    pub fn take(&self, rate: &Rate, now: u64) -> Decision {
        let mut full_at = self.0.load(Ordering::Relaxed);
        loop {
            let next = full_at.max(now).saturating_add(rate.interval);
            let ahead = next - now;
            if ahead > rate.capacity {
                return Decision::Limited {
                    retry_in: Duration::from_nanos(ahead - rate.capacity),
                    full_in: Duration::from_nanos(full_at.saturating_sub(now)),
                };
            }
            match self
                .0
                .compare_exchange_weak(full_at, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Decision::Allowed {
                        remaining: (rate.capacity - ahead) / rate.interval,
                        full_in: Duration::from_nanos(ahead),
                    }
                }
                Err(current) => full_at = current,
            }
        }
    }
}

/// Buckets of one shape: one for every request, or one per key in a bounded table.
pub struct Buckets<K> {
    rate: Rate,
    epoch: Instant,
    store: Store<K>,
}

enum Store<K> {
    One(Bucket),
    Keyed(moka::sync::Cache<K, Arc<Bucket>>),
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Buckets<K> {
    /// A single bucket that every request takes from, whatever its key.
    pub fn single(rate: Rate) -> Buckets<K> {
        Buckets {
            rate,
            epoch: Instant::now(),
            store: Store::One(Bucket::default()),
        }
    }

    /// A bucket per key, at most `max_keys` of them (see the module's doc for which go).
    pub fn keyed(rate: Rate, max_keys: u64) -> Buckets<K> {
        // An idle bucket is full again after its refill time: dropping it then loses nothing.
        let idle = rate.refill_time().max(Duration::from_secs(1));
        Buckets {
            rate,
            epoch: Instant::now(),
            store: Store::Keyed(
                moka::sync::Cache::builder()
                    .max_capacity(max_keys)
                    .time_to_idle(idle)
                    .build(),
            ),
        }
    }

    /// The bucket shape.
    pub fn rate(&self) -> &Rate {
        &self.rate
    }

    /// Takes a token from `key`'s bucket (a new, full one if the key has none).
    pub fn take(&self, key: K) -> Decision {
        self.take_at(key, self.epoch.elapsed())
    }

    /// As [`Buckets::take`], at `since_epoch` (tests run the clock themselves).
    pub fn take_at(&self, key: K, since_epoch: Duration) -> Decision {
        let now = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        match &self.store {
            Store::One(bucket) => bucket.take(&self.rate, now),
            Store::Keyed(table) => table
                .get_with(key, || Arc::new(Bucket::default()))
                .take(&self.rate, now),
        }
    }

    /// How many keyed buckets there are (after the table's pending evictions run).
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        match &self.store {
            Store::One(_) => 1,
            Store::Keyed(table) => {
                table.run_pending_tasks();
                table.entry_count()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_gives_its_burst_then_refills_one_token_per_interval() {
        let buckets = Buckets::<u8>::single(Rate::new(10, S, 3).unwrap());
        for left in [2, 1, 0] {
            assert!(
                matches!(buckets.take_at(0, ms(1000)), Decision::Allowed { remaining, .. } if remaining == left)
            );
        }
        let Decision::Limited { retry_in, full_in } = buckets.take_at(0, ms(1000)) else {
            panic!("the fourth request in a burst of 3 is refused");
        };
        assert_eq!(retry_in, ms(100), "one token every 100 ms");
        assert_eq!(full_in, ms(300));
        assert!(matches!(
            buckets.take_at(0, ms(1050)),
            Decision::Limited { .. }
        ));
        assert!(matches!(
            buckets.take_at(0, ms(1100)),
            Decision::Allowed { remaining: 0, .. }
        ));
        // Idle long enough: full again, never more than the burst.
        assert!(matches!(
            buckets.take_at(0, ms(60_000)),
            Decision::Allowed { remaining: 2, .. }
        ));
    }

    #[test]
    fn rates_that_cannot_be_are_refused() {
        assert_eq!(Rate::new(0, S, 1), None);
        assert_eq!(Rate::new(1, S, 0), None);
        assert_eq!(Rate::new(1, Duration::from_secs(3600), u64::MAX), None);
        assert_eq!(Rate::new(1, S, 5).unwrap().refill_time(), 5 * S);
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let buckets = Buckets::<u32>::keyed(Rate::new(1, S, 1).unwrap(), 100);
        assert!(matches!(buckets.take_at(1, S), Decision::Allowed { .. }));
        assert!(matches!(buckets.take_at(1, S), Decision::Limited { .. }));
        assert!(matches!(buckets.take_at(2, S), Decision::Allowed { .. }));
    }

    #[test]
    fn rotating_keys_stay_within_max_keys_and_do_not_free_a_limited_key() {
        let max_keys = 1_000;
        let buckets =
            Buckets::<u64>::keyed(Rate::new(1, Duration::from_secs(60), 5).unwrap(), max_keys);
        let at = S;
        for _ in 0..5 {
            assert!(matches!(buckets.take_at(0, at), Decision::Allowed { .. }));
        }
        // 100 times the table's size in one-time keys, the limited client trying again
        // between them: the table stays bounded, and the limited key stays limited.
        for key in 1..=100 * max_keys {
            buckets.take_at(key, at);
            if key % 100 == 0 {
                assert!(
                    matches!(buckets.take_at(0, at), Decision::Limited { .. }),
                    "key 0 got a fresh bucket after {key} other keys"
                );
            }
            if key % 10_000 == 0 {
                assert!(buckets.len() <= max_keys, "{} buckets", buckets.len());
            }
        }
        assert!(buckets.len() <= max_keys, "{} buckets", buckets.len());
        assert!(buckets.len() > max_keys / 2, "the table is used");
    }

    #[test]
    fn concurrent_takes_never_give_more_than_the_burst() {
        let buckets = Arc::new(Buckets::<u8>::single(
            Rate::new(1, Duration::from_secs(3600), 1_000).unwrap(),
        ));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let buckets = buckets.clone();
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| matches!(buckets.take_at(0, S), Decision::Allowed { .. }))
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 1_000);
    }
}
