//! What an operator sees: Prometheus series after real traffic, the access log (JSON lines to a
//! file), and `/clusters` in JSON and in Envoy's text form.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::Duration;
use support::admin;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, pods, pods_at, wait_until};

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_access_log_and_clusters_show_what_happened() {
    let dns = DnsServer::start();
    let port = free_port();
    let mut pods = pods_at("service1", &["127.0.2.11", "127.0.2.12"], port);
    // 127.0.2.13 is in DNS with nothing listening: its probes fail and it never gets traffic.
    dns.set_a("service1.test", &["127.0.2.11", "127.0.2.12", "127.0.2.13"]);
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/service/1").to("service1"))
        .route(Route::prefix("/other").to("other"))
        .cluster(
            Cluster::new("service1")
                .dns("service1.test", port)
                .refresh("300ms")
                .health_check(HealthCheck::http().interval("200ms").unhealthy_threshold(1)),
        )
        .cluster(Cluster::new("other").address("127.0.2.99", port).retries(0))
        .gateway_yaml(&format!(
            "access_log: {{ format: json, path: \"{}\" }}",
            access.display()
        ))
        .start();
    let mut client = Client::new(gateway.listen_addr());
    for _ in 0..20 {
        assert_eq!(client.get("/service/1/x?token=secret").unwrap().status, 200);
    }
    assert_eq!(client.get("/nowhere").unwrap().status, 404);
    assert_eq!(client.get("/other").unwrap().status, 503);

    // A pod dies: its health transition is counted.
    pods[0].kill();
    assert!(wait_until(Duration::from_secs(3), || {
        let m = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
        metric(&m, "headway_cluster_healthy_backends{cluster=\"service1\"}") == Some(1.0)
    }));

    let m = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    let expect = |series: &str, check: &dyn Fn(f64) -> bool| {
        let v = metric(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
        assert!(check(v), "{series} = {v}");
    };
    expect(
        "headway_requests_total{cluster=\"service1\",code=\"2xx\",route=\"/service/1\"}",
        &|v| v == 20.0,
    );
    expect(
        "headway_requests_total{cluster=\"none\",code=\"4xx\",route=\"no_route\"}",
        &|v| v == 1.0,
    );
    expect(
        "headway_requests_total{cluster=\"other\",code=\"5xx\",route=\"/other\"}",
        &|v| v == 1.0,
    );
    expect(
        "headway_upstream_response_seconds_count{cluster=\"service1\"}",
        &|v| v == 20.0,
    );
    expect(
        "headway_request_duration_seconds_count{cluster=\"service1\"}",
        &|v| v == 20.0,
    );
    expect(
        "headway_upstream_connect_failures_total{cluster=\"other\"}",
        &|v| v == 1.0,
    );
    expect("headway_cluster_backends{cluster=\"service1\"}", &|v| {
        v == 3.0
    });
    expect(
        "headway_cluster_healthy_backends{cluster=\"service1\"}",
        &|v| v == 1.0,
    );
    // Two pods came up, one went down; the address that never answered changed nothing.
    expect(
        "headway_health_transitions_total{cluster=\"service1\",to=\"healthy\"}",
        &|v| v == 2.0,
    );
    expect(
        "headway_health_transitions_total{cluster=\"service1\",to=\"unhealthy\"}",
        &|v| v == 1.0,
    );
    expect(
        "headway_dns_refreshes_total{cluster=\"service1\",result=\"answer\"}",
        &|v| v >= 1.0,
    );
    expect(
        "headway_dns_refreshes_total{cluster=\"service1\",result=\"error\"}",
        &|v| v == 0.0,
    );
    expect(
        "headway_dns_last_success_age_seconds{cluster=\"service1\"}",
        &|v| (0.0..5.0).contains(&v),
    );
    assert!(m.contains("# TYPE headway_upstream_response_seconds histogram"));
    expect("headway_parking_budget", &|v| v >= 1.0);

    // A kept-alive client idle after its request is parked: it waits with no request state.
    let mut idle = Client::new(gateway.listen_addr());
    assert_eq!(idle.get("/service/1").unwrap().status, 200);
    assert!(
        wait_until(Duration::from_secs(2), || {
            let m = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
            metric(&m, "headway_parked_connections") == Some(1.0)
        }),
        "the idle client is not counted as parked"
    );
    drop(idle);
    assert!(
        wait_until(Duration::from_secs(2), || {
            let m = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
            metric(&m, "headway_parked_connections") == Some(0.0)
        }),
        "a closed client is still counted as parked"
    );

    // The access log: one JSON object per request, the path without its query string.
    assert!(wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.lines().count() >= 22)
    }));
    let text = std::fs::read_to_string(&access).unwrap();
    assert!(
        !text.contains("secret"),
        "the query string leaked into the access log"
    );
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/service/1/x");
    assert_eq!(first["status"], 200);
    assert_eq!(first["cluster"], "service1");
    assert!(first["upstream_ms"].as_f64().is_some() && first["duration_ms"].as_f64().is_some());
    assert_eq!(first["request_id"].as_str().map(str::len), Some(36));
    assert!(first["bytes_sent"].as_u64() > Some(0));
    assert!(
        !gateway.stderr_log().contains("method=GET path=/service/1"),
        "no access log on stderr when a file is set"
    );

    // /clusters, JSON and text. A cluster reads name first and its long backends list last;
    // times are RFC 3339, not epoch floats.
    let raw = http::get(gateway.admin_addr(), "/clusters").unwrap().body;
    let (name, backends_at) = (
        raw.find("\"name\"").unwrap(),
        raw.find("\"backends\"").unwrap(),
    );
    assert!(name < backends_at, "name after backends:\n{raw}");
    let backends = admin::cluster(&gateway, "service1").backends;
    for b in &backends {
        let since = b.since.as_deref().unwrap_or_else(|| panic!("since: {b:?}"));
        assert!(
            since.len() == 24 && since.ends_with('Z') && since.as_bytes()[10] == b'T',
            "since is not RFC 3339: {since}"
        );
    }
    let dead = backends
        .iter()
        .find(|b| b.address == format!("127.0.2.13:{port}"))
        .unwrap();
    assert!(!dead.healthy);
    assert!(!dead.probed);
    assert!(
        dead.last_error.as_ref().is_some_and(|e| !e.is_empty()),
        "{dead:?}"
    );
    assert_eq!(dead.requests, 0);
    let text = http::get(gateway.admin_addr(), "/clusters?format=text")
        .unwrap()
        .body;
    for line in [
        format!("service1::127.0.2.12:{port}::health_flags::healthy"),
        format!("service1::127.0.2.13:{port}::health_flags::/pending_active_hc"),
        format!("service1::127.0.2.11:{port}::health_flags::/failed_active_hc"),
        "service1::dns::last_outcome::answer".to_owned(),
        "service1::dns::addresses::3".to_owned(),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }

    // In-flight requests are visible per backend while they last.
    pods[1].set_delay(Duration::from_millis(800));
    let addr = gateway.listen_addr();
    let slow = std::thread::spawn(move || http::get(addr, "/service/1").map(|r| r.status));
    assert!(
        wait_until(Duration::from_millis(700), || {
            admin::cluster(&gateway, "service1")
                .backends
                .iter()
                .any(|b| b.in_flight == 1)
        }),
        "in_flight never showed the slow request"
    );
    assert_eq!(slow.join().unwrap().unwrap(), 200);
    assert!(admin::cluster(&gateway, "service1")
        .backends
        .iter()
        .all(|b| b.in_flight == 0));
}

