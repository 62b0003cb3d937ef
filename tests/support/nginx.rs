//! Debian's nginx as a pod: one `nginx` (a master and one worker) per ip:port, everything it
//! writes in its own temp dir, stopped the ways a kubelet and a kernel stop pods.
//!
//! Conf (`<dir>/nginx.conf`, started as `nginx -p <dir> -c <dir>/nginx.conf -e <dir>/error.log`):
//! `daemon off; master_process on; worker_processes 1;`, pid, temp paths, error and access logs in
//! `<dir>`; every path answers `200 "pod <ip>\n"`, `/healthz` answers `200 "ok\n"`; stock
//! keep-alive (`keepalive_timeout 75s`, `keepalive_requests 1000`). The access log has one line
//! per request: `<method> <uri> <status> <request_length> <connection> <connection_requests>`,
//! so a test can assert what the pod really received.
//!
//! Stopping: [`Nginx::stop_term`] is what a kubelet does first (SIGTERM to the master, which
//! nginx takes as *fast shutdown*: every connection closed at once, idle kept-alive ones
//! included, requests in flight cut); [`Nginx::kill9`] is the OOM killer or the end of the
//! grace period; [`Nginx::hang`] stops the processes (SIGSTOP: the kernel still accepts
//! connections into the listen backlog, nothing answers). Dropping it kills everything.
//!
//! Tests first call [`available`]: where nginx is not installed they are skipped
//! ([`super::skip`]) and return.
//!
//! An HTTPS pod ([`Nginx::start_tls`], [`PodTls`]) listens with `ssl` on the same ip:port, serves
//! the given chain and key, and with `client_ca` demands a client certificate
//! (`ssl_verify_client on`: nginx completes the handshake, then answers 400 without one). Its
//! access log adds `$ssl_protocol $ssl_session_reused` to each line.
//!
//! Files: `/files/<name>` serves `<dir>/files/<name>` as `application/json` (404 when there is
//! none), written and replaced whole by [`Nginx::put_file`] (a rename, as a provider rotating
//! its published keys would), removed by [`Nginx::remove_file`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{http, wait_until};

/// Where Debian installs it.
pub const NGINX_BIN: &str = "/usr/sbin/nginx";
/// How long start-up (until `/healthz` answers) and a stop may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// Whether nginx is installed; if not, marks `test` skipped ([`super::skip`]) so that the
/// caller can return.
pub fn available(test: &str) -> bool {
    if Path::new(NGINX_BIN).is_file() {
        return true;
    }
    super::skip(test, &format!("nginx not installed ({NGINX_BIN} missing)"));
    false
}

/// What an HTTPS pod serves: its certificate chain (leaf first) and key, and the CA of the
/// client certificates it demands (`None`: it asks for none).
#[derive(Debug, Clone)]
pub struct PodTls {
    pub chain: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
    /// `ssl_protocols` (and, for versions OpenSSL 3 refuses by default, `ssl_ciphers` at
    /// security level 0); `None`: `TLSv1.2 TLSv1.3`.
    pub protocols: Option<&'static str>,
}

/// One nginx pod on `ip:port`.
pub struct Nginx {
    addr: SocketAddr,
    tls: bool,
    dir: TempDir,
    /// The master process, while it runs (or is stopped).
    master: Option<Child>,
    /// Under SIGSTOP.
    hung: bool,
}

impl Nginx {
    /// Writes the conf and starts nginx; returns once `GET /healthz` answers 200. Panics (with
    /// nginx's error log) if it does not within 10 s.
    pub fn start(ip: &str, port: u16) -> Nginx {
        Nginx::start_with(ip, port, None)
    }

    /// An HTTPS pod: as [`Nginx::start`], serving `tls`; ready once `/healthz` answers over
    /// TLS (any status: a pod that demands a client certificate answers 400 to the check).
    pub fn start_tls(ip: &str, port: u16, tls: PodTls) -> Nginx {
        Nginx::start_with(ip, port, Some(tls))
    }

