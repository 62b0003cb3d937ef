//! Weighted clusters (issue 26 item 2): a route's `clusters` split its requests by weight —
//! 90/10 over 20,000 requests from h2load, counted at the pods; `sticky` keeps each of 1,000
//! users (curl, one header value each) on one version; a canary ramped 0 → 5 → 25 → 50 → 100
//! by five reloads done as the kubelet swaps a ConfigMap, under 30 s of 64 keep-alive h2load
//! clients, fails nothing and re-probes no pod; bad splits are refused with their path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::DnsServer;
use support::gateway::{Gateway, GatewayBuilder};
use support::{admin, free_port, http, indent_yaml, run_headway, wait_until};

/// Cluster `name` at `<name>.test:<port>`, probed every second.
fn cluster(name: &str, port: u16) -> Cluster {
    Cluster::new(name)
        .dns(&format!("{name}.test"), port)
        .health_check(HealthCheck::http().interval("1s").timeout("500ms"))
}

/// `/app` split between `stable` and `canary` with these weights; `sticky` its raw YAML.
fn app(stable: u32, canary: u32, sticky: Option<&str>) -> Route {
    let route = Route::prefix("/app").key(
        "clusters",
        &format!("[{{ name: stable, weight: {stable} }}, {{ name: canary, weight: {canary} }}]"),
    );
    match sticky {
        Some(yaml) => route.key("sticky", yaml),
        None => route,
    }
}

/// Two pods of `stable` and two of `canary` on one port, found by DNS.
struct Pods {
    dns: DnsServer,
    port: u16,
    stable: Vec<Backend>,
    canary: Vec<Backend>,
}

impl Pods {
    fn start(net: u8) -> Pods {
        let dns = DnsServer::start();
        let port = free_port();
        let ip = |i: u8| format!("127.0.{net}.{i}");
        let stable = vec![
            Backend::start(&ip(1), port, "stable"),
            Backend::start(&ip(2), port, "stable"),
        ];
        let canary = vec![
            Backend::start(&ip(3), port, "canary"),
            Backend::start(&ip(4), port, "canary"),
        ];
        dns.set_a("stable.test", &[ip(1).as_str(), &ip(2)]);
        dns.set_a("canary.test", &[ip(3).as_str(), &ip(4)]);
        Pods {
            dns,
            port,
            stable,
            canary,
        }
    }

    fn gateway(&self, route: Route) -> GatewayBuilder {
        Gateway::builder()
            .nameserver(self.dns.addr())
            .route(route)
            .cluster(cluster("stable", self.port))
            .cluster(cluster("canary", self.port))
    }

    /// Requests the stable and the canary pods received.
    fn hits(&self) -> (u64, u64) {
        let sum = |pods: &[Backend]| pods.iter().map(Backend::hits).sum::<u64>();
        (sum(&self.stable), sum(&self.canary))
    }

    fn health_hits(&self) -> Vec<u64> {
        self.stable
            .iter()
            .chain(&self.canary)
            .map(Backend::health_hits)
            .collect()
    }
}

fn h2load_available(test: &str) -> bool {
    let there = Command::new("h2load").arg("--version").output().is_ok();
    if !there {
        support::skip(
            test,
            "h2load not installed (scripts/setup.sh installs nghttp2-client)",
        );
    }
    there
}