#[test]
fn logs_never_print_secrets() {
    let (dns, _pods, port) = pods("service1", &["127.0.2.31"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .route(Route::prefix("/ok").to("service1"))
        .route(Route::prefix("/down").to("down"))
        .cluster(Cluster::new("service1").dns("service1.test", port))
        .cluster(Cluster::new("down").address("127.0.2.32", port).retries(0))
        .start();
    let secrets = [
        ("Authorization", "Bearer s3cr3t-bearer"),
        ("Cookie", "session=c00kie-value"),
        ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
    ];
    for path in [
        "/ok?token=t0ken-in-query",
        "/down?token=t0ken-in-query",
        "/nowhere?token=t0ken-in-query",
    ] {
        let _ = http::get_with_headers(gateway.listen_addr(), path, &secrets).unwrap();
    }
    assert!(gateway.wait_for_log("path=/nowhere", Duration::from_secs(2)));
    let log = gateway.stderr_log();
    assert!(
        log.contains("upstream connect failed cluster=down"),
        "{log}"
    );
    for secret in [
        "s3cr3t-bearer",
        "c00kie-value",
        "cHJveHk6c2VjcmV0",
        "t0ken-in-query",
    ] {
        assert!(
            !log.contains(secret),
            "`{secret}` leaked into the log:\n{log}"
        );
    }
}

/// The fields of a plain access-log line as a logfmt reader splits them: `key=value` or
/// `key="quoted value"` (with `\"`, `\\`, `\t`, `\n`, `\r`, `\xNN` escapes), separated by
/// spaces; a leading token without `=` (the time) is skipped.
fn logfmt_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\n').chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return fields;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            continue; // a bare token
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut bytes = Vec::new();
            loop {
                match chars.next() {
                    None => panic!("unterminated quoted value of {key} in {line:?}"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => bytes.push(b'\n'),
                        Some('r') => bytes.push(b'\r'),
                        Some('t') => bytes.push(b'\t'),
                        Some('x') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            bytes.push(u8::from_str_radix(&hex, 16).unwrap());
                        }
                        Some(c @ ('"' | '\\')) => bytes.push(c as u8),
                        other => panic!("unknown escape {other:?} in {line:?}"),
                    },
                    Some(c) => bytes.extend(c.to_string().as_bytes()),
                }
            }
            value = String::from_utf8(bytes).unwrap();
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
}

