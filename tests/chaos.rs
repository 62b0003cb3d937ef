//! Chaos: pods die, DNS fails, clusters churn, backends misbehave, clients attack — under a
//! bounded concurrent load against the real binary. Each scenario reports requests sent and
//! failed; `scripts/reliability.sh` reruns them all and writes the figures into RELIABILITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::admin::{self, ClusterView};
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Outlier, Route};
use support::dns::DnsServer;
use support::gateway::{Gateway, GatewayBuilder};
use support::http::{self, Client};
use support::{pods, wait_until};

/// One row of RELIABILITY.md.
fn report(scenario: &str, sent: u64, failed: u64, notes: &str) {
    println!("chaos | {scenario} | sent {sent} | failed {failed} | {notes}");
    if let Ok(path) = std::env::var("HEADWAY_RELIABILITY_OUT") {
        let line = serde_json::json!({"scenario": scenario, "sent": sent, "failed": failed, "notes": notes});
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

/// A row for a scenario driven by [`Load`]: the notes say when clients had to resend a request
/// on a fresh connection because a kept-alive one was closed.
fn report_load(scenario: &str, out: &Outcome, notes: &str) {
    let notes = match out.stale_retries {
        0 => notes.to_owned(),
        n => format!(
            "{notes}; {n} requests resent by the client after a kept-alive connection closed"
        ),
    };
    report(scenario, out.sent, out.failed(), &notes);
}

/// Concurrent keep-alive clients sending GETs to `path` until stopped (bounded: 60 s and
/// 200 000 requests per client).
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Outcome>>,
}

#[derive(Default)]
struct Outcome {
    sent: u64,
    failures: Vec<String>,
    latencies: Vec<Duration>,
    stale_retries: u64,
}

impl Load {
    fn start(addr: SocketAddr, path: &'static str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut client = Client::new(addr);
                    let mut out = Outcome::default();
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(60)
                        && out.sent < 200_000
                    {
                        out.sent += 1;
                        let t = Instant::now();
                        match client.get(path) {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => out.failures.push(format!("{} {}", r.status, r.body.trim())),
                            Err(e) => out.failures.push(format!("io: {e}")),
                        }
                        out.latencies.push(t.elapsed());
                    }
                    out.stale_retries = client.stale_retries();
                    out
                })
            })
            .collect();
        Load { stop, clients }
    }

    fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Outcome::default();
        for c in self.clients {
            let o = c.join().unwrap();
            total.sent += o.sent;
            total.failures.extend(o.failures);
            total.latencies.extend(o.latencies);
            total.stale_retries += o.stale_retries;
        }
        total.latencies.sort();
        total
    }
}

impl Outcome {
    fn p99(&self) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[(n * 99 / 100).min(n - 1)]
    }

    fn failed(&self) -> u64 {
        self.failures.len() as u64
    }

    fn summary(&self) -> String {
        let mut kinds: Vec<String> = self.failures.iter().take(3).cloned().collect();
        kinds.dedup();
        kinds.join("; ")
    }
}

/// The pods of `service1.test`, found by DNS: fast refreshes and probes, 2 retries.
fn service1(port: u16) -> Cluster {
    Cluster::new("service1")
        .dns("service1.test", port)
        .refresh("300ms")
        .failure_refresh("100ms")
        .connect_timeout("250ms")
        .retries(2)
        .health_check(
            HealthCheck::http()
                .interval("200ms")
                .timeout("200ms")
                .unhealthy_threshold(2),
        )
}

/// Everything (`/`) to `cluster`, which must be named `service1`.
fn gateway(dns: &DnsServer, cluster: Cluster) -> GatewayBuilder {
    Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("service1"))
        .cluster(cluster)
}

/// What `/clusters` says of `service1` now.
fn service1_now(gateway: &Gateway) -> ClusterView {
    admin::cluster(gateway, "service1")
}

#[test]
fn kill_one_of_three_pods_under_load() {
    let (dns, mut pods, port) = pods("service1", &["127.0.6.11", "127.0.6.12", "127.0.6.13"]);
    let gw = gateway(&dns, service1(port)).start();
    let load = Load::start(gw.listen_addr(), "/service/1", 4);
    std::thread::sleep(Duration::from_secs(1));
    pods[1].kill();
    std::thread::sleep(Duration::from_secs(3));
    let out = load.finish();
    report_load(
        "kill 1 of 3 pods under load (4 clients)",
        &out,
        &format!(
            "p99 {:?}; connect refused → retried on another pod",
            out.p99()
        ),
    );
    assert_eq!(out.failed(), 0, "{}", out.summary());
}

