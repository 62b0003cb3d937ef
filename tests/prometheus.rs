//! headway's metrics as a real Prometheus reads them: Debian's `prometheus` scrapes a running
//! gateway (and itself, the control) and its HTTP API returns the request, latency, health, DNS
//! and certificate series with their labels; the alerting rules (monitoring/headway-alerts.yaml)
//! load and evaluate there, and fire for a certificate about to expire; every query of the
//! rules and of the Grafana dashboard (monitoring/headway-dashboard.json) runs on it; `promtool`
//! checks and unit-tests the rules.
//!
//! Needs `prometheus` and `promtool` (Debian's prometheus package, which `scripts/setup.sh`
//! installs) and `openssl`. Where one is missing the test is skipped, unless `CI` is set: then it
//! fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::conf::{Cluster, HealthCheck, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::http::{self, Client};
use support::{free_port, pods_at, skip, wait_until};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program` runs (`program version`, which openssl, prometheus and promtool all
/// answer); when it does not, fails under CI (whose scripts/setup.sh installs it), else marks
/// the test skipped.
fn have(test: &str, program: &str) -> bool {
    let runs = Command::new(program)
        .arg(if program == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("`{program}` is missing, and CI is set: scripts/setup.sh must install it");
        }
        skip(test, &format!("`{program}` is not installed"));
    }
    runs
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("monitoring"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every PromQL expression of the alerting rules, by alert name.
fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("monitoring/headway-alerts.yaml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            exprs.push((
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    exprs
}

/// Every query of the dashboard, by panel title, with Grafana's variables as a query sent
/// from Grafana would have them: every replica, cluster and route, a one-minute rate window.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("monitoring/headway-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("\"$instance\"", "\".*\"")
                .replace("\"$cluster\"", "\".*\"")
                .replace("\"$route\"", "\".*\"");
            exprs.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    exprs
}

/// The headway series an expression names (`_bucket`, `_count`, `_sum` taken off).
fn series_named(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("headway_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

/// The series the operator's guide documents (docs/src/operating.md's table).
fn documented_series() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/src/operating.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `headway_"))
        .filter_map(|l| l.split('`').next())
        .map(|name| format!("headway_{name}"))
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    if !have(
        "promtool_checks_the_rules_and_their_unit_tests_pass",
        "promtool",
    ) {
        return;
    }
    let (ok, out) = promtool(&["check", "rules", "headway-alerts.yaml"]);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS: 12 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "headway-alerts-test.yaml"]);
    assert!(ok, "promtool test rules:\n{out}");

    // Every alert has a unit test that makes it fire.
    let tests =
        std::fs::read_to_string(repo().join("monitoring/headway-alerts-test.yaml")).unwrap();
    for (alert, _) in alert_exprs() {
        let firing = tests
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(&alert) && case.contains("exp_labels"));
        assert!(firing, "no unit test makes {alert} fire");
    }

    // Every series a rule or a panel reads is one headway documents (and so exports).
    let documented = documented_series();
    for (name, expr) in alert_exprs().into_iter().chain(dashboard_exprs()) {
        for series in series_named(&expr) {
            assert!(
                documented.contains(&series),
                "{name} reads {series}, which docs/src/operating.md does not list"
            );
        }
    }
}

