//! The demo, end to end: the real `headway-demo` binary starts its DNS server, `hello-service`
//! pods and `headway`, is driven on stdin like a user would, and leaves nothing behind.
//!
//! Needs the workspace's binaries next to `headway-demo` (`cargo build --workspace --bins`, which
//! scripts/test.sh runs first). Every port is ephemeral and the pods live on 127.0.3.x and
//! 127.0.4.x, which no other test uses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headway_demo::http;

const DEMO: &str = env!("CARGO_BIN_EXE_headway-demo");

/// The binaries the demo runs, next to its own, or a clear failure.
fn bin_dir() -> PathBuf {
    let dir = Path::new(DEMO).parent().unwrap().to_owned();
    for bin in ["headway", "hello-service"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: run `cargo build --workspace --bins` before `cargo test` \
             (scripts/test.sh does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// A TCP port free on every address right now.
fn free_tcp_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free on 127.0.0.1 for both UDP and TCP, as a DNS server needs.
fn free_dns_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

struct Ports {
    proxy: SocketAddr,
    admin: SocketAddr,
    dns: SocketAddr,
    pod: u16,
}

/// The repository's demo conf, with this test's ports and files.
fn write_conf(dir: &Path, ports: &Ports) -> PathBuf {
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/headway.yaml");
    let mut conf = std::fs::read_to_string(&original).unwrap();
    let pid_file = dir.join("headway.pid").display().to_string();
    let upgrade_sock = dir.join("upgrade.sock").display().to_string();
    for (from, to) in [
        ("127.0.0.1:8000", ports.proxy.to_string()),
        ("127.0.0.1:9901", ports.admin.to_string()),
        ("127.0.0.1:15353", ports.dns.to_string()),
        ("port: 8080", format!("port: {}", ports.pod)),
        ("/tmp/headway-demo.pid", pid_file),
        ("/tmp/headway-demo-upgrade.sock", upgrade_sock),
    ] {
        assert!(
            conf.contains(from),
            "{} no longer has {from:?}: update this test",
            original.display()
        );
        conf = conf.replace(from, &to);
    }
    let path = dir.join("headway.yaml");
    std::fs::write(&path, conf).unwrap();
    path
}

/// A running `headway-demo`, its stdin held open, its output collected line by line.
struct Demo {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Vec<String>>>,
    ports: Ports,
    pod_ip_base: &'static str,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the demo with its pods on `pod_ip_base` + 11.. and + 21.., in its own process
    /// group (as a terminal's foreground job is), and waits until it says it is ready.
    fn start(pod_ip_base: &'static str) -> Demo {
        let bin_dir = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports {
            proxy: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
            admin: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
            dns: SocketAddr::from(([127, 0, 0, 1], free_dns_port())),
            pod: free_tcp_port(),
        };
        let conf = write_conf(dir.path(), &ports);
        let mut child = Command::new(DEMO)
            .arg("--conf")
            .arg(&conf)
            .args(["--pod-ip-base", pod_ip_base])
            .arg("--log-dir")
            .arg(dir.path().join("logs"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        for (stream, prefix) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                "",
            ),
            (Box::new(child.stderr.take().unwrap()), "stderr: "),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    output.lock().unwrap().push(format!("{prefix}{line}"));
                }
            });
        }
        let demo = Demo {
            stdin: child.stdin.take(),
            child,
            output,
            ports,
            pod_ip_base,
            _dir: dir,
        };
        demo.wait_for_line(Duration::from_secs(90), |line| {
            line.starts_with("headway-demo: ready")
        });
        demo
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The first line matching, or a failure showing everything the demo said.
    fn wait_for_line(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output.lock().unwrap().iter().find(|l| matches(l)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the demo never said what was expected; it said:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every pid the demo reported (`pid 1234`): headway's and every pod's.
    fn reported_pids(&self) -> BTreeSet<u32> {
        let output = self.output();
        output
            .split("pid ")
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// `127.0.3.11:port` ... for pods `first..=last` of the block starting at `offset`.
    fn pods(&self, first: u8, last: u8) -> BTreeSet<String> {
        let base: std::net::Ipv4Addr = self.pod_ip_base.parse().unwrap();
        (first..=last)
            .map(|n| {
                let ip = std::net::Ipv4Addr::from(u32::from(base) + u32::from(n));
                format!("{ip}:{}", self.ports.pod)
            })
            .collect()
    }

    /// GETs `path` through headway until every pod of `want` has answered; fails on a pod
    /// outside it or after `timeout`.
    fn reach_all(&self, path: &str, want: &BTreeSet<String>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = BTreeSet::new();
        let mut last = String::new();
        while !want.is_subset(&seen) {
            assert!(
                Instant::now() < deadline,
                "GET {path}: reached {seen:?}, want {want:?}; last answer {last:?}; the demo said:\n{}",
                self.output()
            );
            match get(self.ports.proxy, path) {
                Ok(response) if response.status == 200 => {
                    let served_by = instance(&response.body);
                    assert!(
                        want.contains(&served_by),
                        "GET {path} reached {served_by}, not one of {want:?}"
                    );
                    seen.insert(served_by);
                }
                Ok(response) => last = format!("{} {}", response.status, response.body.trim()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the demo to exit; its status.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit; it said:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    /// A failed test still stops the demo (SIGTERM: it stops its children), then kills it.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal_group(&self.child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Signals the child's whole process group, as a terminal does on Ctrl-C.
fn signal_group(child: &Child, signal: libc::c_int) {
    let group = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on a process group this test created; no memory effects.
    unsafe {
        libc::kill(-group, signal);
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<http::Response> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(http::get(addr, path, Duration::from_secs(5)))
}

/// `Hello I am a simple api service 1 (instance host 127.0.3.11:8080)` -> `127.0.3.11:8080`.
fn instance(body: &str) -> String {
    body.trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}

fn assert_all_gone(pids: &BTreeSet<u32>, output: &str) {
    let alive: Vec<&u32> = pids
        .iter()
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(
        alive.is_empty(),
        "still running after the demo exited: {alive:?}; the demo said:\n{output}"
    );
}

#[test]
fn pods_scale_up_and_down_through_dns_and_quit_leaves_nothing() {
    let mut demo = Demo::start("127.0.3.0");
    let service1 = demo.pods(11, 13);
    demo.reach_all("/service/1", &service1, Duration::from_secs(20));
    demo.reach_all("/service/2", &demo.pods(21, 22), Duration::from_secs(20));

    demo.send("scale service1 5");
    demo.reach_all("/service/1", &demo.pods(11, 15), Duration::from_secs(20));

    demo.send("scale service1 0");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = get(demo.ports.proxy, "/service/1").unwrap();
        if response.status == 503 {
            assert!(
                response.body.contains("no healthy upstream"),
                "{response:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service1 scaled to zero still answers {} {}; the demo said:\n{}",
            response.status,
            response.body,
            demo.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(demo.ports.proxy, "/service/2").unwrap().status, 200);

    demo.send("status");
    demo.wait_for_line(Duration::from_secs(10), |line| {
        line.starts_with("[status] headway sees service2")
    });
    let status_pid_lines = demo.output().matches("[status]   service2 ").count();
    assert_eq!(status_pid_lines, 2, "status lists service2's 2 pods");
    let pids = demo.reported_pids();
    assert!(pids.len() >= 8, "headway and 7 pods: {pids:?}");

    demo.send("quit");
    let status = demo.wait_exit(Duration::from_secs(30));
    let output = demo.output();
    assert!(status.success(), "{status}; the demo said:\n{output}");
    assert!(output.contains("[demo] stopped"), "{output}");
    assert_all_gone(&pids, &output);
    assert!(
        get(demo.ports.proxy, "/service/2").is_err(),
        "headway is gone"
    );
}

#[test]
fn ctrl_c_to_the_terminal_group_stops_everything() {
    let mut demo = Demo::start("127.0.4.0");
    demo.reach_all("/service/2", &demo.pods(21, 22), Duration::from_secs(20));
    let pids = demo.reported_pids();
    assert_eq!(pids.len(), 6, "headway and 5 pods: {pids:?}");

    // A terminal's Ctrl-C: SIGINT to the foreground process group.
    signal_group(&demo.child, libc::SIGINT);
    let status = demo.wait_exit(Duration::from_secs(30));
    let output = demo.output();
    assert!(status.success(), "{status}; the demo said:\n{output}");
    assert!(output.contains("[demo] SIGINT: stopping"), "{output}");
    assert_all_gone(&pids, &output);
}

#[test]
fn end_of_input_stops_everything() {
    let mut demo = Demo::start("127.0.5.0");
    let pids = demo.reported_pids();
    drop(demo.stdin.take());
    let status = demo.wait_exit(Duration::from_secs(30));
    let output = demo.output();
    assert!(status.success(), "{status}; the demo said:\n{output}");
    assert!(output.contains("[demo] end of input: stopping"), "{output}");
    assert_all_gone(&pids, &output);
}

#[test]
fn missing_binaries_and_busy_ports_are_named() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(DEMO)
        .arg("--bin-dir")
        .arg(empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("hello-service"), "{stderr}");
    assert!(
        stderr.contains("cargo build --workspace --bins"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = Ports {
        proxy: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
        admin: busy.local_addr().unwrap(),
        dns: SocketAddr::from(([127, 0, 0, 1], free_dns_port())),
        pod: free_tcp_port(),
    };
    let conf = write_conf(dir.path(), &ports);
    let output = Command::new(DEMO)
        .arg("--conf")
        .arg(&conf)
        .args(["--pod-ip-base", "127.0.6.0", "--bin-dir"])
        .arg(bin_dir())
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("{} TCP (headway's admin listener", ports.admin)),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "nothing started"
    );
}
