//! How problems are reported: every one at once, each on one line with its path and a suggestion.

use super::*;

#[test]
fn unknown_keys_are_errors_with_their_path() {
    assert_error(
        &good_with("      retries: 1", "      retrys: 1"),
        "gateway.clusters[0].retrys",
        "unknown field `retrys` (did you mean `retries`?)",
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
fn a_cluster_with_a_typo_still_counts_as_defined_for_routes() {
    let errors = errors_of(&good_with("      retries: 1", "      retrys: 1"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
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

/// issue 15: a misspelt key used to hide every other error of its section (the port here),
/// and a bad value hid the others of its section.
#[test]
fn a_misspelt_key_does_not_hide_the_other_errors_of_its_section() {
    let errors = errors_of(&good_with("port: 8080", "port: 0").replacen(
        "      retries: 1",
        "      retrys: 1",
        1,
    ));
    for path in ["gateway.clusters[0].retrys", "gateway.clusters[0].port"] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "{path} missing from {errors:#?}"
        );
    }
    let errors = errors_of(
        &good_with("        interval: 1s", "        intervall: 1s").replacen(
            "healthy_threshold: 1",
            "healthy_threshold: 0",
            1,
        ),
    );
    for path in [
        "gateway.clusters[0].health_check.intervall",
        "gateway.clusters[0].health_check.healthy_threshold",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "{path} missing from {errors:#?}"
        );
    }
    let errors = errors_of(
        &good_with("retries: 1", "retries: many")
            .replacen("respect_dns_ttl: false", "respect_dns_ttl: maybe", 1)
            .replacen("connect_timeout: 250ms", "connect_timeout: 0s", 1)
            .replacen("prefix: /service/2,", "prefx: /service/2,", 1),
    );
    for path in [
        "gateway.clusters[0].retries",
        "gateway.clusters[0].respect_dns_ttl",
        "gateway.clusters[0].connect_timeout",
        "gateway.routes[1].prefx",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{path}: "))),
            "{path} missing from {errors:#?}"
        );
    }
}

/// issue 15: below the top level an unknown key listed every expected field.
#[test]
fn unknown_keys_at_any_depth_suggest_the_closest_name() {
    let cases = [
        (
            good_with("dns_refresh_rate: 5s", "dns_refresh_rat: 5s"),
            "gateway.clusters[0].dns_refresh_rat",
            "unknown field `dns_refresh_rat` (did you mean `dns_refresh_rate`?)",
        ),
        (
            good_with("        interval: 1s", "        intervall: 1s"),
            "gateway.clusters[0].health_check.intervall",
            "unknown field `intervall` (did you mean `interval`?)",
        ),
        (
            good_with("  routes:", "  route:"),
            "gateway.route",
            "unknown field `route` (did you mean `routes`?)",
        ),
        (
            good_with("resolver: { nameservers:", "resolver: { nameserver:"),
            "gateway.resolver.nameserver",
            "unknown field `nameserver` (did you mean `nameservers`?)",
        ),
        (
            good_with("prefix: /service/2,", "prefx: /service/2,"),
            "gateway.routes[1].prefx",
            "unknown field `prefx` (did you mean `prefix`?)",
        ),
    ];
    for (yaml, path, words) in cases {
        assert_error(&yaml, path, words);
        let errors = errors_of(&yaml);
        assert!(
            !errors.iter().any(|e| e.contains("expected one of")),
            "a close name is enough: {errors:#?}"
        );
    }
}

/// issue 15: an unknown name of a closed set lists the choices and suggests the closest.
#[test]
fn unknown_names_list_the_choices_and_suggest_the_closest() {
    let cases = [
        (
            good_with("lb_policy: round_robin", "lb_policy: round_robbin"),
            "gateway.clusters[0].lb_policy",
            "`round_robbin` is not one of: round_robin, random, least_request, ring_hash, maglev (did you mean `round_robin`?)",
        ),
        (
            good_with("dns_lookup_family: v4_only", "dns_lookup_family: v4only"),
            "gateway.clusters[0].dns_lookup_family",
            "`v4only` is not one of: v4_only, v6_only, v4_preferred, auto, all (did you mean `v4_only`?)",
        ),
        (
            good_with("type: http", "type: htp"),
            "gateway.clusters[0].health_check.type",
            "`htp` is not one of: http, tcp (did you mean `http`?)",
        ),
        (
            good_with("lb_policy: round_robin", "protocol: htp2"),
            "gateway.clusters[0].protocol",
            "`htp2` is not one of: http1, http2 (did you mean `http2`?)",
        ),
        (
            good_with("  resolver:", "  access_log: { format: jsn }\n  resolver:"),
            "gateway.access_log.format",
            "`jsn` is not one of: plain, json (did you mean `json`?)",
        ),
        (
            good_with("      retries: 1", "      retries: 1\n      retry_on: [conect-failure]"),
            "gateway.clusters[0].retry_on[0]",
            "`conect-failure` is not one of: connect-failure, reset, gateway-error, 5xx, or a status such as 503 (did you mean `connect-failure`?)",
        ),
    ];
    for (yaml, path, words) in cases {
        assert_error(&yaml, path, words);
    }
}

#[test]
fn a_bad_value_and_an_unknown_key_of_pingora_are_reported_together() {
    let errors = errors_of("threads: many\ngrace_period_second: 5\ngateway: {}\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0]
        .starts_with("grace_period_second: unknown key (did you mean `grace_period_seconds`?)"));
    assert!(
        errors[1].starts_with("threads: invalid type"),
        "{errors:#?}"
    );
}

#[test]
fn a_required_key_given_a_bad_value_is_not_also_missing() {
    let errors = errors_of(
        "gateway:\n  clusters:\n    - { name: a, address: a.test, port: eighty, timeout: 0s, health_check: { type: [http] } }\n",
    );
    assert_eq!(
        errors,
        vec![
            "gateway.clusters[0].port: invalid type: string \"eighty\", expected u32".to_owned(),
            "gateway.clusters[0].health_check.type: invalid type: sequence, expected one of: http, tcp".to_owned(),
            "gateway.clusters[0].timeout: must be greater than zero".to_owned(),
        ]
    );
    assert_error(
        "gateway:\n  clusters:\n    - { address: a.test, port: 80 }\n",
        "gateway.clusters[0]",
        "missing field `name`",
    );
}
