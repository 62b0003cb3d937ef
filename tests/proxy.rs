//! What a request sees through headway: headers added and kept, and the gateway's own answers
//! when upstreams fail — each with its status and a body naming the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::{Duration, Instant};
use support::backend::Backend;
use support::dns::DnsServer;
use support::free_port;
use support::gateway::Gateway;
use support::http;

fn one_pod_gateway(extra: &str) -> (DnsServer, Backend, Gateway) {
    let dns = DnsServer::start();
    let port = free_port();
    let pod = Backend::start("127.0.0.101", port, "service1");
    dns.set_a("service1.test", &["127.0.0.101"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .routes_yaml("- { prefix: /service/1, cluster: service1 }")
        .clusters_yaml(&format!(
            "- name: service1\n  address: service1.test\n  port: {port}\n{extra}"
        ))
        .start();
    (dns, pod, gateway)
}

#[test]
fn host_is_kept_and_forwarding_headers_and_request_id_are_set() {
    let (_dns, _pod, gateway) = one_pod_gateway("");
    let r = http::get_with_headers(
        gateway.listen_addr(),
        "/service/1/x?q=1",
        &[
            ("Host", "shop.example.com"),
            ("X-Forwarded-For", "203.0.113.7"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-request-target"), Some("/service/1/x?q=1"));
    assert_eq!(r.header("x-echo-host"), Some("shop.example.com"));
    assert_eq!(
        r.header("x-echo-x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(r.header("x-echo-x-forwarded-proto"), Some("http"));
    let id = r
        .header("x-echo-x-request-id")
        .expect("x-request-id passed upstream");
    assert_eq!(id.len(), 36, "a generated UUID: {id}");

    let r = http::get_with_headers(
        gateway.listen_addr(),
        "/service/1",
        &[("x-request-id", "abc-123")],
    )
    .unwrap();
    assert_eq!(
        r.header_all("x-echo-x-request-id"),
        vec!["abc-123"],
        "a client's id is kept"
    );
    assert_eq!(r.header("x-echo-x-forwarded-for"), Some("127.0.0.1"));
    assert!(
        gateway.wait_for_log("request_id=abc-123", Duration::from_secs(2)),
        "access log line"
    );
}

#[test]
fn a_slow_upstream_gets_a_504_naming_the_cluster_in_time() {
    let (_dns, pod, gateway) = one_pod_gateway("  timeout: 400ms\n  retries: 0\n");
    pod.set_delay(Duration::from_secs(3));
    let started = Instant::now();
    let r = http::get(gateway.listen_addr(), "/service/1").unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.body, "upstream timeout for cluster service1\n");
    assert!(
        took < Duration::from_millis(1500),
        "the timeout was not enforced: {took:?}"
    );
}

#[test]
fn when_every_attempt_fails_the_client_gets_a_503_fast() {
    let dns = DnsServer::start();
    let port = free_port();
    // Two addresses, nothing listening: both attempts are refused.
    dns.set_a("service1.test", &["127.0.0.111", "127.0.0.112"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .routes_yaml("- { prefix: /service/1, cluster: service1 }")
        .clusters_yaml(&format!(
            "- {{ name: service1, address: service1.test, port: {port}, retries: 1 }}"
        ))
        .start();
    let started = Instant::now();
    let r = http::get(gateway.listen_addr(), "/service/1").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body
            .starts_with("upstream connect error for cluster service1"),
        "{}",
        r.body
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        gateway.wait_for_log("attempts=2", Duration::from_secs(2)),
        "both pods were tried"
    );
}

#[test]
fn a_cluster_whose_pods_all_fail_probes_answers_no_healthy_upstream() {
    // Panic mode off: with it (the default) a lone pod failing only its probes keeps serving.
    let (_dns, pod, gateway) = one_pod_gateway(
        "  healthy_panic_threshold: 0\n  health_check: { type: http, interval: 200ms, unhealthy_threshold: 1 }\n",
    );
    pod.set_healthy(false);
    assert!(support::wait_until(Duration::from_secs(3), || {
        http::get(gateway.listen_addr(), "/service/1").is_ok_and(|r| r.status == 503)
    }));
    let r = http::get(gateway.listen_addr(), "/service/1").unwrap();
    assert_eq!(r.body, "no healthy upstream for cluster service1\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}
