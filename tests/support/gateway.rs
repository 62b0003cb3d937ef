//! Runs the real `headway` binary on a generated conf file in a temp dir, waits for its admin
//! `/ready`, and kills it on drop (printing its stderr if the test is failing).

use std::fmt::Display;
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::conf::{yaml_items, Cluster, Route};
use super::{free_port, http, indent_yaml, wait_until};

/// Path of the binary under test (built by cargo for integration tests of this package).
pub const HEADWAY_BIN: &str = env!("CARGO_BIN_EXE_headway");
/// How long `start()` waits for `GET /ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `start_expect_exit()` and `run_headway()` wait for the process to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `headway <args>` to completion (e.g. `-t -c conf`), returning (exit code, stdout,
/// stderr). The exit code of a process killed by a signal is 128 + the signal number.
/// Panics if it has not exited within 20 s.
pub fn run_headway(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(HEADWAY_BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {HEADWAY_BIN}: {e}"));
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_exit(&mut child, EXIT_TIMEOUT);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = stderr.join().unwrap_or_default();
        panic!("headway {args:?} did not exit within {EXIT_TIMEOUT:?}; stderr:\n{stderr}");
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (exit_code(status), stdout, stderr)
}

/// Builds a conf file around the caller's routes and clusters.
///
/// Generated file (pingora keys fixed for fast tests; `<tmp>` is the gateway's temp dir):
/// ```yaml
/// version: 1
/// threads: 2
/// pid_file: <tmp>/headway.pid
/// upgrade_sock: <tmp>/upgrade.sock
/// grace_period_seconds: 0
/// graceful_shutdown_timeout_seconds: 1
/// gateway:
///   listen: ["127.0.0.1:<free port>"]        # .listen(..) and .listen_tls(..), repeatable
///   admin: { listen: "127.0.0.1:<free port>" } # .admin(..)
///   resolver: { nameservers: ["127.0.0.1:PORT"] } # .nameserver(..) or .resolver_yaml(..); else absent
///   routes:                                   # .routes_yaml(..), then each .route(..); else absent
///     ...
///   clusters:                                 # .clusters_yaml(..), then each .cluster(..); else absent
///     ...
///   ...                                       # .gateway_yaml(..): any other keys, raw
/// ```
/// Fragments are written flush-left (or indented any way: their common indentation is
/// stripped) and re-indented to fit, e.g. `.routes_yaml("- { prefix: /a, cluster: a }")`.
#[derive(Default)]
pub struct GatewayBuilder {
    /// The `listen:` entries, as YAML flow scalars or mappings.
    listen: Vec<String>,
    admin: Option<String>,
    resolver: Option<String>,
    routes: Option<String>,
    clusters: Option<String>,
    typed_routes: Vec<Route>,
    typed_clusters: Vec<Cluster>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    server: Vec<(String, String)>,
    program: Option<PathBuf>,
}

impl GatewayBuilder {
    /// Runs `program` (a gateway built on headway as a library) instead of `headway`.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Adds a public listener (the first one is what `url()` uses). Default: one on
    /// 127.0.0.1 with a free port.
    pub fn listen(mut self, addr: impl Display) -> Self {
        self.listen.push(quote(&addr.to_string()));
        self
    }

    /// Adds a TLS listener: `{ address: <addr>, tls: { cert: <cert>, key: <key> } }` (PEM
    /// files). `url()` is the first listener's: add a plain one first to use it.
    pub fn listen_tls(mut self, addr: impl Display, cert: &Path, key: &Path) -> Self {
        self.listen.push(format!(
            "{{ address: {}, tls: {{ cert: {}, key: {} }} }}",
            quote(&addr.to_string()),
            quote(&cert.display().to_string()),
            quote(&key.display().to_string())
        ));
        self
    }

    /// Adds a TLS listener with the body of its `tls:` mapping raw, e.g. `"certificates: [..],
    /// client_auth: { ca: .. }"`.
    pub fn listen_tls_yaml(mut self, addr: impl Display, tls: &str) -> Self {
        self.listen.push(format!(
            "{{ address: {}, tls: {{ {tls} }} }}",
            quote(&addr.to_string())
        ));
        self
    }

    /// The admin listener. Default: 127.0.0.1 with a free port.
    pub fn admin(mut self, addr: impl Display) -> Self {
        self.admin = Some(addr.to_string());
        self
    }

    /// `resolver: { nameservers: ["<addr>"] }`.
    pub fn nameserver(mut self, addr: SocketAddr) -> Self {
        self.resolver = Some(format!("nameservers: [{}]", quote(&addr.to_string())));
        self
    }

    /// The body of the `resolver:` mapping, raw (e.g. `"nameservers: [..]\ntimeout: 1s"`).
    pub fn resolver_yaml(mut self, yaml: &str) -> Self {
        self.resolver = Some(yaml.to_string());
        self
    }

    /// The items of the `routes:` list, raw (e.g. `"- { prefix: /a, cluster: a }"`).
    pub fn routes_yaml(mut self, yaml: &str) -> Self {
        self.routes = Some(yaml.to_string());
        self
    }

    /// The items of the `clusters:` list, raw (e.g. `"- name: a\n  address: a.test\n  port: 80"`).
    pub fn clusters_yaml(mut self, yaml: &str) -> Self {
        self.clusters = Some(yaml.to_string());
        self
    }

    /// A `routes:` entry, typed (see [`super::conf`]); after those of `.routes_yaml(..)`.
    pub fn route(mut self, route: Route) -> Self {
        self.typed_routes.push(route);
        self
    }

    /// [`GatewayBuilder::route`] for each of `routes`, in order.
    pub fn routes(mut self, routes: impl IntoIterator<Item = Route>) -> Self {
        self.typed_routes.extend(routes);
        self
    }

    /// A `clusters:` entry, typed (see [`super::conf`]); after those of `.clusters_yaml(..)`.
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.typed_clusters.push(cluster);
        self
    }

    /// More keys under `gateway:`, raw (appended last).
    pub fn gateway_yaml(mut self, yaml: &str) -> Self {
        self.extra.push(yaml.to_string());
        self
    }

    /// A top-level (pingora) key, replacing the harness default for it if it has one
    /// (`grace_period_seconds: 0`, `graceful_shutdown_timeout_seconds: 1`, …).
    pub fn server_key(mut self, key: &str, value: &str) -> Self {
        self.server.push((key.to_string(), value.to_string()));
        self
    }

    /// An environment variable for the process (`RUST_LOG=info` unless set here).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The `gateway:` section this builder produces (not indented), defaults filled in.
    pub fn gateway_section(&mut self) -> String {
        if self.listen.is_empty() {
            self.listen
                .push(quote(&format!("127.0.0.1:{}", free_port())));
        }
        let admin = self
            .admin
            .get_or_insert_with(|| format!("127.0.0.1:{}", free_port()));
        let mut section = format!(
            "listen: [{}]\nadmin: {{ listen: {} }}\n",
            self.listen.join(", "),
            quote(admin)
        );
        let mut block = |key: &str, body: &Option<String>| {
            if let Some(body) = body {
                section.push_str(&format!("{key}:\n{}", indent_yaml(body, 2)));
            }
        };
        block("resolver", &self.resolver);
        block("routes", &list(&self.routes, &self.typed_routes));
        block("clusters", &list(&self.clusters, &self.typed_clusters));
        for extra in &self.extra {
            section.push_str(&indent_yaml(extra, 0));
        }
        section
    }

    /// Starts headway and waits for `GET /ready` to answer 200 (see [`Gateway::start`]).
    pub fn start(mut self) -> Gateway {
        let section = self.gateway_section();
        let mut gateway =
            Gateway::spawn(&section, &self.env, &self.server, self.program.as_deref());
        gateway.wait_ready(READY_TIMEOUT);
        gateway
    }

    /// Spawns headway without waiting for `/ready` (for tests of start-up itself).
    pub fn spawn(mut self) -> Gateway {
        let section = self.gateway_section();
        Gateway::spawn(&section, &self.env, &self.server, self.program.as_deref())
    }

    /// For confs that must be rejected: runs headway on it and waits for it to exit.
    /// Returns (exit code, stderr). Panics if it is still running after 20 s.
    pub fn start_expect_exit(mut self) -> (i32, String) {
        let section = self.gateway_section();
        let mut gateway =
            Gateway::spawn(&section, &self.env, &self.server, self.program.as_deref());
        let Some(status) = gateway.wait_exit(EXIT_TIMEOUT) else {
            panic!(
                "headway was expected to exit but still runs after {EXIT_TIMEOUT:?}; conf:\n{}\nstderr:\n{}",
                gateway.conf(),
                gateway.stderr_log()
            );
        };
        (status, gateway.stderr_log())
    }
}

