//! Traffic policies that refuse requests: `rate_limit` (429 + `Retry-After`, buckets per route,
//! client address, header) and `access_control` (403 on allow / deny lists), through the real
//! binary, with curl as one of the clients and a control run of the same client straight to
//! the backend. Clients on different loopback source addresses are different clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::conf::{Cluster, Filter, Route};
use support::curl::Curled;
use support::gateway::{Gateway, GatewayBuilder};
use support::http::{self, Response};
use support::{free_port, wait_until};

/// `GET path` from the source address `source` (bound before connecting), `Connection: close`.
fn get_from(source: &str, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    });
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(http::TIMEOUT)).unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    http::read_response(&mut BufReader::new(stream), "GET").unwrap()
}

/// `curl url` from `source` (`--interface`), with extra `-H` headers (support::curl).
fn curl(source: &str, url: &str, headers: &[&str]) -> Curled {
    let mut args = vec!["--interface", source, url];
    for h in headers {
        args.extend(["-H", h]);
    }
    support::curl::curl(&args)
}

/// The value of `headway_filter_events_total` for this route, filter and event.
fn events(gateway: &Gateway, route: &str, filter: &str, event: &str) -> u64 {
    let metrics = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    metrics
        .lines()
        .filter(|l| l.starts_with("headway_filter_events_total{"))
        .filter(|l| {
            l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("filter=\"{filter}\""))
                && l.contains(&format!("event=\"{event}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0)
}

/// A gateway whose cluster `api` is `backend`; the test adds its routes.
fn gateway_to(backend: &Backend) -> GatewayBuilder {
    Gateway::builder().cluster(Cluster::new("api").address(&backend.ip(), backend.port()))
}

/// `{ name: rate_limit, requests_per_unit: <n>, unit: <unit> }`; the test sets the rest.
fn rate_limit(requests_per_unit: u32, unit: &str) -> Filter {
    Filter::new("rate_limit")
        .set("requests_per_unit", requests_per_unit)
        .set("unit", unit)
}

/// Reloads the gateway (SIGHUP) and waits for it to say so; `nth` counts its reloads.
fn reload(gateway: &mut Gateway, nth: usize) {
    gateway.signal("HUP");
    let done = wait_until(Duration::from_secs(15), || {
        gateway.stderr_log().matches("conf reloaded").count() >= nth
    });
    assert!(done, "reload {nth}: {}", gateway.stderr_log());
}

#[test]
fn a_route_bucket_gives_its_burst_then_429_with_retry_after_and_refills() {
    let backend = Backend::start("127.0.17.1", free_port(), "api");
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/limited").to("api").filter(
                rate_limit(2, "second")
                    .set("key", "route")
                    .set("burst", 3)
                    .set("headers", true),
            ),
        )
        .route(
            Route::prefix("/hourly")
                .to("api")
                .filter(rate_limit(1, "minute").set("key", "route").set("burst", 1)),
        )
        .route(Route::prefix("/open").to("api"))
        .start();
    let addr = gateway.listen_addr();

    let started = Instant::now();
    for left in ["2", "1", "0"] {
        let r = http::get(addr, "/limited/a").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some(left));
    }
    let r = http::get(addr, "/limited/a").unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "too slow a machine for this test"
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.body, "rate limit exceeded: retry in 1 s\n");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("2"), "1.5 s to full");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(
        backend.hits(),
        3,
        "a refused request never reaches the backend"
    );

    // One token every 500 ms: one more after it, not two.
    std::thread::sleep(Duration::from_millis(600).saturating_sub(started.elapsed()));
    assert_eq!(http::get(addr, "/limited/a").unwrap().status, 200);
    assert_eq!(http::get(addr, "/limited/a").unwrap().status, 429);

    // Retry-After counts whole seconds up to the next token: a minute here.
    assert_eq!(http::get(addr, "/hourly").unwrap().status, 200);
    let r = http::get(addr, "/hourly").unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(r.header("x-ratelimit-limit"), None, "headers: false");

    // curl sees the same; straight to the backend (the control) it is never refused.
    let r = curl("127.0.0.1", &gateway.url("/hourly"), &[]);
    assert_eq!((r.status, r.header("retry-after")), (429, Some("60")));
    assert_eq!(r.text(), "rate limit exceeded: retry in 60 s\n");
    for _ in 0..3 {
        let direct = format!("http://{}/hourly", backend.addr_string());
        assert_eq!(curl("127.0.0.1", &direct, &[]).status, 200);
    }
    // A route without the filter is not limited.
    for _ in 0..10 {
        assert_eq!(http::get(addr, "/open").unwrap().status, 200);
    }

    assert_eq!(events(&gateway, "/limited", "rate_limit", "limited"), 2);
    assert_eq!(events(&gateway, "/limited", "rate_limit", "allowed"), 4);
    assert_eq!(events(&gateway, "/hourly", "rate_limit", "limited"), 2);
    assert!(wait_until(Duration::from_secs(3), || gateway
        .stderr_log()
        .matches("status=429 ")
        .count()
        == 4));
    gateway.assert_no_panic();
}

