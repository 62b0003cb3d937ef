//! Test harness for headway's black-box tests: a real DNS server, real loopback HTTP backends,
//! the real `headway` binary, and a tiny blocking HTTP client.
//!
//! Everything here is synchronous from the test's point of view (plain `#[test]` fns); servers
//! run their own tokio runtime on background threads. Every server binds a real socket and is
//! torn down on `Drop`. Readiness is always polled against a deadline, never slept for.
//!
//! Each test binary uses only part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod admin;
pub mod backend;
pub mod conf;
pub mod curl;
pub mod dns;
pub mod envoy;
pub mod gateway;
pub mod http;
pub mod jwt;
pub mod nginx;
pub mod node;
pub mod pki;

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Returns a TCP port that is free right now on every local address (it is found by binding
/// `0.0.0.0:0`, which conflicts with any bind on any address, then releasing it).
///
/// RACE: the port is released before the caller binds it, so until then another process (another
/// test binary running in parallel, or any outgoing connection given it as its source port) may
/// take it. Within this process no port is handed out twice, so tests running on parallel threads
/// do not collide with each other. Bind soon after asking; the convenience is worth the small
/// risk: a port known before any server starts (backends on 127.0.0.11/.12/.13 sharing one port
/// like the pods of a headless service, or a gateway listener written into its conf).
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..1000 {
        let listener = TcpListener::bind(("0.0.0.0", 0))
            .unwrap_or_else(|e| panic!("free_port: cannot bind an ephemeral port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("free_port: local_addr: {e}"))
            .port();
        if lock(handed_out).insert(port) {
            return port;
        }
    }
    panic!("free_port: no fresh ephemeral port after 1000 tries");
}

/// The pods of a headless service: backends on `ips` sharing one free port, each named
/// `service` (it answers with that name), and a DNS server answering `<service>.test` with `ips`.
/// Returns the DNS server, the backends (in the order of `ips`) and their port.
pub fn pods<S: AsRef<str>>(
    service: &str,
    ips: &[S],
) -> (dns::DnsServer, Vec<backend::Backend>, u16) {
    let ips: Vec<&str> = ips.iter().map(AsRef::as_ref).collect();
    let dns = dns::DnsServer::start();
    let port = free_port();
    let pods = pods_at(service, &ips, port);
    dns.set_a(&format!("{service}.test"), &ips);
    (dns, pods, port)
}

/// [`pods`] for a test that answers DNS itself (several services on one DNS server, records
/// that list only some pods): backends on `ips`, all on `port`, each named `service`.
pub fn pods_at<S: AsRef<str>>(service: &str, ips: &[S], port: u16) -> Vec<backend::Backend> {
    ips.iter()
        .map(|ip| backend::Backend::start(ip.as_ref(), port, service))
        .collect()
}

/// Runs `headway <args>` to completion: (exit code, stdout, stderr). See [`gateway::run_headway`].
pub fn run_headway(args: &[&str]) -> (i32, String, String) {
    gateway::run_headway(args)
}

/// Polls `condition` every 20 ms until it returns true or `timeout` has passed.
/// Returns whether the condition became true (it is checked one last time at the deadline).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

thread_local! {
    static PANIC_MESSAGE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Keeps each test thread's panic message (where and what) besides printing it as usual, so
/// that a server's dump on drop can end with it: CI shows the tail of a failed test's output,
/// and a long dump would otherwise push the reason out of it.
pub(crate) fn remember_panic_messages() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(not a string)".to_string());
            let at = info
                .location()
                .map_or(String::new(), |l| format!("{}:{}: ", l.file(), l.line()));
            PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{at}{what}")));
            previous(info);
        }));
    });
}

/// This thread's last panic message, if [`remember_panic_messages`] was called before it.
pub(crate) fn panic_message() -> Option<String> {
    PANIC_MESSAGE.with(|m| m.borrow().clone())
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not cascade into the
/// servers' threads (or into `Drop`).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A multi-threaded tokio runtime for one server "generation". Shutting it down drops every task
/// it runs, which closes every socket they own: that is how `stop()`/`kill()` make a server
/// really gone.
pub(crate) fn new_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("harness-{name}"))
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime for {name}: {e}"))
}

/// Shuts a server runtime down and waits until its tasks (and so their sockets) are dropped.
/// Inside an async context a blocking shutdown would panic, so fall back to a background one.
pub(crate) fn shutdown_runtime(runtime: tokio::runtime::Runtime) {
    if tokio::runtime::Handle::try_current().is_ok() {
        runtime.shutdown_background();
    } else {
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// Re-indents a YAML fragment: strips its common leading indentation, then prefixes every
/// non-empty line with `indent` spaces. Lets tests write fragments flush-left (or indented any way).
pub(crate) fn indent_yaml(fragment: &str, indent: usize) -> String {
    let common = fragment
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for line in fragment.lines() {
        if line.trim().is_empty() {
            continue;
        }
        out.push_str(&pad);
        out.push_str(&line[common..]);
        out.push('\n');
    }
    out
}

/// Where [`skip`] records skips: scripts/test.sh sets it, then counts and lists them.
pub const SKIP_DIR_ENV: &str = "HEADWAY_SKIP_DIR";

/// Marks the calling test as skipped for `reason`; the caller returns right after. libtest
/// would count it as passed, and capture anything it prints: so this writes a banner straight
/// to stderr, and, when `HEADWAY_SKIP_DIR` is set (scripts/test.sh sets it), a file there
/// (`<binary>\t<test>\t<reason>`) from which the summary counts and lists the test as skipped.
///
/// The test is named after its thread, as libtest names it; `test` is the name when the
/// thread has none.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let name = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or(test)
        .to_owned();
    // `target/debug/deps/compose-0123abcd` → `compose`, as scripts/test.sh names it from cargo's
    // `Running tests/compose.rs (target/debug/deps/compose-0123abcd)`.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.file_stem()?.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((binary, hash)) if hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                binary.to_owned()
            }
            _ => stem,
        })
        .unwrap_or_else(|| "tests".to_owned());
    let reason = reason.replace(['\t', '\n', '\r'], " ");
    let _ = writeln!(
        std::io::stderr(),
        "\n************************************************************\n\
         SKIPPED {binary}::{name}: {reason}\n\
         ************************************************************"
    );
    let Some(dir) = std::env::var_os(SKIP_DIR_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let file: String = format!("{binary}::{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(file), format!("{binary}\t{name}\t{reason}\n")))
        .unwrap_or_else(|e| panic!("cannot record the skip in {}: {e}", dir.display()));
}
