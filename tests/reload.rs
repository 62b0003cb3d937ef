//! Reload in place: SIGHUP (and `POST /reload` when the conf turns it on) re-reads the conf
//! file. A valid conf is swapped in — unchanged clusters keep their state, new ones serve at
//! once, requests already routed finish where they started — and a bad one changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::Duration;
use support::admin;
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::{free_port, http, indent_yaml, wait_until};

/// `/service/<n>` → cluster `service<n>`.
fn service(n: u32) -> Route {
    Route::prefix(&format!("/service/{n}")).to(&format!("service{n}"))
}

/// `/ok`, answered by the gateway itself.
fn ok_route() -> Route {
    Route::prefix("/ok").direct_response(200, "ok")
}

/// Cluster `name` at `<name>.test:<port>`, refreshed every 300 ms, probed every 200 ms.
fn cluster(name: &str, port: u16) -> Cluster {
    Cluster::new(name)
        .dns(&format!("{name}.test"), port)
        .refresh("300ms")
        .health_check(HealthCheck::http().interval("200ms").timeout("200ms"))
}

/// `section` with `admin.reload: true`.
fn with_admin_reload(section: &str) -> String {
    section
        .lines()
        .map(|l| {
            match l
                .strip_prefix("admin: {")
                .and_then(|r| r.strip_suffix(" }"))
            {
                Some(inner) => format!("admin: {{{inner}, reload: true }}\n"),
                None => format!("{l}\n"),
            }
        })
        .collect()
}

fn reloads(gateway: &Gateway, result: &str) -> u64 {
    let metrics = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    let series = format!("headway_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn requests_of(gateway: &Gateway, cluster: &str) -> (u64, Vec<Option<String>>) {
    let backends = admin::cluster(gateway, cluster).backends;
    (
        backends.iter().map(|b| b.requests).sum(),
        backends.iter().map(|b| b.since.clone()).collect(),
    )
}

#[test]
fn sighup_swaps_in_a_new_route_and_cluster_and_an_unchanged_cluster_keeps_its_state() {
    let dns = DnsServer::start();
    let port = free_port();
    let _pods1 = [
        Backend::start("127.0.13.11", port, "service1"),
        Backend::start("127.0.13.12", port, "service1"),
    ];
    let pod2 = Backend::start("127.0.13.21", port, "service2");
    dns.set_a("service1.test", &["127.0.13.11", "127.0.13.12"]);
    dns.set_a("service2.test", &["127.0.13.21"]);
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(service(1))
        .cluster(cluster("service1", port))
        .start();
    for _ in 0..10 {
        assert_eq!(
            http::get(gateway.listen_addr(), "/service/1")
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/2")
            .unwrap()
            .status,
        404
    );
    let (before, since_before) = requests_of(&gateway, "service1");
    assert_eq!(before, 10);
    let hash_before = http::get_json(gateway.admin_addr(), "/clusters")["conf"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let hash_before = hash_before.as_str();

    gateway.rewrite(
        Gateway::builder()
            .nameserver(dns.addr())
            .route(service(1))
            .route(service(2))
            .cluster(cluster("service1", port))
            .cluster(cluster("service2", port)),
    );
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("conf reloaded", Duration::from_secs(15)),
        "{}",
        gateway.stderr_log()
    );
    assert!(gateway
        .stderr_log()
        .contains("SIGHUP: conf reloaded: 2 route(s), 2 cluster(s): 1 kept, 1 new, 0 removed"));
    // The new cluster had its first discovery and probe before the swap: it serves at once.
    let r = http::get(gateway.listen_addr(), "/service/2").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, pod2.body());
    // The unchanged cluster is the same one: its counters and health history go on.
    let (after, since_after) = requests_of(&gateway, "service1");
    assert_eq!(after, 10, "service1's state was reset");
    assert_eq!(since_after, since_before);
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/1")
            .unwrap()
            .status,
        200
    );
    assert_eq!(reloads(&gateway, "ok"), 1);
    assert!(gateway.is_running());
    // /clusters and /metrics name the conf served.
    let conf = &http::get_json(gateway.admin_addr(), "/clusters")["conf"];
    let hash = conf["hash"].as_str().unwrap();
    assert_ne!(hash, hash_before, "the conf hash did not follow the reload");
    assert!(conf["loaded_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let metrics = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    assert!(
        metrics.contains(&format!("headway_conf_info{{hash=\"{hash}\"}} 1")),
        "{metrics}"
    );
    assert!(!metrics.contains(&format!("headway_conf_info{{hash=\"{hash_before}\"}}")));
    assert!(
        metrics.contains("headway_conf_loaded_timestamp_seconds 1"),
        "{metrics}"
    );
}

#[test]
fn a_bad_conf_changes_nothing_and_every_error_is_logged_with_its_path() {
    let dns = DnsServer::start();
    let port = free_port();
    let _pod = Backend::start("127.0.13.31", port, "service1");
    dns.set_a("service1.test", &["127.0.13.31"]);
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(service(1))
        .cluster(cluster("service1", port))
        .start();
    gateway.rewrite(
        Gateway::builder()
            .nameserver(dns.addr())
            .route(Route::prefix("/other").to("nowhere"))
            .cluster(
                Cluster::new("service1")
                    .address("service1.test", 0)
                    .key("retrys", "2"),
            ),
    );
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("conf not reloaded", Duration::from_secs(5)),
        "{}",
        gateway.stderr_log()
    );
    std::thread::sleep(Duration::from_millis(100));
    let log = gateway.stderr_log();
    for path in [
        "gateway.clusters[0].retrys",
        "gateway.clusters[0].port",
        "gateway.routes[0].cluster",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("conf not reloaded") && l.contains(path)),
            "{path} not named:\n{log}"
        );
    }
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/1")
            .unwrap()
            .status,
        200
    );
    assert_eq!(reloads(&gateway, "error"), 1);
    assert_eq!(reloads(&gateway, "ok"), 0);
}