    fn start_with(ip: &str, port: u16, tls: Option<PodTls>) -> Nginx {
        let addr: SocketAddr = format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("Nginx::start({ip}, {port}): bad address: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("headway-nginx-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        // Workers run as `nobody` when the master is root: let them reach their temp paths.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap_or_else(|e| panic!("cannot create {files:?}: {e}"));
        let _ = std::fs::set_permissions(&files, std::fs::Permissions::from_mode(0o755));
        let conf = conf(dir.path(), addr, tls.as_ref());
        std::fs::write(dir.path().join("nginx.conf"), conf)
            .unwrap_or_else(|e| panic!("cannot write nginx.conf: {e}"));
        let mut nginx = Nginx {
            addr,
            tls: tls.is_some(),
            dir,
            master: None,
            hung: false,
        };
        nginx.spawn();
        nginx
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The body it answers every path but `/healthz` with.
    pub fn body(&self) -> String {
        format!("pod {}\n", self.addr.ip())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Serves `bytes` at `/files/<name>` from now on, replacing what was there at once (written
    /// beside it, then renamed over it).
    pub fn put_file(&self, name: &str, bytes: &[u8]) {
        let files = self.dir.path().join("files");
        let staged = files.join(format!(".{name}.new"));
        std::fs::write(&staged, bytes).unwrap_or_else(|e| panic!("cannot write {staged:?}: {e}"));
        std::fs::rename(&staged, files.join(name))
            .unwrap_or_else(|e| panic!("cannot rename {staged:?}: {e}"));
    }

    /// `/files/<name>` answers 404 from now on.
    pub fn remove_file(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.path().join("files").join(name));
    }

    /// The master's pid, while it runs.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().map(Child::id)
    }

    /// The master's children (its worker), found in /proc.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.master_pid().map_or_else(Vec::new, children_of)
    }

    /// Whether the master is running (stopped counts as running).
    pub fn is_running(&mut self) -> bool {
        match &mut self.master {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM to the master: nginx's fast shutdown (every connection closed at once, idle
    /// kept-alive ones included). Returns once the master has exited; panics if it has not
    /// within 10 s.
    pub fn stop_term(&mut self) {
        self.resume();
        let Some(pid) = self.master_pid() else { return };
        signal(pid, libc::SIGTERM);
        self.reap(PATIENCE);
    }

    /// SIGKILL to the master and its worker at once (the master first, so that it cannot fork
    /// a new worker), as the kernel kills a pod's processes. Returns once both are gone.
    pub fn kill9(&mut self) {
        let Some(pid) = self.master_pid() else { return };
        let workers = self.worker_pids();
        signal(pid, libc::SIGKILL);
        for worker in &workers {
            signal(*worker, libc::SIGKILL);
        }
        self.hung = false;
        self.reap(PATIENCE);
        let gone = wait_until(PATIENCE, || workers.iter().all(|w| !alive(*w)));
        if !gone {
            panic!(
                "nginx {}: worker {workers:?} still alive after SIGKILL",
                self.addr
            );
        }
    }

    /// SIGSTOP to the master and its worker: the pod hangs. Connects still succeed (the kernel
    /// queues them in the listen backlog); nothing is read or answered until [`Nginx::resume`].
    pub fn hang(&mut self) {
        let Some(pid) = self.master_pid() else { return };
        signal(pid, libc::SIGSTOP);
        for worker in self.worker_pids() {
            signal(worker, libc::SIGSTOP);
        }
        self.hung = true;
    }

    /// SIGCONT after [`Nginx::hang`].
    pub fn resume(&mut self) {
        if !self.hung {
            return;
        }
        if let Some(pid) = self.master_pid() {
            for worker in self.worker_pids() {
                signal(worker, libc::SIGCONT);
            }
            signal(pid, libc::SIGCONT);
        }
        self.hung = false;
    }

    /// Starts nginx again on the same ip:port with the same conf and logs (after a stop or a
    /// kill; a running one is killed first). Returns once `/healthz` answers 200.
    pub fn restart(&mut self) {
        if self.master.is_some() {
            self.kill9();
        }
        self.spawn();
    }

    /// The access log's lines so far (`<method> <uri> <status> <request_length> <connection>
    /// <connection_requests>`), across restarts.
    pub fn access_log(&self) -> Vec<String> {
        read_lossy(&self.dir.path().join("access.log"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Access-log lines of requests other than `/healthz`.
    pub fn requests(&self) -> Vec<String> {
        self.access_log()
            .into_iter()
            .filter(|line| line.split(' ').nth(1) != Some("/healthz"))
            .collect()
    }

    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.path().join("error.log"))
    }

    fn spawn(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .map_or_else(|_| Stdio::null(), Stdio::from)
        };
        let child = Command::new(NGINX_BIN)
            .arg("-p")
            .arg(path_arg(&dir))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {NGINX_BIN}: {e}"));
        self.master = Some(child);
        self.hung = false;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if !self.is_running() {
                let _ = self.master.take().map(|mut c| c.wait());
                panic!(
                    "nginx on {} exited at start; stderr:\n{}\nerror log:\n{}",
                    self.addr,
                    read_lossy(&dir.join("stderr.log")),
                    self.error_log()
                );
            }
            let healthy = !self.worker_pids().is_empty() && self.answers_health_check();
            if healthy {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nginx on {} not answering /healthz after {PATIENCE:?}; error log:\n{}",
                    self.addr,
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_health_check(&self) -> bool {
        if !self.tls {
            return http::get(self.addr, "/healthz").is_ok_and(|r| r.status == 200);
        }
        let url = format!("https://{}/healthz", self.addr);
        Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            // Any version, so that a pod made to speak only an old one is seen up too.
            .args(["--tlsv1", "--ciphers", "DEFAULT:@SECLEVEL=0"])
            .arg(&url)
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout != b"000")
    }

    /// Waits for the master to exit and reaps it; panics after `timeout` (killing it).
    fn reap(&mut self, timeout: Duration) {
        let Some(mut child) = self.master.take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let workers = children_of(child.id());
                    let _ = child.kill();
                    let _ = child.wait();
                    for worker in workers {
                        signal(worker, libc::SIGKILL);
                    }
                    panic!("nginx on {}: still running after {timeout:?}", self.addr);
                }
            }
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.master.take() else {
            return;
        };
        let workers = children_of(child.id());
        let all = || std::iter::once(child.id()).chain(workers.iter().copied());
        if self.hung {
            for pid in all() {
                signal(pid, libc::SIGCONT);
            }
        }
        for pid in all() {
            signal(pid, libc::SIGKILL);
        }
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- nginx {} error log ----\n{}---- end of nginx error log ----",
                self.addr,
                self.error_log()
            );
        }
    }
}

