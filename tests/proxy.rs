//! What a request sees through headway: headers added and kept, and the gateway's own answers
//! when upstreams fail — each with its status and a body naming the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::{Duration, Instant};
use support::admin;
use support::backend::Backend;
use support::conf::{Cluster, HealthCheck, Outlier, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http;
use support::{free_port, pods};

/// One pod of `service1.test` behind `/service/1`; `tune` sets the cluster's other keys.
fn one_pod_gateway(tune: impl FnOnce(Cluster) -> Cluster) -> (DnsServer, Backend, Gateway) {
    let (dns, mut pods, port) = pods("service1", &["127.0.0.101"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(tune(Cluster::new("service1").dns("service1.test", port)))
        .start();
    (dns, pods.remove(0), gateway)
}

#[test]
fn host_is_kept_and_forwarding_headers_and_request_id_are_set() {
    let (_dns, _pod, gateway) = one_pod_gateway(|service1| service1);
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
        Some("127.0.0.1"),
        "an untrusted client's X-Forwarded-For is replaced, not appended to"
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
    let (_dns, pod, gateway) = one_pod_gateway(|service1| service1.timeout("400ms").retries(0));
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
        .route(Route::prefix("/service/1").to("service1"))
        .cluster(
            Cluster::new("service1")
                .dns("service1.test", port)
                .retries(1),
        )
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
    let (_dns, pod, gateway) = one_pod_gateway(|service1| {
        service1
            .healthy_panic_threshold(0)
            .health_check(HealthCheck::http().interval("200ms").unhealthy_threshold(1))
    });
    pod.set_healthy(false);
    assert!(support::wait_until(Duration::from_secs(3), || {
        http::get(gateway.listen_addr(), "/service/1").is_ok_and(|r| r.status == 503)
    }));
    let r = http::get(gateway.listen_addr(), "/service/1").unwrap();
    assert_eq!(r.body, "no healthy upstream for cluster service1\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn a_trusted_proxys_forwarded_for_is_appended_to() {
    let (dns, _pods, port) = pods("service1", &["127.0.0.102"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .gateway_yaml("trusted_proxies: [\"127.0.0.0/8\"]")
        .route(Route::prefix("/").to("service1"))
        .cluster(Cluster::new("service1").dns("service1.test", port))
        .start();
    let r = http::get_with_headers(
        gateway.listen_addr(),
        "/",
        &[("X-Forwarded-For", "203.0.113.7")],
    )
    .unwrap();
    assert_eq!(
        r.header("x-echo-x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
}

#[test]
fn oversized_requests_get_their_own_status() {
    let (dns, pods, port) = pods("service1", &["127.0.0.103"]);
    let pod = &pods[0];
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .gateway_yaml("max_uri_length: 100\nmax_headers_count: 20\nmax_request_headers_kb: 2")
        .route(
            Route::prefix("/upload")
                .to("service1")
                .max_request_body_bytes(1000),
        )
        .route(Route::prefix("/").to("service1"))
        .cluster(Cluster::new("service1").dns("service1.test", port))
        .start();
    let gw = gateway.listen_addr();
    let long = format!("/{}", "a".repeat(120));
    let r = http::get(gw, &long).unwrap();
    assert_eq!(r.status, 414, "{}", r.body);
    assert!(
        r.body
            .starts_with("request target too long: 121 bytes (limit 100)"),
        "{}",
        r.body
    );

    let many: Vec<(String, String)> = (0..25)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = http::get_with_headers(gw, "/", &refs).unwrap();
    assert_eq!(r.status, 431, "{}", r.body);
    assert!(r.body.starts_with("too many request headers"), "{}", r.body);

    let big = "b".repeat(3000);
    let r = http::get_with_headers(gw, "/", &[("x-big", big.as_str())]).unwrap();
    assert_eq!(r.status, 431, "{}", r.body);
    assert!(
        r.body.starts_with("request headers too large"),
        "{}",
        r.body
    );

    let before = pod.hits();
    let r = http::request(gw, "POST", "/upload", &[], &[b'x'; 2000]).unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(
        r.body,
        "request body too large: limit 1000 bytes for this route\n"
    );
    assert_eq!(
        pod.hits(),
        before,
        "a declared oversized body never reaches the pod"
    );
    let r = http::request(gw, "POST", "/upload", &[], &[b'x'; 500]).unwrap();
    assert_eq!(r.status, 200);
    let r = http::request(gw, "POST", "/elsewhere", &[], &[b'x'; 2000]).unwrap();
    assert_eq!(r.status, 200, "the limit is per route");

    // A chunked body declares no length: it is counted as it streams.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        let chunk = format!("258\r\n{}\r\n", "y".repeat(600));
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn clients_hanging_up_do_not_count_against_the_backend() {
    let (_dns, pod, gateway) =
        one_pod_gateway(|service1| service1.outlier(Outlier::new().consecutive_failures(2)));
    pod.set_delay(Duration::from_millis(300));
    use std::io::Write;
    for _ in 0..6 {
        let mut s = std::net::TcpStream::connect(gateway.listen_addr()).unwrap();
        s.write_all(b"GET /service/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(s); // the client gives up before the answer
    }
    std::thread::sleep(Duration::from_millis(400));
    let service1 = admin::cluster(&gateway, "service1");
    let backend = &service1.backends[0];
    assert_eq!(backend.times_ejected, 0, "{backend:?}");
    assert_eq!(backend.consecutive_failures, 0, "{backend:?}");
    assert!(!service1.panic_mode);
    pod.set_delay(Duration::ZERO);
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/1")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_proxy_port_another_process_holds_is_refused_at_start_not_waited_for() {
    // Another process holds the proxy port. pingora would retry the bind for ~30 s, then run on
    // without that listener; headway refuses to start instead, naming the port (issue 15).
    // (`/ready` still waits for the listeners to answer as this process: a port taken between
    // that check and pingora's bind is the rare case it covers.)
    let port = free_port();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let pod = Backend::start("127.0.0.104", free_port(), "service1");
    let (code, stderr) = Gateway::builder()
        .listen(format!("127.0.0.1:{port}"))
        .route(Route::prefix("/").to("local"))
        .cluster(Cluster::new("local").address("127.0.0.104", pod.port()))
        .start_expect_exit();
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "gateway.listen[0] 127.0.0.1:{port}: address already in use"
        )),
        "{stderr}"
    );
    drop(squatter);
}

#[test]
fn a_request_shorter_than_the_http2_preface_is_answered() {
    // 22 bytes, as HAProxy's default health check sends it. With h2c on, pingora would wait for
    // 24 bytes (the HTTP/2 preface's length) and never answer.
    let (_dns, _pod, gateway) = one_pod_gateway(|service1| service1);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gateway.listen_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"OPTIONS / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer)
        .expect("no answer to a 22-byte request");
    assert!(answer.starts_with(b"HTTP/1."), "{answer:?}");
}

#[test]
fn ready_waits_when_the_proxy_port_is_taken_after_the_start_up_check() {
    // Another process takes the proxy port after start-up found it free, before pingora binds
    // it once the first discovery is done: pingora keeps retrying the bind, and /ready must
    // not claim readiness meanwhile. The DNS server holds the first discovery back until then.
    let dns = DnsServer::start();
    dns.set_mode(support::dns::DnsMode::Drop);
    let pod = Backend::start("127.0.0.104", free_port(), "service1");
    dns.set_a("local.test", &["127.0.0.104"]);
    let port = free_port();
    let mut gateway = Gateway::builder()
        .nameserver(dns.addr())
        .listen(format!("127.0.0.1:{port}"))
        .route(Route::prefix("/").to("local"))
        .cluster(Cluster::new("local").dns("local.test", pod.port()))
        .spawn();
    let admin = gateway.admin_addr();
    assert!(support::wait_until(Duration::from_secs(5), || http::get(
        admin, "/ready"
    )
    .is_ok()));
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    dns.set_mode(support::dns::DnsMode::Normal);
    let waiting_for_listeners = || {
        http::get(admin, "/ready")
            .is_ok_and(|r| r.body == "waiting for the proxy listeners to open\n")
    };
    assert!(
        support::wait_until(Duration::from_secs(10), waiting_for_listeners),
        "the first discovery never finished"
    );
    std::thread::sleep(Duration::from_millis(500));
    let r = http::get(admin, "/ready").unwrap();
    assert_eq!(
        r.status, 503,
        "ready while another process held the port: {}",
        r.body
    );
    assert_eq!(r.body, "waiting for the proxy listeners to open\n");
    drop(squatter);
    gateway.wait_ready(Duration::from_secs(10));
    assert_eq!(http::get(gateway.listen_addr(), "/x").unwrap().status, 200);
}

/// Sends `request` on a new connection and reads the whole answer (the server closes: HTTP/1.0).
fn http10_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn an_http_1_0_request_without_host_reaches_nginx() {
    // HTTP/1.0 lets a client leave Host out; the gateway speaks HTTP/1.1 upstream, where nginx
    // answers 400 without one. The gateway sends the cluster's name, as nginx's own proxy does.
    if !support::nginx::available("proxy") {
        return;
    }
    let port = free_port();
    let pod = support::nginx::Nginx::start("127.0.0.111", port);
    let request = b"GET /old-client HTTP/1.0\r\n\r\n";
    // Control: nginx itself takes the request.
    let control = http10_exchange(pod.addr(), request);
    assert!(control.starts_with("HTTP/1.1 200"), "control: {control}");
    let dns = DnsServer::start();
    dns.set_a("nginx.test", &["127.0.0.111"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/").to("pods"))
        .cluster(Cluster::new("pods").dns("nginx.test", port))
        .start();
    let answer = http10_exchange(gateway.listen_addr(), request);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let logged: Vec<String> = pod
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("GET /old-client "))
        .collect();
    assert_eq!(
        logged.len(),
        2,
        "nginx saw the control and the proxied request: {logged:?}"
    );
    assert!(logged.iter().all(|l| l.contains(" 200 ")), "{logged:?}");
}
