//! Reload at size (issue 25, item 7): a SIGHUP that changes one route of a conf with hundreds
//! of DNS-discovered, health-checked clusters applies at once under load, fails no request,
//! and resolves and probes none of the unchanged clusters again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::{free_port, http, wait_until};

/// Clusters in the conf: enough that a reload rebuilding them all would show (in DNS queries,
/// probes and time), few enough for a debug build on a loaded CI machine.
const CLUSTERS: usize = 300;

/// The route that the reload changes: from its cluster to a direct response.
const CHANGED: usize = 150;

/// `routes:` items: `/svc/<i>/` → cluster `svc<i>`, but route `changed` (if any) answers
/// `moved` itself.
fn routes(changed: Option<usize>) -> String {
    (0..CLUSTERS)
        .map(|i| match changed {
            Some(c) if c == i => {
                format!(
                    "- {{ prefix: /svc/{i}/, direct_response: {{ status: 200, body: moved }} }}\n"
                )
            }
            _ => format!("- {{ prefix: /svc/{i}/, cluster: svc{i} }}\n"),
        })
        .collect()
}

/// `clusters:` items: `svc<i>` at `svc<i>.test`, resolved once a minute, each probed over HTTP
/// once a minute (so that every query and probe in the test's few seconds is one that a start
/// or a rebuild caused).
fn clusters(port: u16) -> String {
    (0..CLUSTERS)
        .map(|i| {
            format!(
                "- name: svc{i}\n  address: svc{i}.test\n  port: {port}\n  dns_refresh_rate: 60s\n  health_check: {{ type: http, path: /healthz, interval: 60s, timeout: 1s }}\n"
            )
        })
        .collect()
}

/// Keep-alive clients on the first and the last route until `stop`: (sent, failures).
fn load(
    gateway: &Gateway,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<(u64, Vec<String>)>> {
    let addr = gateway.listen_addr();
    [0, CLUSTERS - 1]
        .into_iter()
        .map(|route| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = http::Client::new(addr);
                let started = Instant::now();
                let (mut sent, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(30)
                    && sent < 50_000
                {
                    sent += 1;
                    match client.get(&format!("/svc/{route}/x")) {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body.trim())),
                        Err(e) => failed.push(format!("io: {e}")),
                    }
                }
                (sent, failed)
            })
        })
        .collect()
}

#[test]
fn a_sighup_changing_one_route_of_hundreds_of_clusters_applies_at_once_and_resolves_and_probes_nothing_again(
) {
    let dns = DnsServer::start();
    let port = free_port();
    let pods = ["127.0.14.1", "127.0.14.2", "127.0.14.3"];
    let backends: Vec<Backend> = pods
        .iter()
        .map(|ip| Backend::start(ip, port, "pod"))
        .collect();
    for i in 0..CLUSTERS {
        dns.set_a(&format!("svc{i}.test"), &pods);
    }
    let conf = |changed| {
        Gateway::builder()
            .nameserver(dns.addr())
            .routes_yaml(&routes(changed))
            .clusters_yaml(&clusters(port))
    };
    let started = Instant::now();
    let mut gateway = conf(None).spawn();
    gateway.wait_ready(Duration::from_secs(30));
    println!(
        "reload at size | {CLUSTERS} clusters ready in {:?}",
        started.elapsed()
    );
    let probes = || backends.iter().map(Backend::health_hits).sum::<u64>();
    // Every cluster's first probes have run (ready); let any still in flight land.
    assert!(wait_until(Duration::from_secs(10), || probes()
        >= (CLUSTERS * pods.len()) as u64));
    std::thread::sleep(Duration::from_millis(300));
    let (queries, probed) = (dns.queries(), probes());
    let before = http::get(gateway.listen_addr(), &format!("/svc/{CHANGED}/x")).unwrap();
    assert!(before.body.starts_with("pod "), "{}", before.body);

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&gateway, &stop);
    std::thread::sleep(Duration::from_millis(300));
    gateway.rewrite(conf(Some(CHANGED)));
    let sent_at = Instant::now();
    gateway.signal("HUP");
    let moved = wait_until(Duration::from_secs(10), || {
        http::get(gateway.listen_addr(), &format!("/svc/{CHANGED}/x"))
            .is_ok_and(|r| r.body == "moved")
    });
    let applied = sent_at.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failed) = (0, Vec::new());
    for c in clients {
        let (s, f) = c.join().unwrap();
        sent += s;
        failed.extend(f);
    }
    println!(
        "reload at size | {CLUSTERS} clusters, one route changed | applied in {applied:?} | sent {sent} | failed {} | DNS queries {} | probes {}",
        failed.len(),
        dns.queries() - queries,
        probes() - probed
    );
    assert!(
        moved,
        "the changed route never answered:\n{}",
        gateway.stderr_log()
    );
    assert!(
        gateway.wait_for_log(
            &format!("{CLUSTERS} cluster(s): {CLUSTERS} kept, 0 new, 0 removed"),
            Duration::from_secs(5)
        ),
        "{}",
        gateway.stderr_log()
    );
    assert!(sent > 50, "the load hardly ran: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        dns.queries(),
        queries,
        "unchanged clusters were resolved again"
    );
    assert_eq!(probes(), probed, "unchanged clusters were probed again");
    gateway.assert_no_panic();
}
