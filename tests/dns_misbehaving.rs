//! A DNS that misbehaves the way cluster DNS does (issue 25): the resolver's address changes
//! under load (the conf's `resolver`, or resolv.conf rewritten as when kube-dns's Service is
//! made again) and headway follows within one refresh with no failed request; a CNAME chain
//! whose TTLs differ is refreshed at the lowest of them; a truncated answer whose TCP fallback
//! is broken keeps the last pods; an answer whose records name another name is not taken;
//! clusters sharing a name share its lookup. Each scenario runs the real binary against real DNS servers and loopback pods.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::admin;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::{DnsMode, DnsServer};
use support::gateway::Gateway;
use support::http::Client;
use support::{free_port, pods_at, skip, wait_until};

/// Cluster `name` resolving `address` every `refresh`, probed every 200 ms.
fn cluster(name: &str, address: &str, port: u16, refresh: &str) -> Cluster {
    Cluster::new(name)
        .dns(address, port)
        .refresh(refresh)
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

/// Requests sent in a loop on one keep-alive connection until stopped, at most 20,000 and
/// 60 s: what was served by whom, and every failure.
struct Load {
    stop: Arc<AtomicBool>,
    worker: JoinHandle<(Vec<String>, Vec<String>)>,
}

impl Load {
    fn start(addr: SocketAddr, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let worker = std::thread::spawn(move || {
            let mut client = Client::new(addr);
            let (mut served, mut failures) = (Vec::new(), Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed)
                && served.len() < 20_000
                && Instant::now() < deadline
            {
                match client.get(path) {
                    Ok(r) if r.status == 200 => {
                        served.push(r.header("x-served-by").unwrap_or("?").to_owned())
                    }
                    Ok(r) => failures.push(format!("{} {}", r.status, r.body.trim())),
                    Err(e) => failures.push(format!("io: {e}")),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (served, failures)
        });
        Load { stop, worker }
    }

    /// Stops the load: (served by, failures).
    fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.worker.join().unwrap()
    }
}

/// The addresses `cluster` has now, sorted.
fn backends(gateway: &Gateway, cluster: &str) -> BTreeSet<String> {
    admin::cluster(gateway, cluster)
        .backends
        .into_iter()
        .map(|b| b.address)
        .collect()
}

fn addresses(ips: &[&str], port: u16) -> BTreeSet<String> {
    ips.iter().map(|ip| format!("{ip}:{port}")).collect()
}

#[test]
fn a_changed_resolver_in_the_conf_is_followed_under_load_with_no_failed_request() {
    let mut old = DnsServer::start();
    let new = DnsServer::start();
    let port = free_port();
    let before = ["127.0.25.1", "127.0.25.2"];
    let after = ["127.0.25.3", "127.0.25.4"];
    let _pods = pods_at("service1", &[before.as_slice(), &after].concat(), port);
    old.set_a("service1.test", &before);
    // The new nameserver knows the pods as they are after a rollout: seeing them proves that
    // headway asks it.
    new.set_a("service1.test", &after);
    let refresh = Duration::from_millis(500);
    let builder = |dns: &DnsServer| {
        Gateway::builder()
            .resolver_yaml(&format!(
                "nameservers: [\"{}\"]\ntimeout: 200ms\nattempts: 1",
                dns.addr()
            ))
            .route(Route::prefix("/service/1").to("service1"))
            .cluster(cluster("service1", "service1.test", port, "500ms"))
    };
    let mut gateway = builder(&old).start();
    assert_eq!(backends(&gateway, "service1"), addresses(&before, port));
    let load = Load::start(gateway.listen_addr(), "/service/1");
    std::thread::sleep(Duration::from_millis(300));

    // The cluster DNS moves: the conf names the new nameserver, the old one is gone.
    gateway.rewrite(builder(&new));
    let asked_before = new.queries();
    let changed = Instant::now();
    gateway.signal("HUP");
    old.stop();
    let followed = wait_until(Duration::from_secs(10), || {
        backends(&gateway, "service1") == addresses(&after, port)
    });
    let took = changed.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (served, failures) = load.finish();
    assert!(followed, "still {:?}", backends(&gateway, "service1"));
    assert!(
        new.queries() > asked_before,
        "the new nameserver was never asked"
    );
    println!(
        "new nameserver followed after {took:?}; {} requests served",
        served.len()
    );
    // A reload applies at once and the cluster's first refresh with the new resolver follows:
    // within one refresh of the reload (a second of slack for a loaded machine).
    assert!(
        took <= refresh + Duration::from_secs(1),
        "followed after {took:?}"
    );
    assert!(failures.is_empty(), "failed under load: {failures:?}");
    let last = served.last().cloned().unwrap_or_default();
    assert!(
        after.iter().any(|ip| last.starts_with(ip)),
        "the last request went to {last}"
    );
    gateway.assert_no_panic();
}

#[test]
fn a_rewritten_resolv_conf_is_followed_under_load_with_no_failed_request() {
    // resolv.conf names nameservers on port 53 only.
    let (old_addr, new_addr): (SocketAddr, SocketAddr) = (
        "127.0.25.53:53".parse().unwrap(),
        "127.0.25.54:53".parse().unwrap(),
    );
    let (mut old, new) = match (DnsServer::start_at(old_addr), DnsServer::start_at(new_addr)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            return skip(
                "a_rewritten_resolv_conf_is_followed_under_load_with_no_failed_request",
                &format!("cannot serve DNS on port 53 of 127.0.25.53 and .54 ({e}): needs root or CAP_NET_BIND_SERVICE"),
            );
        }
    };
    let port = free_port();
    let before = ["127.0.25.11", "127.0.25.12"];
    // Only the new nameserver knows the third pod: seeing it proves that headway asks it.
    let after = ["127.0.25.11", "127.0.25.12", "127.0.25.13"];
    let _pods = pods_at("service1", &after, port);
    old.set_a("service1.test", &before);
    new.set_a("service1.test", &after);
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.25.53\noptions ndots:1\n").unwrap();
    let gateway = Gateway::builder()
        .resolver_yaml(&format!(
            "resolv_conf: {}\ntimeout: 200ms\nattempts: 1",
            resolv.display()
        ))
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test.", port, "500ms"))
        .start();
    assert_eq!(backends(&gateway, "service1"), addresses(&before, port));
    let load = Load::start(gateway.listen_addr(), "/service/1");
    std::thread::sleep(Duration::from_millis(300));

    // kube-dns's Service made again: a new address, the file rewritten, the old one gone.
    let changed = Instant::now();
    std::fs::write(&resolv, "nameserver 127.0.25.54\noptions ndots:1\n").unwrap();
    old.stop();
    let followed = wait_until(Duration::from_secs(10), || {
        backends(&gateway, "service1") == addresses(&after, port)
    });
    let took = changed.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (served, failures) = load.finish();
    assert!(followed, "still {:?}", backends(&gateway, "service1"));
    println!(
        "resolv.conf followed after {took:?}; {} requests served",
        served.len()
    );
    // The file is read again at most a second before a refresh: one refresh (500 ms) and that
    // second, and a second of slack.
    assert!(
        took <= Duration::from_millis(2500),
        "followed after {took:?}"
    );
    assert!(failures.is_empty(), "failed under load: {failures:?}");
    assert!(new.queries() > 0);
    assert!(
        gateway.stderr_log().contains("resolv.conf changed"),
        "the change is not logged"
    );
    gateway.assert_no_panic();
}

#[test]
fn a_cname_chain_is_refreshed_at_the_lowest_ttl_of_the_chain() {
    let dns = DnsServer::start();
    let port = free_port();
    let first = ["127.0.25.21", "127.0.25.22"];
    let then = ["127.0.25.23"];
    let _pods = pods_at("service1", &[first.as_slice(), &then].concat(), port);
    // service1.test → edge.test → pods.test: the middle link has the shortest TTL.
    dns.set_cname("service1.test", "edge.test.");
    dns.set_name_ttl("service1.test", 300);
    dns.set_cname("edge.test", "pods.test.");
    dns.set_name_ttl("edge.test", 2);
    dns.set_a("pods.test", &first);
    dns.set_name_ttl("pods.test", 600);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(
            cluster("service1", "service1.test", port, "60s")
                .respect_dns_ttl(true)
                .min_refresh("1s"),
        )
        .start();
    assert_eq!(backends(&gateway, "service1"), addresses(&first, port));
    let view = admin::cluster(&gateway, "service1").dns.unwrap();
    let ttl = view.last_ttl_seconds.unwrap();
    assert!(
        ttl <= 2,
        "the answer's TTL is the chain's lowest (2 s), not {ttl} s"
    );
    let next = view.next_refresh_in_seconds.unwrap();
    assert!(
        next <= 3.0,
        "next refresh in {next} s: beyond the chain's lowest TTL"
    );

    // The pods behind the chain change: followed within the lowest TTL, not the 600 s of the
    // addresses nor the 60 s refresh rate.
    dns.set_a("pods.test", &then);
    let changed = Instant::now();
    let followed = wait_until(Duration::from_secs(8), || {
        backends(&gateway, "service1") == addresses(&then, port)
    });
    assert!(followed, "still {:?}", backends(&gateway, "service1"));
    println!("CNAME chain change followed after {:?}", changed.elapsed());
    // The new pod serves once its first probe passed.
    assert!(wait_until(Duration::from_secs(3), || {
        admin::cluster(&gateway, "service1").healthy_backends == 1
    }));
    let mut client = Client::new(gateway.listen_addr());
    let r = client.get("/service/1").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-served-by").unwrap_or("").starts_with(then[0]));
    gateway.assert_no_panic();
}

#[test]
fn clusters_sharing_a_name_share_one_lookup_per_refresh() {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.25.31"];
    let _pods = pods_at("shared", &ips, port);
    dns.set_a("shared.test", &ips);
    let mut builder = Gateway::builder().nameserver(dns.addr());
    for i in 0..10 {
        builder = builder
            .route(Route::prefix(&format!("/s{i}/")).to(&format!("s{i}")))
            .cluster(
                Cluster::new(&format!("s{i}"))
                    .dns("shared.test", port)
                    .refresh("500ms"),
            );
    }
    let gateway = builder.start();
    let counted = |window: Duration| {
        let start = dns.queries();
        std::thread::sleep(window);
        dns.queries() - start
    };
    // 3 s at one refresh each 500 ms: 6 lookups of the name (v4 only: one query each), where
    // ten clusters asking on their own would make 60.
    let queries = counted(Duration::from_secs(3));
    println!("10 clusters sharing one name: {queries} queries in 3 s");
    assert!((4..=12).contains(&queries), "{queries} queries in 3 s");
    for i in 0..10 {
        let view = admin::cluster(&gateway, &format!("s{i}"));
        assert_eq!(view.backends.len(), 1, "s{i}: {:?}", view.backends);
    }
    gateway.assert_no_panic();
}

#[test]
fn a_truncated_answer_with_a_broken_tcp_fallback_keeps_the_last_pods_and_is_counted() {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.25.41", "127.0.25.42"];
    let _pods = pods_at("service1", &ips, port);
    dns.set_a("service1.test", &ips);
    let gateway = Gateway::builder()
        .resolver_yaml(&format!(
            "nameservers: [\"{}\"]\ntimeout: 200ms\nattempts: 1",
            dns.addr()
        ))
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test", port, "300ms"))
        .start();
    assert_eq!(backends(&gateway, "service1"), addresses(&ips, port));
    let load = Load::start(gateway.listen_addr(), "/service/1");

    // Every UDP answer comes truncated, and DNS over TCP never answers.
    let errors = |g: &Gateway| {
        admin::cluster(g, "service1")
            .dns
            .map_or(0, |d| d.refreshes_error)
    };
    let before = errors(&gateway);
    let tcp_before = dns.tcp_queries();
    dns.set_mode(DnsMode::BrokenTcp);
    assert!(
        wait_until(Duration::from_secs(8), || errors(&gateway) >= before + 3),
        "refreshes did not fail"
    );
    assert!(
        dns.tcp_queries() > tcp_before,
        "the resolver never tried TCP"
    );
    let (served, failures) = load.finish();
    println!(
        "broken TCP fallback: {} failed refreshes, {} requests served",
        errors(&gateway) - before,
        served.len()
    );
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert!(!served.is_empty());
    assert_eq!(backends(&gateway, "service1"), addresses(&ips, port));
    let view = admin::cluster(&gateway, "service1").dns.unwrap();
    assert_eq!(view.last_outcome, "error", "{view:?}");

    // TCP mended: the next refresh answers again.
    dns.set_mode(DnsMode::Normal);
    assert!(wait_until(Duration::from_secs(5), || {
        admin::cluster(&gateway, "service1")
            .dns
            .is_some_and(|d| d.last_outcome == "answer")
    }));
    gateway.assert_no_panic();
}

/// The A records of one UDP answer from `server` to a query for `name`, as (owner, address):
/// what the server really sent, before any resolver judged it.
fn raw_a_answer(server: SocketAddr, name: &str) -> Vec<(String, String)> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use hickory_proto::serialize::binary::BinEncodable;
    let mut query = Message::new();
    query.set_id(4242).set_recursion_desired(true);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&query.to_bytes().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some((r.name().to_string(), a.0.to_string())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_answer_naming_another_name_is_not_taken_and_keeps_the_last_pods() {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.25.51", "127.0.25.52"];
    let foreign = ["127.0.25.53"];
    let _pods = pods_at("service1", &[ips.as_slice(), &foreign].concat(), port);
    dns.set_a("service1.test", &ips);
    let gateway = Gateway::builder()
        .resolver_yaml(&format!(
            "nameservers: [\"{}\"]\ntimeout: 200ms\nattempts: 1",
            dns.addr()
        ))
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test", port, "300ms"))
        .start();
    assert_eq!(backends(&gateway, "service1"), addresses(&ips, port));
    let load = Load::start(gateway.listen_addr(), "/service/1");

    // The server answers a query for service1.test with an A record owned by other.test, and
    // no CNAME linking the names. The pod at that address is up: taking it would show.
    let errors = |g: &Gateway| {
        admin::cluster(g, "service1")
            .dns
            .map_or(0, |d| d.refreshes_error)
    };
    let before = errors(&gateway);
    dns.remove("service1.test");
    dns.set_a("service1.test", &foreign);
    dns.set_answered_as("service1.test", "other.test");
    // Control: the server really sends the foreign record, as the client asked it directly.
    assert_eq!(
        raw_a_answer(dns.addr(), "service1.test"),
        vec![("other.test.".to_owned(), foreign[0].to_owned())]
    );
    assert!(
        wait_until(Duration::from_secs(8), || errors(&gateway) >= before + 3),
        "refreshes did not fail:\n{}",
        gateway.stderr_log()
    );
    let (served, failures) = load.finish();
    println!(
        "answer naming another name: {} failed refreshes, {} requests served",
        errors(&gateway) - before,
        served.len()
    );
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert!(!served.is_empty());
    assert!(
        served
            .iter()
            .all(|by| ips.iter().any(|ip| by.starts_with(ip))),
        "a request went to the foreign address: {served:?}"
    );
    assert_eq!(backends(&gateway, "service1"), addresses(&ips, port));
    let view = admin::cluster(&gateway, "service1").dns.unwrap();
    assert_eq!(view.last_outcome, "error", "{view:?}");
    assert!(
        gateway.wait_for_log("records of another name", Duration::from_secs(2)),
        "{}",
        gateway.stderr_log()
    );

    // The server answers as the name again: the same address is taken at the next refresh.
    dns.remove("service1.test");
    dns.set_a("service1.test", &foreign);
    assert!(
        wait_until(Duration::from_secs(5), || backends(&gateway, "service1")
            == addresses(&foreign, port)),
        "still {:?}",
        backends(&gateway, "service1")
    );
    gateway.assert_no_panic();
}