/// A Prometheus server on a loopback port, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(headway_admin: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let rules = repo().join("monitoring/headway-alerts.yaml");
        let conf = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  \
               - job_name: headway\n    static_configs: [{{ targets: [\"{headway_admin}\"] }}]\n  \
               - job_name: prometheus\n    static_configs: [{{ targets: [\"{addr}\"] }}]\n",
            rules.display()
        );
        let conf_path = dir.path().join("prometheus.yml");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", conf_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn api(&self, path: &str) -> Option<Value> {
        let response = http::get(self.addr.as_str(), path).ok()?;
        serde_json::from_str(&response.body).ok()
    }

    /// An instant query's result vector (None: the query failed, with Prometheus's error).
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let mut encoded = String::new();
        for b in expr.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let answer = self
            .api(&format!("/api/v1/query?query={encoded}"))
            .ok_or("no answer from Prometheus")?;
        if answer["status"] != "success" {
            return Err(format!("{answer}"));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The value of a query that yields one series.
    fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).ok()?;
        let [one] = result.as_slice() else {
            return None;
        };
        one["value"][1].as_str()?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` valid for `days`, made by openssl; returns the
/// files and its notAfter as Unix seconds (read back by openssl and GNU date: the control for
/// headway's expiry series).
fn certificate(dir: &Path, days: u32) -> (PathBuf, PathBuf, f64) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            &days.to_string(),
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let end = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let end = String::from_utf8_lossy(&end.stdout);
    let date = end.trim().trim_start_matches("notAfter=");
    let seconds = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .unwrap();
    let seconds = String::from_utf8_lossy(&seconds.stdout)
        .trim()
        .parse()
        .unwrap();
    (cert, key, seconds)
}

#[test]
fn a_real_prometheus_scrapes_headway_and_runs_every_rule_and_panel() {
    let test = "a_real_prometheus_scrapes_headway_and_runs_every_rule_and_panel";
    if !have(test, "prometheus") || !have(test, "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Ten days left: HeadwayCertificateExpiresSoon (14 days) fires, ExpiresVerySoon (3) does not.
    let (cert, key, not_after) = certificate(dir.path(), 10);
    let dns = DnsServer::start();
    let port = free_port();
    let _pods = pods_at("service1", &["127.0.31.11", "127.0.31.12"], port);
    dns.set_a("service1.test", &["127.0.31.11", "127.0.31.12"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .listen(format!("127.0.31.1:{}", free_port()))
        .listen_tls(format!("127.0.31.1:{}", free_port()), &cert, &key)
        .route(Route::prefix("/service/1").to("service1"))
        .route(Route::prefix("/other").to("other"))
        .cluster(
            Cluster::new("service1")
                .dns("service1.test", port)
                .refresh("300ms")
                .health_check(HealthCheck::http().interval("200ms")),
        )
        .cluster(
            Cluster::new("other")
                .address("127.0.31.99", port)
                .retries(0),
        )
        .start();
    let mut client = Client::new(gateway.listen_addr());
    for _ in 0..30 {
        assert_eq!(client.get("/service/1/x").unwrap().status, 200);
    }
    for _ in 0..2 {
        assert_eq!(client.get("/nowhere").unwrap().status, 404);
    }
    for _ in 0..3 {
        assert_eq!(client.get("/other").unwrap().status, 503);
    }

    let prometheus = Prometheus::start(&gateway.admin_addr().to_string());
    // The control: Prometheus scrapes itself. Then headway.
    let up = |job: &str| prometheus.value(&format!("up{{job=\"{job}\"}}")) == Some(1.0);
    assert!(
        wait_until(Duration::from_secs(30), || up("prometheus")),
        "Prometheus never scraped itself:\n{}",
        prometheus.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || up("headway")),
        "Prometheus does not scrape headway: {:?}\n{}",
        prometheus.api("/api/v1/targets"),
        prometheus.log()
    );

    // The series, with their labels, as Prometheus stored them.
    let series = |expr: &str| prometheus.value(expr);
    assert!(wait_until(Duration::from_secs(10), || {
        series(
        "headway_requests_total{job=\"headway\",cluster=\"service1\",route=\"/service/1\",code=\"2xx\"}"
    ) == Some(30.0)
    }));
    assert_eq!(
        series("headway_requests_total{cluster=\"none\",route=\"no_route\",code=\"4xx\"}"),
        Some(2.0)
    );
    assert_eq!(
        series("headway_requests_total{cluster=\"other\",route=\"/other\",code=\"5xx\"}"),
        Some(3.0)
    );
    assert_eq!(
        series("headway_request_duration_seconds_count{cluster=\"service1\"}"),
        Some(30.0)
    );
    assert_eq!(
        series("headway_request_duration_seconds_bucket{cluster=\"service1\",le=\"+Inf\"}"),
        Some(30.0)
    );
    assert_eq!(
        series("headway_upstream_response_seconds_count{cluster=\"service1\"}"),
        Some(30.0)
    );
    assert_eq!(
        series("headway_cluster_healthy_backends{cluster=\"service1\"}"),
        Some(2.0)
    );
    assert_eq!(
        series("headway_cluster_backends{cluster=\"service1\"}"),
        Some(2.0)
    );
    let age = series("headway_dns_last_success_age_seconds{cluster=\"service1\"}").unwrap();
    assert!((0.0..5.0).contains(&age), "DNS answer age {age}");
    let expiry = prometheus
        .query("headway_tls_certificate_expiry_timestamp_seconds")
        .unwrap();
    assert_eq!(expiry.len(), 1, "{expiry:?}");
    assert_eq!(expiry[0]["metric"]["subject"], "CN=localhost", "{expiry:?}");
    let seen: f64 = expiry[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(
        seen, not_after,
        "headway's expiry against openssl's notAfter"
    );

    // Every rule and every panel's query runs on this Prometheus; the ones that describe what
    // this gateway has (traffic, health, DNS, certificates) return series.
    assert!(wait_until(Duration::from_secs(10), || prometheus
        .query("rate(headway_requests_total[1m])")
        .is_ok_and(|r| !r.is_empty())));
    for (name, expr) in alert_exprs().into_iter().chain(dashboard_exprs()) {
        let result = prometheus.query(&expr);
        assert!(result.is_ok(), "{name}: `{expr}` fails: {result:?}");
    }
    for (title, expr) in dashboard_exprs() {
        let expect_data = [
            "Requests per second",
            "Healthy backends",
            "Request duration",
            "Age of the last DNS answer",
            "Certificates: days left",
            "Conf served",
        ]
        .iter()
        .any(|t| title.starts_with(t));
        if expect_data {
            let result = prometheus.query(&expr).unwrap();
            assert!(!result.is_empty(), "{title}: `{expr}` returns nothing");
        }
    }

    // The rules loaded and evaluate without error; the certificate alert fires, naming it.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let Some(rules) = prometheus.api("/api/v1/rules") else {
                return false;
            };
            let all: Vec<&Value> = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            all.len() == 12 && all.iter().all(|r| r["health"] == "ok")
        }),
        "rules: {:?}",
        prometheus.api("/api/v1/rules")
    );
    let firing = || {
        prometheus
            .api("/api/v1/alerts")
            .and_then(|a| a["data"]["alerts"].as_array().cloned())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || firing().iter().any(|a| {
            a["labels"]["alertname"] == "HeadwayCertificateExpiresSoon"
                && a["state"] == "firing"
                && a["labels"]["certificate"] == cert.display().to_string()
        })),
        "alerts: {:?}",
        firing()
    );
    let names: BTreeSet<String> = firing()
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !names.contains("HeadwayCertificateExpiresVerySoon") && !names.contains("HeadwayPanics"),
        "{names:?}"
    );
    gateway.assert_no_panic();
}