/// Runs h2load over HTTP/1.1 (one request at a time per connection) with `args`; returns
/// (succeeded, failed + errored + timed out, non-2xx) as it reports them.
fn h2load(args: &[&str], url: &str) -> (u64, u64, u64) {
    let out = Command::new("h2load")
        .args(["--h1", "-m", "1"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("h2load printed no `{prefix}` line:\n{text}"))
            .to_owned()
    };
    // requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout
    let requests = line("requests:");
    let count = |field: &str| -> u64 {
        requests
            .split(',')
            .find_map(|part| {
                part.trim()
                    .strip_suffix(field)?
                    .trim()
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `{field}` in {requests}"))
    };
    let codes = line("status codes:");
    let ok: u64 = codes
        .trim_start_matches("status codes:")
        .split(',')
        .next()
        .and_then(|p| p.trim().strip_suffix("2xx"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 2xx count in {codes}"));
    let succeeded = count("succeeded");
    (
        succeeded,
        count("failed") + count("errored") + count("timeout"),
        succeeded - ok.min(succeeded),
    )
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole.max(1) as f64
}

/// 90/10 over 20,000 requests from h2load: the pods count within a point of 10 % for the
/// canary, and so does the gateway's `headway_route_cluster_requests_total`. The control: the
/// same h2load run straight at a pod fails nothing.
#[test]
fn ninety_ten_over_twenty_thousand_requests_lands_within_a_point() {
    if !h2load_available("weighted") {
        return;
    }
    let pods = Pods::start(41);
    let mut gateway = pods.gateway(app(90, 10, None)).start();
    gateway.wait_ready(Duration::from_secs(10));

    let direct = format!("http://{}/app", pods.stable[0].addr());
    let (ok, failed, non_2xx) = h2load(&["-n", "2000", "-c", "8"], &direct);
    assert_eq!((ok, failed, non_2xx), (2000, 0, 0), "control: h2load → pod");
    let before = pods.hits();

    let url = gateway.url("/app");
    let (ok, failed, non_2xx) = h2load(&["-n", "20000", "-c", "8"], &url);
    assert_eq!((ok, failed, non_2xx), (20_000, 0, 0), "h2load → headway");
    let (stable, canary) = pods.hits();
    let (stable, canary) = (stable - before.0, canary - before.1);
    assert_eq!(stable + canary, 20_000);
    let share = percent(canary, 20_000);
    println!("weighted | 90/10 over 20,000 (h2load) | canary {canary} = {share:.2} %");
    assert!((share - 10.0).abs() <= 1.0, "canary got {share:.2} %");
    for (name, hits) in [("stable", stable), ("canary", canary)] {
        let series =
            format!("headway_route_cluster_requests_total{{cluster=\"{name}\",route=\"/app\"}}");
        assert_eq!(gateway.metric(&series), hits as f64, "{series}");
    }
    // /stats shows the configured weights and the realised shares of the last minute.
    let stats = http::get_json(gateway.admin_addr(), "/stats");
    let split = &stats["splits"][0];
    assert_eq!(split["route"], "/app", "{stats:#}");
    assert_eq!(split["clusters"][1]["cluster"], "canary");
    assert_eq!(split["clusters"][1]["configured_percent"], 10.0);
    let realised = split["clusters"][1]["realised_percent"].as_f64().unwrap();
    assert!((realised - share).abs() < 0.01, "{realised} vs {share}");
    let page = http::get(gateway.admin_addr(), "/").unwrap().body;
    assert!(page.contains("<tr data-split=\"/app\"><td>/app</td><td>canary</td><td class=\"n\">10</td><td class=\"n\">10%</td>"), "{page}");
    gateway.assert_no_panic();
}

/// `sticky: { header: x-user }`: 1,000 users, each sending three requests with its own
/// header value (curl), each see one version only; the users on the canary are within 3
/// points of its 10 %. Requests without the header are split at random.
#[test]
fn a_thousand_sticky_users_each_see_one_version() {
    let pods = Pods::start(42);
    let mut gateway = pods
        .gateway(app(90, 10, Some("{ header: x-user }")))
        .start();
    gateway.wait_ready(Duration::from_secs(10));
    let url = gateway.url("/app");
    // One curl for all 3,000 requests: a config file, one transfer per entry, in order.
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<String> = (0..3000)
        .map(|i| format!("url = \"{url}\"\nheader = \"x-user: user-{}\"\n", i / 3))
        .collect();
    let config = entries.join("next\n");
    let file = dir.path().join("curl.conf");
    std::fs::write(&file, config).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-K"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(answers.len(), 3000, "{text}");
    let mut seen: HashMap<usize, &str> = HashMap::new();
    for (i, version) in answers.iter().enumerate() {
        let user = i / 3;
        let first = *seen.entry(user).or_insert(*version);
        assert_eq!(first, *version, "user-{user} saw {first}, then {version}");
    }
    let on_canary = seen.values().filter(|v| **v == "canary").count() as u64;
    let share = percent(on_canary, 1000);
    println!("weighted | sticky by header, 1,000 users (curl) | on canary {share:.1} %");
    assert!((share - 10.0).abs() <= 3.0, "canary users {share:.1} %");
    // Without the header: random by weight, both versions answer.
    let (mut stable, mut canary) = (0, 0);
    for _ in 0..200 {
        match http::get(gateway.listen_addr(), "/app")
            .unwrap()
            .body
            .split(' ')
            .next()
        {
            Some("stable") => stable += 1,
            Some("canary") => canary += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(stable > 0 && canary > 0, "stable {stable} canary {canary}");
    gateway.assert_no_panic();
}

/// A canary ramp as Argo Rollouts or Flagger would drive it: 0 → 5 → 25 → 50 → 100 by five
/// reloads, each the kubelet's `..data` symlink swap of a mounted ConfigMap (`watch_conf`),
/// during 30 s of 64 keep-alive clients (h2load): 0 failed, every pod keeps its `since` (none
/// re-probed into rotation), and the probes the pods saw are those of a 1 s interval.
#[test]
fn a_canary_ramp_by_five_configmap_swaps_fails_nothing_and_reprobes_no_pod() {
    use std::os::unix::fs::symlink;
    if !h2load_available("weighted") {
        return;
    }
    let pods = Pods::start(43);
    let builder = |route: Route| pods.gateway(route).gateway_yaml("watch_conf: true\n");
    let mut gateway = builder(Route::prefix("/app").to("stable")).start();
    gateway.wait_ready(Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(5), || admin::clusters(&gateway)
            .iter()
            .all(|c| c.backends.iter().all(|b| b.since.is_some()))),
        "not every pod probed healthy"
    );
    let since = |g: &Gateway| -> Vec<Option<String>> {
        admin::clusters(g)
            .iter()
            .flat_map(|c| c.backends.iter().map(|b| b.since.clone()))
            .collect()
    };
    let since_before = since(&gateway);

    let conf = gateway.conf_path().to_path_buf();
    let dir = conf.parent().unwrap().to_path_buf();
    let swap = |version: usize, content: &str| {
        let data = dir.join(format!("..v{version}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("headway.yaml"), content).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(format!("..v{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap(); // atomic, as the kubelet does
    };
    swap(0, &gateway.conf());
    let link = dir.join("headway.yaml.link");
    symlink("..data/headway.yaml", &link).unwrap();
    std::fs::rename(&link, &conf).unwrap();
    let top = {
        let old = gateway.conf();
        old[..old.find("gateway:").unwrap()].to_owned()
    };

    let url = gateway.url("/app");
    let load = std::thread::spawn(move || h2load(&["-c", "64", "-D", "30"], &url));
    let probes_before = pods.health_hits();
    let started = std::time::Instant::now();
    for (step, canary) in [0u32, 5, 25, 50, 100].into_iter().enumerate() {
        std::thread::sleep(Duration::from_secs(4));
        let section = builder(app(100 - canary, canary, None))
            .listen(gateway.listen_addr())
            .admin(gateway.admin_addr())
            .gateway_section();
        swap(
            step + 1,
            &format!("{top}gateway:\n{}", indent_yaml(&section, 2)),
        );
        assert!(
            wait_until(Duration::from_secs(5), || gateway
                .stderr_log()
                .matches("conf reloaded")
                .count()
                > step),
            "reload {} not applied:\n{}",
            step + 1,
            gateway.stderr_log()
        );
    }
    // At 100, the stable pods get nothing more.
    std::thread::sleep(Duration::from_secs(1));
    let (stable_at_100, canary_at_100) = pods.hits();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, failed, non_2xx) = load.join().unwrap();
    let ramp = started.elapsed().as_secs_f64();
    let (stable, canary) = pods.hits();
    println!(
        "weighted | canary ramp 0→5→25→50→100 by 5 ConfigMap swaps, 64 keep-alive clients, 30 s | \
         {ok} succeeded, {failed} failed, {non_2xx} non-2xx"
    );
    assert!(ok > 1000, "the load hardly ran: {ok}");
    assert_eq!((failed, non_2xx), (0, 0), "requests failed during the ramp");
    assert_eq!(
        stable, stable_at_100,
        "stable served after the ramp reached 100"
    );
    assert!(canary > canary_at_100, "the canary took no request at 100");
    assert_eq!(
        since(&gateway),
        since_before,
        "a pod was re-probed into rotation"
    );
    let probes: Vec<u64> = pods
        .health_hits()
        .iter()
        .zip(probes_before)
        .map(|(after, before)| after - before)
        .collect();
    let most = (ramp / 1.0).ceil() as u64 + 2;
    assert!(
        probes.iter().all(|&p| p <= most),
        "probes {probes:?} over {ramp:.0} s: more than a 1 s interval makes ({most})"
    );
    gateway.assert_no_panic();
}

/// Bad splits are refused by `-t`, each with its path.
#[test]
fn bad_splits_are_refused_with_their_path() {
    let cases = [
        (
            "clusters: [{ name: stable, weight: 0 }, { name: canary, weight: 0 }]",
            "gateway.routes[0].clusters: every weight is 0",
        ),
        (
            "cluster: stable\n    clusters: [{ name: stable, weight: 1 }]",
            "gateway.routes[0]: give one of cluster, clusters, direct_response, not two",
        ),
        (
            "clusters: [{ name: stable, weight: 1 }, { name: canery, weight: 1 }]",
            "gateway.routes[0].clusters[1].name: unknown cluster `canery` (did you mean `canary`?)",
        ),
        (
            "clusters: [{ name: stable, weight: 4294967295 }, { name: canary, weight: 1 }]",
            "gateway.routes[0].clusters: the weights add up to 4294967296, more than 4294967295",
        ),
        (
            "clusters: [{ name: stable, weight: -1 }]",
            "gateway.routes[0]",
        ),
        (
            "cluster: stable\n    sticky: { header: x-user }",
            "gateway.routes[0].sticky: needs `clusters`",
        ),
        (
            "clusters: [{ name: stable, weight: 1 }]\n    sticky: { header: x-user, cookie: u }",
            "gateway.routes[0].sticky: give exactly one of",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (route, want)) in cases.iter().enumerate() {
        let conf = format!(
            "version: 1\ngateway:\n  routes:\n  - prefix: /app\n    {route}\n  clusters:\n  \
             - {{ name: stable, address: 127.0.0.1, port: 80 }}\n  \
             - {{ name: canary, address: 127.0.0.1, port: 81 }}\n"
        );
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, &conf).unwrap();
        let (code, stdout, stderr) = run_headway(&["-t", "-c", path.to_str().unwrap()]);
        assert_ne!(code, 0, "accepted:\n{conf}");
        assert!(
            stderr.contains(want) || stdout.contains(want),
            "{conf}\nwanted `{want}` in:\n{stderr}{stdout}"
        );
    }
}
