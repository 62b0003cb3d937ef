//! Proves the test harness itself (DNS server, backends, HTTP client), without the headway binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The harness must stay clean for test binaries that do not allow these.
#[deny(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use support::backend::Backend;
use support::dns::{resolve, resolve_with_timeout, DnsMode, DnsServer};
use support::gateway::Gateway;
use support::http;

/// Resolver timeout for queries that are expected to get no answer.
const SHORT: Duration = Duration::from_millis(300);

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn resolved(server: &DnsServer, name: &str) -> BTreeSet<IpAddr> {
    resolve(server.addr(), name)
        .unwrap_or_else(|e| panic!("resolving {name}: {e}"))
        .into_iter()
        .collect()
}

/// Sends one query over UDP and returns the raw response bytes and the decoded message.
fn udp_query(server: SocketAddr, name: &str, edns_payload: Option<u16>) -> (usize, Message) {
    let mut query = Message::new();
    query
        .set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        query.set_edns(edns);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&query.to_vec().unwrap(), server).unwrap();
    let mut buffer = [0u8; 65535];
    let (len, _) = socket.recv_from(&mut buffer).unwrap();
    (len, Message::from_vec(&buffer[..len]).unwrap())
}

fn many_ips(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

#[test]
fn dns_answers_a_and_aaaa_records_case_insensitively() {
    let dns = DnsServer::start();
    dns.set_a(
        "Service1.Default.svc.cluster.local.",
        &["10.0.0.1", "10.0.0.2"],
    );
    assert_eq!(
        resolved(&dns, "service1.default.svc.cluster.local."),
        ips(&["10.0.0.1", "10.0.0.2"])
    );
    dns.set_a("service1.default.svc.cluster.local", &["10.0.0.3"]);
    assert_eq!(
        resolved(&dns, "SERVICE1.default.svc.cluster.local."),
        ips(&["10.0.0.3"])
    );
    // No A records: lookup_ip goes on to AAAA.
    dns.set_a("v6.test", &[]);
    dns.set_aaaa("v6.test", &["fd00::1"]);
    assert_eq!(resolved(&dns, "v6.test."), ips(&["fd00::1"]));
    assert!(dns.queries() >= 4, "queries counted: {}", dns.queries());
}

#[test]
fn dns_follows_a_cname_chain_with_each_names_ttl_and_can_break_its_tcp() {
    let dns = DnsServer::start();
    dns.set_cname("alias.test", "middle.test.");
    dns.set_name_ttl("alias.test", 30);
    dns.set_cname("middle.test", "pods.test.");
    dns.set_name_ttl("middle.test", 3);
    dns.set_a("pods.test", &["10.0.0.7"]);
    let (_, response) = udp_query(dns.addr(), "alias.test.", None);
    let chain: Vec<(String, u32)> = response
        .answers()
        .iter()
        .map(|r| (r.name().to_string(), r.ttl()))
        .collect();
    assert_eq!(
        chain,
        [
            ("alias.test.".to_owned(), 30),
            ("middle.test.".to_owned(), 3),
            ("pods.test.".to_owned(), 1)
        ]
    );
    assert_eq!(resolved(&dns, "alias.test."), ips(&["10.0.0.7"]));

    // Broken TCP: UDP answers truncated and empty, TCP never answers.
    dns.set_mode(DnsMode::BrokenTcp);
    let (_, response) = udp_query(dns.addr(), "pods.test.", None);
    assert!(response.truncated());
    assert!(response.answers().is_empty());
    let tcp_before = dns.tcp_queries();
    assert!(resolve_with_timeout(dns.addr(), "pods.test.", Duration::from_millis(300)).is_err());
    assert!(dns.tcp_queries() > tcp_before, "no TCP attempt");
}

#[test]
fn dns_answer_header_echoes_query_and_is_authoritative() {
    let dns = DnsServer::start();
    dns.set_a("svc.test", &["10.0.0.1"]);
    dns.set_ttl(7);
    let (_, response) = udp_query(dns.addr(), "svc.test.", None);
    assert_eq!(response.id(), 0x4242);
    assert_eq!(response.message_type(), MessageType::Response);
    assert!(response.authoritative());
    assert!(response.recursion_available());
    assert!(!response.truncated());
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert_eq!(response.queries().len(), 1);
    assert_eq!(response.queries()[0].name().to_string(), "svc.test.");
    assert_eq!(response.answers().len(), 1);
    assert_eq!(response.answers()[0].ttl(), 7);
    assert!(response.extensions().is_none(), "no OPT without EDNS query");

    let (_, response) = udp_query(dns.addr(), "svc.test.", Some(1232));
    let edns = response
        .extensions()
        .as_ref()
        .expect("OPT echoed to EDNS query");
    assert_eq!(edns.max_payload(), 1232);
}

#[test]
fn dns_large_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let dns = DnsServer::start();
    let records = many_ips(300);
    let refs: Vec<&str> = records.iter().map(String::as_str).collect();
    dns.set_a("big.test", &refs);

    let (len, response) = udp_query(dns.addr(), "big.test.", None);
    assert!(response.truncated(), "TC must be set");
    assert!(len <= 512, "classic UDP answer is {len} bytes");
    assert!(response.answers().len() < 300);

    let (len, response) = udp_query(dns.addr(), "big.test.", Some(1232));
    assert!(response.truncated(), "TC must be set");
    assert!(len <= 1232, "EDNS UDP answer is {len} bytes");

    let tcp_before = dns.tcp_queries();
    let expected: BTreeSet<IpAddr> = records.iter().map(|ip| ip.parse().unwrap()).collect();
    assert_eq!(resolved(&dns, "big.test."), expected);
    assert!(
        dns.tcp_queries() > tcp_before,
        "the resolver retried over TCP"
    );
}

