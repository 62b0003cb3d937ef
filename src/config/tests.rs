use super::*;

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

#[test]
fn the_architecture_example_loads_with_every_value() {
    let config = Config::from_yaml(GOOD).unwrap();
    assert_eq!(config.server.threads, 2);
    assert_eq!(config.server.grace_period_seconds, Some(5));
    let g = &config.gateway;
    assert_eq!(
        g.listen,
        vec![Listener {
            addr: "0.0.0.0:8000".parse().unwrap(),
            tls: None
        }]
    );
    assert_eq!(g.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(
        g.resolver.nameservers,
        vec!["127.0.0.1:15353".parse().unwrap()]
    );
    assert!(matches!(&g.routes[1].matcher, PathMatch::Prefix(p) if p == "/service/2"));
    assert_eq!(g.routes[1].cluster(), Some("service2"));
    let c = &g.clusters[0];
    assert_eq!(
        c.address,
        Address::Name("service1.default.svc.cluster.local".into())
    );
    assert_eq!(c.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.dns.lookup_family, LookupFamily::V4Only);
    let hc = c.health_check.as_ref().unwrap();
    assert_eq!(
        hc.kind,
        HealthCheckKind::Http {
            path: "/healthz".into(),
            host: None
        }
    );
    assert_eq!(hc.timeout, Duration::from_millis(500));
    assert_eq!(
        g.clusters[1].address,
        Address::Ip("10.0.0.7".parse().unwrap())
    );
}

#[test]
fn defaults_fill_what_the_conf_leaves_out() {
    let config = Config::from_yaml(
        "gateway:\n  clusters:\n    - { name: a, address: a.local, port: 80, health_check: { type: tcp } }\n",
    )
    .unwrap();
    let g = &config.gateway;
    assert_eq!(g.listen[0].addr, defaults::LISTEN.parse().unwrap());
    assert!(
        !g.h2c,
        "h2c is opt-in: with it, requests under 24 bytes are never answered"
    );
    assert_eq!(g.admin.listen, defaults::ADMIN_LISTEN.parse().unwrap());
    assert_eq!(g.resolver.resolv_conf, PathBuf::from(defaults::RESOLV_CONF));
    assert_eq!(
        config.server.grace_period_seconds,
        Some(defaults::GRACE_PERIOD_SECONDS)
    );
    assert_eq!(config.server.pid_file, defaults::PID_FILE);
    assert!(
        !config.server.work_stealing,
        "each worker keeps its connections"
    );
    let c = &g.clusters[0];
    assert_eq!(c.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(c.dns.refresh_rate, defaults::DNS_REFRESH_RATE);
    assert_eq!(c.timeout, defaults::TIMEOUT);
    assert_eq!(c.idle_timeout, defaults::UPSTREAM_IDLE_TIMEOUT);
    assert!(
        c.idle_timeout < Duration::from_secs(5),
        "pooled connections close before Node's 5 s keep-alive timeout closes them"
    );
    assert_eq!(c.tunnel_timeout, defaults::TUNNEL_TIMEOUT);
    assert_eq!(c.retries, defaults::RETRIES);
    let hc = c.health_check.as_ref().unwrap();
    assert_eq!(hc.kind, HealthCheckKind::Tcp);
    assert_eq!(hc.interval, defaults::HEALTH_INTERVAL);
    assert_eq!(hc.unhealthy_threshold, defaults::UNHEALTHY_THRESHOLD);
}

#[test]
fn pingora_keys_given_in_the_conf_win_over_headway_defaults() {
    let config = Config::from_yaml(
        "work_stealing: true\ngrace_period_seconds: 9\ngateway:\n  clusters: [{ name: a, address: 10.0.0.1, port: 80 }]\n",
    )
    .unwrap();
    assert!(config.server.work_stealing);
    assert_eq!(config.server.grace_period_seconds, Some(9));
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    assert_error(
        &good_with("      retries: 1", "      retrys: 1"),
        "gateway.clusters[0].retrys",
        "unknown field `retrys`, expected one of",
    );
    assert_error(
        &good_with("        interval: 1s", "        intervall: 1s"),
        "gateway.clusters[0].health_check.intervall",
        "unknown field `intervall`",
    );
    assert_error(
        &good_with("  routes:", "  route:"),
        "gateway.route",
        "unknown field `route`",
    );
    assert_error(
        &good_with("grace_period_seconds: 5", "grace_period_second: 5"),
        "grace_period_second",
        "did you mean `grace_period_seconds`",
    );
}

#[test]
fn bad_values_name_the_key_and_the_reason() {
    assert_error(
        &good_with("port: 8080", "port: 70000"),
        "gateway.clusters[0].port",
        "70000 is not a port",
    );
    assert_error(
        &good_with("port: 8080", "port: 0"),
        "gateway.clusters[0].port",
        "not a port",
    );
    assert_error(
        &good_with("port: 8080", "port: eighty"),
        "gateway.clusters[0].port",
        "invalid type",
    );
    assert_error(
        &good_with("dns_refresh_rate: 5s", "dns_refresh_rate: 5"),
        "gateway.clusters[0].dns_refresh_rate",
        "no unit",
    );
    assert_error(
        &good_with(
            "connect_timeout: 250ms",
            "connect_timeout: 250ms\n      idle_timeout: 0s",
        ),
        "gateway.clusters[0].idle_timeout",
        "greater than zero",
    );
    assert_error(
        &good_with(
            "connect_timeout: 250ms",
            "connect_timeout: 250ms\n      tunnel_timeout: soon",
        ),
        "gateway.clusters[0].tunnel_timeout",
        "",
    );
    assert_error(
        &good_with("connect_timeout: 250ms", "connect_timeout: 0s"),
        "gateway.clusters[0].connect_timeout",
        "greater than zero",
    );
    assert_error(
        &good_with("lb_policy: round_robin", "lb_policy: fastest"),
        "gateway.clusters[0].lb_policy",
        "not one of",
    );
    assert_error(
        &good_with("dns_lookup_family: v4_only", "dns_lookup_family: v5"),
        "gateway.clusters[0].dns_lookup_family",
        "not one of",
    );
    assert_error(
        &good_with("type: http", "type: grpc"),
        "gateway.clusters[0].health_check.type",
        "not one of: http, tcp",
    );
    assert_error(
        &good_with("healthy_threshold: 1", "healthy_threshold: 0"),
        "gateway.clusters[0].health_check.healthy_threshold",
        "at least 1",
    );
    assert_error(
        &good_with("path: /healthz", "path: healthz"),
        "gateway.clusters[0].health_check.path",
        "must start with `/`",
    );
    assert_error(
        &good_with("retries: 1", "retries: 50"),
        "gateway.clusters[0].retries",
        "maximum",
    );
    assert_error(
        &good_with(
            "address: service1.default.svc.cluster.local",
            "address: service1:8080",
        ),
        "gateway.clusters[0].address",
        "put the port in `port:`",
    );
    assert_error(
        &good_with(
            "address: service1.default.svc.cluster.local",
            "address: \"bad name!\"",
        ),
        "gateway.clusters[0].address",
        "not a valid DNS name",
    );
    assert_error(
        &good_with("127.0.0.1:15353", "not-an-ip"),
        "gateway.resolver.nameservers[0]",
        "not an IP address",
    );
}

#[test]
fn routes_must_name_a_cluster_and_be_reachable() {
    assert_error(
        &good_with("cluster: service2 }", "cluster: service3 }"),
        "gateway.routes[1].cluster",
        "unknown cluster `service3` (defined: service1, service2)",
    );
    assert_error(
        &good_with("prefix: /service/2,", "prefix: /service/1/x,"),
        "gateway.routes[1]",
        "can never match: gateway.routes[0] (`/service/1`)",
    );
    assert_error(
        &good_with("prefix: /service/2,", "prefix: service/2,"),
        "gateway.routes[1].prefix",
        "must start with `/`",
    );
}

#[test]
fn listeners_must_exist_and_keep_admin_apart() {
    assert_error(
        &good_with(r#"listen: ["0.0.0.0:8000"]"#, "listen: []"),
        "gateway.listen",
        "empty",
    );
    assert_error(
        &good_with(r#"listen: ["0.0.0.0:8000"]"#, r#"listen: ["8000"]"#),
        "gateway.listen[0]",
        "not an ip:port",
    );
    assert_error(
        &good_with(r#"listen: "127.0.0.1:9901""#, r#"listen: "127.0.0.1:8000""#),
        "gateway.admin.listen",
        "clashes with a proxy listener",
    );
}

#[test]
fn a_cluster_with_a_typo_still_counts_as_defined_for_routes() {
    let errors = errors_of(&good_with("      retries: 1", "      retrys: 1"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
}

#[test]
fn bare_numbers_and_maps_are_not_durations() {
    assert_error(
        &good_with("interval: 1s", "interval: { s: 1 }"),
        "gateway.clusters[0].health_check.interval",
        "expected a duration",
    );
}

#[test]
fn duplicate_cluster_names_are_refused() {
    assert_error(
        &good_with("name: service2", "name: service1"),
        "gateway.clusters[1].name",
        "duplicate cluster name `service1` (first defined at gateway.clusters[0])",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = good_with("port: 8080", "port: 0")
        .replacen("timeout: 15s", "timeout: soon", 1)
        .replacen("port: 80\n", "port: 80\n      colour: blue\n", 1)
        .replacen("cluster: service2 }", "cluster: nowhere }", 1);
    let errors = errors_of(&yaml);
    for path in [
        "gateway.clusters[0].port",
        "gateway.clusters[0].timeout",
        "gateway.clusters[1].colour",
        "gateway.routes[1].cluster",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "{path} missing from {errors:#?}"
        );
    }
}

#[test]
fn not_yaml_or_no_gateway_section_is_explained() {
    assert_error("gateway: [unclosed", "conf", "not valid YAML");
    assert_error("version: 1\n", "gateway", "missing");
    assert_error("- a\n- b\n", "conf", "expected a mapping");
    assert_error("threads: many\ngateway: {}\n", "threads", "invalid type");
}

#[test]
fn the_message_lists_every_error_line() {
    let e = Config::from_yaml("gateway:\n  listen: []\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "1 error in conf:\n  gateway.listen: empty: give at least one address, e.g. [\"0.0.0.0:8000\"]\n"
    );
    // A bad pingora key does not hide the gateway's own errors.
    let e = Config::from_yaml("bogus: 1\ngateway:\n  listen: []\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("2 errors in conf:\n  bogus: unknown key"),
        "{e}"
    );
}

#[test]
fn drain_time_and_access_log_have_defaults_and_are_checked() {
    let config = Config::from_yaml(GOOD).unwrap();
    assert_eq!(config.gateway.drain_time, defaults::DRAIN_TIME);
    assert_eq!(
        config.gateway.access_log,
        AccessLogConfig {
            enabled: true,
            path: None,
            format: AccessLogFormat::Plain
        }
    );
    let yaml = good_with(
        "  resolver:",
        "  drain_time: 0s\n  access_log: { format: json, path: /var/log/headway.log }\n  resolver:",
    );
    let g = Config::from_yaml(&yaml).unwrap().gateway;
    assert_eq!(g.drain_time, Duration::ZERO);
    assert_eq!(g.access_log.format, AccessLogFormat::Json);
    assert_eq!(
        g.access_log.path,
        Some(PathBuf::from("/var/log/headway.log"))
    );
    assert_error(
        &good_with("  resolver:", "  access_log: { format: xml }\n  resolver:"),
        "gateway.access_log.format",
        "not one of: plain, json",
    );
    assert_error(
        &good_with("  resolver:", "  drain_time: soon\n  resolver:"),
        "gateway.drain_time",
        "not a duration",
    );
}

#[test]
fn resilience_keys_have_envoy_defaults_and_are_checked() {
    let c = &Config::from_yaml(GOOD).unwrap().gateway.clusters[0];
    assert_eq!(
        c.retry.on,
        RetryOn {
            connect_failure: true,
            reset: true,
            gateway_error: true,
            any_5xx: false,
            statuses: vec![]
        }
    );
    assert_eq!(c.retry.per_try_timeout, None);
    assert_eq!(c.retry.budget_percent, defaults::RETRY_BUDGET_PERCENT);
    assert_eq!(
        c.outlier.consecutive_failures,
        defaults::CONSECUTIVE_FAILURES
    );
    assert_eq!(c.breakers.max_requests, defaults::CIRCUIT_BREAKER_LIMIT);
    assert_eq!(c.healthy_panic_threshold, defaults::HEALTHY_PANIC_THRESHOLD);

    let yaml = good_with(
        "      retries: 1",
        "      retries: 1\n      retry_on: [connect-failure, 5xx, 429]\n      per_try_timeout: 300ms\n      retry_budget: { budget_percent: 50, min_retry_concurrency: 1 }\n      outlier_detection: { consecutive_failures: 3, base_ejection_time: 10s, max_ejection_percent: 50 }\n      circuit_breakers: { max_requests: 10 }\n      healthy_panic_threshold: 0",
    );
    let c = Config::from_yaml(&yaml).unwrap().gateway.clusters.remove(0);
    assert!(c.retry.on.connect_failure && c.retry.on.any_5xx && !c.retry.on.reset);
    assert!(c.retry.on.status(429) && c.retry.on.status(500) && !c.retry.on.status(404));
    assert_eq!(c.retry.per_try_timeout, Some(Duration::from_millis(300)));
    assert_eq!(c.outlier.base_ejection_time, Duration::from_secs(10));
    assert_eq!(c.breakers.max_requests, 10);
    assert_eq!(
        c.breakers.max_pending_requests,
        defaults::CIRCUIT_BREAKER_LIMIT
    );
    assert_eq!(c.healthy_panic_threshold, 0);

    let bad = |from: &str, to: &str, path: &str, words: &str| {
        assert_error(&good_with(from, to), path, words)
    };
    bad(
        "      retries: 1",
        "      retries: 1\n      retry_on: [sometimes]",
        "gateway.clusters[0].retry_on[0]",
        "`sometimes` is not one of",
    );
    bad(
        "      retries: 1",
        "      retries: 1\n      retry_on: [999]",
        "gateway.clusters[0].retry_on[0]",
        "not an HTTP status",
    );
    bad(
        "      retries: 1",
        "      retries: 1\n      outlier_detection: { base_ejection_time: 60s, max_ejection_time: 10s }",
        "gateway.clusters[0].outlier_detection.max_ejection_time",
        "must not be shorter",
    );
    bad(
        "      retries: 1",
        "      retries: 1\n      circuit_breakers: { max_connections: 0 }",
        "gateway.clusters[0].circuit_breakers.max_connections",
        "at least 1",
    );
    bad(
        "      retries: 1",
        "      retries: 1\n      healthy_panic_threshold: 120",
        "gateway.clusters[0].healthy_panic_threshold",
        "not a percentage",
    );
}

#[test]
fn listeners_may_terminate_tls() {
    let yaml = good_with(
        r#"listen: ["0.0.0.0:8000"]"#,
        "listen: [\"0.0.0.0:8000\", { address: \"0.0.0.0:8443\", tls: { cert: /etc/tls/c.pem, key: /etc/tls/k.pem } }]",
    );
    let g = Config::from_yaml(&yaml).unwrap().gateway;
    assert_eq!(g.listen.len(), 2);
    assert_eq!(
        g.listen[1].tls,
        Some(TlsFiles {
            cert: "/etc/tls/c.pem".into(),
            key: "/etc/tls/k.pem".into()
        })
    );
    assert_error(
        &good_with(
            r#"listen: ["0.0.0.0:8000"]"#,
            "listen: [ { address: \"0.0.0.0:8443\", tls: { cert: c.pem } } ]",
        ),
        "gateway.listen[0].tls",
        "missing field `key`",
    );
    assert_error(
        &good_with(
            r#"listen: ["0.0.0.0:8000"]"#,
            "listen: [ { addr: \"0.0.0.0:8443\" } ]",
        ),
        "gateway.listen[0].addr",
        "unknown field",
    );
}

#[test]
fn route_matches_and_actions_are_checked() {
    let routes = |r: &str| {
        format!("gateway:\n  routes:\n{r}\n  clusters:\n    - {{ name: a, address: a.test, port: 80 }}\n")
    };
    let ok = Config::from_yaml(&routes(
        "    - { path: /healthz, direct_response: { status: 200, body: ok } }\n    - { regex: \"/v[0-9]+/.*\", domains: [api.example.com], cluster: a, prefix_rewrite: /x }\n    - { prefix: /, cluster: a, host_rewrite: internal, timeout: 2s, request_headers_to_add: [ { key: x-a, value: \"1\" } ], response_headers_to_remove: [server] }",
    ));
    let errors = ok.map(|_| Vec::new()).unwrap_or_else(|e| e.errors);
    assert_eq!(
        errors,
        vec!["gateway.routes[1].prefix_rewrite: needs a prefix or path match: a regex has no prefix to replace".to_owned()]
    );
    let cases = [
        ("    - { prefix: /a, path: /a, cluster: a }", "gateway.routes[0]", "exactly one of prefix, path, regex"),
        ("    - { regex: \"(\", cluster: a }", "gateway.routes[0].regex", "not a valid regex"),
        ("    - { prefix: /a }", "gateway.routes[0]", "missing: cluster"),
        ("    - { prefix: /a, cluster: a, direct_response: { status: 200 } }", "gateway.routes[0]", "not both"),
        ("    - { prefix: /a, direct_response: { status: 99 } }", "gateway.routes[0].direct_response.status", "not an HTTP status"),
        ("    - { prefix: /a, cluster: a, domains: [\"a*b\"] }", "gateway.routes[0].domains[0]", "is not a host"),
        ("    - { prefix: /a, cluster: a, request_headers_to_add: [ { key: \"bad header\", value: x } ] }", "gateway.routes[0].request_headers_to_add[0].key", "not a valid header name"),
        ("    - { prefix: /a, cluster: a, timeout: 0s }", "gateway.routes[0].timeout", "greater than zero"),
        ("    - { prefix: /, domains: [a.com], cluster: a }\n    - { path: /x, domains: [a.com], cluster: a }", "gateway.routes[1]", "can never match"),
    ];
    for (r, path, words) in cases {
        assert_error(&routes(r), path, words);
    }
    // A route for other hosts is not shadowed by a host-specific one.
    Config::from_yaml(&routes(
        "    - { prefix: /, domains: [a.com], cluster: a }\n    - { prefix: /, cluster: a }",
    ))
    .unwrap();
}

#[test]
fn protocols_policies_and_hash_policies_are_checked() {
    let cluster = |extra: &str| {
        format!("gateway:\n  clusters:\n    - {{ name: a, address: a.test, port: 80{extra} }}\n")
    };
    let c = Config::from_yaml(&cluster(", protocol: http2, lb_policy: maglev, hash_policy: [ { header: X-User }, { cookie: sid }, { source_ip: true } ]"))
        .unwrap()
        .gateway
        .clusters
        .remove(0);
    assert_eq!(c.protocol, UpstreamProtocol::Http2);
    assert_eq!(c.lb_policy, LbPolicy::Maglev);
    assert_eq!(
        c.hash_policy,
        vec![
            HashKey::Header("x-user".into()),
            HashKey::Cookie("sid".into()),
            HashKey::SourceIp
        ]
    );
    assert_error(
        &cluster(", protocol: h3"),
        "gateway.clusters[0].protocol",
        "not one of: http1, http2",
    );
    assert_error(
        &cluster(", lb_policy: round_robin, hash_policy: [ { header: x } ]"),
        "gateway.clusters[0].hash_policy",
        "only ring_hash and maglev hash",
    );
    assert_error(
        &cluster(", lb_policy: ring_hash, hash_policy: [ { header: x, cookie: y } ]"),
        "gateway.clusters[0].hash_policy[0]",
        "exactly one of",
    );
}

#[test]
fn limits_and_trusted_proxies() {
    let g = Config::from_yaml(GOOD).unwrap().gateway;
    assert_eq!(g.limits.max_header_bytes, 60 * 1024);
    assert_eq!(g.limits.max_headers, 100);
    assert!(g.trusted_proxies.is_empty());
    let net = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(net.contains("10.200.3.4".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(
        net.contains("::ffff:10.1.2.3".parse().unwrap()),
        "v4-mapped v6"
    );
    assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert_error(
        &good_with(
            "  resolver:",
            "  trusted_proxies: [\"10.0.0.0/8\", nope]\n  resolver:",
        ),
        "gateway.trusted_proxies[1]",
        "not an address",
    );
    assert_error(
        &good_with("  resolver:", "  max_headers_count: 0\n  resolver:"),
        "gateway.max_headers_count",
        "at least 1",
    );
}

/// Found by fuzzing (fuzz/artifacts/conf_loader): unknown top-level keys made of carriage
/// returns, or empty, broke the one-error-per-line output.
#[test]
fn every_error_stays_one_line_whatever_the_conf_echoes() {
    for text in [
        "\r\r\r\r\r\r?\r\r\r>\r :  af a  af ad.ouway}1\n",
        "# T\r\r\r\r\r\r\r\r\r\r?\r\r>+\r\rgateway:\n \n",
        "? \"\"\n: 1\ngateway: {}\n",
        "\"a: b\": 1\ngateway: {}\n",
    ] {
        let errors = Config::from_yaml(text).unwrap_err().errors;
        for line in &errors {
            assert!(!line.chars().any(char::is_control), "{line:?}");
            let (path, reason) = line.split_once(": ").unwrap();
            assert!(
                !path.trim().is_empty() && !reason.trim().is_empty(),
                "{line:?}"
            );
        }
    }
}

#[test]
fn path_matches_describe_themselves_as_the_conf_wrote_them() {
    assert_eq!(PathMatch::Prefix("/a".into()).describe(), "/a");
    assert_eq!(PathMatch::Exact("/a".into()).describe(), "=/a");
    let loaded =
        PathMatch::Regex(regex::Regex::new("^(?:/a/[0-9]+)$").unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(loaded.describe(), "~/a/[0-9]+");
    // A pattern built elsewhere, without the loader's anchors, is shown whole (and short ones
    // cannot be cut in the wrong place).
    let bare = PathMatch::Regex(regex::Regex::new("x").unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(bare.describe(), "~x");
}
