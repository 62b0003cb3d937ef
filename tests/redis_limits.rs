//! `rate_limit` counted in Redis: three gateway processes share one limit; Redis stopped,
//! started again and made slow (a delaying TCP relay in front of it), each `failure_mode`
//! doing what it says; bad keys and bad confs. Debian's `redis-server`, started by the tests on
//! loopback ports (SKIPPED when it is not installed); `redis-cli` straight to it is the control.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::conf::{map, Cluster, Filter, Route};
use support::gateway::{Gateway, GatewayBuilder};
use support::http::{self, Client};
use support::{free_port, wait_until};

/// A `redis-server` of the test's own, on a loopback port, without persistence.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one; None (the test is then skipped) when redis-server is not installed.
    fn start() -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            support::skip(
                "redis_limits",
                "redis-server is not installed (scripts/setup.sh)",
            );
            return None;
        }
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.restart();
        Some(redis)
    }

    /// Starts the server (again, empty) on its port, and waits for `redis-cli PING`.
    fn restart(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || self.cli(&["PING"]) == "PONG");
        assert!(up, "redis-server on port {port} does not answer PING");
    }

    /// Kills the server (SIGKILL: gone at once, as a crashed pod).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli -p <port> <args>`: the control, straight to Redis. Its output, trimmed.
    fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A TCP relay to `to` that holds every chunk `delay` before passing it on (both ways).
