//! Node.js's built-in `http` server as a pod, with Node's defaults — above all
//! `keepAliveTimeout` 5 s: an idle kept-alive connection is closed by Node 5 s after its last
//! response, whoever pools it. A proxy that pools longer meets Node's close as it sends the next
//! request on that connection.
//!
//! The script (builtin modules only, no npm) is written to the pod's temp dir and run as
//! `node pod.js <ip> <port> <name>`. It answers every path `200 "<name> <ip>\n"` (HEAD: no
//! body) with `x-request-count` (requests so far, `/healthz` excluded) and `x-request-body-bytes`;
//! `/healthz` answers `200 "ok\n"`; `/slow?ms=N` waits N ms first. It logs every event to
//! `<dir>/events.log`: `connection <id>`, `request <id> <nth-on-connection> <method> <url>
//! <body-bytes>`, `close <id>`, so a test can tell what Node received and when it closed.
//!
//! Tests first call [`available`]: where `node` is missing they are skipped
//! ([`super::skip`]) and return.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::http;

const SCRIPT: &str = r#"'use strict';
const http = require('http');
const fs = require('fs');
const [ip, port, name, logPath] = process.argv.slice(2);
const log = fs.openSync(logPath, 'a');
const event = (line) => fs.writeSync(log, line + '\n');
let requests = 0;
let connections = 0;
const server = http.createServer((req, res) => {
  const socket = req.socket;
  socket.requests = (socket.requests || 0) + 1;
  let bytes = 0;
  req.on('data', (chunk) => { bytes += chunk.length; });
  req.on('end', () => {
    event(`request ${socket.id} ${socket.requests} ${req.method} ${req.url} ${bytes}`);
    const url = new URL(req.url, 'http://pod');
    if (url.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
      res.end('ok\n');
      return;
    }
    requests += 1;
    const body = `${name} ${ip}\n`;
    const answer = () => {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
        'x-request-count': requests,
        'x-request-body-bytes': bytes,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const ms = Number(url.searchParams.get('ms') || 0);
    if (url.pathname === '/slow' && ms > 0) setTimeout(answer, ms); else answer();
  });
});
server.on('connection', (socket) => {
  connections += 1;
  socket.id = connections;
  event(`connection ${socket.id}`);
  socket.on('close', () => event(`close ${socket.id}`));
});
server.listen(Number(port), ip, () => event(`listening ${ip}:${port} keepAliveTimeout=${server.keepAliveTimeout}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
"#;

/// How long start-up may take (until `/healthz` answers).
const PATIENCE: Duration = Duration::from_secs(10);

/// Whether `node` runs; if not, marks `test` skipped ([`super::skip`]) so that the caller can
/// return.
pub fn available(test: &str) -> bool {
    let runs = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        super::skip(test, "node not installed");
    }
    runs
}

/// One Node `http` server on `ip:port`. Dropping it kills it.
pub struct NodePod {
    addr: SocketAddr,
    name: String,
    dir: TempDir,
    child: Option<Child>,
}

impl NodePod {
    /// Starts the pod; returns once `GET /healthz` answers 200. Panics (with its stderr) if it
    /// does not within 10 s.
    pub fn start(ip: &str, port: u16, name: &str) -> NodePod {
        let addr: SocketAddr = format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("NodePod::start({ip}, {port}): bad address: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("headway-node-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        std::fs::write(dir.path().join("pod.js"), SCRIPT)
            .unwrap_or_else(|e| panic!("cannot write pod.js: {e}"));
        let mut pod = NodePod {
            addr,
            name: name.to_string(),
            dir,
            child: None,
        };
        pod.spawn();
        pod
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The body it answers every path but `/healthz` with.
    pub fn body(&self) -> String {
        format!("{} {}\n", self.name, self.addr.ip())
    }

    /// Measures how long Node keeps an idle kept-alive connection open: one `GET /healthz` on a
    /// fresh connection, then the time until Node closes it (its `keepAliveTimeout`, plus the
    /// 1 s `keepAliveTimeoutBuffer` of recent Node versions). `None` if it is still open after
    /// 15 s.
    pub fn idle_close_after(&self) -> Option<Duration> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr).ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n")
            .ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .ok()?;
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        let answered = Instant::now();
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return Some(answered.elapsed()),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(answered.elapsed())
                }
                Err(_) => return None,
            }
        }
    }

    /// Everything the script logged so far (see the module documentation).
    pub fn events(&self) -> Vec<String> {
        read_lossy(&self.dir.path().join("events.log"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `request …` events of requests other than `/healthz`.
    pub fn requests(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|line| line.starts_with("request ") && !line.contains(" /healthz "))
            .collect()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr.log"))
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let stderr = std::fs::File::create(dir.join("stderr.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from);
        let child = Command::new("node")
            .arg(dir.join("pod.js"))
            .arg(self.addr.ip().to_string())
            .arg(self.addr.port().to_string())
            .arg(&self.name)
            .arg(dir.join("events.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn node: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "node pod on {} exited at start ({status}); stderr:\n{}",
                        self.addr,
                        self.stderr()
                    );
                }
            }
            if http::get(self.addr, "/healthz").is_ok_and(|r| r.status == 200) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "node pod on {} not answering /healthz after {PATIENCE:?}; stderr:\n{}",
                    self.addr,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodePod {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- node pod {} events ----\n{}\n---- stderr ----\n{}---- end of node pod ----",
                self.addr,
                self.events().join("\n"),
                self.stderr()
            );
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