/// A running `headway -c <conf>` process. Dropping it kills it (SIGKILL) and reaps it; if the
/// test is panicking, its conf and stderr are printed first.
pub struct Gateway {
    child: Child,
    exit: Option<ExitStatus>,
    /// Shared with successors started by [`Gateway::spawn_successor`].
    dir: Arc<TempDir>,
    conf_path: PathBuf,
    /// "" for the first process, "-<generation>" for successors: names its log files.
    log_suffix: String,
    env: Vec<(String, String)>,
    listen: SocketAddr,
    admin: SocketAddr,
    /// The binary: `headway`, or a program built on it.
    program: PathBuf,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// Starts headway with `gateway_section` (flush-left YAML that must contain `listen: [..]`
    /// and `admin: { listen: .. }`) under `gateway:`, then polls `GET http://<admin>/ready` until
    /// it answers 200. Panics, with headway's stderr, if that takes more than 20 s or headway exits.
    pub fn start(gateway_section: &str) -> Gateway {
        Gateway::start_with_env(gateway_section, &[])
    }

    fn start_with_env(gateway_section: &str, env: &[(String, String)]) -> Gateway {
        let mut gateway = Gateway::spawn(gateway_section, env, &[], None);
        gateway.wait_ready(READY_TIMEOUT);
        gateway
    }

