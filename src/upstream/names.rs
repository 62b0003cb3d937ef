//! Every DNS name the clusters resolve, asked once per refresh however many clusters share it:
//! clusters that ask for the same name while a lookup of it is in flight, or soon after it
//! ended, take its answer instead of asking again. Refreshes of a name are due at instants set
//! by the name itself, spread over the refresh interval, so 1,000 names are not asked in the
//! same millisecond and clusters sharing a name are due together.

use super::lookup::{classify, Lookup};
use super::resolver::Resolvers;
use crate::config::{LookupFamily, ResolverSettings};
use crate::lock;
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Lookups in flight at once: a start with 1,000 names asks them 64 at a time, not in one burst
/// that a small cluster DNS would drop.
const IN_FLIGHT: usize = 64;

/// Answers kept for sharing are dropped once this old (names a reload removed), looked for
/// once per this time.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Refresh instants fall on a grid of this step, so names due within one step are asked in one
/// wake-up of the runtime (batched), not one each: 100 slots over a 5 s interval.
const GRID: Duration = Duration::from_millis(50);

/// What is asked: a name, for which families, A/AAAA or SRV.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The name as the cluster's `address` writes it.
    pub name: String,
    /// `dns_lookup_family`.
    pub family: LookupFamily,
    /// SRV records instead of addresses.
    pub srv: bool,
}

type Asking = Shared<BoxFuture<'static, (Instant, Lookup)>>;

enum Entry {
    Asking(Asking),
    Done(Instant, Lookup),
}

/// The gateway's DNS lookups: the [`Resolvers`], and the last answer of every name.
pub struct Names {
    resolvers: Resolvers,
    /// Refresh instants are counted from here.
    epoch: Instant,
    asked: Mutex<HashMap<Question, Entry>>,
    /// When old answers were last dropped.
    pruned: Mutex<Instant>,
    limit: Arc<Semaphore>,
}

impl Names {
    /// The lookups of `settings`; fails when they cannot resolve anything (see [`Resolvers`]).
    pub fn new(settings: &ResolverSettings) -> Result<Arc<Names>, String> {
        Ok(Arc::new(Names {
            resolvers: Resolvers::new(settings)?,
            epoch: Instant::now(),
            asked: Mutex::new(HashMap::new()),
            pruned: Mutex::new(Instant::now()),
            limit: Arc::new(Semaphore::new(IN_FLIGHT)),
        }))
    }

    /// The resolvers the lookups use (a reload replaces their settings in place).
    pub fn resolvers(&self) -> &Resolvers {
        &self.resolvers
    }

    /// The answer to `question`: the one in flight, or one that ended less than `fresh_within`
    /// ago (its TTL shortened by its age), or a new lookup's.
    pub async fn lookup(self: &Arc<Self>, question: &Question, fresh_within: Duration) -> Lookup {
        let asking = {
            let mut asked = lock(&self.asked);
            match asked.get(question) {
                Some(Entry::Done(at, result)) if at.elapsed() < fresh_within => {
                    return result.clone().aged(at.elapsed());
                }
                Some(Entry::Asking(asking)) => asking.clone(),
                _ => {
                    let now = Instant::now();
                    let mut pruned = lock(&self.pruned);
                    if now.saturating_duration_since(*pruned) > FORGET_AFTER {
                        *pruned = now;
                        asked.retain(|_, e| {
                            !matches!(e, Entry::Done(at, _)
                                if now.saturating_duration_since(*at) > FORGET_AFTER)
                        });
                    }
                    let asking = self.clone().ask(question.clone()).boxed().shared();
                    asked.insert(question.clone(), Entry::Asking(asking.clone()));
                    asking
                }
            }
        };
        let (at, result) = asking.await;
        let mut asked = lock(&self.asked);
        if let Some(entry) = asked.get_mut(question) {
            if matches!(entry, Entry::Asking(_)) {
                *entry = Entry::Done(at, result.clone());
            }
        }
        result.aged(at.elapsed())
    }

    /// One lookup, within the bound on lookups in flight.
    async fn ask(self: Arc<Self>, question: Question) -> (Instant, Lookup) {
        let _permit = self.limit.clone().acquire_owned().await;
        let now = Instant::now();
        let result = match self.resolvers.get(question.family) {
            Ok(resolver) if question.srv => {
                match super::srv::lookup(&resolver, &question.name, now).await {
                    Ok(Some((endpoints, ttl))) => Lookup::Srv(endpoints, ttl),
                    Ok(None) => Lookup::Empty("no SRV records"),
                    Err(e) => classify(&e),
                }
            }
            Ok(resolver) => {
                Lookup::from_resolver(resolver.lookup_ip(question.name.as_str()).await, now)
            }
            Err(e) => Lookup::Failed(e),
        };
        self.resolvers.record(matches!(result, Lookup::Failed(_)));
        (now, result)
    }

    /// When the refresh of `name` that follows one now, `delay` from now, is due: at the
    /// name's own instants `delay` apart (their phase set by the name), the first of them at
    /// least half of `delay` from now. Names are thus spread over the interval (on a 50 ms
    /// grid), a name's refreshes stay `delay` apart, and clusters sharing the name are due
    /// together.
    pub fn due(&self, name: &str, now: Instant, delay: Duration) -> Instant {
        let period = delay.as_nanos().max(1);
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        let grid = GRID.as_nanos();
        let phase = u128::from(hasher.finish()) % period;
        // On the grid, when the period is a whole number of steps (else it would drift off it).
        let phase = if period.is_multiple_of(grid) {
            phase - phase % grid
        } else {
            phase
        };
        let earliest = now.saturating_duration_since(self.epoch).as_nanos() + period / 2;
        let ticks = earliest.saturating_sub(phase).div_ceil(period);
        let at = phase + ticks * period;
        let wait = at.saturating_sub(now.saturating_duration_since(self.epoch).as_nanos());
        now + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Arc<Names> {
        let settings = ResolverSettings {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            resolv_conf: "/nonexistent".into(),
            timeout: Duration::from_secs(1),
            attempts: 1,
        };
        Names::new(&settings).unwrap()
    }

    #[test]
    fn a_names_refreshes_stay_one_interval_apart_and_at_least_half_of_one_away() {
        let names = names();
        let delay = Duration::from_secs(5);
        let mut now = names.epoch;
        for _ in 0..20 {
            let at = names.due("service1.default.svc.cluster.local", now, delay);
            assert!(
                at >= now + delay / 2 && at <= now + delay * 3 / 2,
                "{:?}",
                at - now
            );
            let next = names.due("service1.default.svc.cluster.local", at, delay);
            assert_eq!(next - at, delay);
            now = at;
        }
    }

    #[test]
    fn a_thousand_names_are_spread_over_the_interval() {
        let names = names();
        let delay = Duration::from_secs(5);
        let now = names.epoch + Duration::from_secs(60);
        // Due instants, by tenth of the interval: each tenth gets about a tenth of the names.
        let mut tenths = [0u32; 10];
        for i in 0..1000 {
            let at = names.due(&format!("svc-{i}.default.svc.cluster.local"), now, delay);
            let offset = (at - now - delay / 2).as_secs_f64() / delay.as_secs_f64();
            tenths[((offset * 10.0) as usize).min(9)] += 1;
        }
        assert!(
            tenths.iter().all(|&n| (50..=150).contains(&n)),
            "{tenths:?}"
        );
    }
}
