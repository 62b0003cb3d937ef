//! Routes: their matches, actions, rewrites, headers and filters, and which can never match.

use super::*;

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
        ("    - { prefix: /a, cluster: a, direct_response: { status: 200 } }", "gateway.routes[0]", "not two"),
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

/// Shadowing is found through the earlier routes' paths, not by comparing each pair: the
/// error still names the first route that shadows, and only prefixes and equal exact paths
/// shadow (a regex neither shadows nor is shadowed).
#[test]
fn the_first_route_that_shadows_is_named() {
    let routes = |r: &[&str]| {
        let items: String = r.iter().map(|r| format!("    - {r}\n")).collect();
        format!("gateway:\n  routes:\n{items}  clusters:\n    - {{ name: a, address: a.test, port: 80 }}\n")
    };
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "{ prefix: /a/b, cluster: a }",
                "{ prefix: /a, cluster: a }",
                "{ prefix: /, cluster: a }",
                "{ path: /a/b/c, cluster: a }",
            ],
            "gateway.routes[3]: `=/a/b/c` can never match: gateway.routes[0] (`/a/b`)",
        ),
        (
            &["{ path: /x, cluster: a }", "{ path: /x, cluster: a }"],
            "gateway.routes[1]: `=/x` can never match: gateway.routes[0] (`=/x`)",
        ),
        (
            &["{ prefix: /x, cluster: a }", "{ path: /x, cluster: a }"],
            "gateway.routes[1]: `=/x` can never match: gateway.routes[0] (`/x`)",
        ),
        (
            &[
                "{ prefix: /, domains: [b.com], cluster: a }",
                "{ prefix: /é, domains: [a.com], cluster: a }",
                "{ prefix: /éa, domains: [a.com], cluster: a }",
            ],
            "gateway.routes[2]: `/éa` can never match: gateway.routes[1] (`/é`)",
        ),
        (
            &[
                "{ regex: /.*, cluster: a }",
                "{ prefix: /, cluster: a }",
                "{ regex: /x, cluster: a }",
                "{ path: /, cluster: a }",
            ],
            "gateway.routes[3]: `=/` can never match: gateway.routes[1] (`/`)",
        ),
    ];
    for (r, want) in cases {
        let errors = Config::from_yaml(&routes(r))
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.errors);
        let want = format!("{want} comes first and matches every request it would");
        assert_eq!(errors, vec![want], "{r:?}");
    }
    // Neither an exact path nor a host-bound route covers a prefix it shares.
    Config::from_yaml(&routes(&[
        "{ path: /a, cluster: a }",
        "{ prefix: /a, domains: [a.com], cluster: a }",
        "{ prefix: /a, cluster: a }",
    ]))
    .unwrap();
}

#[test]
fn routes_take_filters_each_a_name_and_its_own_settings() {
    let routes = |r: &str| {
        format!("gateway:\n  routes:\n{r}\n  clusters:\n    - {{ name: a, address: a.test, port: 80 }}\n")
    };
    let g = Config::from_yaml(&routes(
        "    - { prefix: /a, cluster: a }\n    - prefix: /\n      cluster: a\n      filters:\n        - { name: api_key, header: x-api-key, keys: [k1] }\n        - name: tenant",
    ))
    .unwrap()
    .gateway;
    assert!(g.routes[0].filters.is_empty(), "no filters: none run");
    let filters = &g.routes[1].filters;
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[0].name, "api_key");
    assert_eq!(filters[0].path, "gateway.routes[1].filters[0]");
    let own: serde_yaml::Value = serde_yaml::from_str("{ header: x-api-key, keys: [k1] }").unwrap();
    assert_eq!(filters[0].config, own);
    assert_eq!(filters[1].name, "tenant");
    assert_eq!(
        filters[1].config,
        serde_yaml::Value::Mapping(Default::default())
    );
    // The names are the registry's to check; the conf checks the shape of each entry.
    let cases = [
        (
            "    - { prefix: /, cluster: a, filters: [ { header: x } ] }",
            "gateway.routes[0].filters[0]",
            "missing field `name`",
        ),
        (
            "    - { prefix: /, cluster: a, filters: [ api_key ] }",
            "gateway.routes[0].filters[0]",
            "expected a mapping",
        ),
        (
            "    - { prefix: /, cluster: a, filters: [ { name: 5 } ] }",
            "gateway.routes[0].filters[0].name",
            "expected the filter's name",
        ),
        (
            "    - { prefix: /, cluster: a, filters: { name: a } }",
            "gateway.routes[0].filters",
            "invalid type: map, expected a sequence",
        ),
        (
            "    - { prefix: /, cluster: a, filter: [] }",
            "gateway.routes[0].filter",
            "did you mean `filters`?",
        ),
    ];
    for (r, path, words) in cases {
        assert_error(&routes(r), path, words);
    }
    let errors = errors_of(&routes(
        "    - { prefix: /, cluster: a, timeout: 0s, filters: [ { name: a }, 7 ] }",
    ));
    assert_eq!(
        errors,
        vec![
            "gateway.routes[0].timeout: must be greater than zero".to_owned(),
            "gateway.routes[0].filters[1]: expected a mapping: `name:` (the filter) and its own settings".to_owned(),
        ]
    );
}