#[test]
fn clients_on_different_addresses_have_their_own_buckets() {
    let backend = Backend::start("127.0.17.2", free_port(), "api");
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/api")
                .to("api")
                .filter(rate_limit(1, "minute").set("burst", 2)),
        )
        .start();
    let url = gateway.url("/api/x");
    let statuses = |source: &str, n: usize| -> Vec<u16> {
        (0..n).map(|_| curl(source, &url, &[]).status).collect()
    };
    assert_eq!(statuses("127.0.0.21", 3), [200, 200, 429]);
    assert_eq!(statuses("127.0.0.22", 3), [200, 200, 429], "its own bucket");
    let r = get_from("127.0.0.23", gateway.listen_addr(), "/api/x", &[]);
    assert_eq!(r.status, 200);
    let r = get_from("127.0.0.21", gateway.listen_addr(), "/api/x", &[]);
    assert_eq!(r.status, 429, "still limited over another client");
    // Control: the same client straight to the backend.
    let direct = format!("http://{}/api/x", backend.addr_string());
    assert_eq!(curl("127.0.0.21", &direct, &[]).status, 200);
    assert_eq!(events(&gateway, "/api", "rate_limit", "limited"), 3);
    gateway.assert_no_panic();
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_the_key_and_a_forged_one_is_not() {
    let backend = Backend::start("127.0.17.3", free_port(), "api");
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/api")
                .to("api")
                .filter(rate_limit(1, "minute").set("burst", 2)),
        )
        .route(
            Route::prefix("/office")
                .to("api")
                .filter(Filter::new("access_control").set("allow", ["198.51.100.0/24"])),
        )
        .gateway_yaml("trusted_proxies: [\"127.0.0.1/32\"]")
        .start();
    let url = gateway.url("/api/x");
    let via_proxy = |client: &str| {
        let xff = format!("X-Forwarded-For: {client}");
        curl("127.0.0.1", &url, &[xff.as_str()]).status
    };
    // The proxy (127.0.0.1) forwards two clients: each has its own bucket.
    assert_eq!(
        [via_proxy("203.0.113.7"), via_proxy("203.0.113.7")],
        [200, 200]
    );
    assert_eq!(via_proxy("203.0.113.7"), 429);
    assert_eq!(via_proxy("203.0.113.8"), 200);
    // An untrusted peer's X-Forwarded-For is ignored: a new value each time does not help.
    let forged: Vec<u16> = (1..=3)
        .map(|i| {
            let xff = format!("X-Forwarded-For: 192.0.2.{i}");
            curl("127.0.0.21", &url, &[xff.as_str()]).status
        })
        .collect();
    assert_eq!(forged, [200, 200, 429]);

    // access_control judges the same client.
    let office = gateway.url("/office");
    let r = curl("127.0.0.1", &office, &["X-Forwarded-For: 198.51.100.5"]);
    assert_eq!(r.status, 200);
    let r = curl("127.0.0.1", &office, &["X-Forwarded-For: 203.0.113.1"]);
    assert_eq!(r.status, 403);
    let r = curl("127.0.0.21", &office, &["X-Forwarded-For: 198.51.100.5"]);
    assert_eq!(r.status, 403, "a forged X-Forwarded-For lets no one in");
    assert_eq!(events(&gateway, "/office", "access_control", "denied"), 2);
    gateway.assert_no_panic();
}

