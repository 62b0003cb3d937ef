//! Route features and load-balancing policies through the real binary: rewrites, Host domains,
//! exact and regex paths, header changes, per-route timeouts, direct responses; least_request
//! against a slow pod, and consistent hashing that survives pods leaving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::admin;
use support::backend::Backend;
use support::conf::{Cluster, HashKey, Outlier, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, wait_until};

#[test]
fn routes_rewrite_match_hosts_change_headers_and_answer_directly() {
    let dns = DnsServer::start();
    let port = free_port();
    let api = Backend::start("127.0.8.11", port, "api");
    let web = Backend::start("127.0.8.12", port, "web");
    dns.set_a("api.test", &["127.0.8.11"]);
    dns.set_a("web.test", &["127.0.8.12"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(
            Route::path("/healthz")
                .direct_response(200, "gateway ok\n")
                .add_response_header("x-gw", "direct"),
        )
        .route(Route::regex("/users/[0-9]+").to("api"))
        .route(
            Route::prefix("/api/")
                .domains(&["api.example.com"])
                .to("api")
                .prefix_rewrite("/v2/")
                .host_rewrite("api.internal")
                .add_request_header("x-tenant", "acme")
                .remove_request_header("x-debug")
                .add_response_header("x-route", "api")
                .remove_response_header("x-backend"),
        )
        .route(Route::prefix("/slow").to("api").timeout("300ms"))
        .route(Route::prefix("/gone").direct_response(410, "moved away\n"))
        .route(Route::prefix("/").domains(&["*.example.com"]).to("web"))
        .cluster(Cluster::new("api").dns("api.test", port).retries(0))
        .cluster(Cluster::new("web").dns("web.test", port))
        .start();
    let gw = gateway.listen_addr();

    // A direct response, with its response header, reaching no backend.
    let r = http::get(gw, "/healthz").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "gateway ok\n"));
    assert_eq!(r.header("x-gw"), Some("direct"));
    let r = http::get(gw, "/gone/for/good").unwrap();
    assert_eq!((r.status, r.body.as_str()), (410, "moved away\n"));

    // Regex: the whole path must match.
    let r = http::get(gw, "/users/42").unwrap();
    assert_eq!(r.header("x-backend"), Some("api"));
    assert_eq!(http::get(gw, "/users/42/x").unwrap().status, 404);

    // Host domains, prefix and host rewrites, header changes both ways.
    let r = http::get_with_headers(
        gw,
        "/api/orders?page=2",
        &[("Host", "API.example.com:8000"), ("x-debug", "1")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-target"), Some("/v2/orders?page=2"));
    assert_eq!(r.header("x-echo-host"), Some("api.internal"));
    assert_eq!(r.header("x-echo-x-tenant"), Some("acme"));
    assert_eq!(
        r.header("x-echo-x-debug"),
        None,
        "removed before forwarding"
    );
    assert_eq!(r.header("x-route"), Some("api"));
    assert_eq!(r.header("x-backend"), None, "removed from the response");
    // The same path for another host falls through to the wildcard domain.
    let r = http::get_with_headers(gw, "/api/orders", &[("Host", "shop.example.com")]).unwrap();
    assert_eq!(r.header("x-backend"), Some("web"));
    assert_eq!(r.header("x-request-target"), Some("/api/orders"));
    // No matching host and no catch-all: 404.
    let r = http::get_with_headers(gw, "/api/orders", &[("Host", "example.org")]).unwrap();
    assert_eq!(r.status, 404);

    // The route's own timeout beats the cluster's 15 s.
    api.set_delay(Duration::from_secs(3));
    let started = Instant::now();
    let r = http::get(gw, "/slow").unwrap();
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(web.hits(), 1);
}

/// `n` pod addresses: 127.0.8.<first>, 127.0.8.<first + 1>, …
fn ips(first: u8, n: u8) -> Vec<String> {
    (0..n).map(|i| format!("127.0.8.{}", first + i)).collect()
}

/// The pods of `svc.test` (on `port`) without outlier detection, balanced by `lb_policy`.
fn svc(port: u16, lb_policy: &str) -> Cluster {
    Cluster::new("svc")
        .dns("svc.test", port)
        .refresh("300ms")
        .outlier(Outlier::new().consecutive_failures(0))
        .lb_policy(lb_policy)
}

/// Everything (`/`) to `cluster`, which must be named `svc`.
fn policy_gateway(dns: &DnsServer, cluster: Cluster) -> Gateway {
    Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("svc"))
        .cluster(cluster)
        .start()
}

/// Share of requests the slow pod got with `clients` concurrent clients for `secs`.
fn slow_share(gateway: &Gateway, pods: &[Backend], clients: usize, secs: u64) -> f64 {
    let before: Vec<u64> = pods.iter().map(Backend::hits).collect();
    let addr = gateway.listen_addr();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let failures = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let failures = failures.clone();
            std::thread::spawn(move || {
                let mut c = Client::new(addr);
                let mut n = 0;
                while Instant::now() < deadline && n < 10_000 {
                    n += 1;
                    if !c.get("/").is_ok_and(|r| r.status == 200) {
                        *failures.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*failures.lock().unwrap(), 0);
    let got: Vec<u64> = pods.iter().zip(before).map(|(p, b)| p.hits() - b).collect();
    got[0] as f64 / got.iter().sum::<u64>() as f64
}

#[test]
fn least_request_sends_clearly_less_to_a_slow_pod_than_round_robin() {
    let (dns, pods, port) = support::pods("svc", &ips(21, 3));
    pods[0].set_delay(Duration::from_millis(100));
    let rr = policy_gateway(&dns, svc(port, "round_robin"));
    let rr_share = slow_share(&rr, &pods, 6, 3);
    drop(rr);
    let lr = policy_gateway(&dns, svc(port, "least_request"));
    let lr_share = slow_share(&lr, &pods, 6, 3);
    println!(
        "least_request vs round_robin: the slow pod got {:.1}% of requests under least_request, {:.1}% under round_robin (ratio {:.2})",
        lr_share * 100.0,
        rr_share * 100.0,
        lr_share / rr_share
    );
    assert!(
        rr_share > 0.25,
        "round robin gives a third to every pod: {rr_share}"
    );
    assert!(
        lr_share < rr_share * 0.5,
        "least_request {lr_share} vs round_robin {rr_share}"
    );
}

/// Which pod serves each of `keys` (hashing on the `x-user` header).
fn owners(gateway: &Gateway, keys: &[String]) -> HashMap<String, String> {
    let mut client = Client::new(gateway.listen_addr());
    keys.iter()
        .map(|k| {
            let r = client.get_with_headers("/", &[("x-user", k)]).unwrap();
            assert_eq!(r.status, 200);
            (k.clone(), r.header("x-served-by").unwrap().to_owned())
        })
        .collect()
}

fn consistent_hashing_survives_a_pod_leaving(policy: &str, first: u8) {
    let ips = ips(first, 10);
    let (dns, _pods, port) = support::pods("svc", &ips);
    let gateway = policy_gateway(
        &dns,
        svc(port, policy).hash_policy(&[HashKey::header("x-user")]),
    );
    let keys: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
    let before = owners(&gateway, &keys);
    assert_eq!(
        before,
        owners(&gateway, &keys),
        "the same key goes to the same pod"
    );
    let used: HashSet<&String> = before.values().collect();
    assert!(
        used.len() >= 9,
        "{policy}: keys spread over {} pods",
        used.len()
    );

    let leaving = format!("{}:{port}", ips[4]);
    let remaining: Vec<&str> = ips
        .iter()
        .filter(|ip| **ip != ips[4])
        .map(String::as_str)
        .collect();
    dns.set_a("svc.test", &remaining);
    assert!(wait_until(Duration::from_secs(3), || {
        admin::cluster(&gateway, "svc").backends.len() == 9
    }));
    let after = owners(&gateway, &keys);
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    let forced = keys.iter().filter(|k| before[*k] == leaving).count();
    println!(
        "{policy}: one of 10 pods left: {} of {} keys moved ({} had to, being on it)",
        moved.len(),
        keys.len(),
        forced
    );
    assert!(
        moved.iter().all(|k| before[*k] == leaving) || moved.len() <= forced + keys.len() / 50,
        "{policy}: keys on remaining pods moved"
    );
    assert!(
        moved.len() <= keys.len() * 15 / 100,
        "{policy}: {} keys moved",
        moved.len()
    );
}

#[test]
fn ring_hash_keeps_keys_when_a_pod_leaves() {
    consistent_hashing_survives_a_pod_leaving("ring_hash", 31);
}

#[test]
fn maglev_keeps_keys_when_a_pod_leaves() {
    consistent_hashing_survives_a_pod_leaving("maglev", 51);
}

#[test]
fn cookie_and_source_ip_hashing_stick() {
    let (dns, _pods, port) = support::pods("svc", &ips(71, 5));
    let gateway = policy_gateway(
        &dns,
        svc(port, "maglev").hash_policy(&[HashKey::cookie("sid"), HashKey::source_ip()]),
    );
    let mut client = Client::new(gateway.listen_addr());
    let mut served_by = |headers: &[(&str, &str)]| {
        let r = client.get_with_headers("/", headers).unwrap();
        r.header("x-served-by").unwrap().to_owned()
    };
    // The cookie decides when present…
    let sessions: HashSet<String> = (0..20)
        .map(|i| served_by(&[("cookie", &format!("theme=dark; sid=s{i}"))]))
        .collect();
    assert!(
        sessions.len() >= 3,
        "20 sessions over {} pods",
        sessions.len()
    );
    let first = served_by(&[("cookie", "sid=s7")]);
    for _ in 0..10 {
        assert_eq!(served_by(&[("cookie", "sid=s7")]), first);
    }
    // …and without it the client IP does: always 127.0.0.1 here, so always the same pod.
    let by_ip = served_by(&[]);
    for _ in 0..10 {
        assert_eq!(served_by(&[]), by_ip);
    }
}
