//! Bad values of listeners and clusters: each refused with its key and the reason.

use super::*;

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
fn upstream_tls_defaults_its_sni_and_alpn_from_the_cluster() {
    let yaml = good_with("      retries: 1\n", "      retries: 1\n      tls: {}\n");
    let c = &Config::from_yaml(&yaml).unwrap().gateway.clusters[0];
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.sni, "service1.default.svc.cluster.local");
    assert_eq!(tls.alpn, Alpn::Http1);
    assert!(tls.ca.is_none() && tls.client_cert.is_none());
    let yaml = good_with(
        "      port: 80\n",
        "      port: 80\n      protocol: http2\n      tls: { sni: pods.example }\n",
    );
    let c = &Config::from_yaml(&yaml).unwrap().gateway.clusters[1];
    let tls = c.tls.as_ref().unwrap();
    assert_eq!((tls.sni.as_str(), tls.alpn), ("pods.example", Alpn::H2));
    let dotted = good_with(
        "address: service1.default.svc.cluster.local\n",
        "address: service1.default.svc.cluster.local.\n      tls: { alpn: [h2, http/1.1] }\n",
    );
    let tls = Config::from_yaml(&dotted).unwrap().gateway.clusters[0]
        .tls
        .clone()
        .unwrap();
    assert_eq!(
        (tls.sni.as_str(), tls.alpn),
        ("service1.default.svc.cluster.local", Alpn::H2Http1)
    );
    let srv = good_with(
        "      address: 10.0.0.7\n      port: 80\n",
        "      address: _https._tcp.service2.default.svc.cluster.local.\n      discovery: srv\n      tls: {}\n",
    );
    let tls = Config::from_yaml(&srv).unwrap().gateway.clusters[1]
        .tls
        .clone()
        .unwrap();
    assert_eq!(tls.sni, "service2.default.svc.cluster.local");
}

#[test]
fn upstream_tls_refuses_what_it_cannot_verify_or_do() {
    let ip = |tls: &str| {
        good_with(
            "      port: 80\n",
            &format!("      port: 80\n      tls: {tls}\n"),
        )
    };
    assert_error(&ip("{}"), "gateway.clusters[1].tls", "missing field `sni`");
    assert_error(
        &ip("{ sni: \"a b\" }"),
        "gateway.clusters[1].tls.sni",
        "not a DNS name",
    );
    assert_error(
        &ip("{ sni: a.test, alpn: [http/1.1, h2] }"),
        "gateway.clusters[1].tls.alpn",
        "is not one of",
    );
    assert_error(
        &ip("{ sni: a.test, min_version: \"1.3\" }"),
        "gateway.clusters[1].tls.min_version",
        "not supported",
    );
    assert_error(
        &ip("{ sni: a.test, ca: /nonexistent/ca.pem }"),
        "gateway.clusters[1].tls.ca",
        "cannot read /nonexistent/ca.pem",
    );
    assert_error(
        &ip("{ sni: a.test, key: /k.pem }"),
        "gateway.clusters[1].tls",
        "missing field `cert`",
    );
    assert_error(
        &ip("{ sni: a.test, verify: false }"),
        "gateway.clusters[1].tls.verify",
        "unknown field",
    );
    let h2 = good_with(
        "      port: 80\n",
        "      port: 80\n      protocol: http2\n      tls: { sni: a.test, alpn: [http/1.1] }\n",
    );
    assert_error(&h2, "gateway.clusters[1].tls.alpn", "protocol: http2");
}

#[test]
fn slow_start_is_off_by_default_and_checked_when_set() {
    let c = Config::from_yaml(&good_with("port: 8080", "port: 8080"))
        .unwrap()
        .gateway
        .clusters
        .remove(0);
    assert_eq!(c.slow_start, None);
    let ramped = |extra: &str| good_with("lb_policy: round_robin", extra);
    let c = Config::from_yaml(&ramped(
        "lb_policy: least_request\n      slow_start_window: 30s",
    ))
    .unwrap()
    .gateway
    .clusters
    .remove(0);
    assert_eq!(
        c.slow_start,
        Some(crate::config::SlowStart {
            window: Duration::from_secs(30),
            min_weight_percent: defaults::SLOW_START_MIN_WEIGHT_PERCENT,
        })
    );
    assert_error(
        &ramped("lb_policy: maglev\n      slow_start_window: 30s"),
        "gateway.clusters[0].slow_start_window",
        "not with lb_policy: maglev",
    );
    assert_error(
        &ramped("slow_start_window: 0s"),
        "gateway.clusters[0].slow_start_window",
        "greater than zero",
    );
    assert_error(
        &ramped("slow_start_window: 1m\n      slow_start_min_weight_percent: 0"),
        "gateway.clusters[0].slow_start_min_weight_percent",
        "not a percentage",
    );
    assert_error(
        &ramped("slow_start_min_weight_percent: 20"),
        "gateway.clusters[0].slow_start_min_weight_percent",
        "without slow_start_window",
    );
}
