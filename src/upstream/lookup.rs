//! A lookup's result, reduced to what discovery acts on: an answer (addresses, or SRV
//! endpoints), no pods (NXDOMAIN, empty), or a failure that says nothing about the pods.

use super::srv::SrvEndpoint;
use hickory_resolver::lookup_ip::LookupIp;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::ResolveError;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A lookup's result, reduced to what discovery acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Every address of the answer (as the resolver gave them: unsorted, maybe repeated), and
    /// how long the answer stays valid.
    Answer(Vec<IpAddr>, Duration),
    /// SRV discovery's answer: every backend with the record it came from, and how long the
    /// answer stays valid.
    Srv(Vec<SrvEndpoint>, Duration),
    /// NXDOMAIN or an answer without addresses: the name has no pods.
    Empty(&'static str),
    /// Anything else: says nothing about the pods.
    Failed(String),
}

impl Lookup {
    /// Reduces what hickory returned at `now`: the addresses of an answer and its remaining
    /// TTL; NXDOMAIN and NOERROR-without-records as empty; any other failure (SERVFAIL,
    /// REFUSED, timeouts, I/O) as a failure.
    pub fn from_resolver(
        result: std::result::Result<LookupIp, ResolveError>,
        now: Instant,
    ) -> Lookup {
        match result {
            Ok(answer) => {
                let ttl = answer.valid_until().saturating_duration_since(now);
                let ips: Vec<IpAddr> = answer.iter().collect();
                if ips.is_empty() {
                    Lookup::Empty("empty answer")
                } else {
                    Lookup::Answer(ips, ttl)
                }
            }
            Err(e) => classify(&e),
        }
    }

    /// The same result `age` later: an answer's TTL counts down by `age` (an answer shared by
    /// clusters that asked a little later).
    pub fn aged(self, age: Duration) -> Lookup {
        match self {
            Lookup::Answer(ips, ttl) => Lookup::Answer(ips, ttl.saturating_sub(age)),
            Lookup::Srv(endpoints, ttl) => Lookup::Srv(endpoints, ttl.saturating_sub(age)),
            other => other,
        }
    }
}

/// NXDOMAIN and NOERROR-without-records are answers (the name has no pods); anything else —
/// SERVFAIL, REFUSED, timeouts, I/O — says nothing about the pods and must not empty the cluster.
///
/// hickory drops answer records owned by a name other than the one asked (or its CNAME chain)
/// and reports what is left as NOERROR without records. A true "no records" answer carries the
/// zone's SOA (RFC 2308: cluster DNS always sends it); one without is taken as a failure, so
/// that an answer naming another name keeps the last good pods instead of emptying the cluster.
pub(super) fn classify(e: &ResolveError) -> Lookup {
    if let Some(proto) = e.proto() {
        if let ProtoErrorKind::NoRecordsFound {
            response_code, soa, ..
        } = proto.kind()
        {
            match *response_code {
                ResponseCode::NXDomain => return Lookup::Empty("NXDOMAIN"),
                ResponseCode::NoError if soa.is_some() => return Lookup::Empty("no records"),
                ResponseCode::NoError => {
                    return Lookup::Failed(
                        "no records for the name asked, and no SOA (records of another name?)"
                            .to_owned(),
                    )
                }
                code => return Lookup::Failed(format!("server answered {code}")),
            }
        }
    }
    Lookup::Failed(e.to_string())
}
