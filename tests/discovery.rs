//! headway finds pods by DNS the way Envoy's STRICT_DNS does, and never sends a request to a pod
//! it should not: each test is a scenario against the real binary, a real DNS server and real
//! HTTP backends on loopback addresses sharing one port, like the pods of a headless service.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::admin::{self, BackendView};
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::{DnsMode, DnsServer};
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, pods_at, wait_until};

/// Cluster `name` resolving `address`, with fast refreshes and probes for tests.
fn cluster(name: &str, address: &str, port: u16) -> Cluster {
    Cluster::new(name)
        .dns(address, port)
        .refresh("300ms")
        .failure_refresh("200ms")
        .connect_timeout("250ms")
        .timeout("5s")
        .retries(2)
        .health_check(
            HealthCheck::http()
                .path("/healthz")
                .interval("200ms")
                .timeout("200ms")
                .healthy_threshold(1)
                .unhealthy_threshold(2),
        )
}

/// Sends `n` keep-alive GETs and returns (hits per `x-served-by` address, failures).
fn send(client: &mut Client, path: &str, n: usize) -> (HashMap<String, usize>, Vec<String>) {
    let mut hits = HashMap::new();
    let mut failures = Vec::new();
    for _ in 0..n {
        match client.get(path) {
            Ok(r) if r.status == 200 => {
                let who = r.header("x-served-by").unwrap_or("?").to_owned();
                *hits.entry(who).or_insert(0) += 1;
            }
            Ok(r) => failures.push(format!("{} {}", r.status, r.body.trim())),
            Err(e) => failures.push(format!("io: {e}")),
        }
    }
    (hits, failures)
}

/// The backends of `cluster` in `/clusters` now.
fn backends(gateway: &Gateway, cluster: &str) -> Vec<BackendView> {
    admin::cluster(gateway, cluster).backends
}

fn healthy_set(gateway: &Gateway, cluster: &str) -> Vec<String> {
    let mut set: Vec<String> = backends(gateway, cluster)
        .into_iter()
        .filter(|b| b.healthy)
        .map(|b| b.address)
        .collect();
    set.sort();
    set
}

