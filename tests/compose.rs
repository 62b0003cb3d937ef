//! The docker-compose demo, run for real on this machine's Docker Engine: images built from the
//! local binaries (scripts/images.sh, no registry), the stack brought up with the repository's
//! docker-compose.yml, and everything checked through ports published on 127.0.0.1 only.
//!
//! Where no Docker Engine is reachable the test is skipped (`support::skip`: scripts/test.sh
//! counts and lists it as a skip); where one is, any failure fails the test. The stack and its
//! images are removed at the end, even on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::http::{self, Client};
use support::{free_port, wait_until};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `docker compose` (v2) when present, else `docker-compose` (v1), else None.
fn compose_command() -> Option<Vec<String>> {
    let ok = |args: &[&str]| {
        Command::new(args[0])
            .args(&args[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(&["docker", "compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if ok(&["docker-compose", "version"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

/// A compose project of its own, torn down (with its images) when dropped.
struct Stack {
    compose: Vec<String>,
    project: String,
    tag: String,
    port: u16,
    admin_port: u16,
}

impl Stack {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .args(["-p", &self.project, "-f"])
            .arg(repo().join("docker-compose.yml"))
            .args(args)
            .current_dir(repo())
            .env("TAG", &self.tag)
            .env("HEADWAY_BIND", "127.0.0.1")
            .env("HEADWAY_PORT", self.port.to_string())
            .env("HEADWAY_ADMIN_PORT", self.admin_port.to_string());
        cmd
    }

    fn compose(&self, args: &[&str]) {
        let out = run(&mut self.cmd(args));
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn containers(&self, service: &str) -> Vec<String> {
        let out = run(&mut self.cmd(&["ps", "-q", service]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn gateway(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        let out = run(&mut self.cmd(&["logs", "--no-color", "--tail", "60", "headway"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- headway container log (tail) ---\n{}", self.logs());
        }
        let _ = run(&mut self.cmd(&["down", "-v", "--remove-orphans", "-t", "2"]));
        let _ = Command::new("docker")
            .args(["rmi", "-f"])
            .arg(format!("headway:{}", self.tag))
            .arg(format!("hello-service:{}", self.tag))
            .output();
    }
}

/// The distinct instances that answered `n` requests to `path` (their `x-served-by`).
fn instances(addr: &str, path: &str, n: usize) -> HashSet<String> {
    let mut client = Client::new(addr);
    (0..n)
        .filter_map(|_| client.get(path).ok())
        .filter(|r| r.status == 200)
        .filter_map(|r| r.header("x-served-by").map(str::to_owned))
        .collect()
}

#[test]
fn the_compose_demo_serves_scales_and_survives_a_dead_replica() {
    let docker_up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(compose) = compose_command().filter(|_| docker_up) else {
        support::skip(
            "the_compose_demo_serves_scales_and_survives_a_dead_replica",
            "no Docker Engine (or no compose) is reachable on this machine",
        );
        return;
    };

    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_headway"))
        .parent()
        .unwrap()
        .to_owned();
    assert!(
        bin_dir.join("hello-service").exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin_dir.join("hello-service").display()
    );
    let tag = format!("e2e-{}", std::process::id());
    let images = run(Command::new(repo().join("scripts/images.sh"))
        .arg(&bin_dir)
        .env("TAG", &tag)
        .current_dir(repo()));
    assert!(
        images.status.success(),
        "scripts/images.sh failed:\n{}",
        String::from_utf8_lossy(&images.stderr)
    );

    let stack = Stack {
        compose,
        project: format!("headwaye2e{}", std::process::id()),
        tag,
        port: free_port(),
        admin_port: free_port(),
    };
    stack.compose(&["up", "-d", "--no-build"]);
    let admin = format!("127.0.0.1:{}", stack.admin_port);
    assert!(
        wait_until(Duration::from_secs(60), || {
            http::get(&admin, "/ready").is_ok_and(|r| r.status == 200)
        }),
        "the gateway never became ready"
    );

    // /service/1 answers from all 3 replicas, /service/2 from both.
    let gw = stack.gateway();
    assert!(
        wait_until(Duration::from_secs(20), || instances(&gw, "/service/1", 12)
            .len()
            == 3),
        "service1: {:?}",
        instances(&gw, "/service/1", 12)
    );
    assert!(
        wait_until(Duration::from_secs(20), || instances(&gw, "/service/2", 8)
            .len()
            == 2),
        "service2: {:?}",
        instances(&gw, "/service/2", 8)
    );
    let r = http::get(&gw, "/service/1").unwrap();
    assert!(
        r.body.starts_with("Hello I am a simple api service 1"),
        "{}",
        r.body
    );

    // Scale to 5: all 5 serve within the refresh interval (1 s) plus probes and start-up.
    stack.compose(&[
        "up",
        "-d",
        "--no-build",
        "--scale",
        "service1=5",
        "--scale",
        "service2=2",
    ]);
    let scaled = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || instances(&gw, "/service/1", 20)
            .len()
            == 5),
        "after scaling to 5: {:?}",
        instances(&gw, "/service/1", 20)
    );
    println!(
        "compose: scaled service1 3 -> 5, all 5 serving after {:?}",
        scaled.elapsed()
    );

    // One replica killed under a bounded load: no request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (gw, stop) = (gw.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut client = Client::new(gw.as_str());
            let (mut sent, mut failed) = (0u64, Vec::new());
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(30)
                && sent < 50_000
            {
                sent += 1;
                match client.get("/service/1") {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failed.push(format!("{} {}", r.status, r.body.trim())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (sent, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let victims = stack.containers("service1");
    assert_eq!(victims.len(), 5, "{victims:?}");
    let killed = run(Command::new("docker").args(["kill", &victims[0]]));
    assert!(killed.status.success(), "docker kill failed");
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    println!(
        "compose: killed one of 5 replicas under load: {sent} requests sent, {} failed",
        failed.len()
    );
    assert!(sent > 100, "the load loop barely ran: {sent}");
    assert!(
        failed.is_empty(),
        "requests failed after a replica died: {failed:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || instances(&gw, "/service/1", 20)
            .len()
            == 4),
        "the dead replica still counted: {:?}",
        instances(&gw, "/service/1", 20)
    );
}
