//! The server answers a real resolver as cluster DNS answers for a headless service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use headless_dns::{DnsServer, Zone};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver};

const SERVICE: &str = "service1.default.svc.cluster.local.";

/// Asks only `server`, no cache, as the gateway does.
async fn resolve(server: SocketAddr, name: &str) -> Result<BTreeSet<IpAddr>, ResolveError> {
    let config = ResolverConfig::from_parts(
        None,
        Vec::new(),
        NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
    );
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(options)
        .build();
    let lookup = resolver.lookup_ip(name).await?;
    Ok(lookup.iter().collect())
}

fn pods(count: u32) -> Vec<Ipv4Addr> {
    (0..count)
        .map(|i| Ipv4Addr::from(0x0a01_0000 + i + 1))
        .collect()
}

fn as_set(ips: &[Ipv4Addr]) -> BTreeSet<IpAddr> {
    ips.iter().map(|ip| IpAddr::V4(*ip)).collect()
}

#[tokio::test]
async fn answers_one_record_per_ready_pod_and_nxdomain_at_zero() {
    let zone = Zone::new();
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone.clone())
        .await
        .unwrap();
    assert_ne!(server.addr().port(), 0);

    zone.set_headless_service(SERVICE, pods(3));
    assert_eq!(
        resolve(server.addr(), SERVICE).await.unwrap(),
        as_set(&pods(3))
    );

    zone.set_headless_service(SERVICE, pods(1));
    let answer = resolve(server.addr(), "SERVICE1.default.svc.cluster.local.").await;
    assert_eq!(answer.unwrap(), as_set(&pods(1)));

    zone.set_headless_service(SERVICE, []);
    let error = resolve(server.addr(), SERVICE).await.unwrap_err();
    assert!(error.is_nx_domain(), "{error}");
    assert!(zone.queries() >= 3);
    server.stop().await;
}

#[tokio::test]
async fn hundreds_of_pods_come_over_tcp() {
    let zone = Zone::new();
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone.clone())
        .await
        .unwrap();
    zone.set_headless_service(SERVICE, pods(300));
    assert_eq!(
        resolve(server.addr(), SERVICE).await.unwrap(),
        as_set(&pods(300))
    );
    assert!(
        zone.tcp_queries() > 0,
        "truncated over UDP, retried over TCP"
    );
    server.stop().await;
}

#[tokio::test]
async fn stop_closes_the_port_and_it_can_be_bound_again() {
    let zone = Zone::new();
    zone.set_headless_service(SERVICE, pods(2));
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone.clone())
        .await
        .unwrap();
    let addr = server.addr();
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "TCP refused"
    );

    let again = DnsServer::bind(addr, zone.clone()).await.unwrap();
    assert_eq!(resolve(addr, SERVICE).await.unwrap(), as_set(&pods(2)));

    // The port is taken now: a second server on it is an error, not a silent share.
    assert!(DnsServer::bind(addr, Zone::new()).await.is_err());
    again.stop().await;
}
