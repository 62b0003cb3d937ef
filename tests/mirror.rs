//! Traffic mirrored to a shadow cluster (issue 26 item 3), through the real binary: Debian's
//! nginx counts exactly the copies headway says it sent; a small Python recorder (the standard
//! library's `http.server`) sees each copy's body, cut at `body_limit`, and its Host with
//! `-shadow`; a shadow that hangs, refuses connections or answers slowly leaves the primary's
//! p99 at a fixed rate where the same route without a mirror has it, with 0 failed and every
//! copy counted, those beyond `max_in_flight` as `dropped_full`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::conf::{Cluster, Route};
use support::curl::curl;
use support::gateway::Gateway;
use support::http::Client;
use support::nginx::{self, Nginx};
use support::{free_port, wait_until};

/// The Python recorder: one JSON line per request (method, target, Host, body in hex), 200.
const RECORDER: &str = r#"
import http.server, json, sys
log = open(sys.argv[3], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        log.write(json.dumps({"method": self.command, "target": self.path,
                              "host": self.headers.get("host"), "body": body.hex()}) + "\n")
        self.send_response(200)
        self.send_header("content-length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

/// The recorder's process, killed on drop.
struct Recorder {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Recorder {
    fn start(ip: &str, port: u16) -> Recorder {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let child = Command::new("python3")
            .args(["-c", RECORDER, ip, &port.to_string()])
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 (scripts/setup.sh installs it)");
        let addr = format!("{ip}:{port}");
        let up = wait_until(Duration::from_secs(10), || {
            support::http::get(addr.as_str(), "/control").is_ok_and(|r| r.status == 200)
        });
        assert!(up, "the recorder did not start on {addr}");
        Recorder {
            child,
            log,
            _dir: dir,
        }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        read(&self.log)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["target"] != "/control")
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `headway_mirror_requests_total` of `route`'s copies to `cluster` with `result`.
fn copies(gateway: &Gateway, route: &str, cluster: &str, result: &str) -> u64 {
    gateway.metric(&format!(
        "headway_mirror_requests_total{{cluster=\"{cluster}\",result=\"{result}\",route=\"{route}\"}}"
    )) as u64
}

const RESULTS: [&str; 5] = ["ok", "error_status", "failed", "timeout", "dropped_full"];

fn all_copies(gateway: &Gateway, route: &str, cluster: &str) -> u64 {
    RESULTS
        .iter()
        .map(|r| copies(gateway, route, cluster, r))
        .sum()
}

#[test]
fn copies_reach_nginx_and_carry_the_body_up_to_its_limit_and_a_shadow_host() {
    if !nginx::available("copies_reach_nginx_and_carry_the_body_up_to_its_limit_and_a_shadow_host")
    {
        return;
    }
    let port = free_port();
    let _primary = Backend::start("127.0.26.41", port, "primary");
    let shadow = Nginx::start("127.0.26.42", port);
    let recorder = Recorder::start("127.0.26.43", port);
    // Control: both peers answer curl straight.
    let direct = curl(&[&format!("http://{}/control", shadow.addr())]);
    assert_eq!(direct.status, 200);
    let direct = curl(&["-d", "x", &format!("http://127.0.26.43:{port}/control")]);
    assert_eq!(direct.status, 200);

    let gateway = Gateway::builder()
        .route(Route::prefix("/api").to("primary").key(
            "mirror",
            "[{ cluster: nginx }, { cluster: recorder, body_limit: 1000 }]",
        ))
        .route(
            Route::prefix("/none")
                .to("primary")
                .key("mirror", "[{ cluster: nginx, percent: 0 }]"),
        )
        .cluster(Cluster::new("primary").address("127.0.26.41", port))
        .cluster(Cluster::new("nginx").address("127.0.26.42", port))
        .cluster(Cluster::new("recorder").address("127.0.26.43", port))
        .start();
    let gw = gateway.listen_addr();
    let url = |target: &str| format!("http://{gw}{target}");

    let mut sent = 0;
    for i in 0..20 {
        let r = curl(&[
            "-H",
            "Host: shop.example:8080",
            &url(&format!("/api/get/{i}?q={i}")),
        ]);
        assert_eq!((r.status, r.header("x-backend")), (200, Some("primary")));
        sent += 1;
    }
    let bodies: Vec<Vec<u8>> = [0usize, 10, 999, 1000, 1001, 5000, 100_000]
        .iter()
        .map(|n| (0..*n).map(|i| b'a' + (i % 26) as u8).collect())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in bodies.iter().enumerate() {
        let file = dir.path().join(format!("body{i}"));
        std::fs::write(&file, body).unwrap();
        let data = format!("@{}", file.display());
        let target = url(&format!("/api/post/{i}"));
        // Content-Length, then chunked (the copy gets a length of its own either way).
        for chunked in [false, true] {
            let mut args = vec![
                "-X",
                "POST",
                "--data-binary",
                &data,
                "-H",
                "Host: shop.example",
            ];
            if chunked {
                args.extend(["-H", "Transfer-Encoding: chunked"]);
            }
            args.push(&target);
            let r = curl(&args);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                r.header("x-request-body-bytes"),
                Some(body.len().to_string().as_str()),
                "the primary gets the whole body"
            );
            sent += 1;
        }
    }
    for _ in 0..10 {
        assert_eq!(curl(&[&url("/none/x")]).status, 200);
    }

    let settled = wait_until(Duration::from_secs(10), || {
        all_copies(&gateway, "/api", "nginx") == sent
            && all_copies(&gateway, "/api", "recorder") == sent
    });
    assert!(
        settled,
        "copies counted: {}",
        all_copies(&gateway, "/api", "nginx")
    );
    assert_eq!(
        copies(&gateway, "/api", "nginx", "ok"),
        sent,
        "every copy answered"
    );
    assert_eq!(copies(&gateway, "/api", "recorder", "ok"), sent);
    assert_eq!(
        all_copies(&gateway, "/none", "nginx"),
        0,
        "percent 0 copies nothing"
    );

    // nginx's access log: exactly the copies headway counted as sent, each as the client sent it.
    let lines: Vec<String> = shadow
        .requests()
        .into_iter()
        .filter(|l| !l.contains(" /control "))
        .collect();
    assert_eq!(lines.len() as u64, sent, "{lines:#?}");
    for i in 0..20 {
        let want = format!("GET /api/get/{i}?q={i} 200 ");
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "{want}: {lines:#?}"
        );
    }
    assert_eq!(lines.iter().filter(|l| l.starts_with("POST ")).count(), 14);

    // The recorder: Host with `-shadow` before the port, bodies cut at 1000 bytes.
    let seen = recorder.requests();
    assert_eq!(seen.len() as u64, sent);
    for r in seen.iter().filter(|r| r["method"] == "GET") {
        assert_eq!(r["host"], "shop.example-shadow:8080", "{r}");
    }
    for (i, body) in bodies.iter().enumerate() {
        let target = format!("/api/post/{i}");
        let want: String = body[..body.len().min(1000)]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let got: Vec<&serde_json::Value> = seen.iter().filter(|r| r["target"] == target).collect();
        assert_eq!(got.len(), 2, "{target}");
        for r in got {
            assert_eq!(r["host"], "shop.example-shadow");
            assert_eq!(
                r["body"].as_str(),
                Some(want.as_str()),
                "{target}: {} bytes",
                body.len()
            );
        }
    }
    gateway.assert_no_panic();
}

/// Requests at a fixed rate on keep-alive connections for `duration`: each one's latency, and
/// how many failed (any error or a status other than 200).
fn fixed_rate(
    gw: std::net::SocketAddr,
    path: &str,
    rate: u32,
    duration: Duration,
) -> (Vec<Duration>, u64) {
    const CLIENTS: u32 = 4;
    let failed = AtomicU64::new(0);
    let per_client = Duration::from_secs_f64(f64::from(CLIENTS) / f64::from(rate));
    let count = (duration.as_secs_f64() * f64::from(rate) / f64::from(CLIENTS)) as u32;
    let latencies = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let failed = &failed;
                s.spawn(move || {
                    let mut client = Client::new(gw);
                    let start =
                        Instant::now() + per_client.mul_f64(f64::from(c) / f64::from(CLIENTS));
                    let mut latencies = Vec::with_capacity(count as usize);
                    for i in 0..count {
                        let due = start + per_client * i;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let sent = Instant::now();
                        match client.get(path) {
                            Ok(r) if r.status == 200 => latencies.push(sent.elapsed()),
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    latencies
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    (latencies, failed.into_inner())
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort_unstable();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

#[test]
fn a_hung_refusing_or_slow_shadow_leaves_the_primary_as_fast_as_without_a_mirror() {
    if !nginx::available(
        "a_hung_refusing_or_slow_shadow_leaves_the_primary_as_fast_as_without_a_mirror",
    ) {
        return;
    }
    let port = free_port();
    let _primary = Backend::start("127.0.26.51", port, "primary");
    let mut hung = Nginx::start("127.0.26.52", port);
    let slow = Backend::start("127.0.26.54", port, "slow");
    // The primary answers in about a millisecond here; the slow shadow in 10 ms or more.
    slow.set_delay(Duration::from_millis(10));
    // Control: the shadows answer straight, the hung one until it is stopped.
    assert_eq!(curl(&[&format!("http://{}/x", hung.addr())]).status, 200);
    assert_eq!(curl(&[&format!("http://{}/x", slow.addr())]).status, 200);
    let gateway = Gateway::builder()
        .route(Route::prefix("/plain").to("primary"))
        .route(Route::prefix("/hung").to("primary").key(
            "mirror",
            "[{ cluster: hung, max_in_flight: 8, timeout: 1s }]",
        ))
        .route(
            Route::prefix("/refused")
                .to("primary")
                .key("mirror", "[{ cluster: refused }]"),
        )
        .route(
            Route::prefix("/slow")
                .to("primary")
                .key("mirror", "[{ cluster: slow }]"),
        )
        .cluster(Cluster::new("primary").address("127.0.26.51", port))
        .cluster(Cluster::new("hung").address("127.0.26.52", port))
        .cluster(Cluster::new("refused").address("127.0.26.53", port))
        .cluster(Cluster::new("slow").address("127.0.26.54", port))
        .start();
    hung.hang();
    let gw = gateway.listen_addr();

    const RATE: u32 = 200;
    const ROUNDS: usize = 5;
    let run = Duration::from_secs(3);
    let paths = ["/plain", "/hung", "/refused", "/slow"];
    let mut p99s: Vec<Vec<Duration>> = vec![Vec::new(); paths.len()];
    let mut requests = vec![0u64; paths.len()];
    for _ in 0..ROUNDS {
        for (i, path) in paths.iter().enumerate() {
            let (latencies, failed) = fixed_rate(gw, &format!("{path}/x"), RATE, run);
            assert_eq!(failed, 0, "{path}: failed requests");
            requests[i] += latencies.len() as u64;
            p99s[i].push(p99(latencies));
        }
    }
    let plain = median(p99s[0].clone());
    let spread = *p99s[0].iter().max().unwrap() - *p99s[0].iter().min().unwrap();
    let bound = plain.mul_f64(1.05) + spread;
    eprintln!(
        "p99 per round (ms), median; bound {:.2} ms:",
        bound.as_secs_f64() * 1e3
    );
    for (path, values) in paths.iter().zip(&p99s) {
        let ms: Vec<String> = values
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64() * 1e3))
            .collect();
        eprintln!(
            "  {path}: {} → {:.2}",
            ms.join(" "),
            median(values.clone()).as_secs_f64() * 1e3
        );
    }
    for (path, values) in paths.iter().zip(&p99s).skip(1) {
        let m = median(values.clone());
        assert!(
            m <= bound,
            "{path}: p99 {m:?} over {bound:?} (no mirror: {plain:?}, spread {spread:?})"
        );
    }

    // Every copy is accounted for once the last ones time out.
    let counted = |route: &str, cluster: &str| all_copies(&gateway, route, cluster);
    for (i, (route, cluster)) in [
        ("/hung", "hung"),
        ("/refused", "refused"),
        ("/slow", "slow"),
    ]
    .iter()
    .enumerate()
    {
        let settled = wait_until(Duration::from_secs(15), || {
            counted(route, cluster) == requests[i + 1]
        });
        assert!(
            settled,
            "{route}: {} copies counted of {}",
            counted(route, cluster),
            requests[i + 1]
        );
    }
    assert!(
        copies(&gateway, "/hung", "hung", "dropped_full") > 0,
        "the bound dropped copies"
    );
    assert!(copies(&gateway, "/hung", "hung", "timeout") > 0);
    assert_eq!(copies(&gateway, "/hung", "hung", "ok"), 0);
    assert_eq!(
        copies(&gateway, "/refused", "refused", "failed"),
        requests[2]
    );
    assert_eq!(copies(&gateway, "/slow", "slow", "ok"), requests[3]);
    hung.resume();
    gateway.assert_no_panic();
}

#[test]
fn bad_mirrors_are_refused_with_their_paths() {
    let (code, stderr) = Gateway::builder()
        .route(
            Route::prefix("/a")
                .to("primary")
                .key("mirror", "[{ cluster: nowhere }]"),
        )
        .route(
            Route::prefix("/b")
                .to("primary")
                .key("mirror", "[{ cluster: primary, percent: 150 }]"),
        )
        .route(
            Route::prefix("/c")
                .to("primary")
                .key("mirror", "[{ cluster: primary, max_in_flight: 0 }]"),
        )
        .route(
            Route::prefix("/d")
                .direct_response(200, "ok")
                .key("mirror", "[{ cluster: primary }]"),
        )
        .route(
            Route::prefix("/e")
                .to("primary")
                .key("mirror", "[{ cluster: primary, copies: 2 }]"),
        )
        .cluster(Cluster::new("primary").address("127.0.0.1", free_port()))
        .start_expect_exit();
    assert_ne!(code, 0, "{stderr}");
    for (path, words) in [
        (
            "gateway.routes[0].mirror[0].cluster",
            "unknown cluster `nowhere`",
        ),
        (
            "gateway.routes[1].mirror[0].percent",
            "150 is not a percentage (0 to 100)",
        ),
        (
            "gateway.routes[2].mirror[0].max_in_flight",
            "must be at least 1",
        ),
        ("gateway.routes[3].mirror", "needs a route to a cluster"),
        ("gateway.routes[4].mirror[0].copies", "unknown field"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{path}:")))
            .unwrap_or_else(|| panic!("no error at {path}:\n{stderr}"));
        assert!(line.contains(words), "{path}: {line}");
    }
}