#[test]
fn a_request_in_flight_finishes_on_the_cluster_a_reload_removes() {
    let dns = DnsServer::start();
    let port = free_port();
    let slow = Backend::start("127.0.13.41", port, "service1");
    slow.set_delay(Duration::from_millis(1500));
    let _other = Backend::start("127.0.13.42", port, "service2");
    dns.set_a("service1.test", &["127.0.13.41"]);
    dns.set_a("service2.test", &["127.0.13.42"]);
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(service(1))
        .cluster(cluster("service1", port))
        .start();
    let addr = gateway.listen_addr();
    let in_flight = std::thread::spawn(move || http::get(addr, "/service/1").unwrap());
    assert!(wait_until(Duration::from_secs(2), || slow.hits() == 1));
    gateway.rewrite(
        Gateway::builder()
            .nameserver(dns.addr())
            .route(service(2))
            .cluster(cluster("service2", port)),
    );
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("conf reloaded", Duration::from_secs(15)),
        "{}",
        gateway.stderr_log()
    );
    assert!(gateway.stderr_log().contains("1 new, 1 removed"));
    // Routed before the reload: it ends on the removed cluster's pod, answered in full.
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, slow.body());
    // Requests after it take the new routes.
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/1")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/2")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn post_reload_is_off_unless_the_conf_turns_it_on_and_says_what_it_could_not_apply() {
    let dns = DnsServer::start();
    let port = free_port();
    let _pod = Backend::start("127.0.13.51", port, "service1");
    dns.set_a("service1.test", &["127.0.13.51"]);
    let off = Gateway::builder()
        .nameserver(dns.addr())
        .route(service(1))
        .cluster(cluster("service1", port))
        .start();
    let r = http::request(off.admin_addr(), "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 405, "{}", r.body);
    // Never on a proxy listener.
    let r = http::request(off.listen_addr(), "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    drop(off);

    let on = Gateway::start(&with_admin_reload(
        &Gateway::builder()
            .nameserver(dns.addr())
            .route(service(1))
            .cluster(cluster("service1", port))
            .gateway_section(),
    ));
    let r = http::request(on.admin_addr(), "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .starts_with("reloaded: 1 route(s), 1 cluster(s): 1 kept"),
        "{}",
        r.body
    );

    // A change that needs the process hand-over is named as such; the rest is applied.
    on.rewrite_with(
        Gateway::builder()
            .nameserver(dns.addr())
            .route(service(1))
            .route(ok_route())
            .cluster(cluster("service1", port))
            .gateway_yaml("h2c: true\n"),
        with_admin_reload,
    );
    let r = http::request(on.admin_addr(), "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("not applied in place"), "{}", r.body);
    assert!(r.body.contains("h2c"), "{}", r.body);
    assert_eq!(http::get(on.listen_addr(), "/ok").unwrap().status, 200);

    std::fs::write(on.conf_path(), "gateway: { listen: 7 }\n").unwrap();
    let r = http::request(on.admin_addr(), "POST", "/reload", &[], b"").unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("gateway.listen"), "{}", r.body);
    assert_eq!(http::get(on.listen_addr(), "/ok").unwrap().status, 200);
}

/// `watch_conf: true`, and the conf updated as the kubelet updates a mounted ConfigMap: the file
/// is a symlink through `..data`, and `..data` is swapped atomically to a new directory.
#[test]
fn watch_conf_reloads_when_a_mounted_configmap_swaps_its_data_symlink() {
    use std::os::unix::fs::symlink;
    let dns = DnsServer::start();
    let port = free_port();
    let _pod = Backend::start("127.0.13.61", port, "service1");
    dns.set_a("service1.test", &["127.0.13.61"]);
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(service(1))
        .cluster(cluster("service1", port))
        .gateway_yaml("watch_conf: true\n")
        .start();
    assert_eq!(http::get(gateway.listen_addr(), "/ok").unwrap().status, 404);
    // Turn the conf file into the kubelet's layout, same content: no reload.
    let conf = gateway.conf_path().to_path_buf();
    let dir = conf.parent().unwrap().to_path_buf();
    let swap = |version: &str, content: &str| {
        let data = dir.join(format!("..{version}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("headway.yaml"), content).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(format!("..{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap(); // atomic, as the kubelet does
    };
    swap("v1", &gateway.conf());
    let link = dir.join("headway.yaml.link");
    symlink("..data/headway.yaml", &link).unwrap();
    std::fs::rename(&link, &conf).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !gateway.stderr_log().contains("conf reloaded"),
        "same content reloaded"
    );

    // The update: a new route.
    let mut next = Gateway::builder()
        .nameserver(dns.addr())
        .listen(gateway.listen_addr())
        .admin(gateway.admin_addr())
        .route(service(1))
        .route(ok_route())
        .cluster(cluster("service1", port))
        .gateway_yaml("watch_conf: true\n");
    let old = gateway.conf();
    let top = &old[..old.find("gateway:").unwrap()];
    let swapped = std::time::Instant::now();
    swap(
        "v2",
        &format!("{top}gateway:\n{}", indent_yaml(&next.gateway_section(), 2)),
    );
    // Applied within a second of the swap.
    assert!(
        wait_until(Duration::from_secs(1), || http::get(
            gateway.listen_addr(),
            "/ok"
        )
        .is_ok_and(|r| r.status == 200)),
        "not applied {:?} after the swap:\n{}",
        swapped.elapsed(),
        gateway.stderr_log()
    );
    assert!(gateway
        .stderr_log()
        .contains("conf file changed: conf reloaded"));
    assert_eq!(http::get(gateway.listen_addr(), "/ok").unwrap().status, 200);
    assert_eq!(reloads(&gateway, "ok"), 1);
    assert!(gateway.is_running());
}

/// 20 reloads that add, change and remove routes and clusters — one of them an invalid conf —
/// under a bounded keep-alive load on a route whose cluster never changes: no request fails,
/// and that cluster's pods are never re-probed into rotation (their `since` stays).
#[test]
fn twenty_reloads_under_load_fail_no_request_and_keep_an_unchanged_clusters_health() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dns = DnsServer::start();
    let port = free_port();
    let _pods = [
        Backend::start("127.0.13.71", port, "service1"),
        Backend::start("127.0.13.72", port, "service1"),
        Backend::start("127.0.13.73", port, "service2"),
        Backend::start("127.0.13.74", port, "service3"),
    ];
    dns.set_a("service1.test", &["127.0.13.71", "127.0.13.72"]);
    dns.set_a("service2.test", &["127.0.13.73"]);
    dns.set_a("service3.test", &["127.0.13.74"]);
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(service(1))
        .cluster(cluster("service1", port))
        .start();
    let (_, since_before) = requests_of(&gateway, "service1");

    let stop = Arc::new(AtomicBool::new(false));
    let addr = gateway.listen_addr();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = http::Client::new(addr);
                let started = std::time::Instant::now();
                let (mut sent, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(60)
                    && sent < 100_000
                {
                    sent += 1;
                    match client.get("/service/1") {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body.trim())),
                        Err(e) => failed.push(format!("io: {e}")),
                    }
                }
                (sent, failed)
            })
        })
        .collect();

    let variants = |i: usize| -> (Vec<Route>, Vec<Cluster>) {
        match i % 4 {
            // add service2 and its route
            0 => (
                vec![service(1), service(2)],
                vec![cluster("service1", port), cluster("service2", port)],
            ),
            // change service2 (a new cluster object) and add service3
            1 => (
                vec![service(1), service(2), service(3)],
                vec![
                    cluster("service1", port),
                    cluster("service2", port).timeout(&format!("{}s", 5 + i % 3)),
                    cluster("service3", port),
                ],
            ),
            // remove service2
            2 => (
                vec![service(1), service(3)],
                vec![cluster("service1", port), cluster("service3", port)],
            ),
            // back to service1 alone, with a direct response
            _ => (
                vec![service(1), ok_route()],
                vec![cluster("service1", port)],
            ),
        }
    };
    for i in 0..20 {
        if i == 10 {
            std::fs::write(
                gateway.conf_path(),
                "gateway: { routes: [ { prefix: x } ] }\n",
            )
            .unwrap();
        } else {
            let (routes, clusters) = variants(i);
            let section = routes.into_iter().fold(
                clusters
                    .into_iter()
                    .fold(Gateway::builder().nameserver(dns.addr()), |g, c| {
                        g.cluster(c)
                    }),
                |g, r| g.route(r),
            );
            gateway.rewrite(section);
        }
        gateway.signal("HUP");
        let done = i + 1;
        assert!(
            wait_until(Duration::from_secs(15), || {
                let log = gateway.stderr_log();
                log.matches("SIGHUP: conf reloaded").count()
                    + log.matches("conf not reloaded").count().min(1)
                    >= done
            }),
            "reload {done} did not end:\n{}",
            gateway.stderr_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failed) = (0, Vec::new());
    for c in clients {
        let (s, f) = c.join().unwrap();
        sent += s;
        failed.extend(f);
    }
    println!(
        "reload | 20 reloads (1 invalid) under 4 keep-alive clients | sent {sent} | failed {}",
        failed.len()
    );
    assert!(sent > 100, "the load hardly ran: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(reloads(&gateway, "ok"), 19);
    assert_eq!(reloads(&gateway, "error"), 1);
    let (_, since_after) = requests_of(&gateway, "service1");
    assert_eq!(
        since_after, since_before,
        "service1's pods were re-probed into rotation"
    );
}