#[test]
fn dns_nxdomain_and_empty_answers() {
    let dns = DnsServer::start();
    let never = resolve(dns.addr(), "never.test.").unwrap_err();
    assert!(never.is_nx_domain(), "{never}");

    dns.set_a("svc.test", &["10.0.0.1"]);
    assert_eq!(resolved(&dns, "svc.test."), ips(&["10.0.0.1"]));
    dns.remove("SVC.test.");
    let removed = resolve(dns.addr(), "svc.test.").unwrap_err();
    assert!(removed.is_nx_domain(), "{removed}");
    let (_, response) = udp_query(dns.addr(), "svc.test.", None);
    assert_eq!(response.response_code(), ResponseCode::NXDomain);
    assert!(response.authoritative());
    assert_eq!(response.name_servers()[0].record_type(), RecordType::SOA);

    // Scaled to zero: the name exists, no records.
    dns.set_a("svc.test", &[]);
    let empty = resolve(dns.addr(), "svc.test.").unwrap_err();
    assert!(
        empty.is_no_records_found() && !empty.is_nx_domain(),
        "{empty}"
    );
    let (_, response) = udp_query(dns.addr(), "svc.test.", None);
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert!(response.authoritative());
    assert!(response.answers().is_empty());
    assert_eq!(response.name_servers()[0].record_type(), RecordType::SOA);
}

#[test]
fn dns_failure_modes() {
    let dns = DnsServer::start();
    dns.set_a("svc.test", &["10.0.0.1"]);

    dns.set_mode(DnsMode::ServFail);
    let error = resolve(dns.addr(), "svc.test.").unwrap_err();
    assert!(!error.is_nx_domain(), "SERVFAIL is not NXDOMAIN: {error}");
    let (_, response) = udp_query(dns.addr(), "svc.test.", None);
    assert_eq!(response.response_code(), ResponseCode::ServFail);
    assert_eq!(response.id(), 0x4242);

    dns.set_mode(DnsMode::Refused);
    let error = resolve(dns.addr(), "svc.test.").unwrap_err();
    assert!(!error.is_nx_domain(), "REFUSED is not NXDOMAIN: {error}");

    dns.set_mode(DnsMode::Drop);
    let before = dns.queries();
    let started = Instant::now();
    let error = resolve_with_timeout(dns.addr(), "svc.test.", SHORT).unwrap_err();
    assert!(
        !error.is_no_records_found(),
        "silence is a timeout: {error}"
    );
    assert!(started.elapsed() >= SHORT);
    assert!(dns.queries() > before, "dropped queries are still counted");

    dns.set_mode(DnsMode::Normal);
    assert_eq!(resolved(&dns, "svc.test."), ips(&["10.0.0.1"]));
}