fn conf(dir: &Path, addr: SocketAddr, tls: Option<&PodTls>) -> String {
    let p = |name: &str| path_arg(&dir.join(name));
    let (listen, log_tls, ssl) = match tls {
        None => (addr.to_string(), "", String::new()),
        Some(tls) => {
            let protocols = match tls.protocols {
                None => "TLSv1.2 TLSv1.3;".to_owned(),
                Some(p) => format!("{p};\n        ssl_ciphers DEFAULT:@SECLEVEL=0;"),
            };
            let mut ssl = format!(
                "ssl_protocols {protocols}\n        ssl_certificate {};\n        ssl_certificate_key {};\n",
                path_arg(&tls.chain),
                path_arg(&tls.key)
            );
            if let Some(ca) = &tls.client_ca {
                ssl.push_str(&format!(
                    "        ssl_verify_client on;\n        ssl_verify_depth 3;\n        ssl_client_certificate {};\n",
                    path_arg(ca)
                ));
            }
            (
                format!("{addr} ssl"),
                " $ssl_protocol $ssl_session_reused",
                ssl,
            )
        }
    };
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
pid {pid};
error_log {error_log} info;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {client_body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    default_type text/plain;
    log_format pod '$request_method $request_uri $status $request_length $connection $connection_requests{log_tls}';
    access_log {access_log} pod;
    server {{
        listen {listen};
        {ssl}
        location = /healthz {{
            return 200 "ok\n";
        }}
        location /files/ {{
            alias {files};
            default_type application/json;
        }}
        location / {{
            return 200 "pod {ip}\n";
        }}
    }}
}}
"#,
        pid = p("nginx.pid"),
        error_log = p("error.log"),
        client_body = p("client_body_temp"),
        proxy = p("proxy_temp"),
        fastcgi = p("fastcgi_temp"),
        uwsgi = p("uwsgi_temp"),
        scgi = p("scgi_temp"),
        access_log = p("access.log"),
        files = p("files"),
        ip = addr.ip(),
    )
}

fn path_arg(path: &Path) -> String {
    let mut text = path.to_string_lossy().into_owned();
    if path.is_dir() && !text.ends_with('/') {
        text.push('/');
    }
    text
}

/// Sends `sig` to `pid`, ignoring a process already gone.
pub(crate) fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_comm = stat.rsplit_once(')')?.1.trim_start().to_string();
            after_comm.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Pids whose parent is `parent`, from /proc/*/stat.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
                    let state = fields.next()?;
                    let ppid: u32 = fields.next()?.parse().ok()?;
                    Some(ppid == parent && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