/// `clusters` and `sticky`: weights kept in order, the sticky key read as `hash_policy` reads
/// it; every error with its path.
#[test]
fn weighted_clusters_and_sticky_keys_are_checked() {
    let routes = |r: &str| {
        format!("gateway:\n  routes:\n    - {r}\n  clusters:\n    - {{ name: a, address: a.test, port: 80 }}\n    - {{ name: b, address: b.test, port: 80 }}\n")
    };
    let g = Config::from_yaml(&routes(
        "{ prefix: /, clusters: [{ name: a, weight: 0 }, { name: b, weight: 7 }], sticky: { header: X-User } }",
    ))
    .unwrap()
    .gateway;
    let RouteAction::Split(split) = &g.routes[0].action else {
        panic!("{:?}", g.routes[0].action)
    };
    let weights: Vec<(&str, u32)> = split
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight))
        .collect();
    assert_eq!(weights, [("a", 0), ("b", 7)]);
    assert_eq!(split.sticky, Some(HashKey::Header("x-user".to_owned())));
    assert_eq!((split.total(), split.label()), (7, "a+b".to_owned()));
    let cases = [
        (
            "{ prefix: /, clusters: [{ name: a, weight: 0 }] }",
            "gateway.routes[0].clusters",
            "every weight is 0",
        ),
        (
            "{ prefix: /, clusters: [] }",
            "gateway.routes[0].clusters",
            "name at least one cluster",
        ),
        (
            "{ prefix: /, clusters: [{ name: c, weight: 1 }] }",
            "gateway.routes[0].clusters[0].name",
            "unknown cluster `c`",
        ),
        (
            "{ prefix: /, clusters: [{ name: a, weight: 1 }, { name: a, weight: 2 }] }",
            "gateway.routes[0].clusters[1].name",
            "named twice",
        ),
        (
            "{ prefix: /, cluster: a, clusters: [{ name: a, weight: 1 }] }",
            "gateway.routes[0]",
            "not two",
        ),
        (
            "{ prefix: /, cluster: a, sticky: { cookie: u } }",
            "gateway.routes[0].sticky",
            "needs `clusters`",
        ),
        (
            "{ prefix: /, clusters: [{ name: a, weight: 1 }], sticky: { client_address: false } }",
            "gateway.routes[0].sticky",
            "exactly one of",
        ),
        (
            "{ prefix: /, clusters: [{ name: a, weight: 4294967295 }, { name: b, weight: 1 }] }",
            "gateway.routes[0].clusters",
            "more than 4294967295",
        ),
        (
            "{ prefix: /, clusters: [{ name: a, weight: 1, wieght: 2 }] }",
            "gateway.routes[0].clusters[0].wieght",
            "did you mean `weight`",
        ),
    ];
    for (r, path, words) in cases {
        assert_error(&routes(r), path, words);
    }
}
