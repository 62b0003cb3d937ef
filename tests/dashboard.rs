//! The admin dashboard (`GET /` on the admin listener) and its data (`GET /stats`): figures after
//! a known number of requests, a page that shows every backend without JavaScript, never on a
//! proxy listener, and — in headless Chromium driven by Selenium (tests/browser/dashboard.py) —
//! a page that follows DNS scaling and a dying pod by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Outlier, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, pods_at, wait_until};

/// Cluster `name` on `address:port` with fast refreshes and probes, no retries and no passive
/// health, so that every request is one attempt on one backend.
fn cluster(name: &str, address: &str, port: u16) -> Cluster {
    Cluster::new(name)
        .dns(address, port)
        .refresh("300ms")
        .failure_refresh("200ms")
        .connect_timeout("250ms")
        .timeout("5s")
        .retries(0)
        .outlier(Outlier::new().consecutive_failures(0))
        .health_check(
            HealthCheck::http()
                .path("/healthz")
                .interval("200ms")
                .timeout("200ms")
                .healthy_threshold(1)
                .unhealthy_threshold(2),
        )
}

fn stats(gateway: &Gateway) -> Value {
    http::get_json(gateway.admin_addr(), "/stats")
}

fn route<'a>(stats: &'a Value, prefix: &str) -> &'a Value {
    let routes = stats["routes"].as_array().expect("routes");
    routes
        .iter()
        .find(|r| r["route"] == prefix)
        .unwrap_or_else(|| panic!("no route {prefix} in {stats:#}"))
}

fn backend<'a>(stats: &'a Value, cluster: &str, address: &str) -> &'a Value {
    let clusters = stats["clusters"].as_array().expect("clusters");
    let c = clusters
        .iter()
        .find(|c| c["name"] == cluster)
        .expect(cluster);
    let list = c["backends"].as_array().expect("backends");
    list.iter()
        .find(|b| b["address"] == address)
        .unwrap_or_else(|| panic!("no backend {address} in {c:#}"))
}