#[test]
fn dns_stop_and_restart_on_the_same_port() {
    let mut dns = DnsServer::start();
    let addr = dns.addr();
    dns.set_a("svc.test", &["10.0.0.1"]);
    assert_eq!(resolved(&dns, "svc.test."), ips(&["10.0.0.1"]));

    dns.stop();
    assert!(std::net::TcpStream::connect(addr).is_err(), "TCP refused");
    // A connected UDP socket sees the ICMP port unreachable as ECONNREFUSED.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(addr).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    udp.send(b"\x12\x34 not even a query").unwrap();
    let refused = udp.recv(&mut [0u8; 512]).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let error = resolve_with_timeout(addr, "svc.test.", SHORT).unwrap_err();
    assert!(!error.is_no_records_found(), "{error}");
    // The port stays the server's while it is down, so the restart cannot find it taken.
    assert!(
        UdpSocket::bind(addr).is_err(),
        "the stopped server's port is held"
    );
    let outgoing = tokio::net::TcpSocket::new_v4().unwrap();
    assert!(
        outgoing.bind(addr).is_err(),
        "no connection can take it as its source"
    );

    dns.restart();
    assert_eq!(dns.addr(), addr);
    assert_eq!(resolved(&dns, "svc.test."), ips(&["10.0.0.1"]));
}

#[test]
fn backend_serves_identity_and_echoes_headers() {
    let backend = Backend::start("127.0.0.1", 0, "service1");
    let response = http::get_with_headers(
        backend.addr(),
        "/service/1?x=y",
        &[("X-Request-Id", "abc"), ("X-Forwarded-For", "10.9.9.9")],
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "service1 127.0.0.1\n");
    assert_eq!(response.body, backend.body());
    assert_eq!(response.header("x-backend"), Some("service1"));
    let served_by = backend.addr().to_string();
    assert_eq!(response.header("X-Served-By"), Some(served_by.as_str()));
    assert_eq!(response.header("x-echo-host"), Some(served_by.as_str()));
    assert_eq!(response.header("x-echo-x-request-id"), Some("abc"));
    assert_eq!(response.header("x-echo-x-forwarded-for"), Some("10.9.9.9"));
    assert_eq!(response.header("x-request-target"), Some("/service/1?x=y"));
    assert_eq!(backend.hits(), 1);

    let posted = http::request(backend.addr(), "POST", "/p", &[], b"hello").unwrap();
    assert_eq!(posted.header("x-request-body-bytes"), Some("5"));
    assert_eq!(posted.header("x-request-method"), Some("POST"));

    assert_eq!(http::get(backend.addr(), "/healthz").unwrap().body, "ok\n");
    backend.set_healthy(false);
    assert_eq!(http::get(backend.addr(), "/healthz").unwrap().status, 503);
    assert_eq!(backend.health_hits(), 2);
    assert_eq!(backend.hits(), 2);
}

#[test]
fn backend_keep_alive_delay_kill_and_restart() {
    let mut backend = Backend::start("127.0.0.1", 0, "pod");
    let addr = backend.addr();

    let mut client = http::Client::new(addr);
    for _ in 0..3 {
        assert_eq!(client.get("/").unwrap().status, 200);
    }
    assert_eq!(client.connects(), 1, "one kept-alive connection");
    assert_eq!(backend.connections(), 1);

    backend.set_delay(Duration::from_millis(300));
    let started = Instant::now();
    http::get(addr, "/slow").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    backend.set_delay(Duration::ZERO);

    backend.kill();
    assert!(
        http::get(addr, "/").is_err(),
        "connect must fail once killed"
    );
    assert!(
        client.get("/").is_err(),
        "kept-alive connection is gone too"
    );

    backend.restart();
    assert_eq!(backend.addr(), addr);
    assert_eq!(http::get(addr, "/").unwrap().status, 200);
    assert_eq!(client.get("/").unwrap().status, 200, "client reconnects");
    assert_eq!(backend.hits(), 6, "counters survive a restart");
}