#[test]
fn dns_down_for_30_seconds_under_load() {
    let (mut dns, _pods, port) = pods("service1", &["127.0.6.21", "127.0.6.22", "127.0.6.23"]);
    let gw = gateway(&dns, service1(port))
        .resolver_yaml(&format!(
            "nameservers: [\"{}\"]\ntimeout: 200ms\nattempts: 1",
            dns.addr()
        ))
        .start();
    let load = Load::start(gw.listen_addr(), "/service/1", 2);
    dns.stop();
    let down = Instant::now();
    let mut stale_after = None;
    while down.elapsed() < Duration::from_secs(30) {
        if stale_after.is_none() && service1_now(&gw).dns.is_some_and(|dns| dns.stale) {
            stale_after = Some(down.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    dns.restart();
    assert!(wait_until(Duration::from_secs(3), || service1_now(&gw)
        .dns
        .is_some_and(|dns| !dns.stale)));
    let out = load.finish();
    let errors = service1_now(&gw).dns.map_or(0, |dns| dns.refreshes_error);
    report_load(
        "DNS server down 30 s under load (2 clients)",
        &out,
        &format!(
            "last known pods kept; {errors} failed refreshes; flagged stale after {:.1} s, cleared on recovery",
            stale_after.map_or(f64::NAN, |d| d.as_secs_f64())
        ),
    );
    assert_eq!(out.failed(), 0, "{}", out.summary());
    assert!(
        stale_after.is_some(),
        "a 30 s outage was never flagged stale"
    );
}

#[test]
fn scale_three_to_six_to_one_under_load() {
    let ips = [
        "127.0.6.31",
        "127.0.6.32",
        "127.0.6.33",
        "127.0.6.34",
        "127.0.6.35",
        "127.0.6.36",
    ];
    let (dns, mut pods, port) = pods("service1", &ips[..3]);
    for ip in &ips[3..] {
        pods.push(Backend::start(ip, port, "service1"));
    }
    let gw = gateway(&dns, service1(port)).start();
    let load = Load::start(gw.listen_addr(), "/service/1", 4);
    std::thread::sleep(Duration::from_millis(500));
    dns.set_a("service1.test", &ips);
    assert!(wait_until(Duration::from_secs(3), || {
        service1_now(&gw).healthy_backends == 6
    }));
    std::thread::sleep(Duration::from_secs(1));
    let new_pods_served = pods[3..].iter().all(|p| p.hits() > 0);
    dns.set_a("service1.test", &ips[..1]);
    // As in Kubernetes, a pod leaving the endpoints keeps serving briefly while it terminates.
    std::thread::sleep(Duration::from_secs(1));
    for pod in &mut pods[1..] {
        pod.kill();
    }
    std::thread::sleep(Duration::from_secs(1));
    let out = load.finish();
    report_load(
        "scale 3 → 6 → 1 pods by DNS under load (4 clients)",
        &out,
        &format!(
            "new pods served after their first probe: {new_pods_served}; removed pods stopped 1 s after leaving DNS; p99 {:?}",
            out.p99()
        ),
    );
    assert!(new_pods_served);
    assert_eq!(out.failed(), 0, "{}", out.summary());
}

#[test]
fn a_pod_answering_503_is_ejected_and_clients_see_success() {
    let (dns, pods, port) = pods("service1", &["127.0.6.41", "127.0.6.42", "127.0.6.43"]);
    let gw = gateway(
        &dns,
        service1(port).outlier(
            Outlier::new()
                .consecutive_failures(3)
                .base_ejection_time("30s"),
        ),
    )
    .start();
    pods[0].fail_with(503);
    let load = Load::start(gw.listen_addr(), "/service/1", 2);
    let ejected = wait_until(Duration::from_secs(3), || {
        service1_now(&gw)
            .backend(&format!("127.0.6.41:{port}"))
            .is_some_and(|b| b.ejected_for_seconds.is_some())
    });
    let hits_at_ejection = pods[0].hits();
    std::thread::sleep(Duration::from_secs(2));
    let out = load.finish();
    let later_hits = pods[0].hits() - hits_at_ejection;
    report_load(
        "1 of 3 pods answers 503 (2 clients)",
        &out,
        &format!(
            "503s retried on other pods (retry_on gateway-error); ejected after 3 in a row; {later_hits} requests reached it after ejection"
        ),
    );
    assert!(ejected, "the 503 pod was never ejected");
    assert_eq!(out.failed(), 0, "{}", out.summary());
    assert_eq!(later_hits, 0);
}

#[test]
fn a_hanging_pod_is_cut_short_and_ejected() {
    let (dns, pods, port) = pods("service1", &["127.0.6.51", "127.0.6.52", "127.0.6.53"]);
    let gw = gateway(
        &dns,
        service1(port)
            .per_try_timeout("300ms")
            .outlier(Outlier::new().consecutive_failures(3)),
    )
    .start();
    pods[0].set_delay(Duration::from_secs(30));
    let load = Load::start(gw.listen_addr(), "/service/1", 2);
    std::thread::sleep(Duration::from_secs(4));
    let out = load.finish();
    let ejected = service1_now(&gw)
        .backend(&format!("127.0.6.51:{port}"))
        .is_some_and(|b| b.times_ejected > 0);
    report_load(
        "1 of 3 pods hangs (2 clients)",
        &out,
        &format!(
            "per_try_timeout 300 ms, then another pod; ejected: {ejected}; p99 {:?}",
            out.p99()
        ),
    );
    assert!(ejected, "the hanging pod was never ejected");
    assert_eq!(out.failed(), 0, "{}", out.summary());
    assert!(
        out.p99() < Duration::from_millis(1000),
        "p99 {:?}",
        out.p99()
    );
}

#[test]
fn all_pods_down_gives_fast_503s_and_recovers() {
    let (dns, mut pods, port) = pods("service1", &["127.0.6.61", "127.0.6.62", "127.0.6.63"]);
    let gw = gateway(&dns, service1(port)).start();
    for pod in &mut pods {
        pod.kill();
    }
    let mut client = Client::new(gw.listen_addr());
    let (mut sent, mut slow, mut not_503) = (0u64, 0u64, Vec::new());
    let mut worst = Duration::ZERO;
    for _ in 0..100 {
        let t = Instant::now();
        let r = client.get("/service/1");
        let took = t.elapsed();
        sent += 1;
        worst = worst.max(took);
        if took > Duration::from_millis(500) {
            slow += 1;
        }
        match r {
            Ok(r) if r.status == 503 => {}
            other => not_503.push(format!("{:?}", other.map(|r| r.status))),
        }
    }
    for pod in &mut pods {
        pod.restart();
    }
    let recovered = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || {
        http::get(gw.listen_addr(), "/service/1").is_ok_and(|r| r.status == 200)
    }));
    let recovery = recovered.elapsed();
    report(
        "all 3 pods down, then back (1 client)",
        sent,
        slow + not_503.len() as u64,
        &format!(
            "every answer a 503 (failed = slower than 500 ms or not 503); slowest {worst:?}; serving again {:.1} s after the pods returned",
            recovery.as_secs_f64()
        ),
    );
    assert!(not_503.is_empty(), "{not_503:?}");
    assert_eq!(slow, 0, "a 503 took {worst:?}");
}

#[test]
fn a_broken_health_endpoint_everywhere_triggers_panic_mode_not_an_outage() {
    let (dns, pods, port) = pods("service1", &["127.0.6.71", "127.0.6.72", "127.0.6.73"]);
    let gw = gateway(&dns, service1(port)).start();
    let load = Load::start(gw.listen_addr(), "/service/1", 2);
    std::thread::sleep(Duration::from_millis(500));
    for pod in &pods {
        pod.set_healthy(false);
    }
    let panicked = wait_until(Duration::from_secs(3), || service1_now(&gw).panic_mode);
    std::thread::sleep(Duration::from_secs(2));
    let out = load.finish();
    report_load(
        "every pod fails its health check, pods fine (2 clients)",
        &out,
        "healthy_panic_threshold 50%: traffic goes to all probed pods instead of none",
    );
    assert!(panicked, "panic mode never engaged");
    assert_eq!(out.failed(), 0, "{}", out.summary());
}

#[test]
fn circuit_breaker_overflow_is_answered_at_once() {
    let (dns, pods, port) = pods("service1", &["127.0.6.81"]);
    pods[0].set_delay(Duration::from_millis(500));
    let gw = gateway(&dns, service1(port).max_requests(4)).start();
    let addr = gw.listen_addr();
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let results = results.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = http::get(addr, "/service/1").unwrap();
                results
                    .lock()
                    .unwrap()
                    .push((r.status, r.body, t.elapsed()));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let results = results.lock().unwrap();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let overflow: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    let slowest_overflow = overflow.iter().map(|r| r.2).max().unwrap_or_default();
    report(
        "16 concurrent requests, max_requests 4, slow pod",
        16,
        (16 - ok - overflow.len()) as u64,
        &format!(
            "{ok} served, {} refused with 503 in at most {slowest_overflow:?} (not queued)",
            overflow.len()
        ),
    );
    assert!(ok >= 4, "{results:?}");
    assert!(overflow.len() >= 8, "{results:?}");
    assert!(overflow
        .iter()
        .all(|r| r.1.contains("circuit breaker open for cluster service1")));
    assert!(slowest_overflow < Duration::from_millis(300));
}

#[test]
fn the_retry_budget_keeps_an_outage_from_multiplying_load() {
    let (dns, pods, port) = pods("service1", &["127.0.6.91", "127.0.6.92", "127.0.6.93"]);
    // Every pod answers 503: every request would be tried 3 times without a budget.
    let gw = gateway(
        &dns,
        service1(port)
            .outlier(Outlier::new().consecutive_failures(0))
            .retry_budget(20, 1),
    )
    .start();
    for pod in &pods {
        pod.fail_with(503);
    }
    let load = Load::start(gw.listen_addr(), "/service/1", 16);
    std::thread::sleep(Duration::from_secs(2));
    let out = load.finish();
    let upstream: u64 = pods.iter().map(Backend::hits).sum();
    let ratio = upstream as f64 / out.sent as f64;
    report_load(
        "every pod answers 503, 16 clients, retries 2",
        &out,
        &format!(
            "failures expected here; upstream attempts per request {ratio:.2} (3.00 without the retry budget)"
        ),
    );
    assert_eq!(out.failed(), out.sent, "every request should fail");
    assert!(ratio < 1.6, "retries multiplied the load by {ratio:.2}");
}

#[test]
fn hundreds_of_slow_loris_clients_do_not_stop_normal_traffic() {
    let (dns, _pods, port) = pods("service1", &["127.0.6.101", "127.0.6.102"]);
    let gw = gateway(&dns, service1(port))
        .gateway_yaml("request_headers_timeout: 2s")
        .start();
    let addr = gw.listen_addr();
    // 300 connections that send their request headers one byte at a time, slowly.
    let loris: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"GET /service/1 HTTP/1.1\r\nHost: x\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    let opened = loris.len();
    let load = Load::start(addr, "/service/1", 2);
    let started = Instant::now();
    let mut loris = loris;
    while started.elapsed() < Duration::from_secs(3) {
        loris.retain_mut(|s| s.write_all(b"X").is_ok());
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = load.finish();
    // The gateway closed them: writes start failing once the peer is gone.
    let closed = wait_until(Duration::from_secs(3), || {
        loris.retain_mut(|s| s.write_all(b"X").is_ok());
        loris.is_empty()
    });
    let m = http::get(gw.admin_addr(), "/metrics").unwrap().body;
    let timeouts = m
        .lines()
        .find(|l| l.starts_with("headway_client_header_timeouts_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    report_load(
        "300 slow-loris connections beside 2 normal clients",
        &out,
        &format!(
            "{opened} slow connections closed after request_headers_timeout 2 s ({timeouts} counted); normal p99 {:?}",
            out.p99()
        ),
    );
    assert_eq!(out.failed(), 0, "{}", out.summary());
    assert!(out.sent > 100, "normal traffic barely ran: {}", out.sent);
    assert!(closed, "{} slow connections still open", loris.len());
    assert!(timeouts >= opened as f64 * 0.9, "{timeouts} of {opened}");
}

#[test]
fn a_pod_restarted_on_its_address_before_the_probes_notice_is_back_within_a_probe() {
    let (dns, mut pods, port) = pods("service1", &["127.0.6.41", "127.0.6.42", "127.0.6.43"]);
    // Probes slow enough that the restart comes before they could mark the pod down: only
    // passive health sees the refused connects, and ejects the pod for 30 s.
    let gw = gateway(
        &dns,
        Cluster::new("service1")
            .dns("service1.test", port)
            .refresh("300ms")
            .connect_timeout("250ms")
            .retries(2)
            .outlier(
                Outlier::new()
                    .consecutive_failures(5)
                    .base_ejection_time("30s")
                    .max_ejection_percent(50),
            )
            .health_check(
                HealthCheck::http()
                    .interval("1s")
                    .timeout("200ms")
                    .unhealthy_threshold(5),
            ),
    )
    .start();
    let load = Load::start(gw.listen_addr(), "/service/1", 4);
    std::thread::sleep(Duration::from_millis(500));
    pods[0].kill();
    let ejected = wait_until(Duration::from_secs(3), || {
        service1_now(&gw)
            .backends
            .first()
            .is_some_and(|b| b.times_ejected > 0)
    });
    assert!(
        ejected,
        "refused connects never ejected the pod: {:?}",
        service1_now(&gw)
    );
    pods[0].restart();
    let restarted = Instant::now();
    let hits = pods[0].hits();
    let back = wait_until(Duration::from_secs(5), || pods[0].hits() > hits);
    let back_after = restarted.elapsed();
    let out = load.finish();
    report_load(
        "a pod killed and restarted on its address before the probes notice (4 clients)",
        &out,
        &format!(
            "ejected by its refused connects; serving again {:.1} s after the restart (a passing probe lifts such an ejection; 30 s otherwise)",
            back_after.as_secs_f64()
        ),
    );
    assert!(
        back,
        "the restarted pod got no request within 5 s: still ejected"
    );
    assert_eq!(out.failed(), 0, "{}", out.summary());
}
