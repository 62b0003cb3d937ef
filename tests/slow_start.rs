//! Slow start: a pod that joins a cluster under load gets a share that follows the ramp
//! (`slow_start_window`, linear from `slow_start_min_weight_percent`), and without slow start
//! its full share at once. The real binary, a real DNS server, backends on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::{Duration, Instant};
use support::admin;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, pods_at, wait_until};

const WINDOW: Duration = Duration::from_secs(6);
const MIN_WEIGHT: f64 = 0.10;
/// A slice of the measurement: this many requests (σ of a share ≤ 2.4 points), or fewer if
/// the gateway is so slow that this much time has passed.
const SLICE_REQUESTS: usize = 400;
const SLICE: Duration = Duration::from_secs(3);
/// Fewer requests than this in a slice make a share too noisy to judge within 10 points.
const MIN_REQUESTS: usize = 150;

fn cluster(policy: &str, slow_start: bool) -> Cluster {
    let c = Cluster::new("svc")
        .dns("slow.test", 0)
        .lb_policy(policy)
        .refresh("100ms")
        .failure_refresh("100ms")
        .connect_timeout("250ms")
        .timeout("5s")
        .health_check(
            HealthCheck::http()
                .path("/healthz")
                .interval("50ms")
                .timeout("200ms")
                .healthy_threshold(1)
                .unhealthy_threshold(2),
        );
    if slow_start {
        c.key("slow_start_window", "6s")
            .key("slow_start_min_weight_percent", "10")
    } else {
        c
    }
}

/// The share the joining pod should get `t` after it joined, next to `others` full pods.
fn ramp_share(t: Duration, others: f64) -> f64 {
    let w = (t.as_secs_f64() / WINDOW.as_secs_f64()).clamp(MIN_WEIGHT, 1.0);
    let w = if t >= WINDOW { 1.0 } else { w };
    w / (others + w)
}

/// One slice: (seconds since the join at its middle, share the new pod got, share expected,
/// requests sent).
type Slice = (f64, f64, f64, usize);

/// Runs a cluster of two pods, adds a third to DNS and sends requests in slices of
/// [`SLICE_REQUESTS`] (at most [`SLICE`] each) until `until` after the third pod's first passing probe.
fn join_under_load(policy: &str, slow_start: bool, until: Duration) -> Vec<Slice> {
    let dns = DnsServer::start();
    let port = free_port();
    let ips = ["127.0.0.161", "127.0.0.162", "127.0.0.163"];
    let _pods = pods_at("svc", &ips, port);
    dns.set_a("slow.test", &ips[..2]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("svc"))
        .cluster(cluster(policy, slow_start).dns("slow.test", port))
        .start();
    let healthy = |n: usize| {
        wait_until(Duration::from_secs(10), || {
            admin::cluster(&gateway, "svc").healthy_backends == n
        })
    };
    assert!(healthy(2), "{:?}", admin::cluster(&gateway, "svc"));
    let mut client = Client::new(gateway.listen_addr());
    for _ in 0..20 {
        assert_eq!(client.get("/").unwrap().status, 200);
    }

    dns.set_a("slow.test", &ips);
    // The join is the first passing probe; /clusters shows it within a poll (20 ms).
    assert!(healthy(3), "{:?}", admin::cluster(&gateway, "svc"));
    let joined = Instant::now();
    let newcomer = format!("{}:{port}", ips[2]);
    if slow_start {
        let view = admin::cluster(&gateway, "svc");
        let weight = view.backend(&newcomer).unwrap().slow_start_weight_percent;
        assert!(weight.is_some_and(|w| w < 30), "ramping: {view:?}");
        let text = http::get(gateway.admin_addr(), "/clusters?format=text").unwrap();
        let line = format!("svc::{newcomer}::slow_start_weight_percent::");
        assert!(text.body.contains(&line), "{}", text.body);
        assert!(
            view.backend(&format!("{}:{port}", ips[0]))
                .is_some_and(|b| b.slow_start_weight_percent.is_none()),
            "a pod at full weight shows none: {view:?}"
        );
    }

    let mut slices = Vec::new();
    while joined.elapsed() < until {
        let start = Instant::now();
        let (mut sent, mut to_new, mut expected) = (0usize, 0usize, 0.0);
        while start.elapsed() < SLICE && sent < SLICE_REQUESTS {
            let at = joined.elapsed();
            let r = client.get("/").unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            sent += 1;
            to_new += usize::from(r.header("x-served-by") == Some(newcomer.as_str()));
            expected += if slow_start {
                ramp_share(at, 2.0)
            } else {
                1.0 / 3.0
            };
        }
        let middle = (start - joined + start.elapsed() / 2).as_secs_f64();
        let n = sent as f64;
        slices.push((middle, to_new as f64 / n, expected / n, sent));
    }
    println!("{policy} slow_start={slow_start}: (t, share, expected, requests) {slices:.3?}");
    slices
}

/// Every slice's share is within 10 points of what it should be.
fn assert_follows(slices: &[Slice]) {
    for &(t, share, expected, sent) in slices {
        assert!(
            sent >= MIN_REQUESTS,
            "too few requests at {t:.1}s to judge a share: {slices:.3?}"
        );
        assert!(
            (share - expected).abs() <= 0.10,
            "at {t:.1}s the new pod got {:.0}% of {sent}, the ramp says {:.0}%: {slices:.3?}",
            share * 100.0,
            expected * 100.0
        );
    }
}

#[test]
fn a_joining_pod_gets_a_share_that_follows_the_ramp() {
    let slices = join_under_load("round_robin", true, WINDOW + Duration::from_secs(2));
    assert_follows(&slices);
    // The ramp is visible: little at first, a full third at the end.
    let (first, last) = (slices[0], slices[slices.len() - 1]);
    assert!(first.1 < 0.15, "first slice: {first:?}");
    assert!(last.1 > 0.23, "after the window: {last:?}");
}

#[test]
fn least_request_ramps_a_joining_pod_too() {
    let slices = join_under_load("least_request", true, Duration::from_secs(4));
    assert_follows(&slices);
    assert!(slices[0].1 < 0.15, "first slice: {:?}", slices[0]);
}

#[test]
fn without_slow_start_a_joining_pod_gets_its_full_share_at_once() {
    let slices = join_under_load("round_robin", false, Duration::from_secs(2));
    assert_follows(&slices);
    assert!(slices[0].1 > 0.23, "first slice: {:?}", slices[0]);
}
