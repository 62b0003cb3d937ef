//! Certificates renewed in place, the way they are renewed in a cluster: the kubelet swaps a
//! mounted Secret's `..data` symlink (cert-manager renewing), under TLS load from h2load (new
//! connections and kept-alive ones) and from a client of the test's own that opens a new
//! connection per request; a broken renewal is refused and the certificate in use stays; a
//! reload that names other files applies them or, if one is bad, changes nothing. Certificates
//! by the `openssl` command line; served serials read by `openssl s_client`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::conf::{Cluster, Route};
use support::gateway::Gateway;
use support::pki::{served_serial, Issued, Pki, Usage};
use support::{free_port, pki, wait_until};

/// A mounted Secret as the kubelet lays it out: `tls.crt` and `tls.key` are links through
/// `..data`, itself a link to the current version's directory, swapped atomically by a rename.
struct MountedSecret {
    dir: PathBuf,
    version: u32,
}

impl MountedSecret {
    fn new(dir: &Path, first: &Issued) -> MountedSecret {
        std::fs::create_dir_all(dir).unwrap();
        let mut secret = MountedSecret {
            dir: dir.to_path_buf(),
            version: 0,
        };
        secret.swap(first);
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
        secret
    }

    /// The kubelet's update: a new version directory, `..data` renamed onto a link to it, the
    /// old directory removed.
    fn swap(&mut self, to: &Issued) {
        self.version += 1;
        let version = format!("..2026_12_07_{:04}", self.version);
        let new = self.dir.join(&version);
        std::fs::create_dir(&new).unwrap();
        std::fs::copy(&to.cert, new.join("tls.crt")).unwrap();
        std::fs::copy(&to.key, new.join("tls.key")).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        if self.version > 1 {
            let old = self
                .dir
                .join(format!("..2026_12_07_{:04}", self.version - 1));
            std::fs::remove_dir_all(old).unwrap();
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// A client that trusts `root` only.
fn client_config(root: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One request on a new TLS connection (handshake verified against the root): whether it got
/// a 200.
fn one_request_on_a_new_connection(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> bool {
    let name = rustls::pki_types::ServerName::try_from("gw.test").unwrap();
    let Ok(conn) = rustls::ClientConnection::new(config.clone(), name) else {
        return false;
    };
    let Ok(tcp) = TcpStream::connect(addr) else {
        return false;
    };
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = b"GET /renewal HTTP/1.1\r\nhost: gw.test\r\nconnection: close\r\n\r\n";
    if tls.write_all(request).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200")
}

#[test]
fn renewed_certificates_are_served_within_a_second_under_load_and_broken_ones_refused() {
    if !pki::available("listener_tls_renewal") {
        return;
    }
    if Command::new("h2load").arg("--version").output().is_err() {
        support::skip(
            "listener_tls_renewal",
            "h2load not installed (scripts/setup.sh installs nghttp2-client)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::in_dir(&dir.path().join("pki"));
    let root = pki.root("root", "headway test root");
    let issued: Vec<Issued> = (0..=20)
        .map(|i| {
            pki.leaf(
                &format!("gw{i}"),
                "gw.test",
                &["DNS:gw.test"],
                Usage::Server,
                &root,
            )
        })
        .collect();
    let mut secret = MountedSecret::new(&dir.path().join("secret"), &issued[0]);

    let port = free_port();
    let _backend = Backend::start("127.0.32.1", port, "pod");
    let tls_port = free_port();
    let gateway = Gateway::builder()
        .listen(format!("127.0.0.1:{}", free_port()))
        .listen_tls_yaml(
            format!("127.0.0.1:{tls_port}"),
            &format!(
                "cert: \"{}\", key: \"{}\"",
                secret.cert().display(),
                secret.key().display()
            ),
        )
        .route(Route::prefix("/").to("pod"))
        .cluster(Cluster::new("pod").address("127.0.32.1", port))
        .start();
    let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    assert_eq!(
        served_serial(addr, Some("gw.test")),
        Some(issued[0].serial.clone())
    );

    // Load for the whole run: h2load over HTTP/2 and over HTTP/1.1 (4 kept-alive connections
    // each), and a client of the test's own opening a new connection for every request.
    let seconds = 40;
    let url = format!("https://127.0.0.1:{tls_port}/renewal");
    let h2load = |extra: &[&str]| {
        let mut args = vec!["-D", "25", "-c", "4"];
        args.extend(extra);
        args.push(&url);
        Command::new("h2load")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let kept_alive = h2load(&["-m", "2"]);
    // One request at a time on each HTTP/1.1 connection: h2load would pipeline more.
    let http1 = h2load(&["--h1", "-m", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let own_client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let config = client_config(&root.cert);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if one_request_on_a_new_connection(addr, &config) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // 20 swaps, each seen by a connection opened a second later.
    for next in issued.iter().skip(1) {
        secret.swap(next);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            served_serial(addr, Some("gw.test")),
            Some(next.serial.clone()),
            "a new connection 1 s after swap {} still got the old certificate",
            secret.version - 1
        );
    }
    let ok_reloads = format!("headway_tls_reloads_total{{listener=\"{addr}\",result=\"ok\"}}");
    assert_eq!(gateway.metric(&ok_reloads), 20.0);

    // A broken renewal (a key that does not go with the certificate): refused, counted, and the
    // certificate in use stays.
    let last = issued.last().unwrap();
    let broken = Issued {
        cert: issued[3].cert.clone(),
        chain: issued[3].chain.clone(),
        key: issued[4].key.clone(),
        serial: issued[3].serial.clone(),
    };
    secret.swap(&broken);
    let error_reloads =
        format!("headway_tls_reloads_total{{listener=\"{addr}\",result=\"error\"}}");
    assert!(wait_until(Duration::from_secs(3), || gateway
        .metric(&error_reloads)
        == 1.0));
    assert_eq!(
        served_serial(addr, Some("gw.test")),
        Some(last.serial.clone())
    );
    assert!(gateway
        .stderr_log()
        .contains("the key does not go with the certificate"));

    stop.store(true, Ordering::Relaxed);
    own_client.join().unwrap();
    for (what, child) in [("h2", kept_alive), ("http/1.1", http1)] {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("requests:"))
            .unwrap_or_else(|| {
                panic!(
                    "h2load {what}: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        // requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
        let count = |word: &str| -> u64 {
            let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let at = words.iter().position(|w| *w == word).unwrap();
            words[at - 1].parse().unwrap()
        };
        assert!(count("succeeded") > 1000, "h2load {what}: {line}");
        assert_eq!(
            (count("failed"), count("errored")),
            (0, 0),
            "h2load {what}: {text}"
        );
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "{ok} requests on new connections");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests on new connections failed",
        ok + failed
    );
    gateway.assert_no_panic();
}

/// The conf file with `from` replaced by `to`, written for a reload to read.
fn edit_conf(gateway: &Gateway, from: &str, to: &str) {
    let conf = gateway.conf();
    assert!(conf.contains(from), "{conf}");
    std::fs::write(gateway.conf_path(), conf.replace(from, to)).unwrap();
}

#[test]
fn a_reload_applies_new_tls_settings_in_place_or_changes_nothing() {
    if !pki::available("listener_tls_renewal") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::in_dir(dir.path());
    let root = pki.root("root", "headway test root");
    let a = pki.leaf("a", "a.test", &["DNS:a.test"], Usage::Server, &root);
    let b = pki.leaf("b", "b.test", &["DNS:b.test"], Usage::Server, &root);
    let port = free_port();
    let _backend = Backend::start("127.0.32.2", port, "pod");
    let tls_port = free_port();
    let one = format!(
        "cert: \"{}\", key: \"{}\"",
        a.cert.display(),
        a.key.display()
    );
    let mut gateway = Gateway::builder()
        .listen(format!("127.0.0.1:{}", free_port()))
        .listen_tls_yaml(format!("127.0.0.1:{tls_port}"), &one)
        .route(Route::prefix("/").to("pod"))
        .cluster(Cluster::new("pod").address("127.0.32.2", port))
        .start();
    let addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    assert_eq!(served_serial(addr, Some("b.test")), Some(a.serial.clone()));

    // SIGHUP with a second certificate and refusal of unknown names: applied in place.
    let two = format!(
        "certificates: [ {{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}\", key: \"{}\" }} ], unknown_server_name: refuse",
        a.cert.display(),
        a.key.display(),
        b.cert.display(),
        b.key.display()
    );
    edit_conf(&gateway, &one, &two);
    gateway.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(5), || served_serial(
            addr,
            Some("b.test")
        ) == Some(b.serial.clone())),
        "{}",
        gateway.stderr_log()
    );
    assert_eq!(served_serial(addr, Some("a.test")), Some(a.serial.clone()));
    assert_eq!(served_serial(addr, Some("c.test")), None);

    // A reload naming a file that does not exist: refused whole, naming the listener and the
    // file; what runs goes on.
    let missing = dir.path().join("missing.key");
    edit_conf(
        &gateway,
        &b.key.display().to_string(),
        &missing.display().to_string(),
    );
    gateway.signal("HUP");
    let named = format!("gateway.listen[1].tls: cannot read {}", missing.display());
    assert!(
        gateway.wait_for_log(&named, Duration::from_secs(5)),
        "{}",
        gateway.stderr_log()
    );
    assert_eq!(served_serial(addr, Some("b.test")), Some(b.serial.clone()));
    assert_eq!(served_serial(addr, Some("c.test")), None);

    // `-t` names the same file; so does a start with it.
    let (code, _, stderr) =
        support::run_headway(&["-t", "-c", &gateway.conf_path().display().to_string()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&named), "{stderr}");
    gateway.assert_no_panic();
}
