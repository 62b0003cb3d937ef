//! SRV discovery (`discovery: srv`) against a real DNS server answering as cluster DNS does for a
//! headless Service's named port: SRV records with the targets' A records in the additional
//! section. Ports follow the records, scaling follows the answer, NXDOMAIN empties the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::{resolve_srv, DnsServer};
use support::gateway::Gateway;
use support::{free_port, http, wait_until};

const SRV: &str = "_http._tcp.service1.test";

fn backends(gateway: &Gateway) -> BTreeSet<String> {
    http::get_json(gateway.admin_addr(), "/clusters")["clusters"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn srv_clusters_take_their_ports_from_the_records_scale_and_empty_on_nxdomain() {
    let dns = DnsServer::start();
    // Control: the DNS server answers SRV with the targets' addresses, as cluster DNS does.
    dns.set_headless_srv(SRV, 8081, &["127.0.14.11"]);
    let (records, additional) = resolve_srv(dns.addr(), SRV).unwrap();
    assert_eq!(
        records,
        vec![(8081, "127-0-14-11.service1.test.".to_owned())]
    );
    assert_eq!(
        additional,
        vec!["127.0.14.11".parse::<std::net::IpAddr>().unwrap()]
    );

    // Pods on two different ports: the conf names none.
    let (p1, p2) = (free_port(), free_port());
    let pod1 = Backend::start("127.0.14.11", p1, "service1");
    let pod2 = Backend::start("127.0.14.12", p2, "service1");
    dns.set_headless_srv(SRV, p1, &["127.0.14.11"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("service1"))
        .cluster(
            Cluster::new("service1")
                .srv(&format!("{SRV}."))
                .refresh("200ms")
                .health_check(HealthCheck::http().interval("200ms").timeout("200ms")),
        )
        .start();
    let r = http::get(gateway.listen_addr(), "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pod1.body());
    assert_eq!(
        backends(&gateway),
        BTreeSet::from([format!("127.0.14.11:{p1}")])
    );
    let c = http::get_json(gateway.admin_addr(), "/clusters");
    let record = c["clusters"][0]["backends"][0]["srv_record"]
        .as_str()
        .unwrap();
    assert_eq!(record, format!("0 100 {p1} 127-0-14-11.service1.test."));
    assert_eq!(c["clusters"][0]["dns"]["srv_records"][0], record);

    // Scaled up: a second pod on its own port (a port change, as a rolling update may make).
    dns.zone().set_srv(
        SRV,
        vec![
            headless_dns::Srv {
                priority: 0,
                weight: 50,
                port: p1,
                target: "127-0-14-11.service1.test.".into(),
            },
            headless_dns::Srv {
                priority: 0,
                weight: 50,
                port: p2,
                target: "127-0-14-12.service1.test.".into(),
            },
        ],
    );
    dns.set_a("127-0-14-12.service1.test", &["127.0.14.12"]);
    let both = BTreeSet::from([format!("127.0.14.11:{p1}"), format!("127.0.14.12:{p2}")]);
    assert!(
        wait_until(Duration::from_secs(5), || backends(&gateway) == both),
        "{:?}",
        backends(&gateway)
    );
    let mut served = BTreeSet::new();
    assert!(wait_until(Duration::from_secs(5), || {
        let r = http::get(gateway.listen_addr(), "/").unwrap();
        assert_eq!(r.status, 200);
        served.insert(r.body);
        served.len() == 2
    }));
    assert!(served.contains(&pod2.body()));

    // A higher-priority-number record is a fallback (RFC 2782): not used while priority 0 has one.
    let p3 = free_port();
    let _pod3 = Backend::start("127.0.14.13", p3, "service1");
    dns.set_a("127-0-14-13.service1.test", &["127.0.14.13"]);
    let mut records = dns.zone().records(SRV).unwrap().srv;
    records.push(headless_dns::Srv {
        priority: 10,
        weight: 100,
        port: p3,
        target: "127-0-14-13.service1.test.".into(),
    });
    dns.zone().set_srv(SRV, records);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(backends(&gateway), both);

    // Scaled to zero: NXDOMAIN empties the cluster.
    dns.set_headless_srv(SRV, p1, &[]);
    assert!(
        wait_until(Duration::from_secs(5), || backends(&gateway).is_empty()),
        "{:?}",
        backends(&gateway)
    );
    let r = http::get(gateway.listen_addr(), "/").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
}

#[test]
fn an_srv_cluster_with_a_port_or_an_ip_address_is_a_conf_error() {
    let (code, stderr) = Gateway::builder()
        .route(Route::prefix("/").to("a"))
        .route(Route::prefix("/b").to("b"))
        .cluster(
            Cluster::new("a")
                .srv("_http._tcp.a.test.")
                .key("port", "80"),
        )
        .cluster(Cluster::new("b").srv("127.0.0.1"))
        .start_expect_exit();
    assert_ne!(code, 0);
    assert!(
        stderr.contains("gateway.clusters[0].port: not with discovery: srv"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gateway.clusters[1].address: discovery: srv needs a DNS name"),
        "{stderr}"
    );
}
