//! Confs that load: every value where it belongs, and defaults for what is left out.

use super::*;

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
    let tls = g.listen[1].tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates,
        vec![CertFiles {
            cert: "/etc/tls/c.pem".into(),
            key: "/etc/tls/k.pem".into()
        }]
    );
    assert_eq!(tls.unknown_server_name, UnknownServerName::Default);
    assert_eq!(tls.client_auth, None);
    assert_eq!(tls.handshake_timeout, std::time::Duration::from_secs(10));
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

#[test]
fn each_closed_set_of_names_is_read_as_it_is_listed() {
    for name in names::names::<LbPolicy>() {
        let policy: LbPolicy = serde_yaml::from_str(name).unwrap();
        assert_eq!(policy.name(), *name);
    }
    assert_eq!(
        names::names::<LbPolicy>().len(),
        5,
        "every policy listed once"
    );
}

#[test]
fn tls_listeners_take_several_certificates_and_client_auth() {
    let listen = |tls: &str| {
        good_with(
            r#"listen: ["0.0.0.0:8000"]"#,
            &format!("listen: [ {{ address: \"0.0.0.0:8443\", tls: {{ {tls} }} }} ]"),
        )
    };
    let g = Config::from_yaml(&listen(
        "certificates: [ { cert: a.pem, key: a.key }, { cert: b.pem, key: b.key } ], unknown_server_name: refuse, client_auth: { ca: ca.pem }, handshake_timeout: 3s",
    ))
    .unwrap()
    .gateway;
    let tls = g.listen[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.unknown_server_name, UnknownServerName::Refuse);
    assert_eq!(
        tls.client_auth.as_ref().unwrap().mode,
        ClientAuthMode::Required
    );
    assert_eq!(tls.handshake_timeout, std::time::Duration::from_secs(3));
    assert_eq!(tls.files().len(), 5);
    for (tls, message) in [
        (
            "cert: a.pem, key: a.key, certificates: [ { cert: b.pem, key: b.key } ]",
            "not both",
        ),
        ("certificates: []", "empty"),
        (
            "cert: a.pem, key: a.key, handshake_timeout: 0s",
            "greater than zero",
        ),
    ] {
        assert_error(&listen(tls), "gateway.listen[0].tls", message);
    }
    assert_error(
        &listen("cert: a.pem, key: a.key, client_auth: { ca: ca.pem, mode: sometimes }"),
        "gateway.listen[0].tls.client_auth.mode",
        "`sometimes` is not one of: required, optional",
    );
    assert_error(
        &listen("cert: a.pem, key: a.key, unknown_server_name: drop"),
        "gateway.listen[0].tls.unknown_server_name",
        "`drop` is not one of: default, refuse",
    );
    assert_error(
        &listen("cert: a.pem, key: a.key, alpn: [h2]"),
        "gateway.listen[0].tls.alpn",
        "unknown field `alpn`",
    );
}
