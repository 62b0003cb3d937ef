//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) as a pingora `BackendSelection`.
//!
//! Each backend fills slots of a prime-sized lookup table in the order of its own permutation
//! (an offset and a skip derived from its address), taking turns, so every backend gets an
//! almost equal share and removing one backend moves little more than its own share of keys.
//! A key hashes to a slot; when that backend is unusable the following slots are tried.
//!
//! Every hash is XXH3-64 (xxHash 0.8 spec, its output frozen since) over the bytes of the
//! backend's `ip:port` or of the key, so the same backends and key give the same pick in every
//! build, on every toolchain and on every replica. std's `DefaultHasher` promises none of that.

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;
use std::collections::BTreeSet;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Table size: a prime well above the number of backends (Maglev wants M ≫ N).
const TABLE_SIZE: usize = 65_537;

/// `lb_policy: maglev`: a backend per key from Maglev's lookup table of 65,537 slots (Envoy:
/// `MAGLEV`, same table size); the key comes from the cluster's `hash_policy`.
pub struct Maglev {
    backends: Box<[Backend]>,
    /// Slot → index into `backends`.
    table: Box<[u16]>,
}

/// Seeds of the three hashes: a backend's offset and skip, and a request's key. Changing one
/// moves keys between pods (the golden test says so).
const OFFSET_SEED: u64 = 0x6d61;
const SKIP_SEED: u64 = 0x676c;
const KEY_SEED: u64 = 0x6b6579;

fn hash(seed: u64, data: &[u8]) -> u64 {
    xxh3_64_with_seed(data, seed)
}

impl BackendSelection for Maglev {
    type Iter = MaglevIter;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        let backends: Box<[Backend]> = backends.iter().take(u16::MAX as usize).cloned().collect();
        let n = backends.len();
        let mut table = vec![u16::MAX; if n == 0 { 0 } else { TABLE_SIZE }];
        if n > 0 {
            let m = TABLE_SIZE as u64;
            let perms: Vec<(u64, u64)> = backends
                .iter()
                .map(|b| {
                    let name = b.addr.to_string();
                    (
                        hash(OFFSET_SEED, name.as_bytes()) % m,
                        hash(SKIP_SEED, name.as_bytes()) % (m - 1) + 1,
                    )
                })
                .collect();
            let mut next = vec![0u64; n];
            let mut filled = 0;
            'fill: loop {
                for (i, &(offset, skip)) in perms.iter().enumerate() {
                    let mut slot = ((offset + next[i] * skip) % m) as usize;
                    while table[slot] != u16::MAX {
                        next[i] += 1;
                        slot = ((offset + next[i] * skip) % m) as usize;
                    }
                    table[slot] = i as u16;
                    next[i] += 1;
                    filled += 1;
                    if filled == TABLE_SIZE {
                        break 'fill;
                    }
                }
            }
        }
        Maglev {
            backends,
            table: table.into_boxed_slice(),
        }
    }

    fn iter(self: &Arc<Self>, key: &[u8]) -> MaglevIter {
        let start = if self.table.is_empty() {
            0
        } else {
            (hash(KEY_SEED, key) % self.table.len() as u64) as usize
        };
        MaglevIter {
            maglev: self.clone(),
            slot: start,
            steps: 0,
        }
    }
}

/// The key's slot first, then the following slots (each distinct backend comes up quickly).
pub struct MaglevIter {
    maglev: Arc<Maglev>,
    slot: usize,
    steps: usize,
}