#[test]
fn a_client_cannot_forge_fields_in_the_plain_access_log() {
    let gateway = Gateway::builder()
        .route(Route::prefix("/ok").direct_response(200, "ok\n"))
        .start();
    let forged = [
        ("/ok/1", "a status=200 client=1.2.3.4"),
        ("/ok/2", "b\t\"q\" \\ status=201 client=5.6.7.8 x"),
        ("/ok/status=202", "c=d"),
    ];
    for (path, id) in forged {
        let r =
            http::get_with_headers(gateway.listen_addr(), path, &[("x-request-id", id)]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-request-id"),
            Some(id),
            "the id is echoed as sent"
        );
    }
    assert!(wait_until(Duration::from_secs(3), || {
        gateway.stderr_log().matches(" method=GET ").count() >= forged.len()
    }));
    let log = gateway.stderr_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" method=GET ")).collect();
    assert_eq!(lines.len(), forged.len(), "{lines:#?}");
    // Lines of different connections may come in any order: each is found by its path.
    for (path, id) in forged {
        let line = lines
            .iter()
            .find(|l| logfmt_fields(l).contains(&("path".to_owned(), path.to_owned())))
            .unwrap_or_else(|| panic!("no line with path {path} in {lines:#?}"));
        let fields = logfmt_fields(line);
        let all = |key: &str| -> Vec<&str> {
            fields
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(all("status"), ["200"], "{line}");
        assert_eq!(all("client"), ["127.0.0.1"], "{line}");
        assert_eq!(all("request_id"), [id], "{line}");
        assert_eq!(all("path"), [path], "{line}");
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "client",
                "method",
                "path",
                "status",
                "cluster",
                "backend",
                "attempts",
                "upstream_ms",
                "duration_ms",
                "request_id",
                "bytes_received",
                "bytes_sent"
            ],
            "{line}"
        );
    }
}

/// Lines still queued when the server stops are written before the process exits. The log
/// goes to a pipe that is read only once pingora stops the proxy's runtime, which drops the
/// log: until then the writer thread is stuck on the full pipe with most lines still queued.
#[test]
fn every_access_log_line_is_written_before_the_gateway_exits() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut gateway = Gateway::builder()
        .route(Route::prefix("/ok").direct_response(200, "ok\n"))
        .gateway_yaml(&format!(
            "drain_time: 0s\naccess_log: {{ path: \"{}\" }}",
            fifo.display()
        ))
        .start();
    let mut client = Client::new(gateway.listen_addr());
    // ~250 bytes a line: the pipe's 64 KiB hold ~260 of them, the rest wait in the queue.
    let n = 1_000;
    for i in 0..n {
        assert_eq!(client.get(&format!("/ok/{i}")).unwrap().status, 200);
    }
    drop(client);
    gateway.signal("TERM");
    assert!(
        gateway.wait_for_log(
            "Waiting for service runtime headway proxy to exit",
            Duration::from_secs(10)
        ),
        "pingora never stopped the proxy"
    );
    let mut text = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 65_536];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break, // the gateway is gone: its end of the pipe is closed
            Ok(read) => text.extend_from_slice(&chunk[..read]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pipe never closed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("reading the access log: {e}"),
        }
    }
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0));
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), n, "lines lost at exit");
    assert!(lines
        .last()
        .unwrap()
        .contains(&format!(" path=/ok/{} ", n - 1)));
}

