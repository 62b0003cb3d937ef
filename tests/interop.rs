#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail
//! Interop with peers nobody here wrote (issue 14): third-party clients against third-party
//! servers, each run twice — straight to the server (the control, which must pass) and through
//! the real `headway` binary (which must pass the same way). A failure through the gateway
//! where the control passes is a gateway bug.
//!
//! | case | client | server |
//! |---|---|---|
//! | gRPC | grpcio (PyPI), tests/interop/grpc_peer.py | grpcio, the same script |
//! | WebSocket | `websockets` (PyPI), tests/interop/ws_peer.py | `websockets`, the same script |
//! | HTTP/2 over TLS and h2c | curl, nghttp, h2load (Debian) | Node's `http` / `http2` (tests/interop/echo_server.js) |
//! | a `prefix_rewrite` route to an h2c cluster | curl, HTTP/1.1 and h2c | Node's `http2` |
//! | streamed uploads | the `h2` crate (6 clients, empty final DATA frame as `curl -T -` sends) | stock nginx logging what it received (tests/interop/nginx_uploads.conf) |
//! | uploads read in pieces | curl `-T -` over HTTP/1.1 (chunked); the `h2` crate with empty DATA frames mid-body | the same nginx |
//! | Node's keep-alive close | curl: POST with a length, streamed uploads | Node's `http` (tests/support/node.rs), `keepAliveTimeout` 5 s (+1 s `keepAliveTimeoutBuffer` on Node 20) |
//!
//! Nothing is skipped: a missing tool fails the test with its install hint (`scripts/setup.sh`
//! installs them all). Every address is on 127.0.14.0–127.0.16.255, every process is killed on drop,
//! every wait is bounded. Each check prints an `interop | …` line with what it saw.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::conf::{Cluster, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::node::NodePod;
use support::{free_port, http, wait_until};
use tempfile::TempDir;

/// The scripts and confs the tests run.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

// ---------------------------------------------------------------------------------------------
// Tools: present, or a loud failure with the install hint.
// ---------------------------------------------------------------------------------------------

const PIP_HINT: &str = "run scripts/setup.sh (the pins of scripts/python-peers.txt)";

/// Fails the test unless `program --version`-like `args` runs and exits 0.
fn require_tool(program: &str, args: &[&str], hint: &str) {
    let runs = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        runs,
        "interop: `{program}` is missing or broken on this machine — install it: {hint}. \
         These tests do not skip: CI must run every peer."
    );
}

/// Fails the test unless `python3 -c "import <module>"` works.
fn require_python_module(module: &str) {
    require_tool("python3", &["--version"], "apt-get install python3");
    let output = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "interop: the Python module `{module}` is missing — install it: {PIP_HINT}. \
         These tests do not skip: CI must run every peer.\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes proxy settings a machine may have: every peer here talks to loopback directly.
fn no_proxy(command: &mut Command) -> &mut Command {
    for key in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "grpc_proxy",
    ] {
        command.env_remove(key);
    }
    command.env("no_proxy", "*").env("NO_PROXY", "*")
}

// ---------------------------------------------------------------------------------------------
// Processes: a server killed on drop, a client run to completion within a time limit.
// ---------------------------------------------------------------------------------------------

/// A long-running peer (a server): stdout and stderr go to files in its own temp dir; dropping
/// it kills it (SIGKILL) and reaps it, printing its output first if the test is failing.
struct Peer {
    name: String,
    child: Option<Child>,
    dir: TempDir,
}

impl Peer {
    fn spawn(name: &str, command: &mut Command) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix("headway-interop-")
            .tempdir()
            .unwrap();
        let out = File::create(dir.path().join("stdout.log")).unwrap();
        let err = File::create(dir.path().join("stderr.log")).unwrap();
        let child = no_proxy(command)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({command:?}): {e}"));
        Peer {
            name: name.to_string(),
            child: Some(child),
            dir,
        }
    }

    fn stdout(&self) -> String {
        read_lossy(&self.dir.path().join("stdout.log"))
    }

    fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr.log"))
    }

    /// Waits until `addr` accepts TCP connections (10 s at most); panics if the peer exits.
    fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited at start ({status}); stdout:\n{}\nstderr:\n{}",
                        self.name,
                        self.stdout(),
                        self.stderr()
                    );
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not listening on {addr} after 10 s; stderr:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} stdout ----\n{}\n---- {} stderr ----\n{}\n---- end of {} ----",
                self.name,
                tail(&self.stdout(), 60),
                self.name,
                tail(&self.stderr(), 60),
                self.name
            );
        }
    }
}

