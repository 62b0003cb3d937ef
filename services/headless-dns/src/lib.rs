//! A small authoritative DNS server whose records are set at runtime, answering as cluster DNS
//! (CoreDNS) answers for Kubernetes headless services: one A record per ready pod, a short TTL,
//! NXDOMAIN once no pod is ready.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use headless_dns::{DnsServer, Zone};
//! let zone = Zone::new();
//! zone.set_ttl(5);
//! zone.set_headless_service("service1.default.svc.cluster.local.", ["10.1.0.7".parse().unwrap()]);
//! let server = DnsServer::bind("127.0.0.1:15353".parse().unwrap(), zone.clone()).await?;
//! zone.set_headless_service("service1.default.svc.cluster.local.", []); // scaled to zero
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! UDP and TCP share one port. UDP answers larger than the client can take (512 bytes without
//! EDNS, its EDNS payload otherwise) are truncated with the TC bit set, so resolvers retry over
//! TCP, as they must against a headless service with hundreds of pods. Tests can also make the
//! server fail ([`DnsMode`]) and count the queries it gets.

mod answer;
mod server;
mod zone;

pub use server::{bound_tcp_socket, DnsServer};
pub use zone::{DnsMode, NameRecords, Srv, Zone};
