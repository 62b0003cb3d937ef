//! headway as a library: `examples/custom_filter.rs` — a complete gateway with two filters of
//! its own (an API-key check answering 401, a tenant header computed from the request) — run
//! as a black box, beside a route without filters and headway's own built-in filters named in
//! the same `filters:` list.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::backend::Backend;
use support::conf::{map, yaml_items, Cluster, Filter, Route};
use support::gateway::{Gateway, HEADWAY_BIN};
use support::{free_port, http, wait_until};

/// The example's binary, built by cargo beside `headway` (`cargo test --all-targets` builds
/// examples; a lone `cargo test --test program` builds it here).
fn custom_filter_bin() -> PathBuf {
    let bin = PathBuf::from(HEADWAY_BIN)
        .parent()
        .expect("target dir")
        .join("examples/custom_filter");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", "custom_filter"])
            .status()
            .expect("cargo build --example custom_filter");
        assert!(status.success(), "cannot build examples/custom_filter.rs");
    }
    bin
}

/// The program's own `header_key` and `tenant` between headway's `response_headers`, and a route
/// without filters.
fn routes() -> Vec<Route> {
    vec![
        Route::prefix("/api")
            .to("api")
            .filter(
                Filter::new("header_key")
                    .set("header", "x-api-key")
                    .set("keys", ["k-123", "k-456"]),
            )
            .filter(Filter::new("tenant"))
            .filter(
                Filter::new("response_headers")
                    .set("add", [map(&[("key", "x-via"), ("value", "headway")])]),
            ),
        Route::prefix("/open").to("api"),
    ]
}

#[test]
fn a_program_with_its_own_filters_checks_keys_and_adds_a_computed_header() {
    let port = free_port();
    let backend = Backend::start("127.0.12.1", port, "api");
    let gateway = Gateway::builder()
        .program(custom_filter_bin())
        .routes(routes())
        .cluster(Cluster::new("api").address("127.0.12.1", port))
        .start();
    let addr = gateway.listen_addr();

    // No key, or a wrong one: 401 from the filter, and the backend never sees the request.
    for key in [None, Some("k-999")] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let r = http::get_with_headers(addr, "/api/items", &headers).unwrap();
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.body, "a valid API key is required\n");
        assert_eq!(r.header("www-authenticate"), Some("ApiKey"));
        assert_eq!(
            r.header("x-via"),
            Some("headway"),
            "a filter's answer passes the route's response filters"
        );
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(backend.hits(), 0);

    // A good key: through, without the key, with the tenant both ways.
    let r = http::get_with_headers(
        addr,
        "/api/items",
        &[("x-api-key", "k-456"), ("host", "acme.example.com")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-echo-x-tenant"),
        Some("acme"),
        "the backend got the tenant"
    );
    assert_eq!(
        r.header("x-echo-x-api-key"),
        None,
        "the key stays at the gateway"
    );
    assert_eq!(r.header("x-tenant"), Some("acme"));
    assert_eq!(r.header("x-via"), Some("headway"));
    assert_eq!(backend.hits(), 1);

    // A route without filters: none of it.
    let r = http::get_with_headers(addr, "/open/x", &[("host", "acme.example.com")]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tenant"), None);
    assert_eq!(r.header("x-via"), None);

    // Every answer is logged, the filters' own included.
    assert!(wait_until(Duration::from_secs(3), || gateway
        .stderr_log()
        .matches("status=401 ")
        .count()
        == 2));
    assert!(
        !gateway.stderr_log().contains("k-999"),
        "a key must never be logged"
    );
}

#[test]
fn unknown_or_misconfigured_filters_are_conf_errors_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |routes: &str| {
        let path = dir.path().join("headway.yaml");
        std::fs::write(
            &path,
            format!(
                "gateway:\n  routes:\n{}\n  clusters:\n    - {{ name: api, address: 127.0.12.2, port: 80 }}\n",
                support::indent_yaml(routes, 4)
            ),
        )
        .unwrap();
        path.to_string_lossy().into_owned()
    };
    let program = custom_filter_bin();
    let check = |routes: &str| {
        let path = conf(routes);
        let out = std::process::Command::new(&program)
            .args(["-t", "-c", &path])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // The conf the program runs on in the test above, as text.
    let good = yaml_items(&routes());
    let (code, stderr) = check(&good);
    assert_eq!(code, 0, "{stderr}");

    let (code, stderr) = check(
        "- prefix: /api\n  cluster: api\n  filters:\n    - { name: header_kye, keys: [k] }\n    - { name: header_key }\n    - { name: request_headers, add: [{ key: \"bad name\", value: v }] }",
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "gateway.routes[0].filters[0].name: unknown filter `header_kye` (did you mean header_key?)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("gateway.routes[0].filters[1]: missing field `keys`"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("gateway.routes[0].filters[2]: add[0].key: `bad name` is not a header name"),
        "{stderr}"
    );
    assert!(stderr.contains("3 errors in conf"), "{stderr}");

    // `headway` itself has neither `header_key` nor `tenant`: the same conf is refused there,
    // naming what it has.
    let (code, _, stderr) = support::run_headway(&["-t", "-c", &conf(&good)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unknown filter `tenant`"), "{stderr}");
    assert!(stderr.contains("unknown filter `header_key`"), "{stderr}");
    assert!(
        stderr.contains("known filters: access_control, api_key, compression, cors, direct_response, host_rewrite"),
        "{stderr}"
    );
}