    /// Writes the conf and spawns headway, without waiting for anything.
    fn spawn(
        gateway_section: &str,
        env: &[(String, String)],
        server: &[(String, String)],
        program: Option<&Path>,
    ) -> Gateway {
        super::remember_panic_messages();
        let (listen, admin) = listen_and_admin(gateway_section);
        let dir = tempfile::Builder::new()
            .prefix("headway-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let mut top: Vec<(String, String)> = vec![
            ("version".into(), "1".into()),
            ("threads".into(), "2".into()),
            ("pid_file".into(), quote(&path("headway.pid"))),
            ("upgrade_sock".into(), quote(&path("upgrade.sock"))),
            ("grace_period_seconds".into(), "0".into()),
            ("graceful_shutdown_timeout_seconds".into(), "1".into()),
        ];
        for (key, value) in server {
            match top.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value.clone(),
                None => top.push((key.clone(), value.clone())),
            }
        }
        let mut conf: String = top.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        conf.push_str(&format!("gateway:\n{}", indent_yaml(gateway_section, 2)));
        let conf_path = dir.path().join("headway.yaml");
        std::fs::write(&conf_path, &conf)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        let dir = Arc::new(dir);
        let program = program.map_or_else(|| PathBuf::from(HEADWAY_BIN), Path::to_path_buf);
        let child = spawn_headway(&program, &dir, &conf_path, &[], env, "");
        Gateway {
            child,
            exit: None,
            dir,
            conf_path,
            log_suffix: String::new(),
            env: env.to_vec(),
            listen,
            admin,
            program,
        }
    }

    /// Starts the next generation for a graceful upgrade: `headway -u -c <conf>` in the same
    /// temp dir (so the same upgrade socket), logging to `stderr-<generation>.log`. It waits for
    /// this process's listeners, which it gets when this process receives SIGQUIT. `conf`
    /// replaces the conf file's content first when given (a reload).
    pub fn spawn_successor(&self, generation: u32, conf: Option<&str>) -> Gateway {
        let conf_path = self.dir.path().join(format!("headway-{generation}.yaml"));
        let content = conf.map_or_else(|| self.conf(), str::to_owned);
        std::fs::write(&conf_path, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        let suffix = format!("-{generation}");
        let child = spawn_headway(
            &self.program,
            &self.dir,
            &conf_path,
            &["-u"],
            &self.env,
            &suffix,
        );
        Gateway {
            child,
            exit: None,
            dir: self.dir.clone(),
            conf_path,
            log_suffix: suffix,
            env: self.env.clone(),
            listen: self.listen,
            admin: self.admin,
            program: self.program.clone(),
        }
    }

    /// Polls `GET /ready` on the admin listener until 200. Panics (with stderr) on timeout or if
    /// the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(code) = self.exit_code() {
                panic!(
                    "headway exited with code {code} before being ready; conf:\n{}\nstderr:\n{}",
                    self.conf(),
                    self.stderr_log()
                );
            }
            match http::get(self.admin, "/ready") {
                Ok(response) if response.status == 200 => return,
                Ok(response) => {
                    last = format!("status {} body {:?}", response.status, response.body)
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                panic!(
                    "headway not ready after {timeout:?} (last /ready: {last}); conf:\n{}\nstderr:\n{}",
                    self.conf(),
                    self.stderr_log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `http://<listen>/<path>` (path should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// `http://<admin>/<path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The first public listener (0.0.0.0 / :: mapped to loopback, so it can be connected to).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The admin listener (0.0.0.0 / :: mapped to loopback).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// The conf file's text.
    pub fn conf(&self) -> String {
        std::fs::read_to_string(&self.conf_path).unwrap_or_default()
    }

    /// No panic, ever: tokio contains one in a request task, but that client lost its answer.
    /// Fails with the first one's lines when the log shows any so far (checked again when the
    /// gateway is dropped).
    pub fn assert_no_panic(&self) {
        let log = self.stderr_log();
        if let Some(at) = log.find("panicked") {
            let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
            let excerpt: String = log[from..].lines().take(6).collect::<Vec<_>>().join("\n");
            panic!(
                "headway panicked ({} in its log); first one:\n{excerpt}",
                log.matches("panicked").count()
            );
        }
    }

    /// The value of the series `name{labels}` (written as `/metrics` writes it, labels sorted)
    /// in `/metrics`, 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = super::http::get(self.admin_addr(), "/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
            .body;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Rewrites the conf file with its `gateway:` section replaced by `section` (the same
    /// listeners and admin address), for a reload to read.
    pub fn rewrite(&self, section: GatewayBuilder) {
        self.rewrite_with(section, |s| s.to_owned());
    }

    /// [`Gateway::rewrite`], the section's YAML passed through `edit` first.
    pub fn rewrite_with(&self, section: GatewayBuilder, edit: impl Fn(&str) -> String) {
        let conf = self.conf();
        let top = &conf[..conf.find("gateway:").unwrap_or(conf.len())];
        let section = edit(
            &section
                .listen(self.listen_addr())
                .admin(self.admin_addr())
                .gateway_section(),
        );
        let text = format!("{top}gateway:\n{}", super::indent_yaml(&section, 2));
        std::fs::write(&self.conf_path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.conf_path.display()));
    }

    /// The temp dir holding the conf, logs, pid file and upgrade socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything headway wrote to stderr so far (its log).
    pub fn stderr_log(&self) -> String {
        read_lossy(
            &self
                .dir
                .path()
                .join(format!("stderr{}.log", self.log_suffix)),
        )
    }

    pub fn stdout_log(&self) -> String {
        read_lossy(
            &self
                .dir
                .path()
                .join(format!("stdout{}.log", self.log_suffix)),
        )
    }

    /// Waits until `needle` appears in the stderr log; returns whether it did within `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr_log().contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.exit_code().is_none()
    }

    /// Sends a signal by name (`"TERM"`, `"QUIT"`, `"HUP"`, …) with `kill -s`.
    pub fn signal(&mut self, name: &str) {
        if self.exit_code().is_some() {
            return;
        }
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -s {name}: {e}"));
        if !status.success() && self.exit_code().is_none() {
            panic!("kill -s {name} {} failed: {status}", self.child.id());
        }
    }

    /// Waits for the process to exit; its exit code (128 + signal if killed by one), or `None`
    /// if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        if self.exit.is_none() {
            self.exit = wait_exit(&mut self.child, timeout);
        }
        self.exit.map(exit_code)
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if self.exit_code().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    fn exit_code(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit.map(exit_code)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            // Every test that ran a gateway fails on a panic, whether it asked or not.
            self.assert_no_panic();
            return;
        }
        eprintln!(
            "---- headway conf ({}) ----\n{}\n---- headway stderr ----\n{}\n---- end of headway stderr; the test failed: {} ----",
            self.conf_path.display(),
            self.conf(),
            self.stderr_log(),
            super::panic_message().unwrap_or_else(|| "see above".to_string())
        );
    }
}