fn slow_relay(to: u16, delay: Duration, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        std::thread::sleep(delay);
                        if into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

/// `rate_limit` counted in Redis at `url`: `requests_per_unit` a second, `burst`.
fn shared_limit(url: &str, per_second: u32, burst: u32, timeout: &str) -> Filter {
    Filter::new("rate_limit")
        .set("key", "route")
        .set("requests_per_unit", per_second)
        .set("burst", burst)
        .set(
            "store",
            map(&[("redis", map(&[("url", url), ("timeout", timeout)]))]),
        )
}

fn gateway_to(backend: &Backend) -> GatewayBuilder {
    Gateway::builder().cluster(Cluster::new("api").address(&backend.ip(), backend.port()))
}

/// Waits until the gateway says it counts in Redis.
fn wait_connected(gateway: &Gateway, n: usize) {
    let done = wait_until(Duration::from_secs(10), || {
        gateway.stderr_log().matches("counting in Redis").count() >= n
    });
    assert!(done, "never connected to Redis: {}", gateway.stderr_log());
}

/// `headway_rate_limit_store_errors_total` for `route` and `reason`.
fn store_errors(gateway: &Gateway, route: &str, reason: &str) -> u64 {
    let metrics = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    metrics
        .lines()
        .filter(|l| l.starts_with("headway_rate_limit_store_errors_total{"))
        .filter(|l| {
            l.contains(&format!("route=\"{route}\"")) && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0)
}

/// The longest time the gateway kept a request to a path starting with `path` for itself, from
/// its access log: `duration_ms` less `upstream_ms` (the backend's part). The wait for Redis is
/// in it; the client's scheduling on a loaded machine and the backend's answer are not.
fn slowest_logged(gateway: &Gateway, path: &str) -> Duration {
    let field = |line: &str, name: &str| -> f64 {
        line.split(&format!(" {name}="))
            .nth(1)
            .and_then(|v| v.split(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let ms = gateway
        .stderr_log()
        .lines()
        .filter(|l| l.contains(&format!(" path={path}")))
        .map(|l| field(l, "duration_ms") - field(l, "upstream_ms"))
        .fold(0.0, f64::max);
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// The three-replica load and the tests that time requests take turns: on a 2-core machine,
/// 600 requests a second beside them would time the machine rather than the gateway.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `GET path` on `client` and returns the status and how long it took.
fn timed(client: &mut Client, path: &str, headers: &[(&str, &str)]) -> (u16, Duration) {
    let started = Instant::now();
    let status = client.get_with_headers(path, headers).unwrap().status;
    (status, started.elapsed())
}

#[test]
fn three_replicas_share_one_limit_counted_in_redis() {
    let _turn = heavy();
    let Some(redis) = Redis::start() else { return };
    let backend = Backend::start("127.0.28.1", free_port(), "api");
    let gateways: Vec<Gateway> = (0..3)
        .map(|_| {
            gateway_to(&backend)
                .route(Route::prefix("/api").to("api").filter(shared_limit(
                    &redis.url(),
                    100,
                    10,
                    "50ms",
                )))
                .start()
        })
        .collect();
    for g in &gateways {
        wait_connected(g, 1);
    }
    // Three clients, 200 requests a second each for 10 s, one to each replica.
    let started = Instant::now();
    let clients: Vec<_> = gateways
        .iter()
        .map(|g| {
            let addr = g.listen_addr();
            std::thread::spawn(move || {
                let mut client = Client::new(addr);
                let (mut allowed, mut limited) = (0u64, 0u64);
                for i in 0..2_000u32 {
                    // 200 a second, each at a random point of its 5 ms: clients in lockstep
                    // would split the tokens by their phase, not their traffic.
                    let jitter = Duration::from_micros(fastrand::u64(0..5_000));
                    let at = started + Duration::from_millis(5) * i + jitter;
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    if started.elapsed() > Duration::from_secs(15) {
                        break;
                    }
                    match client.get("/api/x").unwrap().status {
                        200 => allowed += 1,
                        429 => limited += 1,
                        other => panic!("status {other}"),
                    }
                }
                (allowed, limited)
            })
        })
        .collect();
    let counts: Vec<(u64, u64)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let span = started.elapsed().as_secs_f64();
    let allowed: u64 = counts.iter().map(|c| c.0).sum();
    let sent: u64 = counts.iter().map(|c| c.0 + c.1).sum();
    eprintln!("allowed {allowed} of {sent} in {span:.2} s, by replica {counts:?}");
    assert_eq!(sent, 6_000, "every client sent its 2,000");
    // 100 a second for the run, plus the burst of 10: 1,010 in 10 s, ±2%.
    let expected = 100.0 * span + 10.0;
    assert!(
        (allowed as f64 - expected).abs() <= 0.02 * expected,
        "allowed {allowed}, expected {expected:.0} ± 2%"
    );
    assert!(
        (allowed as f64 - 1_000.0).abs() <= 0.02 * 1_000.0 + 100.0 * (span - 10.0).max(0.0),
        "allowed {allowed} in {span:.2} s"
    );
    // Each replica got what its client's share of the traffic is: a third, give or take.
    for (i, (ok, _)) in counts.iter().enumerate() {
        let share = *ok as f64 / allowed as f64;
        assert!((0.25..=0.42).contains(&share), "replica {i}: {share:.2}");
    }
    assert_eq!(
        backend.hits(),
        allowed,
        "a refused request never reaches it"
    );
    for g in &gateways {
        for reason in ["timeout", "refused", "dropped", "error", "connecting"] {
            assert_eq!(store_errors(g, "/api", reason), 0, "{reason}");
        }
        g.assert_no_panic();
    }
    // Control: the bucket is in Redis, one key.
    assert_eq!(
        redis
            .cli(&["--scan", "--pattern", "headway:rl:*"])
            .lines()
            .count(),
        1
    );
}

#[test]
fn when_redis_stops_each_failure_mode_does_what_it_says_and_counting_comes_back() {
    let _turn = heavy();
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let backend = Backend::start("127.0.28.2", free_port(), "api");
    let timeout = Duration::from_millis(50);
    let limit = |mode: &str| {
        shared_limit(&redis.url(), 10, 5, "50ms")
            .set("failure_mode", mode)
            .set("expected_replicas", 2)
    };
    let gateway = gateway_to(&backend)
        .route(Route::prefix("/allow").to("api").filter(limit("allow")))
        .route(Route::prefix("/deny").to("api").filter(limit("deny")))
        .route(Route::prefix("/local").to("api").filter(limit("local")))
        .start();
    wait_connected(&gateway, 3);
    let mut client = Client::new(gateway.listen_addr());
    // Redis up: every route counts there, 5 then 429.
    for path in ["/allow", "/deny", "/local"] {
        let statuses: Vec<u16> = (0..7).map(|_| timed(&mut client, path, &[]).0).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429], "{path}");
    }
    assert_eq!(redis.cli(&["DBSIZE"]), "3", "three buckets in Redis");

    redis.stop();
    // Redis away for 1.5 s of requests at ~60/s on each route: allow lets all through, deny
    // refuses all (503), local counts in the replica (its half of the limit: 5/s, burst 3).
    let away = Instant::now();
    let (mut statuses, mut slowest_client) = (Vec::new(), Duration::ZERO);
    while away.elapsed() < Duration::from_millis(1_500) && statuses.len() < 600 {
        for path in ["/allow", "/deny", "/local"] {
            let (status, took) = timed(&mut client, path, &[]);
            slowest_client = slowest_client.max(took);
            statuses.push((path, status));
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let count = |path: &str, status: u16| {
        statuses
            .iter()
            .filter(|(p, s)| *p == path && *s == status)
            .count()
    };
    let rounds = statuses.len() / 3;
    assert_eq!(count("/allow", 200), rounds, "allow: every request through");
    assert_eq!(count("/deny", 503), rounds, "deny: every request refused");
    let local = count("/local", 200);
    let most = 3.0 + 5.0 * away.elapsed().as_secs_f64();
    assert!(
        local >= 3 && local as f64 <= most + 1.0 && count("/local", 429) + local == rounds,
        "local: {local} allowed of {rounds} (at most {most:.0})"
    );
    for path in ["/allow", "/deny", "/local"] {
        let slowest = slowest_logged(&gateway, path);
        assert!(
            slowest <= timeout + Duration::from_millis(5),
            "{path}: a request took {slowest:?} in the gateway ({rounds} rounds, slowest at the client {slowest_client:?})"
        );
    }
    let errors = |route: &str| {
        ["timeout", "refused", "dropped", "error"]
            .iter()
            .map(|r| store_errors(&gateway, route, r))
            .sum::<u64>()
    };
    for route in ["/allow", "/deny", "/local"] {
        assert_eq!(
            errors(route),
            rounds as u64,
            "{route}: every fallback counted"
        );
    }
    assert!(
        store_errors(&gateway, "/local", "refused") > 0,
        "refused while away"
    );
    // The dashboard shows them, in /stats and on its page.
    let stats = http::get_json(gateway.admin_addr(), "/stats");
    let shown = stats["rate_limit_store_errors"].as_array().unwrap();
    assert!(
        shown
            .iter()
            .any(|e| e["route"] == "/deny" && e["reason"] == "refused"),
        "{stats:#}"
    );
    let page = http::get(gateway.admin_addr(), "/").unwrap().body;
    assert!(page.contains("id=\"store-errors\"") && page.contains("data-store-route=\"/deny\""));

    // Back: counting is global again within a second (a new, empty Redis gets the buckets).
    redis.restart();
    let back = Instant::now();
    let global = wait_until(Duration::from_secs(3), || {
        timed(&mut client, "/local", &[]);
        redis.cli(&["DBSIZE"]) == "1"
    });
    let took = back.elapsed();
    assert!(
        global && took <= Duration::from_secs(1),
        "global again after {took:?}"
    );
    assert_eq!(
        timed(&mut client, "/deny", &[]).0,
        200,
        "deny: counted again"
    );
    assert!(gateway.stderr_log().contains("is away"));
    gateway.assert_no_panic();
}

#[test]
fn a_slow_redis_times_out_and_the_fallback_answers_in_time() {
    let _turn = heavy();
    let Some(redis) = Redis::start() else { return };
    let backend = Backend::start("127.0.28.3", free_port(), "api");
    let stop = Arc::new(AtomicBool::new(false));
    let relay = slow_relay(redis.port, Duration::from_millis(150), stop.clone());
    // Control: through the relay Redis answers, slowly; straight, at once.
    let started = Instant::now();
    assert_eq!(cli(relay, &["PING"]), "PONG");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let url = format!("redis://127.0.0.1:{relay}");
    let timeout = Duration::from_millis(30);
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/allow")
                .to("api")
                .filter(shared_limit(&url, 1, 1, "30ms").set("failure_mode", "allow")),
        )
        .route(
            Route::prefix("/deny")
                .to("api")
                .filter(shared_limit(&url, 1, 1, "30ms").set("failure_mode", "deny")),
        )
        .start();
    let mut client = Client::new(gateway.listen_addr());
    for _ in 0..40 {
        for (path, expected) in [("/allow", 200), ("/deny", 503)] {
            assert_eq!(timed(&mut client, path, &[]).0, expected, "{path}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for path in ["/allow", "/deny"] {
        let slowest = slowest_logged(&gateway, path);
        assert!(
            slowest <= timeout + Duration::from_millis(5),
            "{path}: a request took {slowest:?} in the gateway"
        );
    }
    let timeouts = store_errors(&gateway, "/allow", "timeout");
    assert!(timeouts > 0, "timeouts counted");
    let all: u64 = ["timeout", "refused", "dropped", "error", "connecting"]
        .iter()
        .map(|r| store_errors(&gateway, "/deny", r))
        .sum();
    assert_eq!(all, 40, "every fallback counted");
    stop.store(true, Ordering::Relaxed);
    gateway.assert_no_panic();
}

#[test]
fn odd_keys_get_buckets_of_their_own_under_short_keys() {
    let Some(redis) = Redis::start() else { return };
    let backend = Backend::start("127.0.28.4", free_port(), "api");
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/k").to("api").filter(
                Filter::new("rate_limit")
                    .set("key", "header")
                    .set("header", "x-key")
                    .set("requests_per_unit", 1)
                    .set("unit", "minute")
                    .set("burst", 2)
                    .set(
                        "store",
                        map(&[(
                            "redis",
                            map(&[
                                ("url", redis.url()),
                                ("key_prefix", "my app\nlimits:".into()),
                            ]),
                        )]),
                    ),
            ),
        )
        .start();
    wait_connected(&gateway, 1);
    let long = "v".repeat(10 * 1024);
    let values = [
        "with spaces in it",
        "tab\there",
        "ünïcode",
        long.as_str(),
        "",
    ];
    let mut client = Client::new(gateway.listen_addr());
    for value in values {
        let statuses: Vec<u16> = (0..3)
            .map(|_| timed(&mut client, "/k", &[("x-key", value)]).0)
            .collect();
        assert_eq!(statuses, [200, 200, 429], "value of {} bytes", value.len());
    }
    let statuses: Vec<u16> = (0..3).map(|_| timed(&mut client, "/k", &[]).0).collect();
    assert_eq!(statuses, [200, 200, 429], "no header: one shared bucket");
    // Control: the keys in Redis, each short, the prefix as written.
    let keys = redis.cli(&["--scan", "--pattern", "my app*"]);
    assert_eq!(redis.cli(&["DBSIZE"]), "6", "{keys}");
    assert!(keys.lines().all(|k| k.len() <= 64), "{keys}");
    gateway.assert_no_panic();
}

#[test]
fn an_unreachable_redis_at_start_falls_back_and_bad_store_confs_are_errors() {
    // A port nothing listens on: the gateway starts, falls back (local), counts why.
    let backend = Backend::start("127.0.28.5", free_port(), "api");
    let closed = format!("redis://127.0.0.1:{}", free_port());
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/api")
                .to("api")
                .filter(shared_limit(&closed, 1, 2, "20ms").set("unit", "minute")),
        )
        .start();
    let mut client = Client::new(gateway.listen_addr());
    let statuses: Vec<u16> = (0..3).map(|_| timed(&mut client, "/api", &[]).0).collect();
    assert_eq!(statuses, [200, 200, 429], "the replica's own bucket");
    let fallbacks: u64 = ["refused", "connecting"]
        .iter()
        .map(|r| store_errors(&gateway, "/api", r))
        .sum();
    assert_eq!(fallbacks, 3);
    assert!(gateway.wait_for_log("cannot reach Redis", Duration::from_secs(5)));
    // A reload to a URL that does not parse is refused; the running limit goes on, buckets kept.
    let mut gateway = gateway;
    gateway.rewrite(
        gateway_to(&backend).route(
            Route::prefix("/api")
                .to("api")
                .filter(shared_limit("redis://:::nope", 1, 2, "20ms").set("unit", "minute")),
        ),
    );
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("conf not reloaded", Duration::from_secs(15)));
    assert!(gateway
        .stderr_log()
        .contains("store.redis.url: `redis://:::nope`"));
    assert_eq!(
        timed(&mut client, "/api", &[]).0,
        429,
        "the same bucket, still limited"
    );
    gateway.assert_no_panic();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headway.yaml");
    std::fs::write(
        &path,
        r#"gateway:
  routes:
    - prefix: /a
      cluster: api
      filters:
        - { name: rate_limit, requests_per_unit: 5, store: { redis: { url: "redis://:::nope" } } }
        - { name: rate_limit, requests_per_unit: 5, store: { redis: { url: "redis://127.0.0.1", timeout: "5" } } }
        - { name: rate_limit, requests_per_unit: 5, store: { redis: { url: "redis://127.0.0.1" } }, failure_mode: maybe }
        - { name: rate_limit, requests_per_unit: 5, expected_replicas: 3 }
        - { name: rate_limit, requests_per_unit: 5, store: { redis: { url: "redis://127.0.0.1" } }, expected_replicas: 0 }
        - { name: rate_limit, requests_per_unit: 5, store: { redis: { host: x } } }
  clusters:
    - { name: api, address: 127.0.28.6, port: 80 }
"#,
    )
    .unwrap();
    let (code, _, stderr) = support::run_headway(&["-t", "-c", &path.to_string_lossy()]);
    assert_eq!(code, 1, "{stderr}");
    let f = "gateway.routes[0].filters";
    for expected in [
        format!("{f}[0]: store.redis.url: `redis://:::nope`"),
        format!("{f}[1]: store.redis.timeout: `5` has no unit"),
        format!("{f}[2]: failure_mode: unknown variant `maybe`"),
        format!("{f}[3]: expected_replicas: only with a `store:`"),
        format!("{f}[4]: expected_replicas: must be at least 1"),
        format!("{f}[5]: store.redis: unknown field `host`"),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
}