#[test]
fn backend_kill_aborts_requests_in_flight() {
    let mut backend = Backend::start("127.0.0.1", 0, "pod");
    backend.set_delay(Duration::from_secs(30));
    let addr = backend.addr();
    let request = std::thread::spawn(move || http::get(addr, "/"));
    assert!(support::wait_until(Duration::from_secs(5), || backend
        .hits()
        == 1));
    let started = Instant::now();
    backend.kill();
    assert!(request.join().unwrap().is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn backends_share_one_port_on_different_loopback_ips() {
    let port = support::free_port();
    let a = Backend::start("127.0.0.11", port, "service1");
    let b = Backend::start("127.0.0.12", port, "service1");
    let from_a = http::get(a.addr(), "/").unwrap();
    let from_b = http::get(b.addr(), "/").unwrap();
    assert_eq!(from_a.body, "service1 127.0.0.11\n");
    assert_eq!(from_b.body, "service1 127.0.0.12\n");
    assert_eq!(
        from_b.header("x-served-by"),
        Some(format!("127.0.0.12:{port}").as_str())
    );
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[test]
fn http_client_reports_refused_connections_as_errors() {
    let port = support::free_port();
    assert!(http::get(("127.0.0.1", port), "/").is_err());
}

#[test]
fn gateway_section_is_valid_yaml() {
    let mut builder = Gateway::builder()
        .listen("127.0.0.1:18000")
        .admin("127.0.0.1:19901")
        .nameserver("127.0.0.1:15353".parse().unwrap())
        .routes_yaml("- { prefix: /service/1, cluster: service1 }")
        .clusters_yaml(
            "
            - name: service1
              address: service1.test
              port: 8080
            ",
        );
    let section = builder.gateway_section();
    let value: serde_yaml::Value = serde_yaml::from_str(&section).unwrap();
    assert_eq!(value["listen"][0].as_str(), Some("127.0.0.1:18000"));
    assert_eq!(value["admin"]["listen"].as_str(), Some("127.0.0.1:19901"));
    assert_eq!(
        value["resolver"]["nameservers"][0].as_str(),
        Some("127.0.0.1:15353")
    );
    assert_eq!(value["routes"][0]["cluster"].as_str(), Some("service1"));
    assert_eq!(value["clusters"][0]["port"].as_u64(), Some(8080));
}

/// How a raw read of a backend's answer ended.
#[derive(Debug, PartialEq)]
enum End {
    /// A complete response (by its Content-Length), the connection still open.
    Complete,
    Eof,
    Reset,
    /// Nothing more within the read timeout.
    Silent,
}

/// Sends `request` on `stream` and reads until a complete response, EOF, a reset or 300 ms of
/// silence: the bytes read and how it ended.
fn raw_exchange(stream: &mut std::net::TcpStream, request: &str) -> (String, End) {
    use std::io::{Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|l| l.parse::<usize>().ok());
            let head_request = request.starts_with("HEAD ");
            if length.is_some_and(|n| head_request || body.len() >= n) {
                return (text, End::Complete);
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => return (text, End::Eof),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (text, End::Reset),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (text, End::Silent)
            }
            Err(e) => panic!("unexpected read error {e}"),
        }
    }
}

const RAW_GET: &str = "GET /x HTTP/1.1\r\nHost: pod\r\n\r\n";

#[test]
fn backend_kill_closes_idle_kept_alive_connections_with_fin_or_rst() {
    for reset in [false, true] {
        let mut backend = Backend::start("127.0.0.1", 0, "pod");
        backend.set_reset_on_close(reset);
        let mut idle = std::net::TcpStream::connect(backend.addr()).unwrap();
        assert_eq!(raw_exchange(&mut idle, RAW_GET).1, End::Complete);
        backend.kill();
        // The idle kept-alive connection is closed by the kill itself, before any request.
        let mut byte = [0u8; 1];
        idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let read = std::io::Read::read(&mut idle, &mut byte);
        if reset {
            assert_eq!(
                read.map_err(|e| e.kind()),
                Err(std::io::ErrorKind::ConnectionReset)
            );
        } else {
            assert_eq!(read.map_err(|e| e.kind()), Ok(0), "FIN");
        }
    }
}

#[test]
fn backend_closes_a_kept_alive_connection_as_the_next_request_arrives() {
    use support::backend::{Close, Fault};
    for (close, end) in [(Close::Fin, End::Eof), (Close::Rst, End::Reset)] {
        let backend = Backend::start("127.0.0.1", 0, "pod");
        backend.set_fault(Fault::CloseOnNextRequest { after: 2, close });
        let mut conn = std::net::TcpStream::connect(backend.addr()).unwrap();
        assert_eq!(raw_exchange(&mut conn, RAW_GET).1, End::Complete);
        // /healthz is neither counted nor refused.
        let health = "GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n";
        assert_eq!(raw_exchange(&mut conn, health).1, End::Complete);
        let post = "POST /p HTTP/1.1\r\nHost: pod\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(raw_exchange(&mut conn, post).1, End::Complete);
        let (bytes, how) = raw_exchange(&mut conn, post);
        assert_eq!((bytes.as_str(), how), ("", end), "{close:?}");
        assert_eq!((backend.hits(), backend.faults()), (2, 1), "{close:?}");
        // A fresh connection serves again.
        assert_eq!(http::get(backend.addr(), "/").unwrap().status, 200);
    }

    let backend = Backend::start("127.0.0.1", 0, "pod");
    backend.set_fault(Fault::CloseWhenIdleFor {
        idle: Duration::from_millis(150),
        close: Close::Fin,
    });
    let mut conn = std::net::TcpStream::connect(backend.addr()).unwrap();
    assert_eq!(raw_exchange(&mut conn, RAW_GET).1, End::Complete);
    assert_eq!(raw_exchange(&mut conn, RAW_GET).1, End::Complete);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(raw_exchange(&mut conn, RAW_GET), (String::new(), End::Eof));
    assert_eq!(backend.faults(), 1);
}

#[test]
fn backend_dies_mid_response_closes_after_headers_and_hangs() {
    use support::backend::Fault;
    let backend = Backend::start("127.0.0.1", 0, "pod");

    backend.set_fault(Fault::DieMidResponse { body_bytes: 3 });
    let mut conn = std::net::TcpStream::connect(backend.addr()).unwrap();
    let (bytes, how) = raw_exchange(&mut conn, RAW_GET);
    assert_eq!(how, End::Reset);
    let (head, body) = bytes.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("content-length: 14"), "{head}");
    assert_eq!(body, "pod");

    backend.set_fault(Fault::CloseAfterHeaders);
    let mut conn = std::net::TcpStream::connect(backend.addr()).unwrap();
    let (bytes, how) = raw_exchange(&mut conn, RAW_GET);
    assert_eq!(how, End::Eof);
    assert!(bytes.starts_with("HTTP/1.1 200 OK") && bytes.ends_with("\r\n\r\n"));

    // Hung: the connect succeeds, nothing answers, kept-alive connections included.
    backend.set_fault(Fault::None);
    let mut kept = std::net::TcpStream::connect(backend.addr()).unwrap();
    assert_eq!(raw_exchange(&mut kept, RAW_GET).1, End::Complete);
    backend.set_fault(Fault::Hang);
    let mut fresh = std::net::TcpStream::connect(backend.addr()).unwrap();
    assert_eq!(
        raw_exchange(&mut fresh, RAW_GET),
        (String::new(), End::Silent)
    );
    assert_eq!(
        raw_exchange(&mut kept, RAW_GET),
        (String::new(), End::Silent)
    );
    let mut probe = std::net::TcpStream::connect(backend.addr()).unwrap();
    let health = "GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n";
    assert_eq!(
        raw_exchange(&mut probe, health).1,
        End::Silent,
        "probes hang too"
    );
    backend.set_fault(Fault::None);
    assert!(
        support::wait_until(Duration::from_secs(2), || {
            let (bytes, _) = raw_exchange(&mut fresh, "");
            bytes.starts_with("HTTP/1.1 200")
        }),
        "answered once resumed"
    );
    assert_eq!(backend.faults(), 2);
}