#[test]
fn a_header_key_counts_each_value_and_requests_without_it_share_one_bucket() {
    let backend = Backend::start("127.0.17.4", free_port(), "api");
    let gateway = gateway_to(&backend)
        .route(
            Route::prefix("/api").to("api").filter(
                rate_limit(1, "minute")
                    .set("key", "header")
                    .set("header", "x-api-client")
                    .set("burst", 1),
            ),
        )
        .start();
    let addr = gateway.listen_addr();
    let with = |value: &str| {
        http::get_with_headers(addr, "/api", &[("x-api-client", value)])
            .unwrap()
            .status
    };
    assert_eq!(
        [with("alpha"), with("alpha"), with("beta")],
        [200, 429, 200]
    );
    // A long value is a key like any other.
    let long = "k".repeat(4000);
    assert_eq!([with(&long), with(&long)], [200, 429]);
    // No header: one bucket for all, whatever the address.
    let url = gateway.url("/api");
    assert_eq!(curl("127.0.0.21", &url, &[]).status, 200);
    assert_eq!(curl("127.0.0.22", &url, &[]).status, 429);
    assert_eq!(
        curl("127.0.0.22", &url, &["x-api-client: gamma"]).status,
        200
    );
    let direct = format!("http://{}/api", backend.addr_string());
    assert_eq!(curl("127.0.0.22", &direct, &[]).status, 200, "control");
    assert_eq!(events(&gateway, "/api", "rate_limit", "limited"), 3);
    gateway.assert_no_panic();
}

#[test]
fn access_control_allows_and_denies_addresses_and_blocks() {
    let backend = Backend::start("127.0.17.5", free_port(), "api");
    let gateway =
        gateway_to(&backend)
            .route(
                Route::prefix("/lan").to("api").filter(
                    Filter::new("access_control")
                        .set("allow", ["127.0.0.0/8"])
                        .set("deny", ["127.0.0.21", "127.0.0.40/29"]),
                ),
            )
            .route(Route::prefix("/few").to("api").filter(
                Filter::new("access_control").set("allow", ["127.0.0.22/32", "127.0.0.48/28"]),
            ))
            .start();
    let to = gateway.listen_addr();
    let status = |source: &str, path: &str| get_from(source, to, path, &[]).status;
    assert_eq!(status("127.0.0.1", "/lan"), 200);
    assert_eq!(status("127.0.0.22", "/lan"), 200);
    assert_eq!(status("127.0.0.21", "/lan"), 403, "a denied address");
    assert_eq!(status("127.0.0.42", "/lan"), 403, "in a denied block");
    assert_eq!(status("127.0.0.48", "/lan"), 200, "just past it");
    assert_eq!(status("127.0.0.22", "/few"), 200);
    assert_eq!(status("127.0.0.50", "/few"), 200, "in an allowed block");
    assert_eq!(status("127.0.0.1", "/few"), 403, "in no allowed entry");
    let hits = backend.hits();
    assert_eq!(hits, 5);

    let r = curl("127.0.0.21", &gateway.url("/lan/x"), &[]);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.text(),
        "forbidden: this route does not accept requests from your address\n"
    );
    assert_eq!(backend.hits(), hits, "a refused request never reaches it");
    let direct = format!("http://{}/lan/x", backend.addr_string());
    assert_eq!(curl("127.0.0.21", &direct, &[]).status, 200, "control");
    assert_eq!(events(&gateway, "/lan", "access_control", "denied"), 3);
    assert_eq!(events(&gateway, "/few", "access_control", "denied"), 1);
    gateway.assert_no_panic();
}

