//! The closed sets of names the conf offers (`lb_policy`, `protocol`, `discovery`,
//! `dns_lookup_family`, `access_log.format`): each written once, as the enum serde reads; errors list its names.

use super::names::name_of;
use serde::Deserialize;

/// A cluster's `lb_policy`: how a backend is picked among the ready ones; default
/// `round_robin` (Envoy: `lb_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Each ready backend in turn.
    RoundRobin,
    /// A ready backend picked at random.
    Random,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Consistent hashing on a ring (Ketama).
    RingHash,
    /// Consistent hashing with Maglev's lookup table.
    Maglev,
}

impl LbPolicy {
    /// As the conf writes it.
    pub fn name(self) -> &'static str {
        name_of::<LbPolicy>(self as usize)
    }

    /// Whether the policy hashes a key of the request, and so takes a `hash_policy`.
    pub fn hashes(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// A cluster's `protocol`: how the gateway talks to its backends; default `http1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 cleartext with prior knowledge (h2c), as gRPC backends and Envoy's
    /// `http2_protocol_options` expect.
    Http2,
}

/// A cluster's `dns_lookup_family`: which record types a lookup asks for (Envoy: same name,
/// `AUTO` by default there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupFamily {
    /// A records only (the default: Kubernetes clusters are IPv4 unless told otherwise).
    V4Only,
    /// AAAA records only.
    V6Only,
    /// A records, or AAAA when there are none.
    V4Preferred,
    /// AAAA records, or A when there are none (Envoy's `AUTO`).
    Auto,
    /// Both A and AAAA records.
    All,
}

/// `gateway.access_log.format`: how each line is written (Envoy: `text_format` /
/// `json_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    /// `key=value` pairs after a timestamp.
    Plain,
    /// One JSON object per line.
    Json,
}

/// A cluster's `discovery`: what its `address` names in DNS; default `dns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// A/AAAA records: one backend per address, on the cluster's `port` (Envoy's STRICT_DNS).
    Dns,
    /// SRV records (RFC 2782), as Kubernetes publishes a headless Service's named port
    /// (`_http._tcp.<service>.<namespace>.svc.cluster.local.`): one backend per record's target
    /// address, on the record's port; the cluster has no `port` of its own.
    Srv,
}

/// A TLS listener's `unknown_server_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownServerName {
    /// The first certificate (as nginx's default server, Envoy's default filter chain).
    Default,
    /// The handshake fails (an `unrecognized_name` alert), counted.
    Refuse,
}

/// A TLS listener's `client_auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    /// Every client presents a certificate the CA signed.
    Required,
    /// A client may present none; one it presents must verify.
    Optional,
}
