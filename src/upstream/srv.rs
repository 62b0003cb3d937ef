//! SRV discovery (RFC 2782), as Kubernetes publishes a headless Service's named port: each
//! record names a target host and a port; the target's addresses come from the answer's
//! additional section (cluster DNS sends them), else from a lookup of their own, made at once.
//!
//! Priority: only the records of the lowest priority become backends (RFC 2782: a client must
//! try those first); the others are not kept as fallbacks. Weight: not honoured — every backend
//! has the same share, as Kubernetes gives every record of a Service the same weight.

use hickory_resolver::proto::rr::RData;
use hickory_resolver::{ResolveError, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// One backend from an SRV answer, with the record it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvEndpoint {
    /// The record as `priority weight port target`.
    pub record: String,
    /// The target's address, on the record's port.
    pub addr: SocketAddr,
}

/// Looks up the SRV records of `name` and their targets' addresses. `Ok(None)`: the name has
/// no records; `Err`: the lookup failed (of the SRV records themselves: a target that cannot
/// be resolved is left out, and logged).
pub async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    now: Instant,
) -> Result<Option<(Vec<SrvEndpoint>, Duration)>, ResolveError> {
    let answer = resolver.srv_lookup(name).await?;
    let ttl = answer
        .as_lookup()
        .valid_until()
        .saturating_duration_since(now);
    let Some(lowest) = answer.iter().map(|r| r.priority()).min() else {
        return Ok(None);
    };
    let records: Vec<_> = answer.iter().filter(|r| r.priority() == lowest).collect();
    // The targets' addresses from the answer itself. hickory's caching client keeps the
    // additional records of one target only (notes/upstream-reports.md), so the others are
    // looked up, all at once: one query each, their names fully qualified as cluster DNS writes
    // them (no search list).
    let carried = |target: &hickory_resolver::Name| -> Vec<IpAddr> {
        answer
            .as_lookup()
            .record_iter()
            .filter(|r| r.name() == target)
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect()
    };
    let lookups = records.iter().map(|record| async {
        let target = record.target();
        let ips = carried(target);
        if !ips.is_empty() {
            return ips;
        }
        match resolver.lookup_ip(target.clone()).await {
            Ok(found) => found.iter().collect(),
            Err(e) => {
                log::warn!("srv name={name} target={target}: no address: {e}");
                Vec::new()
            }
        }
    });
    let addresses = futures::future::join_all(lookups).await;
    let mut endpoints = Vec::new();
    for (record, ips) in records.iter().zip(addresses) {
        let text = format!(
            "{} {} {} {}",
            record.priority(),
            record.weight(),
            record.port(),
            record.target()
        );
        endpoints.extend(ips.into_iter().map(|ip| SrvEndpoint {
            record: text.clone(),
            addr: SocketAddr::new(ip, record.port()),
        }));
    }
    Ok((!endpoints.is_empty()).then_some((endpoints, ttl)))
}