#[test]
fn bad_policy_keys_are_conf_errors_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let check = |routes: &str| {
        let path = dir.path().join("headway.yaml");
        std::fs::write(
            &path,
            format!(
                "gateway:\n  routes:\n{}\n  clusters:\n    - {{ name: api, address: 127.0.17.6, port: 80 }}\n",
                support::indent_yaml(routes, 4)
            ),
        )
        .unwrap();
        let (code, _, stderr) = support::run_headway(&["-t", "-c", &path.to_string_lossy()]);
        (code, stderr)
    };
    let good = r#"- prefix: /a
  cluster: api
  filters:
    - { name: rate_limit, requests_per_unit: 100 }
    - { name: rate_limit, key: header, header: x-key, requests_per_unit: 5, unit: hour, burst: 10, max_keys: 1000, headers: true }
    - { name: rate_limit, key: route, requests_per_unit: 1000, unit: minute }
    - { name: access_control, deny: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"] }"#;
    let (code, stderr) = check(good);
    assert_eq!(code, 0, "{stderr}");

    let (code, stderr) = check(
        r#"- prefix: /a
  cluster: api
  filters:
    - { name: access_control, allow: ["10.0.0.0/8", "10.0.0.0/33"] }
    - { name: access_control, deny: [nope] }
    - { name: access_control }
    - { name: rate_limit, unit: second }
    - { name: rate_limit, requests_per_unit: 5, unit: minutes }
    - { name: rate_limit, requests_per_unit: 5, key: header }
    - { name: rate_limit, requests_per_unit: 0 }
    - { name: rate_limit, requests_per_unit: 5, max_keys: 0 }
    - { name: rate_limit, requests_per_unit: 5, brust: 9 }
    - { name: rate_limit, requests_per_unit: 5, key: header, header: "bad name" }
    - { name: rate_limit, requests_per_unit: 5, key: route, max_keys: 10 }
    - { name: rate_limit, requests_per_unit: 5, key: cookie }"#,
    );
    assert_eq!(code, 1, "{stderr}");
    let f = "gateway.routes[0].filters";
    for expected in [
        format!("{f}[0]: allow[1]: `10.0.0.0/33`: the prefix must be 0 to 32"),
        format!("{f}[1]: deny[0]: `nope` is not an address or address/prefix"),
        format!("{f}[2]: allow, deny: name at least one address or block"),
        format!("{f}[3]: missing field `requests_per_unit`"),
        format!("{f}[4]: unit: unknown variant `minutes`"),
        format!("{f}[5]: header: required with `key: header`"),
        format!("{f}[6]: requests_per_unit: must be at least 1"),
        format!("{f}[7]: max_keys: must be at least 1"),
        format!("{f}[8]: unknown field `brust`"),
        format!("{f}[9]: header: `bad name` is not a header name"),
        format!("{f}[10]: max_keys: `key: route` has a single bucket"),
        format!(
            "{f}[11]: key: unknown variant `cookie`, expected one of `client`, `header`, `route`"
        ),
    ] {
        assert!(stderr.contains(&expected), "{expected}\nnot in:\n{stderr}");
    }
    assert!(stderr.contains("12 errors in conf"), "{stderr}");
}

#[test]
fn buckets_outlive_a_reload_unless_the_limit_itself_changes() {
    let backend = Backend::start("127.0.17.9", free_port(), "api");
    let limited = |per_minute: u32| {
        Route::prefix("/limited").to("api").filter(
            rate_limit(per_minute, "minute")
                .set("key", "route")
                .set("burst", 2),
        )
    };
    let mut gateway = gateway_to(&backend).route(limited(1)).start();
    let addr = gateway.listen_addr();
    let status = || http::get(addr, "/limited").unwrap().status;
    assert_eq!(
        [status(), status(), status()],
        [200, 200, 429],
        "the burst of 2, then empty"
    );

    // A reload that adds a route and leaves the limit as it was: the bucket is the same one,
    // still empty (a fresh one would let 2 more through at once).
    gateway.rewrite(
        gateway_to(&backend)
            .route(limited(1))
            .route(Route::prefix("/open").to("api")),
    );
    reload(&mut gateway, 1);
    assert_eq!(
        http::get(addr, "/open").unwrap().status,
        200,
        "the new route serves"
    );
    assert_eq!(
        status(),
        429,
        "the kept bucket is still empty after the reload"
    );
    assert_eq!(events(&gateway, "/limited", "rate_limit", "limited"), 2);

    // A reload that changes the limit: a new limit, a new bucket.
    gateway.rewrite(gateway_to(&backend).route(limited(600)));
    reload(&mut gateway, 2);
    assert_eq!(status(), 200, "a changed limit starts with its burst");
    gateway.assert_no_panic();
}
