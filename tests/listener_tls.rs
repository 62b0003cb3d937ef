//! TLS listeners an operator can run for years, against peers nobody here wrote: certificates
//! made by the `openssl` command line (a root, an intermediate, leaves, a second root, an
//! expired leaf), handshakes by `openssl s_client` and `curl`. Each test checks its certificates
//! with `openssl verify` first (the control): a failure after that is the gateway's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::backend::Backend;
use support::conf::{Cluster, Route};
use support::gateway::Gateway;
use support::pki::{served_serial, Issued, Pki, Usage};
use support::{free_port, http, pki, wait_until};

/// `openssl verify` of `leaf` against `root` (with `chain` as untrusted intermediates).
fn control_verify(root: &Issued, chain: Option<&Issued>, leaf: &Issued) {
    let root = root.cert.display().to_string();
    let leaf = leaf.cert.display().to_string();
    let mut args = vec!["verify", "-CAfile", &root];
    let inter;
    if let Some(chain) = chain {
        inter = chain.cert.display().to_string();
        args.extend(["-untrusted", &inter]);
    }
    args.push(&leaf);
    let out = Command::new("openssl").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "control: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `curl` over TLS to the gateway, resolving `name` to it; (exit code, status, headers+body).
fn curl_tls(addr: SocketAddr, name: &str, path: &str, ca: &Path, extra: &[&str]) -> (i32, String) {
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let url = format!("https://{name}:{}{path}", addr.port());
    let ca = ca.display().to_string();
    let mut args = vec![
        "-sS",
        "-i",
        "--max-time",
        "10",
        "--noproxy",
        "*",
        "--resolve",
        &resolve,
        "--cacert",
        &ca,
    ];
    args.extend(extra);
    args.push(&url);
    let out = Command::new("curl").args(&args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn yaml_path(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// A gateway with a plain listener and a TLS one (`tls`: the body of its `tls:` mapping), in
/// front of one backend on `ip`; the TLS listener's address.
fn gateway_with_tls(ip: &str, tls: &str) -> (Gateway, Backend, SocketAddr) {
    let port = free_port();
    let backend = Backend::start(ip, port, "pod");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gateway = Gateway::builder()
        .listen(format!("127.0.0.1:{}", free_port()))
        .listen_tls_yaml(addr, tls)
        .route(Route::prefix("/").to("pod"))
        .cluster(Cluster::new("pod").address(ip, port))
        .start();
    (gateway, backend, addr)
}

#[test]
fn each_name_gets_its_certificate_and_unknown_names_the_default_or_a_refusal() {
    if !pki::available("listener_tls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::in_dir(dir.path());
    let root = pki.root("root", "headway test root");
    let inter = pki.intermediate("inter", "headway test intermediate", &root);
    let a = pki.leaf("a", "a.test", &["DNS:a.test"], Usage::Server, &inter);
    let b = pki.leaf(
        "b",
        "b wildcard",
        &["DNS:*.b.test", "DNS:b.test"],
        Usage::Server,
        &root,
    );
    control_verify(&root, Some(&inter), &a);
    control_verify(&root, None, &b);
    let a_chain = a.chain_with(&inter, "a-chain.pem");

    let port = free_port();
    let backend = Backend::start("127.0.31.1", port, "pod");
    let (default_port, refusing_port) = (free_port(), free_port());
    let certificates = format!(
        "certificates: [ {{ cert: {}, key: {} }}, {{ cert: {}, key: {} }} ]",
        yaml_path(&a_chain),
        yaml_path(&a.key),
        yaml_path(&b.cert),
        yaml_path(&b.key)
    );
    let gateway = Gateway::builder()
        .listen(format!("127.0.0.1:{}", free_port()))
        .listen_tls_yaml(format!("127.0.0.1:{default_port}"), &certificates)
        .listen_tls_yaml(
            format!("127.0.0.1:{refusing_port}"),
            &format!("{certificates}, unknown_server_name: refuse"),
        )
        .route(Route::prefix("/").to("pod"))
        .cluster(Cluster::new("pod").address("127.0.31.1", port))
        .start();
    let with_default: SocketAddr = format!("127.0.0.1:{default_port}").parse().unwrap();
    let refusing: SocketAddr = format!("127.0.0.1:{refusing_port}").parse().unwrap();

    assert_eq!(
        served_serial(with_default, Some("a.test")),
        Some(a.serial.clone())
    );
    assert_eq!(
        served_serial(with_default, Some("x.b.test")),
        Some(b.serial.clone())
    );
    assert_eq!(
        served_serial(with_default, Some("b.test")),
        Some(b.serial.clone())
    );
    assert_eq!(
        served_serial(with_default, Some("other.test")),
        Some(a.serial.clone())
    );
    assert_eq!(served_serial(with_default, None), Some(a.serial.clone()));
    assert_eq!(
        served_serial(refusing, Some("x.b.test")),
        Some(b.serial.clone())
    );
    assert_eq!(served_serial(refusing, Some("other.test")), None);
    assert_eq!(served_serial(refusing, None), None);
    let refused = format!(
        "headway_tls_handshake_failures_total{{listener=\"{refusing}\",reason=\"unknown_server_name\"}}"
    );
    assert_eq!(gateway.metric(&refused), 2.0);

    // curl verifies the chain (leaf + intermediate) against the root alone, over h2 and 1.1.
    for (name, flag) in [("a.test", "--http2"), ("x.b.test", "--http1.1")] {
        let (code, text) = curl_tls(with_default, name, "/hello", &root.cert, &[flag]);
        assert_eq!(code, 0, "{name}: {text}");
        assert!(text.contains(" 200"), "{name}: {text}");
        assert!(text.contains("x-echo-x-forwarded-proto: https"), "{text}");
    }
    // The expiry of each certificate served, per listener.
    let used_by = format!("used_by=\"listener {with_default}\"");
    let file = format!("certificate=\"{}\"", a_chain.display());
    let text = http::get(gateway.admin_addr(), "/metrics").unwrap().body;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("headway_tls_certificate_expiry_timestamp_seconds{")
                && l.contains(&used_by)
                && l.contains(&file)
        })
        .unwrap_or_else(|| panic!("{text}"));
    let at: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        at > now + 19.0 * 86400.0 && at < now + 21.0 * 86400.0,
        "{line}"
    );
    // /clusters (and the dashboard) list every certificate in use with what an operator
    // checks before it expires.
    let clusters: serde_json::Value =
        serde_json::from_str(&http::get(gateway.admin_addr(), "/clusters").unwrap().body).unwrap();
    let certs = clusters["certificates"].as_array().unwrap();
    assert_eq!(
        certs.len(),
        4,
        "two listeners, two certificates each: {certs:#?}"
    );
    let first = certs
        .iter()
        .find(|c| {
            c["used_by"] == format!("listener {with_default}")
                && c["file"] == a_chain.display().to_string()
        })
        .unwrap_or_else(|| panic!("{certs:#?}"));
    assert_eq!(first["names"], serde_json::json!(["a.test"]));
    assert_eq!(
        first["serial"].as_str().unwrap().to_uppercase(),
        a.serial.trim_start_matches('0')
    );
    assert_eq!(first["days_left"], 19, "{first}");
    assert!(
        first["subject"].as_str().unwrap().contains("CN=a.test"),
        "{first}"
    );
    let page = http::get(gateway.admin_addr(), "/").unwrap().body;
    assert!(
        page.contains("<section id=\"certificates\">") && page.contains("*.b.test b.test"),
        "{page}"
    );
    drop(backend);
    gateway.assert_no_panic();
}

#[test]
fn client_certificates_are_verified_and_reach_the_backend_as_xfcc() {
    if !pki::available("listener_tls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::in_dir(dir.path());
    let root = pki.root("root", "headway test root");
    let other = pki.root("other", "unrelated root");
    let server = pki.leaf("server", "gw.test", &["DNS:gw.test"], Usage::Server, &root);
    let client = pki.leaf(
        "client",
        "web",
        &[
            "URI:spiffe://cluster.local/ns/default/sa/web",
            "DNS:web.default.svc",
        ],
        Usage::Client,
        &root,
    );
    let stranger = pki.leaf(
        "stranger",
        "stranger",
        &["DNS:stranger.test"],
        Usage::Client,
        &other,
    );
    let expired = pki.expired_leaf("expired", "old", &["DNS:old.test"], Usage::Client, &root);
    control_verify(&root, None, &client);
    control_verify(&other, None, &stranger);

    let (gateway, backend, addr) = gateway_with_tls(
        "127.0.31.2",
        &format!(
            "cert: {}, key: {}, client_auth: {{ ca: {}, mode: required }}",
            yaml_path(&server.cert),
            yaml_path(&server.key),
            yaml_path(&root.cert)
        ),
    );
    let cert_args = |who: &Issued| {
        vec![
            "--cert".to_owned(),
            who.cert.display().to_string(),
            "--key".to_owned(),
            who.key.display().to_string(),
        ]
    };
    let with = |who: &Issued, extra: &[&str]| {
        let mut args: Vec<String> = cert_args(who);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_tls(addr, "gw.test", "/who", &root.cert, &args)
    };

    // A client with a certificate of the CA: served, its identity forwarded; its own forged
    // XFCC never reaches the backend.
    let (code, text) = with(
        &client,
        &[
            "-H",
            "x-forwarded-client-cert: Hash=forged;Subject=\"CN=admin\"",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 200"), "{text}");
    let xfcc = text
        .lines()
        .find_map(|l| l.strip_prefix("x-echo-x-forwarded-client-cert: "))
        .unwrap_or_else(|| panic!("no XFCC reached the backend: {text}"))
        .trim()
        .to_owned();
    assert!(
        !xfcc.contains("forged") && !xfcc.contains("admin"),
        "{xfcc}"
    );
    let der = Command::new("openssl")
        .args([
            "x509",
            "-outform",
            "DER",
            "-in",
            &client.cert.display().to_string(),
        ])
        .output()
        .unwrap()
        .stdout;
    let hash = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut hash = hash;
    hash.stdin.take().unwrap().write_all(&der).unwrap();
    let digest = String::from_utf8_lossy(&hash.wait_with_output().unwrap().stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    // The subject as OpenSSL prints it in RFC 2253 form, as Envoy's XFCC has it.
    let subject = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253",
            "-in",
            &client.cert.display().to_string(),
        ])
        .output()
        .unwrap()
        .stdout;
    let subject = String::from_utf8_lossy(&subject)
        .trim()
        .trim_start_matches("subject=")
        .to_owned();
    assert_eq!(subject, "O=headway tests,CN=web");
    assert_eq!(
        xfcc,
        format!("Hash={digest};Subject=\"{subject}\";URI=spiffe://cluster.local/ns/default/sa/web;DNS=web.default.svc")
    );

    // No certificate, a stranger's, an expired one: refused at the handshake, each counted.
    let (code, text) = curl_tls(addr, "gw.test", "/who", &root.cert, &[]);
    assert_ne!(code, 0, "no client certificate was served: {text}");
    let (code, text) = with(&stranger, &[]);
    assert_ne!(code, 0, "a certificate of another CA was served: {text}");
    let (code, text) = with(&expired, &[]);
    assert_ne!(code, 0, "an expired certificate was served: {text}");
    let series = |reason: &str| {
        format!("headway_tls_handshake_failures_total{{listener=\"{addr}\",reason=\"{reason}\"}}")
    };
    assert_eq!(gateway.metric(&series("client_cert_unknown_ca")), 1.0);
    assert_eq!(gateway.metric(&series("client_cert_expired")), 1.0);
    assert_eq!(
        backend.hits(),
        1,
        "only the client with a good certificate reached the pod"
    );
    gateway.assert_no_panic();
}

#[test]
fn a_stalled_handshake_is_closed_at_handshake_timeout() {
    if !pki::available("listener_tls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::in_dir(dir.path());
    let root = pki.root("root", "headway test root");
    let server = pki.leaf("server", "gw.test", &["DNS:gw.test"], Usage::Server, &root);
    let (gateway, _backend, addr) = gateway_with_tls(
        "127.0.31.3",
        &format!(
            "cert: {}, key: {}, handshake_timeout: 1s",
            yaml_path(&server.cert),
            yaml_path(&server.key)
        ),
    );

    // 50 clients send the first byte of a ClientHello and nothing more.
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16]).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    // A client that finishes its handshake meanwhile is served.
    let (code, text) = curl_tls(addr, "gw.test", "/ok", &root.cert, &[]);
    assert_eq!(code, 0, "{text}");
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        // Closed by the gateway: EOF or a reset, within the limit and some slack.
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a stalled handshake got bytes back");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "stalled handshakes held for {took:?}"
    );
    let series =
        format!("headway_tls_handshake_failures_total{{listener=\"{addr}\",reason=\"timeout\"}}");
    assert!(
        wait_until(Duration::from_secs(2), || gateway.metric(&series) == 50.0),
        "{}",
        gateway.metric(&series)
    );
    gateway.assert_no_panic();
}

/// A ClientHello as rustls writes it for `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Sends `bytes` (a pause of `gap` between each of the first `slow` bytes), then reads until
/// the gateway closes; how long that took.
fn send_and_wait_for_close(addr: SocketAddr, bytes: &[u8], slow: usize, gap: Duration) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    for (i, b) in bytes.iter().enumerate() {
        if i < slow {
            std::thread::sleep(gap);
        }
        if s.write_all(std::slice::from_ref(b)).is_err() {
            break; // closed while we were still writing
        }
    }
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    started.elapsed()
}

#[test]
fn hostile_handshakes_are_survived_counted_and_leave_nothing_behind() {
    if !pki::available("listener_tls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::in_dir(dir.path());
    let root = pki.root("root", "headway test root");
    let server = pki.leaf("server", "gw.test", &["DNS:gw.test"], Usage::Server, &root);
    let (mut gateway, _backend, addr) = gateway_with_tls(
        "127.0.31.4",
        &format!(
            "cert: {}, key: {}, handshake_timeout: 2s",
            yaml_path(&server.cert),
            yaml_path(&server.key)
        ),
    );
    let (code, text) = curl_tls(addr, "gw.test", "/before", &root.cert, &[]);
    assert_eq!(code, 0, "{text}");
    let fds_before = open_fds(gateway.pid());

    let hello = client_hello("gw.test");
    // Truncated: the record announces more than comes, then the client hangs up.
    let took = send_and_wait_for_close(addr, &hello[..hello.len() / 2], 0, Duration::ZERO);
    assert!(took < Duration::from_secs(4), "{took:?}");
    // 16 kB in one handshake record, and a record over TLS's 16 kB limit: refused at once.
    for len in [16_384usize, 18_000] {
        let mut big = vec![0x16, 0x03, 0x01];
        big.extend(u16::try_from(len).unwrap().to_be_bytes());
        big.push(0x01);
        big.extend(&u32::try_from(len - 4).unwrap().to_be_bytes()[1..]);
        big.extend((0..len - 4).map(|i| (i % 251) as u8));
        let took = send_and_wait_for_close(addr, &big, 0, Duration::ZERO);
        assert!(took < Duration::from_secs(2), "{len}: held {took:?}");
    }
    // An SNI with characters no DNS name has ("gw.test" → "gw_t!st", same length).
    let at = hello.windows(7).position(|w| w == b"gw.test").unwrap();
    let mut bad_sni = hello.clone();
    bad_sni[at..at + 7].copy_from_slice(b"gw_t!st");
    let took = send_and_wait_for_close(addr, &bad_sni, 0, Duration::ZERO);
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A real ClientHello one byte every 300 ms: closed at handshake_timeout (2 s), counted.
    let took = send_and_wait_for_close(addr, &hello, 30, Duration::from_millis(300));
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "a byte-a-while handshake was held {took:?}"
    );
    let series =
        format!("headway_tls_handshake_failures_total{{listener=\"{addr}\",reason=\"timeout\"}}");
    assert!(wait_until(Duration::from_secs(3), || gateway
        .metric(&series)
        >= 1.0));

    // Still serving; every descriptor of those connections closed once the timers are done.
    let (code, text) = curl_tls(addr, "gw.test", "/after", &root.cert, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(gateway.is_running());
    assert!(
        wait_until(Duration::from_secs(5), || open_fds(gateway.pid())
            <= fds_before + 2),
        "descriptors: {} before, {} after",
        fds_before,
        open_fds(gateway.pid())
    );
    gateway.assert_no_panic();
}