impl BackendIter for MaglevIter {
    fn next(&mut self) -> Option<&Backend> {
        let table = &self.maglev.table;
        if table.is_empty() || self.steps >= table.len() {
            return None;
        }
        let index = table[self.slot] as usize;
        self.slot = (self.slot + 1) % table.len();
        self.steps += 1;
        self.maglev.backends.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn backends(n: usize) -> BTreeSet<Backend> {
        (0..n)
            .map(|i| Backend::new(&format!("10.0.{}.{}:8080", i / 200, i % 200 + 1)).unwrap())
            .collect()
    }

    fn first(m: &Arc<Maglev>, key: &str) -> String {
        m.iter(key.as_bytes()).next().unwrap().addr.to_string()
    }

    /// Pins the hash and the fill: a change in either moves keys between pods on upgrade, and
    /// replicas built apart would disagree. The expected values come from an independent
    /// reference (the fill loop in Python over the xxHash authors' C libxxhash, XXH3-64 with seed).
    #[test]
    fn table_and_picks_are_the_same_in_every_build() {
        let m = Arc::new(Maglev::build(&backends(3)));
        assert_eq!(
            m.table[..16],
            [2, 0, 2, 1, 1, 0, 2, 2, 1, 1, 1, 0, 2, 1, 0, 0],
            "table entries moved"
        );
        let mut counts = [0usize; 3];
        for &i in m.table.iter() {
            counts[i as usize] += 1;
        }
        assert_eq!(counts, [21_846, 21_846, 21_845]);
        let picks: Vec<String> = (0..8).map(|k| first(&m, &format!("user-{k}"))).collect();
        assert_eq!(
            picks,
            [
                "10.0.0.2:8080",
                "10.0.0.3:8080",
                "10.0.0.1:8080",
                "10.0.0.1:8080",
                "10.0.0.2:8080",
                "10.0.0.3:8080",
                "10.0.0.3:8080",
                "10.0.0.1:8080",
            ],
            "key -> pod picks moved"
        );
    }

    /// The hash is XXH3-64 itself: the xxHash spec's value for empty input, and one keyed value
    /// from the C libxxhash (`XXH3_64bits_withSeed("user-0", 6, 0x6b6579)`).
    #[test]
    fn the_hash_is_xxh3_64() {
        assert_eq!(hash(0, b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(hash(KEY_SEED, b"user-0"), 0xe8d9_c8ab_f3ec_a594);
    }

    #[test]
    fn keys_spread_evenly_and_stick() {
        let m = Arc::new(Maglev::build(&backends(10)));
        let mut counts: HashMap<String, usize> = HashMap::new();
        for k in 0..10_000 {
            *counts.entry(first(&m, &format!("user-{k}"))).or_default() += 1;
        }
        assert_eq!(counts.len(), 10);
        assert!(
            counts.values().all(|&c| (800..=1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(first(&m, "user-7"), first(&m, "user-7"));
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth_of_the_keys() {
        let all = backends(10);
        let before = Arc::new(Maglev::build(&all));
        let mut fewer = all.clone();
        let gone = fewer.iter().nth(3).unwrap().clone();
        fewer.remove(&gone);
        let after = Arc::new(Maglev::build(&fewer));
        let keys = 10_000;
        let moved = (0..keys)
            .filter(|k| {
                let key = format!("session-{k}");
                first(&before, &key) != first(&after, &key)
            })
            .count();
        // The removed backend's share (~10%) must move; Maglev moves a little more at most.
        assert!(
            moved as f64 / keys as f64 <= 0.13,
            "moved {moved} of {keys}"
        );
        assert!(
            moved as f64 / keys as f64 >= 0.08,
            "moved {moved} of {keys}"
        );
    }

    #[test]
    fn the_iterator_reaches_every_backend_and_an_empty_table_yields_none() {
        let m = Arc::new(Maglev::build(&backends(5)));
        let mut it = m.iter(b"k");
        let mut seen = BTreeSet::new();
        while let Some(b) = it.next() {
            seen.insert(b.addr.to_string());
            if seen.len() == 5 {
                break;
            }
        }
        assert_eq!(seen.len(), 5);
        let empty = Arc::new(Maglev::build(&BTreeSet::new()));
        assert!(empty.iter(b"k").next().is_none());
    }
}