/// Spawns `headway <extra> -c <conf>` in `dir` with stdout/stderr to `std{out,err}<suffix>.log`.
fn spawn_headway(
    program: &Path,
    dir: &TempDir,
    conf_path: &Path,
    extra: &[&str],
    env: &[(String, String)],
    suffix: &str,
) -> Child {
    let log = |name: &str| {
        let path = dir.path().join(format!("{name}{suffix}.log"));
        File::create(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
    };
    let mut command = Command::new(program);
    command
        .args(extra)
        .arg("-c")
        .arg(conf_path)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log("stdout"))
        .stderr(log("stderr"));
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", program.display()))
}

/// Polls the child until it exits or `timeout` passes.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(e) => panic!("cannot wait for headway: {e}"),
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// A list's items: the raw ones, then the typed ones; `None` when there are none.
fn list<T: serde::Serialize>(raw: &Option<String>, typed: &[T]) -> Option<String> {
    if raw.is_none() && typed.is_empty() {
        return None;
    }
    let raw = raw
        .as_deref()
        .map_or(String::new(), |raw| indent_yaml(raw, 0));
    Some(raw + &yaml_items(typed))
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Reads `listen[0]` and `admin.listen` out of a gateway section, mapping unspecified addresses
/// (0.0.0.0, ::) to loopback so that tests can connect to them.
fn listen_and_admin(gateway_section: &str) -> (SocketAddr, SocketAddr) {
    let value: serde_yaml::Value = serde_yaml::from_str(gateway_section).unwrap_or_else(|e| {
        panic!("Gateway: the gateway section is not YAML ({e}):\n{gateway_section}")
    });
    let listen = value
        .get("listen")
        .and_then(|listen| listen.get(0))
        .and_then(|first| first.as_str().or_else(|| first.get("address")?.as_str()))
        .unwrap_or_else(|| {
            panic!("Gateway: no `listen: [..]` in the gateway section:\n{gateway_section}")
        });
    let admin = value
        .get("admin")
        .and_then(|admin| admin.get("listen"))
        .and_then(|addr| addr.as_str())
        .unwrap_or_else(|| {
            panic!(
                "Gateway: no `admin: {{ listen: .. }}` in the gateway section:\n{gateway_section}"
            )
        });
    (connectable(listen), connectable(admin))
}

fn connectable(addr: &str) -> SocketAddr {
    let mut addr = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("Gateway: cannot parse listen address {addr:?}"));
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}
