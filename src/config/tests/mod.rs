//! The conf loader's tests: a good conf to vary, and helpers that find an error by its path.

mod loading;
mod reporting;
mod routes;
mod values;

use super::*;
use std::path::PathBuf;
use std::time::Duration;

const GOOD: &str = r#"
version: 1
threads: 2
grace_period_seconds: 5
graceful_shutdown_timeout_seconds: 5
gateway:
  listen: ["0.0.0.0:8000"]
  admin: { listen: "127.0.0.1:9901" }
  resolver: { nameservers: ["127.0.0.1:15353"] }
  routes:
    - { prefix: /service/1, cluster: service1 }
    - { prefix: /service/2, cluster: service2 }
  clusters:
    - name: service1
      address: service1.default.svc.cluster.local
      port: 8080
      lb_policy: round_robin
      dns_refresh_rate: 5s
      respect_dns_ttl: false
      dns_lookup_family: v4_only
      connect_timeout: 250ms
      timeout: 15s
      retries: 1
      health_check:
        type: http
        path: /healthz
        interval: 1s
        timeout: 500ms
        healthy_threshold: 1
        unhealthy_threshold: 2
    - name: service2
      address: 10.0.0.7
      port: 80
"#;

fn errors_of(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.errors,
    }
}

/// The good conf with `from` replaced by `to`.
fn good_with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?} not in the good conf");
    GOOD.replacen(from, to, 1)
}

fn assert_error(yaml: &str, path: &str, words: &str) {
    let errors = errors_of(yaml);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(words)),
        "no error `{path}: …{words}…` in {errors:#?}"
    );
}