#[test]
fn requests_spread_evenly_over_every_pod_and_each_prefix_has_its_pool() {
    let dns = DnsServer::start();
    let port = free_port();
    let s1 = pods_at(
        "service1",
        &["127.0.0.11", "127.0.0.12", "127.0.0.13"],
        port,
    );
    let s2 = pods_at("service2", &["127.0.0.21", "127.0.0.22"], port);
    dns.set_a("service1.test", &["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
    dns.set_a("service2.test", &["127.0.0.21", "127.0.0.22"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .route(Route::prefix("/service/2").to("service2"))
        .cluster(cluster("service1", "service1.test", port))
        .cluster(cluster("service2", "service2.test", port))
        .start();
    let mut client = Client::new(gateway.listen_addr());

    let (hits, failures) = send(&mut client, "/service/1/hello", 300);
    assert!(failures.is_empty(), "{failures:?}");
    println!("service1 spread over 300 requests: {hits:?}");
    assert_eq!(hits.len(), 3, "{hits:?}");
    for pod in &s1 {
        let n = hits.get(&pod.addr_string()).copied().unwrap_or(0);
        assert!(
            (90..=110).contains(&n),
            "{} got {n} of 300: {hits:?}",
            pod.addr()
        );
    }

    let (hits, failures) = send(&mut client, "/service/2", 100);
    assert!(failures.is_empty(), "{failures:?}");
    let mut served: Vec<_> = hits.keys().cloned().collect();
    served.sort();
    let mut expected: Vec<_> = s2.iter().map(Backend::addr_string).collect();
    expected.sort();
    assert_eq!(served, expected, "service2 must only reach its own pods");

    let r = http::get(gateway.listen_addr(), "/service/3").unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route for /service/3"), "{}", r.body);
    let r = http::get(gateway.listen_addr(), "/ready").unwrap();
    assert_eq!(
        r.status, 404,
        "admin paths must not be served on the public listener"
    );
}

#[test]
fn dns_changes_are_followed_within_one_refresh_and_one_probe() {
    let dns = DnsServer::start();
    let port = free_port();
    let all = [
        "127.0.0.31",
        "127.0.0.32",
        "127.0.0.33",
        "127.0.0.34",
        "127.0.0.35",
    ];
    let _pods = pods_at("service1", &all, port);
    dns.set_a("service1.test", &all[..3]);
    let refresh = Duration::from_millis(500);
    let probe = Duration::from_millis(200);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("service1"))
        .cluster(
            Cluster::new("service1")
                .dns("service1.test", port)
                .refresh("500ms")
                .health_check(HealthCheck::http().interval("200ms").timeout("200ms")),
        )
        .start();
    let addr = |ip: &str| format!("{ip}:{port}");
    assert_eq!(
        healthy_set(&gateway, "service1"),
        vec![addr(all[0]), addr(all[1]), addr(all[2])]
    );

    let changed = Instant::now();
    dns.set_a("service1.test", &all[2..]);
    let want = vec![addr(all[2]), addr(all[3]), addr(all[4])];
    let converged = wait_until(Duration::from_secs(5), || {
        healthy_set(&gateway, "service1") == want
    });
    let convergence = changed.elapsed();
    println!("dns change {{.31,.32,.33}} -> {{.33,.34,.35}} converged in /clusters after {convergence:?}");
    assert!(
        converged,
        "never converged: {:?}",
        healthy_set(&gateway, "service1")
    );

    // The contract: one refresh interval plus one probe interval (and scheduling slack).
    let bound = refresh + probe + Duration::from_millis(400);
    if let Some(rest) = bound.checked_sub(changed.elapsed()) {
        std::thread::sleep(rest);
    }
    let mut client = Client::new(gateway.listen_addr());
    let (hits, failures) = send(&mut client, "/", 60);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        !hits.contains_key(&addr(all[0])) && !hits.contains_key(&addr(all[1])),
        "removed pods still served: {hits:?}"
    );
    assert!(
        hits.contains_key(&addr(all[3])) && hits.contains_key(&addr(all[4])),
        "new pods not served: {hits:?}"
    );
}

#[test]
fn a_killed_pod_costs_no_request_is_marked_down_and_comes_back() {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.0.41", "127.0.0.42", "127.0.0.43"];
    let mut pods = pods_at("service1", &ips, port);
    dns.set_a("service1.test", &ips);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test", port))
        .start();
    let mut client = Client::new(gateway.listen_addr());
    let (_, failures) = send(&mut client, "/service/1", 30);
    assert!(failures.is_empty(), "{failures:?}");

    let victim = pods[1].addr_string();
    pods[1].kill();
    let killed = Instant::now();
    let mut sent = 0;
    let mut failed = Vec::new();
    let mut marked_down = None;
    while killed.elapsed() < Duration::from_secs(3) && sent < 2000 {
        let (_, f) = send(&mut client, "/service/1", 10);
        sent += 10;
        failed.extend(f);
        if marked_down.is_none() && !healthy_set(&gateway, "service1").contains(&victim) {
            marked_down = Some(killed.elapsed());
        }
    }
    println!(
        "killed {victim}: {sent} requests sent, {} failed; marked unhealthy after {marked_down:?}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed after a pod died: {failed:?}"
    );
    let down = marked_down.expect("the killed pod was never marked unhealthy");
    // unhealthy_threshold 2 × interval 200 ms, plus one interval of phase and slack.
    assert!(
        down < Duration::from_millis(1200),
        "marked down only after {down:?}"
    );
    let entry = backends(&gateway, "service1")
        .into_iter()
        .find(|b| b.address == victim)
        .expect("the pod is still in DNS, so it is still listed");
    assert!(!entry.healthy);
    assert!(entry.last_error.is_some(), "{entry:?}");

    pods[1].restart();
    assert!(
        wait_until(Duration::from_secs(3), || healthy_set(&gateway, "service1")
            .contains(&victim)),
        "restarted pod never came back"
    );
    let before = pods[1].hits();
    let (_, failures) = send(&mut client, "/service/1", 30);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(pods[1].hits() > before, "restarted pod gets no traffic");
}

#[test]
fn a_dns_outage_keeps_the_last_pods_and_nxdomain_empties_the_cluster() {
    let mut dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.0.51", "127.0.0.52"];
    let _pods = pods_at("service1", &ips, port);
    dns.set_a("service1.test", &ips);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .resolver_yaml(&format!(
            "nameservers: [\"{}\"]\ntimeout: 200ms\nattempts: 1",
            dns.addr()
        ))
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test", port))
        .start();
    let mut client = Client::new(gateway.listen_addr());

    // The DNS server goes away: several refreshes fail, traffic keeps flowing to the last set.
    dns.stop();
    let errors_seen = wait_until(Duration::from_secs(5), || {
        admin::cluster(&gateway, "service1")
            .dns
            .map_or(0, |dns| dns.refreshes_error)
            >= 3
    });
    assert!(errors_seen, "refreshes did not fail while DNS was down");
    let (hits, failures) = send(&mut client, "/service/1", 50);
    assert!(
        failures.is_empty(),
        "requests failed while DNS was down: {failures:?}"
    );
    assert_eq!(hits.len(), 2, "both last known pods keep serving: {hits:?}");
    let dns_view = admin::cluster(&gateway, "service1").dns;
    assert!(
        dns_view.as_ref().is_some_and(|d| d.last_error.is_some()),
        "{dns_view:?}"
    );
    assert_eq!(dns_view.map(|d| d.last_outcome).as_deref(), Some("error"));

    // SERVFAIL says nothing about the pods either.
    dns.restart();
    dns.set_mode(DnsMode::ServFail);
    let before = dns.queries();
    assert!(wait_until(Duration::from_secs(3), || dns.queries() >= before + 3));
    let (_, failures) = send(&mut client, "/service/1", 20);
    assert!(
        failures.is_empty(),
        "SERVFAIL emptied the cluster: {failures:?}"
    );
    dns.set_mode(DnsMode::Normal);

    // NXDOMAIN is an answer: the service has no pods, so the cluster has no backends.
    dns.remove("service1.test");
    assert!(
        wait_until(Duration::from_secs(3), || backends(&gateway, "service1")
            .is_empty()),
        "NXDOMAIN did not empty the cluster"
    );
    let r = http::get(gateway.listen_addr(), "/service/1").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "no healthy upstream for cluster service1\n");

    dns.set_a("service1.test", &ips);
    assert!(
        wait_until(Duration::from_secs(3), || healthy_set(&gateway, "service1")
            .len()
            == 2),
        "no recovery after the records came back"
    );
    let (_, failures) = send(&mut client, "/service/1", 20);
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn a_name_with_300_records_is_fully_discovered() {
    let dns = DnsServer::start();
    let ips: Vec<String> = (0..300)
        .map(|i| format!("127.0.{}.{}", 100 + i / 200, 1 + i % 200))
        .collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    dns.set_a("big.test", &refs);
    // No health check: DNS alone decides, so no pods need to exist for discovery to be seen.
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("big"))
        .cluster(Cluster::new("big").dns("big.test", 8080).refresh("1s"))
        .start();
    let backends = backends(&gateway, "big");
    assert_eq!(backends.len(), 300, "discovered {} of 300", backends.len());
    assert!(
        dns.tcp_queries() > 0,
        "a 300-record answer must have come over TCP"
    );
}

#[test]
fn a_short_name_resolves_through_the_pods_search_domains() {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.0.61", "127.0.0.62"];
    let _pods = pods_at("service1", &ips, port);
    dns.set_a("service1.default.svc.cluster.local", &ips);
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\nnameserver 127.0.0.1\n",
    )
    .unwrap();
    let gateway = Gateway::builder()
        .resolver_yaml(&format!(
            "resolv_conf: {}\nnameservers: [\"{}\"]",
            resolv.display(),
            dns.addr()
        ))
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1", port))
        .start();
    let mut client = Client::new(gateway.listen_addr());
    let (hits, failures) = send(&mut client, "/service/1", 20);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(hits.len(), 2, "{hits:?}");
}