#[test]
fn stats_count_each_route_and_backend_over_the_last_minute() {
    let dns = DnsServer::start();
    let port = free_port();
    let good = pods_at("good", &["127.0.0.41"], port);
    let bad = pods_at("bad", &["127.0.0.42"], port);
    bad[0].fail_with(503);
    dns.set_a("good.test", &["127.0.0.41"]);
    dns.set_a("bad.test", &["127.0.0.42"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/good").to("good"))
        .route(Route::prefix("/bad").to("bad"))
        .cluster(cluster("good", "good.test", port))
        .cluster(cluster("bad", "bad.test", port))
        .start();

    let before = stats(&gateway);
    assert_eq!(route(&before, "/good")["last_minute"]["requests"], 0);
    assert!(before["gateway"]["version"].is_string(), "{before:#}");

    let mut client = Client::new(gateway.listen_addr());
    for _ in 0..100 {
        assert_eq!(client.get("/good/x").unwrap().status, 200);
    }
    for _ in 0..10 {
        assert_eq!(client.get("/bad/x").unwrap().status, 503);
    }
    assert_eq!(
        http::get(gateway.listen_addr(), "/nowhere").unwrap().status,
        404
    );

    // A request is counted in pingora's logging hook, after its answer has been sent: the
    // last one (the 404) may reach /stats a moment after the client has it.
    let counted = |s: &Value| route(s, "no_route")["last_minute"]["requests"] == 1;
    assert!(wait_until(Duration::from_secs(2), || counted(&stats(
        &gateway
    ))));
    let s = stats(&gateway);
    let g = &route(&s, "/good")["last_minute"];
    assert_eq!(g["requests"], 100, "{g:#}");
    assert_eq!(g["errors"], 0, "{g:#}");
    assert_eq!(g["error_rate"], 0.0, "{g:#}");
    let per_second: u64 = g["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(per_second, 100, "{g:#}");
    let (p50, p99) = (g["p50_ms"].as_f64().unwrap(), g["p99_ms"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 < 5_000.0, "{g:#}");
    assert!(g["requests_per_second"].as_f64().unwrap() > 0.0, "{g:#}");

    let b = &route(&s, "/bad")["last_minute"];
    assert_eq!(
        (&b["requests"], &b["errors"]),
        (&10.into(), &10.into()),
        "{b:#}"
    );
    assert_eq!(b["error_rate"], 1.0, "{b:#}");
    let none = &route(&s, "no_route")["last_minute"];
    assert_eq!(none["requests"], 1, "the unrouted request: {none:#}");

    let pod = &backend(&s, "good", &good[0].addr_string())["last_minute"];
    assert_eq!(
        (&pod["requests"], &pod["errors"]),
        (&100.into(), &0.into()),
        "{pod:#}"
    );
    let pod = &backend(&s, "bad", &bad[0].addr_string())["last_minute"];
    assert_eq!(
        (&pod["requests"], &pod["errors"]),
        (&10.into(), &10.into()),
        "{pod:#}"
    );

    let g = &s["gateway"];
    assert!(
        g["connections"].as_i64().unwrap() >= 1,
        "the keep-alive client: {g:#}"
    );
    assert_eq!(g["draining"], false);
    assert!(g["conf"]["hash"].is_string(), "{g:#}");
    gateway.assert_no_panic();
}

#[test]
fn the_page_without_javascript_shows_every_backend_and_only_on_the_admin_listener() {
    let ips = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
    let dns = DnsServer::start();
    let port = free_port();
    let pods = pods_at("service1", &ips, port);
    dns.set_a("service1.test", &ips);
    // A route whose text is markup: the page shows it as text, never runs it.
    let hostile = "^/x<script>alert\\(1\\)</script>\"'&";
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::regex(hostile).to("service1"))
        .route(Route::prefix("/").to("service1"))
        .cluster(cluster("service1", "service1.test", port))
        .start();
    let healthy = || {
        let page = http::get(gateway.admin_addr(), "/").unwrap().body;
        pods.iter().all(|p| {
            page.contains(&format!(
                "data-backend=\"{}\" data-health=\"healthy\"",
                p.addr_string()
            ))
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), healthy),
        "three healthy rows"
    );

    let r = http::get(gateway.admin_addr(), "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.body;
    assert!(page.contains("data-cluster=\"service1\""), "{page}");
    assert!(page.contains("service1.test"), "the DNS name: {page}");
    for ip in ips {
        assert!(
            page.contains(&format!("<br>{ip}")) || page.contains(&format!(">{ip}<")),
            "the DNS records list {ip}"
        );
    }
    assert!(
        page.contains("&lt;script&gt;alert\\(1\\)&lt;/script&gt;&quot;&#39;&amp;"),
        "the route's text, escaped: {page}"
    );
    assert_eq!(
        page.matches("<script>").count(),
        1,
        "only the page's own script"
    );
    // Self-contained: no external script, style, font or image.
    for outside in ["src=", "href=", "http://", "https://", "@import", "url("] {
        assert!(
            !page.contains(outside),
            "the page refers to something outside: {outside}"
        );
    }

    // Read-only: nothing but GET and HEAD.
    let post = http::request(gateway.admin_addr(), "POST", "/", &[], b"").unwrap();
    assert_eq!(post.status, 405);

    // The proxy listener routes `/` like any path: the pods answer, never the dashboard.
    for path in ["/", "/stats"] {
        let r = http::get(gateway.listen_addr(), path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("x-served-by").is_some(), "{path}: a pod answered");
        assert!(!r.body.contains("<html"), "{path}: {}", r.body);
    }
    let bare = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(cluster("service1", "service1.test", port))
        .start();
    let r = http::get(bare.listen_addr(), "/").unwrap();
    assert_eq!(r.status, 404, "no route for / on the proxy: {}", r.body);
    assert!(!r.body.contains("<html"), "{}", r.body);
}

#[test]
fn a_pod_that_left_dns_shows_draining_until_its_request_ends() {
    let ips = ["127.0.0.61", "127.0.0.62"];
    let dns = DnsServer::start();
    let port = free_port();
    let pods = pods_at("service1", &ips, port);
    dns.set_a("service1.test", &ips);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("service1"))
        .cluster(cluster("service1", "service1.test", port).lb_policy("least_request"))
        .start();
    let ready = || {
        let s = stats(&gateway);
        s["clusters"][0]["healthy_backends"] == 2
    };
    assert!(wait_until(Duration::from_secs(10), ready));
    pods[0].set_delay(Duration::from_secs(3));
    pods[1].set_delay(Duration::from_secs(3));
    let addr = gateway.listen_addr();
    let slow: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || http::get(addr, "/slow").map(|r| r.status)))
        .collect();
    let leaving = pods[0].addr_string();
    let busy = || backend(&stats(&gateway), "service1", &leaving)["in_flight"] == 1;
    assert!(
        wait_until(Duration::from_secs(2), busy),
        "a request on {leaving}"
    );
    dns.set_a("service1.test", &ips[1..]);
    let draining = || {
        let s = stats(&gateway);
        let c = &s["clusters"][0];
        c["backends"].as_array().unwrap().iter().any(|b| {
            b["address"] == leaving.as_str() && b["draining"] == true && b["in_flight"] == 1
        }) && c["healthy_backends"] == 1
    };
    assert!(
        wait_until(Duration::from_secs(2), draining),
        "{:#}",
        stats(&gateway)
    );
    let page = http::get(gateway.admin_addr(), "/").unwrap().body;
    assert!(
        page.contains(&format!(
            "data-backend=\"{leaving}\" data-health=\"draining\""
        )),
        "{page}"
    );
    for t in slow {
        assert_eq!(t.join().unwrap().unwrap(), 200);
    }
    let gone = || {
        !stats(&gateway)["clusters"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["address"] == leaving.as_str())
    };
    assert!(
        wait_until(Duration::from_secs(2), gone),
        "gone once its request ended"
    );
}

/// What the browser needs: python3 with Selenium, Debian's chromium and chromedriver.
fn browser_missing() -> Option<String> {
    let ok = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok("python3", &["-c", "import selenium"]) {
        return Some("python3 has no selenium (scripts/setup.sh installs it)".into());
    }
    for (bin, package) in [
        ("chromedriver", "chromium-driver"),
        ("chromium", "chromium"),
    ] {
        if !ok("sh", &["-c", &format!("command -v {bin}")]) {
            return Some(format!("no {bin} (apt-get install {package})"));
        }
    }
    None
}

#[test]
fn the_dashboard_follows_scaling_and_a_dying_pod_in_a_browser() {
    if let Some(why) = browser_missing() {
        support::skip(
            "the_dashboard_follows_scaling_and_a_dying_pod_in_a_browser",
            &why,
        );
        return;
    }
    let all = [
        "127.0.0.11",
        "127.0.0.12",
        "127.0.0.13",
        "127.0.0.14",
        "127.0.0.15",
    ];
    let dns = DnsServer::start();
    let port = free_port();
    let mut pods: Vec<Backend> = pods_at("service1", &all, port);
    dns.set_a("service1.test", &all[..3]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        // Markup in a route's text: the script must show it as text too.
        .route(Route::regex("^/x<img src=x onerror=window.hacked=1>").to("service1"))
        .cluster(cluster("service1", "service1.test", port))
        .start();

    // Some traffic while the page is open, so that its figures and sparklines move (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, addr) = (stop.clone(), gateway.listen_addr());
        std::thread::spawn(move || {
            let mut client = Client::new(addr);
            for _ in 0..3000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = client.get("/service/1/hello");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", gateway.admin_addr()))
        .arg(&artifacts)
        .arg("service1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    let (lines, said) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |want: &str| {
        let line = said
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| "(nothing within 60 s)".into());
        if let Some(why) = line.strip_prefix("SKIP ") {
            support::skip(
                "the_dashboard_follows_scaling_and_a_dying_pod_in_a_browser",
                why,
            );
            return false;
        }
        assert_eq!(
            line,
            want,
            "the browser script; gateway log:\n{}",
            gateway.stderr_log()
        );
        true
    };

    let mut run = || {
        if !expect("STEP 3") {
            return;
        }
        dns.set_a("service1.test", &all);
        writeln!(stdin, "scaled").unwrap();
        expect("STEP 5");
        let dying = pods[2].addr_string();
        pods[2].kill();
        writeln!(stdin, "killed {dying}").unwrap();
        expect("STEP unhealthy");
        expect("DONE");
    };
    run();
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success() || status.code() == Some(77),
        "browser script: {status}"
    );
    for shot in [
        "1-three-pods.png",
        "2-five-pods.png",
        "3-pod-killed.png",
        "4-phone.png",
    ] {
        if status.success() {
            assert!(artifacts.join(shot).exists(), "screenshot {shot}");
        }
    }
    println!("screenshots in {}", artifacts.display());
    gateway.assert_no_panic();
}
