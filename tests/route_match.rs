//! Routes that match headers, query parameters and methods (issue 26 item 1), through the real
//! binary with curl: each operator table-driven, absent and repeated headers, names in any
//! case, invert, fall-through to the next route in conf order, the shadow check that knows a
//! route with matches shadows nothing, and bad matches refused with their paths.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use support::backend::Backend;
use support::conf::{Cluster, Route};
use support::curl::curl;
use support::dns::DnsServer;
use support::free_port;
use support::gateway::Gateway;

/// A route to `canary` at `prefix` with the rest of its match written as `key: yaml`.
fn canary(prefix: &str, matches: &[(&str, &str)]) -> Route {
    matches
        .iter()
        .fold(Route::prefix(prefix).to("canary"), |r, (key, yaml)| {
            r.key(key, yaml)
        })
}

#[test]
fn headers_query_and_methods_pick_the_first_route_whose_matches_hold() {
    let dns = DnsServer::start();
    let port = free_port();
    let stable = Backend::start("127.0.26.11", port, "stable");
    let canary_pod = Backend::start("127.0.26.12", port, "canary");
    dns.set_a("stable.test", &["127.0.26.11"]);
    dns.set_a("canary.test", &["127.0.26.12"]);
    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        // First, and at `/`: without the matches it would shadow every route below (refused).
        .route(canary(
            "/",
            &[("headers", "[{ name: x-canary, exact: always }]")],
        ))
        .route(canary(
            "/exact",
            &[("headers", "[{ name: x-user, exact: alice }]")],
        ))
        .route(canary(
            "/prefix",
            &[("headers", "[{ name: X-User, prefix: al }]")],
        ))
        .route(canary(
            "/regex",
            &[("headers", "[{ name: x-user, regex: \"a[a-z]+e\" }]")],
        ))
        .route(canary(
            "/joined",
            &[("headers", "[{ name: x-user, exact: \"alice,bob\" }]")],
        ))
        .route(canary(
            "/joined-re",
            &[("headers", "[{ name: x-user, regex: \"alice,b.*\" }]")],
        ))
        .route(canary(
            "/present",
            &[("headers", "[{ name: x-user, present: true }]")],
        ))
        .route(canary(
            "/absent",
            &[("headers", "[{ name: x-user, present: false }]")],
        ))
        .route(canary(
            "/invert",
            &[("headers", "[{ name: x-user, exact: alice, invert: true }]")],
        ))
        .route(canary(
            "/q-exact",
            &[("query", "[{ name: user, exact: \"a b\" }]")],
        ))
        .route(canary(
            "/q-regex",
            &[("query", "[{ name: id, regex: \"[0-9]+\" }]")],
        ))
        .route(canary(
            "/q-present",
            &[("query", "[{ name: debug, present: true }]")],
        ))
        .route(canary("/method", &[("methods", "[POST, PUT]")]))
        .route(canary(
            "/all",
            &[
                (
                    "headers",
                    "[{ name: x-user, exact: alice }, { name: x-beta, present: true }]",
                ),
                ("query", "[{ name: v, exact: \"2\" }]"),
                ("methods", "[GET]"),
            ],
        ))
        .route(Route::prefix("/").to("stable"))
        .cluster(Cluster::new("stable").dns("stable.test", port))
        .cluster(Cluster::new("canary").dns("canary.test", port))
        .start();
    let gw = gateway.listen_addr();

    // (target, curl's extra arguments, the backend that must answer)
    let h = |v: &'static str| ["-H", v];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("/exact", h("x-user: alice").into(), "canary"),
        ("/exact", h("X-USER: alice").into(), "canary"),
        ("/exact", h("x-user: Alice").into(), "stable"),
        ("/exact", h("x-user: alicex").into(), "stable"),
        ("/exact", vec![], "stable"),
        (
            "/exact",
            [h("x-user: alice"), h("x-user: bob")].concat(),
            "stable",
        ),
        ("/prefix", h("x-user: alfred").into(), "canary"),
        ("/prefix", h("x-user: bob").into(), "stable"),
        ("/prefix", vec![], "stable"),
        ("/regex", h("x-user: alice").into(), "canary"),
        ("/regex", h("x-user: alice2").into(), "stable"),
        ("/regex", h("x-user: malice").into(), "stable"),
        (
            "/joined",
            [h("x-user: alice"), h("x-user: bob")].concat(),
            "canary",
        ),
        ("/joined", h("x-user: alice,bob").into(), "canary"),
        (
            "/joined",
            [h("x-user: bob"), h("x-user: alice")].concat(),
            "stable",
        ),
        ("/joined", h("x-user: alice").into(), "stable"),
        (
            "/joined-re",
            [h("x-user: alice"), h("x-user: bobby")].concat(),
            "canary",
        ),
        ("/joined-re", h("x-user: alice").into(), "stable"),
        ("/present", h("x-user: anyone").into(), "canary"),
        ("/present", h("x-user;").into(), "canary"),
        ("/present", vec![], "stable"),
        ("/absent", vec![], "canary"),
        ("/absent", h("x-user: anyone").into(), "stable"),
        ("/invert", h("x-user: bob").into(), "canary"),
        ("/invert", vec![], "canary"),
        ("/invert", h("x-user: alice").into(), "stable"),
        ("/q-exact?user=a%20b", vec![], "canary"),
        ("/q-exact?x=1&user=a%20b", vec![], "canary"),
        ("/q-exact?user=a+b", vec![], "stable"),
        ("/q-exact?User=a%20b", vec![], "stable"),
        ("/q-exact?user=a%20b&user=c", vec![], "canary"),
        ("/q-exact?user=c&user=a%20b", vec![], "stable"),
        ("/q-exact", h("user: a b").into(), "stable"),
        ("/q-regex?id=42", vec![], "canary"),
        ("/q-regex?id=%34%32", vec![], "canary"),
        ("/q-regex?id=42a", vec![], "stable"),
        ("/q-regex?id=", vec![], "stable"),
        ("/q-present?debug", vec![], "canary"),
        ("/q-present?debug=0", vec![], "canary"),
        ("/q-present?debugx=1", vec![], "stable"),
        ("/method", vec!["-X", "POST", "-d", "x"], "canary"),
        ("/method", vec!["-X", "PUT", "-d", "x"], "canary"),
        ("/method", vec![], "stable"),
        ("/method", vec!["-X", "DELETE"], "stable"),
        (
            "/all?v=2",
            [h("x-user: alice"), h("x-beta: 1")].concat(),
            "canary",
        ),
        (
            "/all?v=3",
            [h("x-user: alice"), h("x-beta: 1")].concat(),
            "stable",
        ),
        ("/all?v=2", h("x-user: alice").into(), "stable"),
        (
            "/all?v=2",
            [
                &["-X", "POST", "-d", "x"][..],
                &h("x-user: alice"),
                &h("x-beta: 1"),
            ]
            .concat(),
            "stable",
        ),
        ("/elsewhere", h("x-canary: always").into(), "canary"),
        ("/exact", h("x-canary: always").into(), "canary"),
        ("/elsewhere", h("x-canary: sometimes").into(), "stable"),
    ];
    for (target, args, want) in &cases {
        // Control: the backend itself takes the same request from curl.
        let direct = format!("http://{}{target}", stable.addr());
        let control = curl(&[args.as_slice(), &[direct.as_str()]].concat());
        assert_eq!(control.status, 200, "control {target} {args:?}");
        let url = format!("http://{gw}{target}");
        let got = curl(&[args.as_slice(), &[url.as_str()]].concat());
        assert_eq!(got.status, 200, "{target} {args:?}: {}", got.text());
        assert_eq!(got.header("x-backend"), Some(*want), "{target} {args:?}");
    }
    assert!(canary_pod.hits() > 0 && stable.hits() > 0);
    gateway.assert_no_panic();
}

