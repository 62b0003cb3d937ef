//! The `jwt` filter's cache of tokens it has verified (Envoy's `jwt_cache_config`): a client
//! sends the same token on every request until it expires, and an RS256 or ES256 signature
//! costs a million instructions or more to verify (BENCHMARKS.md, "Authentication").
//!
//! An entry is found by a keyed 64-bit hash of the token and kept with the whole token, which a
//! hit must equal byte for byte: a forged token cannot borrow another's entry. It holds what the
//! token's verification gave the request (the claim headers), its `exp`, checked on every hit,
//! so a cached token stops passing when it expires, as an uncached one would, and the key set
//! that verified it: once a fetched JWKS changes, a hit needs the new set to verify it again.
//! The cache belongs to one build of the filter: a reload (new keys) starts it empty.

use http::header::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Longest an entry is kept, whatever its `exp`: a bound keeps the table from holding
/// long-lived tokens nobody sends any more.
const MAX_AGE: Duration = Duration::from_secs(300);

/// A verified token, as the request needs it.
pub struct Verified {
    token: Box<str>,
    /// `exp`, seconds since the epoch.
    exp: u64,
    /// The serial of the key set that verified it.
    keys: u64,
    /// The claim headers to send to the backend.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Tokens verified by one `jwt` filter, at most `capacity` of them.
pub struct TokenCache {
    entries: moka::sync::Cache<u64, Arc<Verified>>,
    seed: u64,
    leeway: u64,
}

/// What the cache says of a token.
pub enum Lookup {
    /// Verified before and not expired: its claim headers.
    Valid(Arc<Verified>),
    /// Verified before, expired since.
    Expired,
    /// Not in the cache: verify it.
    Unknown,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenCache {
    /// A cache of `capacity` tokens; `leeway` as the filter's, for `exp`.
    pub fn new(capacity: u64, leeway: Duration) -> TokenCache {
        TokenCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(MAX_AGE)
                .build(),
            seed: fastrand::u64(..),
            leeway: leeway.as_secs(),
        }
    }

    fn key(&self, token: &str) -> u64 {
        xxh3_64_with_seed(token.as_bytes(), self.seed)
    }

    /// What is known of `token` under the key set `keys` (its serial).
    pub fn get(&self, token: &str, keys: u64) -> Lookup {
        let key = self.key(token);
        match self.entries.get(&key) {
            Some(v) if *v.token == *token && v.keys == keys => {
                if now() > v.exp.saturating_add(self.leeway) {
                    self.entries.invalidate(&key);
                    Lookup::Expired
                } else {
                    Lookup::Valid(v)
                }
            }
            _ => Lookup::Unknown,
        }
    }

    /// Keeps a token just verified by the key set `keys` (its serial), with its `exp` and
    /// claim headers; returns the entry.
    pub fn insert(
        &self,
        token: &str,
        exp: u64,
        keys: u64,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Arc<Verified> {
        let verified = Arc::new(Verified {
            token: token.into(),
            exp,
            keys,
            headers,
        });
        self.entries.insert(self.key(token), verified.clone());
        verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_needs_the_same_token_and_an_unexpired_exp() {
        let cache = TokenCache::new(10, Duration::from_secs(0));
        let header = (
            HeaderName::from_static("x-user"),
            HeaderValue::from_static("alice"),
        );
        cache.insert("good.token.sig", now() + 60, 1, vec![header]);
        assert!(matches!(cache.get("good.token.sig", 1), Lookup::Valid(v) if v.headers.len() == 1));
        assert!(matches!(cache.get("good.token.sif", 1), Lookup::Unknown));
        // Verified by another key set: verified again.
        assert!(matches!(cache.get("good.token.sig", 2), Lookup::Unknown));
        cache.insert("old.token.sig", now() - 5, 1, Vec::new());
        assert!(matches!(cache.get("old.token.sig", 1), Lookup::Expired));
        // Dropped once seen expired.
        assert!(matches!(cache.get("old.token.sig", 1), Lookup::Unknown));
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let cache = TokenCache::new(100, Duration::from_secs(0));
        for i in 0..10_000 {
            cache.insert(&format!("t{i}"), now() + 60, 0, Vec::new());
        }
        cache.entries.run_pending_tasks();
        assert!(cache.entries.entry_count() <= 100);
    }
}