#[test]
fn h2c_backend_serves_and_closes_on_the_next_request() {
    use support::backend::{Close, Fault};
    let backend = Backend::start_h2c("127.0.0.1", 0, "grpc-pod");
    backend.set_fault(Fault::CloseOnNextRequest {
        after: 1,
        close: Close::Rst,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = backend.addr();
    let (first, second) = runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let send = |mut client: h2::client::SendRequest<bytes::Bytes>, method: &str| {
            let request = ::http::Request::builder()
                .method(method)
                .uri(format!("http://{addr}/x"))
                .body(())
                .unwrap();
            async move {
                client = client.ready().await?;
                let (response, _) = client.send_request(request, true)?;
                let response = response.await?;
                let status = response.status().as_u16();
                let mut body = response.into_body();
                let mut text = Vec::new();
                while let Some(chunk) = body.data().await {
                    text.extend_from_slice(&chunk?);
                }
                Ok::<_, h2::Error>((status, String::from_utf8_lossy(&text).into_owned()))
            }
        };
        let first = send(client.clone(), "GET").await;
        let second = send(client, "GET").await;
        (first, second)
    });
    assert_eq!(
        first.unwrap(),
        (200, "grpc-pod 127.0.0.1\n".to_string()),
        "h2c answers"
    );
    assert!(second.is_err(), "the second request meets the close");
    assert_eq!((backend.hits(), backend.faults()), (1, 1));
}
