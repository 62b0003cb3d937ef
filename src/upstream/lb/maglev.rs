//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) as a pingora `BackendSelection`.
//!
//! Each backend fills slots of a prime-sized lookup table in the order of its own permutation
//! (an offset and a skip derived from its address), taking turns, so every backend gets an
//! almost equal share and removing one backend moves little more than its own share of keys.
//! A key hashes to a slot; when that backend is unusable the following slots are tried.

use pingora::lb::selection::{BackendIter, BackendSelection};
use pingora::lb::Backend;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Table size: a prime well above the number of backends (Maglev wants M ≫ N).
const TABLE_SIZE: usize = 65_537;

pub struct Maglev {
    backends: Box<[Backend]>,
    /// Slot → index into `backends`.
    table: Box<[u16]>,
}

fn hash_with(seed: u64, data: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut h);
    data.hash(&mut h);
    h.finish()
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
                        hash_with(0x6d61, &name) % m,
                        hash_with(0x676c, &name) % (m - 1) + 1,
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
            (hash_with(0x6b6579, key) % self.table.len() as u64) as usize
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
