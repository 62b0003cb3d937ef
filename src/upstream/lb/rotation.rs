//! Round robin and random (and least request's two random candidates): picks over the
//! cluster's members as the backend table holds them, in address order, with their state at
//! hand. pingora-lb's selection SipHashes every backend it considers, once to skip those it
//! has seen and once to look up its health; these policies need neither.

use crate::upstream::backends::BackendState;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A member: its address and what the gateway knows of it.
pub type Member = (SocketAddr, Arc<BackendState>);

/// How a rotation policy starts its walk over the members.
#[derive(Debug)]
pub enum Rotation {
    /// The next member after the last pick's start, for every request.
    RoundRobin(AtomicUsize),
    /// A random member.
    Random,
}

/// Random draws before a random pick falls back to walking on from the last draw: a few keep
/// the share of each eligible backend even when some are out.
const RANDOM_DRAWS: usize = 3;

impl Rotation {
    /// The first member of `members` that `eligible` takes, starting where the policy says;
    /// every member is considered once at most.
    pub fn pick<'a>(
        &self,
        members: &'a [Member],
        eligible: impl Fn(&Member) -> bool,
    ) -> Option<&'a Member> {
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = match self {
            Rotation::RoundRobin(next) => next.fetch_add(1, Relaxed) % n,
            Rotation::Random => {
                let mut at = fastrand::usize(..n);
                for _ in 1..RANDOM_DRAWS.min(n) {
                    if eligible(&members[at]) {
                        return Some(&members[at]);
                    }
                    at = fastrand::usize(..n);
                }
                at
            }
        };
        (0..n)
            .map(|i| &members[(start + i) % n])
            .find(|m| eligible(m))
    }
}

/// A member drawn with a chance proportional to its `weight` among those `eligible` takes: how
/// every rotation policy picks while a backend ramps up (slow start), so that each share follows
/// its weight; turns resume once the ramps are over.
pub fn pick_weighted(
    members: &[Member],
    eligible: impl Fn(&Member) -> bool,
    weight: impl Fn(&Member) -> f64,
) -> Option<&Member> {
    let total: f64 = members.iter().filter(|m| eligible(m)).map(&weight).sum();
    let mut left = fastrand::f64() * total;
    let mut last = None;
    for m in members.iter().filter(|m| eligible(m)) {
        left -= weight(m);
        if left < 0.0 {
            return Some(m);
        }
        last = Some(m);
    }
    // Rounding, or a weight that changed between the sum and the walk.
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u8) -> Vec<Member> {
        (1..=n)
            .map(|i| {
                let addr = SocketAddr::from(([127, 0, 0, i], 80));
                (addr, Arc::new(BackendState::for_tests()))
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_turns_and_skips_what_is_not_eligible() {
        let m = members(3);
        let rr = Rotation::RoundRobin(AtomicUsize::new(0));
        let picks: Vec<u8> = (0..6)
            .map(|_| rr.pick(&m, |_| true).unwrap().0.ip().to_string())
            .map(|ip| ip.rsplit('.').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        let not_two = |m: &Member| m.0.ip().to_string() != "127.0.0.2";
        for _ in 0..6 {
            assert_ne!(
                rr.pick(&m, not_two).unwrap().0.ip().to_string(),
                "127.0.0.2"
            );
        }
        assert!(rr.pick(&m, |_| false).is_none());
        assert!(rr.pick(&[], |_| true).is_none());
    }

    #[test]
    fn a_weighted_pick_gives_each_member_its_share() {
        let m = members(3);
        let weight = |m: &Member| {
            if m.0.ip().to_string() == "127.0.0.3" {
                0.5
            } else {
                1.0
            }
        };
        let mut third = 0;
        for _ in 0..10_000 {
            let pick = pick_weighted(&m, |_| true, weight).unwrap();
            third += usize::from(pick.0.ip().to_string() == "127.0.0.3");
        }
        // 0.5 of 2.5: 20%, 2000 of 10000 (σ = 40).
        assert!((1800..=2200).contains(&third), "{third}");
        let only_two = |m: &Member| m.0.ip().to_string() == "127.0.0.2";
        assert_eq!(pick_weighted(&m, only_two, weight).unwrap().0, m[1].0);
        assert!(pick_weighted(&m, |_| false, weight).is_none());
    }

    #[test]
    fn random_finds_the_one_eligible_member_and_spreads_over_all() {
        let m = members(5);
        let only_four = |m: &Member| m.0.ip().to_string() == "127.0.0.4";
        for _ in 0..50 {
            let pick = Rotation::Random.pick(&m, only_four).unwrap();
            assert_eq!(pick.0.ip().to_string(), "127.0.0.4");
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            seen.insert(Rotation::Random.pick(&m, |_| true).unwrap().0);
        }
        assert_eq!(seen.len(), 5);
    }
}
