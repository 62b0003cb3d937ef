//! Reload in place: SIGHUP (and `POST /reload` when the conf turns it on) re-reads the conf
//! file. A valid conf is swapped in — unchanged clusters keep their state, new ones serve at
//! once, requests already routed finish where they started — and a bad one changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::Duration;
use support::backend::Backend;
use support::dns::DnsServer;
use support::gateway::{Gateway, GatewayBuilder};
use support::{free_port, http, indent_yaml, wait_until};

const SERVICE1: &str = "- { prefix: /service/1, cluster: service1 }";

fn cluster(name: &str, port: u16) -> String {
    format!(
        "- name: {name}\n  address: {name}.test\n  port: {port}\n  dns_refresh_rate: 300ms\n  health_check: {{ type: http, interval: 200ms, timeout: 200ms }}\n"
    )
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

/// The gateway's conf file with its `gateway:` section replaced by `section` (same listeners).
fn rewrite(gateway: &Gateway, section: GatewayBuilder) {
    rewrite_with(gateway, section, |s| s.to_owned());
}

fn rewrite_with(gateway: &Gateway, section: GatewayBuilder, edit: impl Fn(&str) -> String) {
    let conf = gateway.conf();
    let top = &conf[..conf.find("gateway:").unwrap()];
    let section = edit(
        &section
            .listen(gateway.listen_addr())
            .admin(gateway.admin_addr())
            .gateway_section(),
    );
    std::fs::write(
        gateway.conf_path(),
        format!("{top}gateway:\n{}", indent_yaml(&section, 2)),
    )
    .unwrap();
}

fn reloads(gateway: &Gateway, result: &str) -> u64 {
    let metrics = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    let series = format!("headway_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn requests_of(gateway: &Gateway, cluster: &str) -> (u64, Vec<String>) {
    let c = http::get_json(gateway.admin_addr(), "/clusters");
    let cluster = c["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster} in {c}"))
        .clone();
    let backends = cluster["backends"].as_array().unwrap();
    (
        backends
            .iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .sum(),
        backends
            .iter()
            .map(|b| b["since"].as_str().unwrap().to_owned())
            .collect(),
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
        .routes_yaml(SERVICE1)
        .clusters_yaml(&cluster("service1", port))
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

    rewrite(
        &gateway,
        Gateway::builder()
            .nameserver(dns.addr())
            .routes_yaml(&format!(
                "{SERVICE1}\n- {{ prefix: /service/2, cluster: service2 }}"
            ))
            .clusters_yaml(&format!(
                "{}{}",
                cluster("service1", port),
                cluster("service2", port)
            )),
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
}

#[test]
fn a_bad_conf_changes_nothing_and_every_error_is_logged_with_its_path() {
    let dns = DnsServer::start();
    let port = free_port();
    let _pod = Backend::start("127.0.13.31", port, "service1");
    dns.set_a("service1.test", &["127.0.13.31"]);
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .routes_yaml(SERVICE1)
        .clusters_yaml(&cluster("service1", port))
        .start();
    rewrite(
        &gateway,
        Gateway::builder()
            .nameserver(dns.addr())
            .routes_yaml("- { prefix: /other, cluster: nowhere }")
            .clusters_yaml("- { name: service1, address: service1.test, port: 0, retrys: 2 }"),
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
        .routes_yaml(SERVICE1)
        .clusters_yaml(&cluster("service1", port))
        .start();
    let addr = gateway.listen_addr();
    let in_flight = std::thread::spawn(move || http::get(addr, "/service/1").unwrap());
    assert!(wait_until(Duration::from_secs(2), || slow.hits() == 1));
    rewrite(
        &gateway,
        Gateway::builder()
            .nameserver(dns.addr())
            .routes_yaml("- { prefix: /service/2, cluster: service2 }")
            .clusters_yaml(&cluster("service2", port)),
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
        .routes_yaml(SERVICE1)
        .clusters_yaml(&cluster("service1", port))
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
            .routes_yaml(SERVICE1)
            .clusters_yaml(&cluster("service1", port))
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
    rewrite_with(
        &on,
        Gateway::builder()
            .nameserver(dns.addr())
            .routes_yaml(&format!(
                "{SERVICE1}\n- {{ prefix: /ok, direct_response: {{ status: 200, body: ok }} }}"
            ))
            .clusters_yaml(&cluster("service1", port))
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
        .routes_yaml(SERVICE1)
        .clusters_yaml(&cluster("service1", port))
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
        .routes_yaml(&format!(
            "{SERVICE1}\n- {{ prefix: /ok, direct_response: {{ status: 200, body: ok }} }}"
        ))
        .clusters_yaml(&cluster("service1", port))
        .gateway_yaml("watch_conf: true\n");
    let old = gateway.conf();
    let top = &old[..old.find("gateway:").unwrap()];
    swap(
        "v2",
        &format!("{top}gateway:\n{}", indent_yaml(&next.gateway_section(), 2)),
    );
    assert!(
        gateway.wait_for_log("conf file changed: conf reloaded", Duration::from_secs(10)),
        "{}",
        gateway.stderr_log()
    );
    assert_eq!(http::get(gateway.listen_addr(), "/ok").unwrap().status, 200);
    assert_eq!(reloads(&gateway, "ok"), 1);
    assert!(gateway.is_running());
}