#[test]
fn a_new_address_gets_no_traffic_until_its_first_probe_passes() {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.0.71", "127.0.0.72"];
    let pods = pods_at("service1", &ips, port);
    pods[1].set_healthy(false);
    dns.set_a("service1.test", &ips[..1]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test", port))
        .start();
    dns.set_a("service1.test", &ips);
    assert!(wait_until(Duration::from_secs(3), || backends(
        &gateway, "service1"
    )
    .len()
        == 2));
    // Discovered, probed and failing: it must not get a single request (pingora alone would
    // trust it until the unhealthy threshold is crossed).
    let mut client = Client::new(gateway.listen_addr());
    let (_, failures) = send(&mut client, "/service/1", 100);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(pods[1].hits(), 0, "an unprobed pod got traffic");
    assert!(pods[1].health_hits() > 0, "the new pod was never probed");

    pods[1].set_healthy(true);
    assert!(wait_until(Duration::from_secs(2), || healthy_set(
        &gateway, "service1"
    )
    .len()
        == 2));
    let (_, failures) = send(&mut client, "/service/1", 20);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        pods[1].hits() > 0,
        "the pod never entered rotation after passing"
    );
}

#[test]
fn without_health_checks_dns_alone_decides_and_connect_failures_go_elsewhere() {
    let dns = DnsServer::start();
    let port = free_port();
    let live = Backend::start("127.0.0.81", port, "service1");
    // 127.0.0.82 is in DNS but nothing listens there: every connect to it is refused.
    dns.set_a("service1.test", &["127.0.0.81", "127.0.0.82"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(
            Cluster::new("service1")
                .dns("service1.test", port)
                .retries(1),
        )
        .start();
    assert_eq!(
        healthy_set(&gateway, "service1").len(),
        2,
        "DNS alone decides"
    );
    let mut client = Client::new(gateway.listen_addr());
    let (hits, failures) = send(&mut client, "/service/1", 40);
    assert!(
        failures.is_empty(),
        "connect failures were not retried elsewhere: {failures:?}"
    );
    assert_eq!(hits.keys().collect::<Vec<_>>(), vec![&live.addr_string()]);
    assert!(gateway
        .stderr_log()
        .contains("upstream connect failed cluster=service1"));
}

#[test]
fn an_ip_literal_address_needs_no_dns() {
    let port = free_port();
    let sidecar = Backend::start("127.0.0.91", port, "sidecar");
    let gateway = Gateway::builder()
        .route(Route::prefix("/").to("local"))
        .cluster(Cluster::new("local").address("127.0.0.91", port))
        .start();
    let r = http::get(gateway.listen_addr(), "/anything").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-served-by"),
        Some(sidecar.addr_string().as_str())
    );
    let local = admin::cluster(&gateway, "local");
    assert!(local.dns.is_none(), "{local:?}");
}