/// What a client run to completion left.
struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `command` to completion, stdin from `stdin` (or nothing), within `limit`: killed and the
/// test failed past it.
fn run(what: &str, command: &mut Command, stdin: Option<&Path>, limit: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let input = match stdin {
        Some(path) => Stdio::from(File::open(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = no_proxy(command)
        .stdin(input)
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn {command:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}, killed; stdout:\n{}\nstderr:\n{}",
                tail(&read_lossy(&out_path), 40),
                tail(&read_lossy(&err_path), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: read_lossy(&err_path),
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn report(case: &str, text: &str) {
    for line in text.lines() {
        println!("interop | {case} | {line}");
    }
}

/// A `Python script` peer: `python3 tests/interop/<script> <args>`.
fn python(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command
        .arg("-u")
        .arg(interop_dir().join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// Lines of a peer script's output that are checks (`ok …` / `FAIL …`), and the names of those
/// that passed.
fn checks(output: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<String> = output
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("FAIL "))
        .map(str::to_owned)
        .collect();
    let passed = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ok "))
        .map(|l| l.split(':').next().unwrap_or_default().to_owned())
        .collect();
    (lines, passed)
}

/// The gateway's access-log lines (those with `status=`).
fn access_lines(gateway: &Gateway) -> Vec<String> {
    gateway
        .stderr_log()
        .lines()
        .filter(|l| l.contains(" status=") && l.contains(" path="))
        .map(str::to_owned)
        .collect()
}

/// A cluster found by DNS, with fast discovery, no active health checks.
fn cluster(name: &str, address: &str, port: u16) -> Cluster {
    Cluster::new(name)
        .address(address, port)
        .refresh("300ms")
        .connect_timeout("500ms")
}

// ---------------------------------------------------------------------------------------------
// 1. gRPC: grpcio client and server (tests/interop/grpc_peer.py), through an h2c listener and a
//    `protocol: http2` cluster.
// ---------------------------------------------------------------------------------------------

#[test]
fn grpcio_client_and_server_through_an_h2c_listener_and_an_http2_cluster() {
    require_python_module("grpc");
    let dns = DnsServer::start();
    let port = free_port();
    let server_addr: SocketAddr = format!("127.0.14.1:{port}").parse().unwrap();
    let mut server = Peer::spawn(
        "grpcio server",
        &mut python("grpc_peer.py", &["server", &server_addr.to_string()]),
    );
    server.wait_listening(server_addr);
    dns.set_a("grpc.interop.test", &["127.0.14.1"]);
    let gateway = Gateway::builder()
        .listen(format!("127.0.14.101:{}", free_port()))
        .nameserver(dns.addr())
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/interop.Echo/").to("grpc"))
        .cluster(
            cluster("grpc", "grpc.interop.test", port)
                .protocol("http2")
                .timeout("20s"),
        )
        .start();

    let limit = Duration::from_secs(40);
    let target = server_addr.to_string();
    let control = run(
        "grpcio client → grpcio server",
        &mut python("grpc_peer.py", &["client", &target, "control"]),
        None,
        limit,
    );
    report("grpc | control", &control.text());
    let (control_lines, control_passed) = checks(&control.text());
    assert!(
        control.code == 0 && !control_passed.is_empty(),
        "the control (grpcio straight to grpcio) must pass; exit {}:\n{}\n{}",
        control.code,
        control.text(),
        control.stderr
    );

    let through = gateway.listen_addr().to_string();
    let gw = run(
        "grpcio client → headway → grpcio server",
        &mut python("grpc_peer.py", &["client", &through, "gateway"]),
        None,
        limit,
    );
    report("grpc | gateway", &gw.text());
    let (gw_lines, gw_passed) = checks(&gw.text());
    assert_eq!(
        gw_passed,
        control_passed,
        "gRPC checks that pass straight to the server must pass through the gateway:\n{}\nstderr:\n{}",
        gw_lines
            .iter()
            .filter(|l| l.starts_with("FAIL"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&gw.stderr, 20)
    );
    assert_eq!(gw.code, 0, "{}", gw.text());
    assert_eq!(control_lines.len(), gw_lines.len());

    // The access log: the cancelled call is a 499 ("client closed the request"), as is the call
    // whose deadline passed (its client reset the stream); nothing was answered 400.
    assert!(
        gateway.wait_for_log("path=/interop.Echo/Cancel", Duration::from_secs(5)),
        "no access-log line for the cancelled call"
    );
    // Lines reach the log in batches (up to 100 ms apart): wait for each one read below.
    assert!(
        gateway.wait_for_log("path=/interop.Echo/Deadline", Duration::from_secs(5)),
        "no access-log line for the call past its deadline"
    );
    let lines = access_lines(&gateway);
    let line_for = |path: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("path={path} ")))
            .cloned()
            .collect::<Vec<_>>()
    };
    let cancelled = line_for("/interop.Echo/Cancel");
    let deadline = line_for("/interop.Echo/Deadline");
    report(
        "grpc | access log",
        &format!("{}\n{}", cancelled.join("\n"), deadline.join("\n")),
    );
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert!(
        cancelled[0].contains("status=499") && cancelled[0].contains("client closed the request"),
        "the cancelled call must be logged as 499: {}",
        cancelled[0]
    );
    assert_eq!(deadline.len(), 1, "{deadline:?}");
    assert!(
        deadline[0].contains("status=499") || deadline[0].contains("status=200"),
        "the call past its deadline: 499 (the client reset it) or 200 (the server's \
         DEADLINE_EXCEEDED came first), nothing else: {}",
        deadline[0]
    );
    let log = gateway.stderr_log();
    assert!(
        !log.contains("could not send"),
        "the gateway tried to answer a cancelled stream:\n{}",
        log.lines()
            .filter(|l| l.contains("could not send"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let odd: Vec<&String> = lines
        .iter()
        .filter(|l| !(l.contains("status=200") || l.contains("status=499")))
        .collect();
    assert!(
        odd.is_empty(),
        "every gRPC call is a 200 (status in trailers) or a 499: {odd:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. WebSocket: the `websockets` library as client and server (tests/interop/ws_peer.py).
// ---------------------------------------------------------------------------------------------

#[test]
fn websockets_library_client_and_server_through_the_gateway_and_its_tunnel_timeout() {
    require_python_module("websockets");
    let port = free_port();
    let server_addr: SocketAddr = format!("127.0.14.21:{port}").parse().unwrap();
    let mut server = Peer::spawn(
        "websockets server",
        &mut python("ws_peer.py", &["server", &server_addr.to_string()]),
    );
    server.wait_listening(server_addr);
    let dns = DnsServer::start();
    dns.set_a("ws.interop.test", &["127.0.14.21"]);
    // `timeout` 1 s bounds ordinary requests; an upgraded connection is bounded only by
    // `tunnel_timeout` (3 s) of silence.
    let gateway = Gateway::builder()
        .listen(format!("127.0.14.102:{}", free_port()))
        .nameserver(dns.addr())
        .route(Route::prefix("/ws/").to("ws"))
        .cluster(
            cluster("ws", "ws.interop.test", port)
                .timeout("1s")
                .tunnel_timeout("3s"),
        )
        .start();
    let direct = format!("ws://{server_addr}/ws");
    let through = format!("ws://{}/ws", gateway.listen_addr());

    // All four runs at once: the checks, and a connection quiet for twice `timeout` (twice),
    // then quiet until closed — or for 4.5 s straight to the server, which never closes it.
    let spawn = |what: &'static str, args: Vec<String>| {
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(
                what,
                &mut python("ws_peer.py", &args),
                None,
                Duration::from_secs(40),
            )
        })
    };
    let control = spawn("ws client → server", vec!["client".into(), direct.clone()]);
    let gw = spawn(
        "ws client → headway → server",
        vec!["client".into(), through.clone()],
    );
    let idle_control = spawn(
        "quiet ws → server",
        vec!["idle".into(), direct, "2.2".into(), "4.5".into()],
    );
    let idle_gw = spawn(
        "quiet ws → headway → server",
        vec!["idle".into(), through, "2.2".into(), "8".into()],
    );
    let (control, gw) = (control.join().unwrap(), gw.join().unwrap());
    let (idle_control, idle_gw) = (idle_control.join().unwrap(), idle_gw.join().unwrap());
    report("websocket | control", &control.text());
    report("websocket | gateway", &gw.text());
    report("websocket | quiet, control", &idle_control.text());
    report("websocket | quiet, gateway", &idle_gw.text());

    let (_, control_passed) = checks(&control.text());
    assert!(
        control.code == 0 && !control_passed.is_empty(),
        "the control (websockets straight to websockets) must pass:\n{}\n{}",
        control.text(),
        control.stderr
    );
    let (gw_lines, gw_passed) = checks(&gw.text());
    assert_eq!(
        gw_passed,
        control_passed,
        "WebSocket checks passing straight to the server must pass through the gateway:\n{}\n{}",
        gw_lines.join("\n"),
        tail(&gw.stderr, 20)
    );

    // Quiet: open after 2 × 2.2 s (the request timeout is 1 s) both ways.
    let idle_control_text = idle_control.text();
    assert!(
        idle_control.code == 0
            && idle_control_text.contains("idle-open")
            && idle_control_text.contains("idle-end still-open"),
        "control: a quiet WebSocket straight to the server stays open:\n{idle_control_text}\n{}",
        idle_control.stderr
    );
    let idle_text = idle_gw.text();
    assert!(
        idle_gw.code == 0 && idle_text.contains("idle-open"),
        "a WebSocket quiet for twice the cluster timeout must stay open through the gateway:\n{idle_text}\n{}",
        idle_gw.stderr
    );
    // Then closed by the gateway at `tunnel_timeout` (3 s), cleanly: a FIN or a close frame,
    // not a reset.
    let end = idle_text
        .lines()
        .find(|l| l.starts_with("idle-end"))
        .unwrap_or_default();
    let after: f64 = end
        .split("closed after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the gateway never closed the quiet WebSocket: {end:?}"));
    assert!(
        (2.5..6.0).contains(&after),
        "closed after {after} s of quiet; tunnel_timeout is 3 s: {end}"
    );
    // websockets reports a FIN without a close frame as `EOFError`, a reset as
    // `ConnectionResetError`.
    assert!(
        end.contains("cause=EOFError") || !end.contains("close-frame=none"),
        "the tunnel must end cleanly (FIN or a close frame), not with a reset: {end}"
    );
    let server_side = idle_text
        .lines()
        .find(|l| l.starts_with("idle-server"))
        .unwrap_or_default();
    assert!(
        server_side.starts_with("idle-server {"),
        "the server must see its side of the tunnel end too: {server_side:?}"
    );
    let metrics = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("headway_tunnel_idle_timeouts_total"))
        .collect();
    report("websocket | metrics", &series.join("\n"));
    assert!(
        series.contains(&"headway_tunnel_idle_timeouts_total{cluster=\"ws\"} 1"),
        "exactly the one quiet tunnel is counted: {series:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. curl, nghttp and h2load over TLS h2 and h2c, against Node's `http2` straight and through
//    the gateway to Node's `http` (HTTP/1.1) and `http2` (h2c) servers.
// ---------------------------------------------------------------------------------------------

/// Size of the streamed uploads and of the download.
const UPLOAD_BYTES: usize = 8 << 20;
const DOWNLOAD_BYTES: usize = 32 << 20;

/// A self-signed certificate for `localhost` and `ips`, as cert.pem / key.pem in `dir`.
fn write_self_signed(dir: &Path, ips: &[&str]) {
    let mut names = vec!["localhost".to_owned()];
    names.extend(ips.iter().map(|ip| (*ip).to_owned()));
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).expect("rcgen: self-signed certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), signing_key.serialize_pem()).unwrap();
}

/// Deterministic, incompressible-enough upload content.
fn upload_content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256_of(path: &Path) -> String {
    let ran = run(
        "sha256sum",
        Command::new("sha256sum").arg(path),
        None,
        Duration::from_secs(20),
    );
    assert_eq!(ran.code, 0, "sha256sum: {}", ran.stderr);
    ran.text()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// One way to reach the Node servers: straight, or through the gateway.
struct Target {
    name: &'static str,
    /// URL prefix; the Node server answers by the last path segment.
    base: String,
    tls: bool,
}

impl Target {
    fn curl(&self) -> Command {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "60"]);
        if self.tls {
            command.arg("--http2");
        } else {
            command.arg("--http2-prior-knowledge");
        }
        command
    }
}

/// Every check of one target; returns one line per check. Panics on the first failure.
fn http2_tools_against(target: &Target, cacert: &Path, upload: &Path, sha: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let work = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(60);
    let with_ca = |command: &mut Command| {
        if target.tls {
            command.arg("--cacert").arg(cacert);
        }
    };
    let what = |tool: &str| format!("{tool} via {}", target.name);

    // curl -T - (stdin, no content-length) POST; the server reports length and digest.
    let out = work.path().join("sha.json");
    let mut command = target.curl();
    with_ca(&mut command);
    command
        .args(["-X", "POST", "-T", "-", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code} %{http_version} %{size_upload}"])
        .arg(format!("{}/sha", target.base));
    let ran = run(&what("curl -T - /sha"), &mut command, Some(upload), limit);
    let body = read_lossy(&out);
    assert!(
        ran.code == 0 && ran.text() == format!("200 2 {UPLOAD_BYTES}"),
        "{}: curl exit {} ({}), {}; body {body:?}",
        what("curl -T - POST"),
        ran.code,
        ran.text(),
        ran.stderr
    );
    let got: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body:?}", what("curl -T -")));
    assert_eq!(
        (got["bytes"].as_u64(), got["sha256"].as_str()),
        (Some(UPLOAD_BYTES as u64), Some(sha)),
        "{}: the server got another body: {got}",
        what("curl -T - POST")
    );
    lines.push(format!(
        "curl -T - POST {} MiB: server got every byte (sha256 ok), as {}",
        UPLOAD_BYTES >> 20,
        got["framing"]
    ));

    // The same streamed both ways: the server echoes the body as it arrives.
    let out = work.path().join("echo.bin");
    let mut command = target.curl();
    with_ca(&mut command);
    command
        .args(["-X", "POST", "-T", "-", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code} %{http_version}"])
        .arg(format!("{}/echo", target.base));
    let ran = run(&what("curl -T - /echo"), &mut command, Some(upload), limit);
    assert!(
        ran.code == 0 && ran.text() == "200 2",
        "{}: exit {} ({}) {}",
        what("curl -T - /echo"),
        ran.code,
        ran.text(),
        ran.stderr
    );
    assert_eq!(
        sha256_of(&out),
        sha,
        "{}: the echoed body differs ({} bytes)",
        what("curl -T - /echo"),
        std::fs::metadata(&out).map_or(0, |m| m.len())
    );
    lines.push(format!(
        "curl -T - POST /echo {} MiB streamed up and back: identical",
        UPLOAD_BYTES >> 20
    ));

    // A large download.
    let out = work.path().join("download.bin");
    let mut command = target.curl();
    with_ca(&mut command);
    command
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code} %{http_version} %{size_download}"])
        .arg(format!("{}/bytes?n={DOWNLOAD_BYTES}", target.base));
    let ran = run(&what("curl download"), &mut command, None, limit);
    assert!(
        ran.code == 0 && ran.text() == format!("200 2 {DOWNLOAD_BYTES}"),
        "{}: exit {} ({}) {}",
        what("curl download"),
        ran.code,
        ran.text(),
        ran.stderr
    );
    let data = std::fs::read(&out).unwrap();
    let first_wrong = data
        .iter()
        .enumerate()
        .position(|(i, b)| usize::from(*b) != i % 251);
    assert_eq!(
        (data.len(), first_wrong),
        (DOWNLOAD_BYTES, None),
        "{}: corrupt download",
        what("curl download")
    );
    lines.push(format!(
        "curl GET {} MiB download: every byte right",
        DOWNLOAD_BYTES >> 20
    ));

    // nghttp: a GET with a request header, and an upload without content-length.
    let tag: String = format!("nghttp-{}", target.name)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let ran = run(
        &what("nghttp GET"),
        Command::new("nghttp")
            .args(["-t", "30", "-H"])
            .arg(format!("x-req: {tag}"))
            .arg(format!("{}/id", target.base)),
        None,
        limit,
    );
    let text = ran.text();
    assert!(
        ran.code == 0
            && text.starts_with("GET /")
            && text.trim_end().ends_with(&format!("x-req={tag}")),
        "{}: exit {}: {text:?} {}",
        what("nghttp GET"),
        ran.code,
        ran.stderr
    );
    let ran = run(
        &what("nghttp upload"),
        Command::new("nghttp")
            .args(["-t", "30", "--no-content-length", "-d"])
            .arg(upload)
            .arg(format!("{}/sha", target.base)),
        None,
        limit,
    );
    let got: serde_json::Value = serde_json::from_str(&ran.text()).unwrap_or_else(|e| {
        panic!(
            "{}: exit {}, not JSON ({e}): {:?} {}",
            what("nghttp upload"),
            ran.code,
            ran.text(),
            ran.stderr
        )
    });
    assert_eq!(
        (ran.code, got["bytes"].as_u64(), got["sha256"].as_str()),
        (0, Some(UPLOAD_BYTES as u64), Some(sha)),
        "{}: {got}",
        what("nghttp upload without content-length")
    );
    lines.push(format!(
        "nghttp GET with a header; nghttp -d --no-content-length {} MiB: server got every byte, as {}",
        UPLOAD_BYTES >> 20,
        got["framing"]
    ));

    // h2load: 2,000 requests, 10 clients, 10 streams each.
    let ran = run(
        &what("h2load"),
        Command::new("h2load")
            .args(["-n", "2000", "-c", "10", "-m", "10", "-T", "30"])
            .arg(format!("{}/id", target.base)),
        None,
        limit,
    );
    let text = ran.text();
    let summary = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_owned()
    };
    let requests = summary("requests:");
    let codes = summary("status codes:");
    assert!(
        ran.code == 0
            && requests == "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"
            && codes.starts_with("status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx"),
        "{}: exit {}:\n{text}\n{}",
        what("h2load"),
        ran.code,
        ran.stderr
    );
    lines.push(format!(
        "h2load -n 2000 -c 10 -m 10: {requests}; {} ({})",
        codes,
        summary("finished in")
    ));
    lines
}

#[test]
fn curl_nghttp_and_h2load_over_tls_h2_and_h2c_with_streamed_uploads_and_a_large_download() {
    require_tool("curl", &["--version"], "apt-get install curl");
    require_tool("nghttp", &["--version"], "apt-get install nghttp2-client");
    require_tool("h2load", &["--version"], "apt-get install nghttp2-client");
    require_tool("node", &["--version"], "apt-get install nodejs");
    require_tool("sha256sum", &["--version"], "apt-get install coreutils");
    let dir = tempfile::tempdir().unwrap();
    write_self_signed(dir.path(), &["127.0.15.3", "127.0.15.100"]);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, upload_content(UPLOAD_BYTES, 14)).unwrap();
    let sha = sha256_of(&upload);

    // Node: HTTP/1.1 and h2c upstreams for the gateway, and TLS h2 and h2c for the controls.
    let echo = interop_dir().join("echo_server.js");
    let node = |name: &str, mode: &str, ip: &str, extra: &[&Path]| {
        let port = free_port();
        let mut command = Command::new("node");
        command
            .arg(&echo)
            .args([mode, ip, &port.to_string()])
            .args(extra);
        let mut peer = Peer::spawn(name, &mut command);
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        peer.wait_listening(addr);
        (peer, addr)
    };
    let (_h1, h1) = node("node http", "h1", "127.0.15.1", &[]);
    let (_h2c, h2c) = node("node http2 h2c", "h2c", "127.0.15.2", &[]);
    let (_h2tls, h2tls) = node("node http2 tls", "h2", "127.0.15.3", &[&cert, &key]);

    let dns = DnsServer::start();
    dns.set_a("h1.interop.test", &["127.0.15.1"]);
    dns.set_a("h2c.interop.test", &["127.0.15.2"]);
    let (plain, tls) = (free_port(), free_port());
    let gateway = Gateway::builder()
        .listen(format!("127.0.15.100:{plain}"))
        .listen_tls(format!("127.0.15.100:{tls}"), &cert, &key)
        .nameserver(dns.addr())
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/h1/").to("h1").prefix_rewrite("/"))
        .route(Route::prefix("/h2c/").to("h2c"))
        .cluster(cluster("h1", "h1.interop.test", h1.port()).timeout("30s"))
        .cluster(
            cluster("h2c", "h2c.interop.test", h2c.port())
                .timeout("30s")
                .protocol("http2"),
        )
        .start();
    let targets = [
        Target {
            name: "control: TLS h2 straight to node http2",
            base: format!("https://{h2tls}/x"),
            tls: true,
        },
        Target {
            name: "control: h2c straight to node http2",
            base: format!("http://{h2c}/x"),
            tls: false,
        },
        Target {
            name: "TLS h2 → headway → node http/1.1",
            base: format!("https://127.0.15.100:{tls}/h1"),
            tls: true,
        },
        Target {
            name: "h2c → headway → node http/1.1",
            base: format!("http://127.0.15.100:{plain}/h1"),
            tls: false,
        },
        Target {
            name: "TLS h2 → headway → node h2c",
            base: format!("https://127.0.15.100:{tls}/h2c"),
            tls: true,
        },
        Target {
            name: "h2c → headway → node h2c",
            base: format!("http://127.0.15.100:{plain}/h2c"),
            tls: false,
        },
    ];
    for target in &targets {
        let started = Instant::now();
        let lines = http2_tools_against(target, &cert, &upload, &sha);
        report(
            &format!("h2 tools | {}", target.name),
            &format!(
                "{}\n({:.1} s)",
                lines.join("\n"),
                started.elapsed().as_secs_f64()
            ),
        );
    }
    let odd: Vec<String> = access_lines(&gateway)
        .into_iter()
        .filter(|l| !l.contains("status=200"))
        .collect();
    assert!(odd.is_empty(), "every request was a 200: {odd:#?}");
}

#[test]
fn http2_clients_through_a_prefix_rewrite_route_reach_an_h2c_upstream() {
    // The route rewrites /rw/ to /; the upstream speaks h2c (`protocol: http2`). An HTTP/2
    // client's request carries its host in `:authority`, not in a Host header.
    require_tool("curl", &["--version"], "apt-get install curl");
    require_tool("node", &["--version"], "apt-get install nodejs");
    let port = free_port();
    let mut command = Command::new("node");
    command.arg(interop_dir().join("echo_server.js")).args([
        "h2c",
        "127.0.15.11",
        &port.to_string(),
    ]);
    let mut node = Peer::spawn("node http2 h2c", &mut command);
    let addr: SocketAddr = format!("127.0.15.11:{port}").parse().unwrap();
    node.wait_listening(addr);
    let gateway = Gateway::builder()
        .listen(format!("127.0.15.101:{}", free_port()))
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/rw/").to("h2c").prefix_rewrite("/"))
        .cluster(
            cluster("h2c", "127.0.15.11", port)
                .protocol("http2")
                .timeout("10s"),
        )
        .start();
    let get = |base: &str, h2: bool| {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "20", "-H", "x-req: rw"]);
        if h2 {
            command.arg("--http2-prior-knowledge");
        }
        command.args(["-w", "\n%{http_code} %{http_version}"]);
        command.arg(format!("{base}/id"));
        run("curl GET", &mut command, None, Duration::from_secs(30)).text()
    };
    let control = get(&format!("http://{addr}"), true);
    report("prefix_rewrite to h2c | control h2c", &control);
    assert_eq!(control, "GET /id x-req=rw\n\n200 2");
    let gw = gateway.listen_addr();
    let h1 = get(&format!("http://{gw}/rw"), false);
    report("prefix_rewrite to h2c | HTTP/1.1 client", &h1);
    let h2 = get(&format!("http://{gw}/rw"), true);
    report("prefix_rewrite to h2c | h2c client", &h2);
    let errors: Vec<String> = gateway
        .stderr_log()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("status=5"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        (h1.as_str(), h2.as_str()),
        ("GET /id x-req=rw\n\n200 1.1", "GET /id x-req=rw\n\n200 2"),
        "through a prefix_rewrite route to an h2c cluster, HTTP/1.1 and HTTP/2 clients alike get \
         the upstream's answer; the gateway logged:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Stock nginx as an HTTP/1.1 backend that logs what it received: 6 HTTP/2 clients, 300
//    streamed POSTs (no content-length, an empty DATA frame last) and 300 GETs.
// ---------------------------------------------------------------------------------------------

const NGINX_BIN: &str = "/usr/sbin/nginx";

/// nginx on tests/interop/nginx_uploads.conf: a front server (HTTP/1.1 on `h1`, h2c on `h2c`)
/// that reads every body and logs it, and proxies to an inner server answering with what it got.
struct UploadNginx {
    dir: TempDir,
    master: Option<Child>,
}

impl UploadNginx {
    fn start(h1: SocketAddr, h2c: SocketAddr, inner: SocketAddr) -> UploadNginx {
        let dir = tempfile::Builder::new()
            .prefix("headway-interop-nginx-")
            .tempdir()
            .unwrap();
        // Workers run as `nobody` when the master is root: let them reach their temp paths.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let template = std::fs::read_to_string(interop_dir().join("nginx_uploads.conf")).unwrap();
        let conf = template
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@FRONT_H1@", &h1.to_string())
            .replace("@FRONT_H2C@", &h2c.to_string())
            .replace("@INNER@", &inner.to_string());
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let log = |name: &str| File::create(dir.path().join(name)).unwrap();
        let master = Command::new(NGINX_BIN)
            .arg("-p")
            .arg(format!("{}/", dir.path().display()))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {NGINX_BIN}: {e}"));
        let mut nginx = UploadNginx {
            dir,
            master: Some(master),
        };
        for addr in [h1, h2c, inner] {
            let up = wait_until(Duration::from_secs(10), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            let exited = nginx
                .master
                .as_mut()
                .is_some_and(|m| matches!(m.try_wait(), Ok(Some(_))));
            assert!(
                up && !exited,
                "nginx not listening on {addr}; stderr:\n{}\nerror log:\n{}",
                read_lossy(&nginx.dir.path().join("stderr.log")),
                nginx.error_log()
            );
        }
        nginx
    }

    /// The front server's access-log lines (see the conf's `log_format uploads`).
    fn access_log(&self) -> Vec<String> {
        read_lossy(&self.dir.path().join("access.log"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The access log once nginx has written it: nginx logs a request after sending its
    /// answer, so a client can hold the answer before the line is there (seen on CI). Waits at
    /// most 3 s for a line naming `id`, if given, and for the log to hold still for 200 ms.
    fn settled_access_log(&self, id: Option<&str>) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = self.access_log();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.access_log();
            let has_id = id.is_none_or(|id| now.iter().any(|l| l.contains(&format!(" id={id} "))));
            if (has_id && now.len() == last.len()) || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    fn error_log(&self) -> String {
        read_lossy(&self.dir.path().join("error.log"))
    }
}

impl Drop for UploadNginx {
    fn drop(&mut self) {
        let Some(mut master) = self.master.take() else {
            return;
        };
        let workers = support::nginx::children_of(master.id());
        let _ = master.kill();
        for worker in workers {
            support::nginx::signal(worker, libc::SIGKILL);
        }
        let _ = master.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- upload nginx error log ----\n{}\n---- end ----",
                tail(&self.error_log(), 40)
            );
        }
    }
}

const UPLOAD_CLIENTS: usize = 6;
const UPLOAD_ROUNDS: usize = 50;

/// The body of upload `k` of client `c`: its id, then letters; every 25th is empty.
fn nginx_upload_body(c: usize, k: usize) -> Vec<u8> {
    if k.is_multiple_of(25) {
        return Vec::new();
    }
    let len = 20 + (c * 7919 + k * 104_729) % 40_000;
    let mut body = format!("c{c}k{k}:").into_bytes();
    body.extend((0..len).map(|i| b'a' + ((i * 7 + c + k) % 26) as u8));
    body.truncate(len);
    body
}

/// One client: one HTTP/2 connection (h2c, prior knowledge) to `addr`, `UPLOAD_ROUNDS` times a
/// streamed POST (no content-length; DATA frames of varied sizes, then an empty DATA frame with
/// END_STREAM, as `curl -T -` ends) and a GET. Returns what went wrong, one line per request.
async fn upload_client(addr: SocketAddr, c: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(tcp) => tcp,
        Err(e) => return vec![format!("client {c}: connect {addr}: {e}")],
    };
    let (mut client, connection) = match h2::client::handshake(tcp).await {
        Ok(pair) => pair,
        Err(e) => return vec![format!("client {c}: HTTP/2 handshake: {e}")],
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    for k in 0..UPLOAD_ROUNDS {
        for post in [true, false] {
            let (method, path) = if post {
                ("POST", format!("/up/{c}/{k}"))
            } else {
                ("GET", format!("/get/{c}/{k}"))
            };
            let id = format!("c{c}-k{k}-{}", method.to_lowercase());
            let body = if post {
                nginx_upload_body(c, k)
            } else {
                Vec::new()
            };
            let expected = if post {
                format!("{path} id={id} len={}\n", body.len())
            } else {
                format!("{path} id={id} len=\n")
            };
            match h2_exchange(&mut client, addr, method, &path, &id, &body, false).await {
                Ok((200, got)) if got == expected => {}
                Ok((status, got)) => problems.push(format!(
                    "{method} {path}: {status} {got:?}, expected 200 {expected:?}"
                )),
                Err(e) => problems.push(format!("{method} {path}: {e}")),
            }
        }
    }
    problems
}

/// One request on `client`; a POST body goes in pieces of varied sizes, then an empty DATA
/// frame ends the stream. Returns (status, body).
async fn h2_exchange(
    client: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    id: &str,
    body: &[u8],
    empty_frames_between: bool,
) -> Result<(u16, String), String> {
    let request = ::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("x-req", id)
        .body(())
        .unwrap();
    let ready = client.clone().ready().await.map_err(|e| e.to_string())?;
    *client = ready;
    let post = method == "POST";
    let (response, mut stream) = client
        .send_request(request, !post)
        .map_err(|e| e.to_string())?;
    if post {
        let mut rest = body;
        let mut piece = 1000 + id.len() * 97;
        while !rest.is_empty() {
            let n = piece.min(rest.len());
            stream
                .send_data(Bytes::copy_from_slice(&rest[..n]), false)
                .map_err(|e| e.to_string())?;
            rest = &rest[n..];
            piece = piece * 3 % 17_000 + 1;
            if empty_frames_between && !rest.is_empty() {
                // RFC 9113 allows an empty DATA frame anywhere in a stream.
                stream
                    .send_data(Bytes::new(), false)
                    .map_err(|e| e.to_string())?;
            }
        }
        stream
            .send_data(Bytes::new(), true)
            .map_err(|e| e.to_string())?;
    }
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .map_err(|_| "no response within 20 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&data).into_owned()))
}

/// Runs the six clients at once against `addr`; returns every problem.
fn upload_clients(addr: SocketAddr) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let problems = rt.block_on(async {
        let clients: Vec<_> = (0..UPLOAD_CLIENTS)
            .map(|c| tokio::spawn(upload_client(addr, c)))
            .collect();
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut all = Vec::new();
            for client in clients {
                all.extend(client.await.unwrap());
            }
            all
        })
        .await
        .unwrap_or_else(|_| vec!["the clients did not finish within 60 s".to_string()])
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    problems
}

/// Checks nginx's log lines for one listener port: every request exactly once, each upload with
/// its exact body, nothing else. Returns a summary of how the bodies were framed.
fn check_nginx_log(lines: &[String], port: u16, who: &str) -> String {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut framing: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mine: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{port} ")))
        .collect();
    for line in &mine {
        // `<port> <method> <uri> <status> <request_length> cl=<..> te=<..> id=<..> body=<..>`
        let fields: Vec<&str> = line.splitn(9, ' ').collect();
        if fields.len() != 9 || fields[3] != "200" {
            wrong.push(format!("not a 200 request of ours: {line}"));
            continue;
        }
        let (method, uri) = (fields[1], fields[2]);
        let id = fields[7].trim_start_matches("id=");
        *seen.entry(format!("{method} {uri} {id}")).or_default() += 1;
        if method == "POST" {
            let parts: Vec<usize> = uri
                .trim_start_matches("/up/")
                .split('/')
                .filter_map(|s| s.parse().ok())
                .collect();
            let [c, k] = parts[..] else {
                wrong.push(format!("unexpected URI: {line}"));
                continue;
            };
            let body = fields[8].trim_start_matches("body=");
            let expected = nginx_upload_body(c, k);
            if body.as_bytes() != expected.as_slice() {
                wrong.push(format!(
                    "{uri}: nginx got a body of {} bytes, expected {}: {}…",
                    body.len(),
                    expected.len(),
                    &line[..line.len().min(200)]
                ));
            }
            *framing
                .entry(format!("{} {}", fields[5], fields[6]))
                .or_default() += 1;
        }
    }
    for c in 0..UPLOAD_CLIENTS {
        for k in 0..UPLOAD_ROUNDS {
            for (method, uri, id) in [
                ("POST", format!("/up/{c}/{k}"), format!("c{c}-k{k}-post")),
                ("GET", format!("/get/{c}/{k}"), format!("c{c}-k{k}-get")),
            ] {
                let key = format!("{method} {uri} {id}");
                match seen.get(&key) {
                    Some(1) => {}
                    Some(n) => wrong.push(format!("{key}: {n} times in nginx's log")),
                    None => wrong.push(format!("{key}: not in nginx's log")),
                }
            }
        }
    }
    let total = UPLOAD_CLIENTS * UPLOAD_ROUNDS * 2;
    if mine.len() != total {
        wrong.push(format!(
            "{} lines in nginx's log for port {port}, expected {total}",
            mine.len()
        ));
    }
    assert!(
        wrong.is_empty(),
        "{who}: nginx received something else than what was sent ({} problems):\n{}",
        wrong.len(),
        wrong
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    format!(
        "nginx logged each of the {total} requests exactly once, every upload's body exact; \
         upload framing as nginx saw it: {framing:?}"
    )
}

#[test]
fn nginx_logs_each_streamed_http2_upload_exactly_once_and_every_client_gets_its_own_answer() {
    assert!(
        Path::new(NGINX_BIN).is_file(),
        "interop: {NGINX_BIN} is missing — install Debian's nginx (apt-get install nginx), as \
         scripts/setup.sh does. These tests do not skip."
    );
    let (h1_port, h2c_port, inner_port) = (free_port(), free_port(), free_port());
    let front_h1: SocketAddr = format!("127.0.16.1:{h1_port}").parse().unwrap();
    let front_h2c: SocketAddr = format!("127.0.16.1:{h2c_port}").parse().unwrap();
    let inner: SocketAddr = format!("127.0.16.2:{inner_port}").parse().unwrap();
    let nginx = UploadNginx::start(front_h1, front_h2c, inner);

    // Control: the same clients straight to nginx's h2c listener.
    let started = Instant::now();
    let problems = upload_clients(front_h2c);
    assert!(
        problems.is_empty(),
        "control (h2 clients straight to nginx) must pass: {problems:#?}"
    );
    let control = check_nginx_log(&nginx.settled_access_log(None), h2c_port, "control");
    report(
        "nginx uploads | control",
        &format!(
            "{UPLOAD_CLIENTS} h2 clients × {UPLOAD_ROUNDS} (streamed POST + GET), every answer its own; {control} ({:.1} s)",
            started.elapsed().as_secs_f64()
        ),
    );

    let dns = DnsServer::start();
    dns.set_a("nginx.interop.test", &["127.0.16.1"]);
    let gateway = Gateway::builder()
        .listen(format!("127.0.16.100:{}", free_port()))
        .nameserver(dns.addr())
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/").to("nginx"))
        .cluster(cluster("nginx", "nginx.interop.test", h1_port).timeout("20s"))
        .start();
    let started = Instant::now();
    let problems = upload_clients(gateway.listen_addr());
    let log = nginx.settled_access_log(None);
    let odd: Vec<&String> = log
        .iter()
        .filter(|l| {
            !l.starts_with(&format!("{h1_port} ")) && !l.starts_with(&format!("{h2c_port} "))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "through the gateway, {} of {} requests went wrong (a client got another's answer, or \
         none):\n{}\nnginx lines of neither listener: {odd:?}",
        problems.len(),
        UPLOAD_CLIENTS * UPLOAD_ROUNDS * 2,
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let through = check_nginx_log(&log, h1_port, "through the gateway");
    report(
        "nginx uploads | gateway",
        &format!(
            "{UPLOAD_CLIENTS} h2 clients × {UPLOAD_ROUNDS} (streamed POST + GET) through headway to nginx over HTTP/1.1, every answer its own; {through} ({:.1} s)",
            started.elapsed().as_secs_f64()
        ),
    );
    assert!(
        odd.is_empty(),
        "nginx saw requests nobody sent (a stray last-chunk is `\"0\" 400`): {odd:#?}"
    );
    let error_log = nginx.error_log();
    let errors: Vec<&str> = error_log
        .lines()
        .filter(|l| l.contains("client sent"))
        .collect();
    assert!(
        errors.is_empty(),
        "nginx found invalid requests: {errors:#?}"
    );
    let not_200: Vec<String> = access_lines(&gateway)
        .into_iter()
        .filter(|l| !l.contains("status=200"))
        .collect();
    assert!(not_200.is_empty(), "{not_200:#?}");
}

/// An ASCII body of `len` bytes starting with `tag`.
fn ascii_body(tag: &str, len: usize) -> Vec<u8> {
    let mut body = format!("{tag}:").into_bytes();
    body.extend((0..len).map(|i| b'a' + ((i * 11 + len) % 26) as u8));
    body.truncate(len);
    body
}

/// nginx's log line for request id `id` (`id=<id> ` in the line), and the body length it logged.
fn nginx_body_len(lines: &[String], id: &str) -> Vec<usize> {
    lines
        .iter()
        .filter(|l| l.contains(&format!(" id={id} ")))
        .map(|l| l.split(" body=").nth(1).map_or(0, str::len))
        .collect()
}

#[test]
fn nginx_receives_every_byte_of_uploads_read_in_pieces_http1_chunked_and_h2_with_empty_data_frames()
{
    require_tool("curl", &["--version"], "apt-get install curl");
    assert!(
        Path::new(NGINX_BIN).is_file(),
        "interop: {NGINX_BIN} is missing — install Debian's nginx (apt-get install nginx), as \
         scripts/setup.sh does. These tests do not skip."
    );
    let front_h1: SocketAddr = format!("127.0.16.3:{}", free_port()).parse().unwrap();
    let front_h2c: SocketAddr = format!("127.0.16.3:{}", free_port()).parse().unwrap();
    let inner: SocketAddr = format!("127.0.16.4:{}", free_port()).parse().unwrap();
    let nginx = UploadNginx::start(front_h1, front_h2c, inner);
    let gateway = Gateway::builder()
        .listen(format!("127.0.16.102:{}", free_port()))
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/").to("nginx"))
        .cluster(cluster("nginx", "127.0.16.3", front_h1.port()).timeout("20s"))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let sizes = [70_000, 131_100, 200_000, 250_000];
    let mut failures = Vec::new();
    for (who, h1_target, h2_target) in [
        ("control", front_h1, front_h2c),
        ("gateway", gateway.listen_addr(), gateway.listen_addr()),
    ] {
        let mut lines = Vec::new();
        // (a) curl -T - over HTTP/1.1: chunked, in curl's 64 KiB pieces.
        for (i, len) in sizes.iter().enumerate() {
            let id = format!("{who}-chunked-{i}");
            let body = ascii_body(&id, *len);
            let file = dir.path().join(format!("{id}.txt"));
            std::fs::write(&file, &body).unwrap();
            let path = format!("/chunked/{i}");
            let ran = run(
                &format!("curl -T - HTTP/1.1 ({who})"),
                Command::new("curl")
                    .args(["-sS", "--max-time", "20", "-X", "POST", "-T", "-", "-H"])
                    .arg(format!("x-req: {id}"))
                    .arg(format!("http://{h1_target}{path}")),
                Some(&file),
                Duration::from_secs(30),
            );
            let answer = ran.text();
            let expected = format!("{path} id={id} len={len}\n");
            let logged = nginx_body_len(&nginx.settled_access_log(Some(&id)), &id);
            let line = format!(
                "HTTP/1.1 chunked upload of {len} bytes: answer {:?}, nginx logged bodies of {logged:?} bytes",
                answer.trim_end()
            );
            if answer != expected || logged != [*len] {
                failures.push(format!("{who}: {line} (curl: {})", ran.stderr.trim()));
            }
            lines.push(line);
        }
        // (b) an HTTP/2 client whose upload has empty DATA frames between its pieces.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h2_results = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async {
                let tcp = tokio::net::TcpStream::connect(h2_target).await.unwrap();
                let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut results = Vec::new();
                for (i, len) in sizes.iter().enumerate() {
                    let id = format!("{who}-h2empty-{i}");
                    let body = ascii_body(&id, *len);
                    let path = format!("/h2empty/{i}");
                    let got =
                        h2_exchange(&mut client, h2_target, "POST", &path, &id, &body, true).await;
                    results.push((id, path, *len, got));
                }
                results
            })
            .await
            .expect("the HTTP/2 uploads did not finish within 30 s")
        });
        for (id, path, len, got) in h2_results {
            let expected = format!("{path} id={id} len={len}\n");
            let logged = nginx_body_len(&nginx.settled_access_log(Some(&id)), &id);
            let line = format!(
                "h2 upload of {len} bytes with empty DATA frames between its pieces: {got:?}, nginx logged bodies of {logged:?} bytes"
            );
            if got != Ok((200, expected)) || logged != [len] {
                failures.push(format!("{who}: {line}"));
            }
            lines.push(line);
        }
        report(
            &format!("uploads read in pieces | {who}"),
            &lines.join("\n"),
        );
    }
    let control: Vec<&String> = failures
        .iter()
        .filter(|f| f.starts_with("control"))
        .collect();
    assert!(
        control.is_empty(),
        "the control (straight to nginx) must pass: {control:#?}"
    );
    assert!(
        failures.is_empty(),
        "every byte of each upload must reach nginx through the gateway, and the answer be the \
         whole upload's:\n{}\ngateway access log:\n{}",
        failures.join("\n"),
        access_lines(&gateway).join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Node's `http` server and its keep-alive close (`keepAliveTimeout` 5 s, plus the 1 s
//    `keepAliveTimeoutBuffer` of recent Node versions): a POST with a body and streamed uploads,
//    each sent 5.15 s after the previous answer, then just after Node closed the connection the
//    previous one used. tests/pod_death.rs covers GET, HEAD and small POSTs under load.
// ---------------------------------------------------------------------------------------------

/// When Node closes an idle kept-alive connection, once measured.
type CloseAfter = Arc<std::sync::Mutex<Option<Duration>>>;

/// One sequence of requests to a Node pod: the first at once, the second 5.15 s after the first
/// answer, then two more 100 ms and 250 ms after Node's measured close. What each got.
fn node_sequence(
    base: &str,
    kind: &'static str,
    h2_allowed: bool,
    close_after: &CloseAfter,
    body_file: &Path,
    body_len: usize,
) -> Vec<String> {
    let mut outcomes = Vec::new();
    let request = |n: usize| {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "20", "-o", "/dev/null"]);
        command.args([
            "-w",
            "%{http_code} %{http_version} %header{x-request-body-bytes}",
        ]);
        let streamed = kind == "streamed";
        if streamed {
            // No content-length: HTTP/2 (h2c, an empty DATA frame last) on odd rounds through
            // the gateway, HTTP/1.1 chunked otherwise.
            if h2_allowed && n % 2 == 1 {
                command.arg("--http2-prior-knowledge");
            }
            command.args(["-X", "POST", "-T", "-"]);
        } else {
            command.args(["--data-binary", &format!("@{}", body_file.display())]);
        }
        command.arg(format!("{base}/upload/{kind}/{n}"));
        let ran = run(
            &format!("curl {kind} {n}"),
            &mut command,
            streamed.then_some(body_file),
            Duration::from_secs(30),
        );
        let outcome = ran.text();
        let how = if !streamed {
            "content-length"
        } else if h2_allowed && n % 2 == 1 {
            "h2, no length"
        } else {
            "HTTP/1.1 chunked"
        };
        if ran.code != 0
            || !outcome.starts_with("200 ")
            || !outcome.ends_with(&format!(" {body_len}"))
        {
            format!(
                "FAIL round {n} ({how}): curl exit {}: {outcome:?} {}",
                ran.code,
                ran.stderr.trim()
            )
        } else {
            format!("ok round {n} ({how}): {outcome}")
        }
    };
    outcomes.push(request(0));
    let mut last = Instant::now();
    for n in 1..4 {
        let gap = if n == 1 {
            Duration::from_millis(5_150)
        } else {
            let measured = wait_until(Duration::from_secs(20), || {
                support::lock(close_after).is_some()
            });
            assert!(measured, "Node's idle close was never measured");
            let close = support::lock(close_after).unwrap_or_default();
            close + Duration::from_millis(if n == 2 { 100 } else { 250 })
        };
        std::thread::sleep(gap.saturating_sub(last.elapsed()));
        let waited = last.elapsed();
        let outcome = request(n);
        outcomes.push(format!("{outcome} (after {waited:.2?} idle)"));
        last = Instant::now();
    }
    outcomes
}

#[test]
fn node_http_closing_idle_connections_fails_no_post_and_no_streamed_upload() {
    require_tool("node", &["--version"], "apt-get install nodejs");
    require_tool("curl", &["--version"], "apt-get install curl");
    let port = free_port();
    // Measured on its own pod, while the rest starts.
    let close_after = CloseAfter::default();
    let measuring = {
        let close_after = close_after.clone();
        let port = free_port();
        std::thread::spawn(move || {
            let probe = NodePod::start("127.0.16.17", port, "probe");
            let measured = probe
                .idle_close_after()
                .expect("Node never closed an idle kept-alive connection");
            *support::lock(&close_after) = Some(measured);
            measured
        })
    };
    // Pods: .11/.12 behind the gateway's default pooling (idle_timeout 4 s), .13/.14 behind a
    // cluster that pools for 30 s (longer than Node keeps them), .15/.16 for the controls.
    let ips = [
        "127.0.16.11",
        "127.0.16.12",
        "127.0.16.13",
        "127.0.16.14",
        "127.0.16.15",
        "127.0.16.16",
    ];
    let pods: Vec<NodePod> = ips
        .iter()
        .map(|ip| NodePod::start(ip, port, "node"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let body_len = 300_000;
    let body_file = dir.path().join("body.bin");
    std::fs::write(&body_file, upload_content(body_len, 5)).unwrap();

    let dns = DnsServer::start();
    let mut gateway = Gateway::builder()
        .listen(format!("127.0.16.101:{}", free_port()))
        .nameserver(dns.addr())
        .gateway_yaml("h2c: true");
    for (i, ip) in ips[..4].iter().enumerate() {
        let name = format!("node{i}");
        dns.set_a(&format!("{name}.interop.test"), &[ip]);
        let mut node = cluster(&name, &format!("{name}.interop.test"), port).timeout("10s");
        if i >= 2 {
            node = node.idle_timeout("30s");
        }
        gateway = gateway
            .route(Route::prefix(&format!("/{name}/")).to(&name))
            .cluster(node);
    }
    let gateway = gateway.start();

    let gw = gateway.listen_addr();
    let runs = [
        (
            "control, POST",
            format!("http://{}", pods[4].addr()),
            "post",
            false,
            4,
        ),
        (
            "control, streamed",
            format!("http://{}", pods[5].addr()),
            "streamed",
            false,
            5,
        ),
        (
            "gateway pooling 4 s, POST",
            format!("http://{gw}/node0"),
            "post",
            true,
            0,
        ),
        (
            "gateway pooling 4 s, streamed",
            format!("http://{gw}/node1"),
            "streamed",
            true,
            1,
        ),
        (
            "gateway pooling 30 s, POST",
            format!("http://{gw}/node2"),
            "post",
            true,
            2,
        ),
        (
            "gateway pooling 30 s, streamed",
            format!("http://{gw}/node3"),
            "streamed",
            true,
            3,
        ),
    ];
    let body_file = Arc::new(body_file);
    let threads: Vec<_> = runs
        .iter()
        .map(|(name, base, kind, h2, pod)| {
            let (name, base, kind, h2, pod) = (*name, base.clone(), *kind, *h2, *pod);
            let close_after = close_after.clone();
            let body_file = body_file.clone();
            std::thread::spawn(move || {
                let outcomes = node_sequence(&base, kind, h2, &close_after, &body_file, body_len);
                (name, pod, outcomes)
            })
        })
        .collect();
    let results: Vec<(&str, usize, Vec<String>)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let close_after = measuring.join().unwrap();
    let mut control_failures = Vec::new();
    let mut failures = Vec::new();
    for (name, pod, outcomes) in &results {
        let pod = &pods[*pod];
        let connections = pod
            .events()
            .iter()
            .filter(|e| e.starts_with("connection "))
            .count();
        let received = pod.requests();
        report(
            &format!("node keep-alive | {name}"),
            &format!(
                "Node closes idle connections after {close_after:.2?}\n{}\nNode received {} requests on {connections} connections (health checks none): {received:?}",
                outcomes.join("\n"),
                received.len(),
            ),
        );
        let mut bad: Vec<String> = outcomes
            .iter()
            .filter(|o| o.starts_with("FAIL"))
            .map(|o| format!("{name}: {o}"))
            .collect();
        let short: Vec<&String> = received
            .iter()
            .filter(|r| !r.ends_with(&format!(" {body_len}")))
            .collect();
        if received.len() != outcomes.len() || !short.is_empty() {
            bad.push(format!(
                "{name}: Node received {} requests, {} of them not {body_len} bytes: {short:?}",
                received.len(),
                short.len()
            ));
        }
        if name.starts_with("control") {
            control_failures.extend(bad);
        } else {
            failures.extend(bad);
        }
    }
    assert!(
        control_failures.is_empty(),
        "the control (curl straight to Node) must pass:\n{}",
        control_failures.join("\n")
    );
    assert!(
        failures.is_empty(),
        "uploads through the gateway to Node, 5.15 s apart and just after Node's idle close, \
         must all arrive whole and be answered:\n{}\ngateway access log:\n{}",
        failures.join("\n"),
        access_lines(&gateway).join("\n")
    );
}