/// The access log goes to a pipe whose reader never reads (a stalled log shipper, a full disk):
/// requests must go on being answered, the lines that do not fit dropped.
#[test]
fn an_access_log_nobody_reads_never_holds_up_requests() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A reader that never reads: opening for writing then succeeds, and the pipe fills up.
    let _stalled = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let gateway = Gateway::builder()
        .route(Route::prefix("/ok").direct_response(200, "ok\n"))
        .gateway_yaml(&format!("access_log: {{ path: \"{}\" }}", fifo.display()))
        .start();
    let mut client = Client::new(gateway.listen_addr());
    // ~250 bytes a line: 64 KiB of pipe buffer holds ~260 of them.
    for i in 0..2_000 {
        let answer = client.get(&format!("/ok/{i}"));
        assert!(
            answer.as_ref().is_ok_and(|r| r.status == 200),
            "request {i} got {answer:?}"
        );
    }
}

/// Lines that find the access log's queue full are dropped, and counted where an operator looks.
#[test]
fn dropped_access_log_lines_are_counted_in_metrics() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let _stalled = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let gateway = Gateway::builder()
        .route(Route::prefix("/ok").direct_response(200, "ok\n"))
        .gateway_yaml(&format!("access_log: {{ path: \"{}\" }}", fifo.display()))
        .start();
    let m = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    assert_eq!(metric(&m, "headway_access_log_dropped_total"), Some(0.0));
    // The queue holds 8,192 lines and the pipe ~260: the rest must be dropped, not waited for.
    let mut client = Client::new(gateway.listen_addr());
    for i in 0..9_000 {
        assert_eq!(client.get(&format!("/ok/{i}")).unwrap().status, 200);
    }
    let m = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    let dropped = metric(&m, "headway_access_log_dropped_total").unwrap();
    assert!(dropped > 0.0, "no line dropped");
    assert!(
        gateway
            .stderr_log()
            .contains("access log: its writer falls behind"),
        "the first drop is not logged"
    );
}

/// The book's access-log example (docs/src/strict-dns.md) has the fields, in order, of a line
/// the binary writes.
#[test]
fn the_books_access_log_example_is_a_line_the_gateway_writes() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/strict-dns.md"
    ))
    .unwrap();
    let at = page
        .find("access-log line per request")
        .expect("docs/src/strict-dns.md no longer shows an access-log line");
    let example = page[at..]
        .split("```\n")
        .nth(1)
        .and_then(|block| block.lines().next())
        .unwrap();
    let gateway = Gateway::builder()
        .route(Route::prefix("/service/1").direct_response(200, "ok\n"))
        .start();
    assert_eq!(
        http::get(gateway.listen_addr(), "/service/1")
            .unwrap()
            .status,
        200
    );
    assert!(gateway.wait_for_log(" path=/service/1 ", Duration::from_secs(3)));
    let log = gateway.stderr_log();
    let line = log
        .lines()
        .find(|l| l.contains(" path=/service/1 "))
        .unwrap();
    let keys =
        |line: &str| -> Vec<String> { logfmt_fields(line).into_iter().map(|(k, _)| k).collect() };
    assert_eq!(keys(example), keys(line), "book: {example}\nbinary: {line}");
    let time = |line: &str| line.split(' ').next().unwrap().to_owned();
    for l in [example, line] {
        assert!(
            humantime::parse_rfc3339(&time(l)).is_ok(),
            "no RFC 3339 time first: {l}"
        );
    }
}