#[test]
fn bad_matches_are_refused_with_their_paths() {
    let (code, stderr) = Gateway::builder()
        .route(canary("/a", &[("headers", "[{ name: x, contains: y }]")]))
        .route(canary(
            "/b",
            &[("headers", "[{ name: x, exact: y, prefix: z }]")],
        ))
        .route(canary(
            "/c",
            &[("headers", "[{ name: x, regex: \"\\\\w{1000}\" }]")],
        ))
        .route(canary("/d", &[("methods", "[GET, get, \"PO ST\", GET]")]))
        .route(canary("/e", &[("query", "[{ name: q, prefix: y }]")]))
        .route(canary(
            "/f",
            &[("headers", "[{ name: \"bad name\", present: true }]")],
        ))
        .route(canary("/g", &[("query", "[{ name: q }]")]))
        .route(canary("/h", &[("headers", "[{ name: x, regex: \"(\" }]")]))
        // A plain route shadows a later one it covers; a route with matches would not.
        .route(Route::prefix("/i").to("canary"))
        .route(Route::prefix("/i/j").to("canary"))
        .cluster(Cluster::new("canary").address("127.0.0.1", free_port()))
        .start_expect_exit();
    assert_ne!(code, 0, "{stderr}");
    for (path, words) in [
        ("gateway.routes[0].headers[0].contains", "unknown field"),
        (
            "gateway.routes[1].headers[0]",
            "give exactly one of exact, prefix, regex, present",
        ),
        (
            "gateway.routes[2].headers[0].regex",
            "compiles to more than 100 KiB",
        ),
        ("gateway.routes[3].methods[1]", "uppercase (`GET`)"),
        (
            "gateway.routes[3].methods[2]",
            "`PO ST` is not a method name",
        ),
        ("gateway.routes[3].methods[3]", "`GET` is listed twice"),
        ("gateway.routes[4].query[0].prefix", "unknown field"),
        (
            "gateway.routes[5].headers[0].name",
            "`bad name` is not a header name",
        ),
        (
            "gateway.routes[6].query[0]",
            "give exactly one of exact, regex, present",
        ),
        ("gateway.routes[7].headers[0].regex", "not a valid regex"),
        ("gateway.routes[9]", "can never match"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{path}:")))
            .unwrap_or_else(|| panic!("no error at {path}:\n{stderr}"));
        assert!(line.contains(words), "{path}: {line}");
    }
}
