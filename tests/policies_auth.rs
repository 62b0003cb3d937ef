//! Issue 17's CORS, API-key and JWT filters through the real binary, with third-party clients:
//! curl sends the requests (and the same request straight to the backend, as the control),
//! PyJWT with `cryptography` is the token issuer (tests/interop/mint_jwt.py). The backend
//! echoes what reached it, so each test sees what the gateway forwarded and what it kept.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::path::Path;
use std::time::Duration;
use support::backend::Backend;
use support::conf::{map, Cluster, Filter, Route};
use support::curl::{curl, Curled};
use support::gateway::Gateway;
use support::{free_port, http, wait_until};

/// The `access-control-*` headers of a reply.
fn cors_headers(r: &Curled) -> Vec<&(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect()
}

/// `headway_filter_events_total` for a filter and event, summed over routes.
fn events(gateway: &Gateway, filter: &str, event: &str) -> u64 {
    http::get(gateway.admin_addr(), "/metrics")
        .unwrap()
        .body
        .lines()
        .filter(|l| l.starts_with("headway_filter_events_total{"))
        .filter(|l| l.contains(&format!("filter=\"{filter}\"")))
        .filter(|l| l.contains(&format!("event=\"{event}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// A gateway with `routes` to its cluster `api`, which is `backend`.
fn gateway(backend: &Backend, routes: Vec<Route>) -> Gateway {
    Gateway::builder()
        .routes(routes)
        .cluster(Cluster::new("api").address(&backend.ip(), backend.port()))
        .start()
}

/// `/cors` for two origins with credentials, `/public` for any origin, `/guarded` with `cors`
/// before `api_key`.
fn cors_routes() -> Vec<Route> {
    vec![
        Route::prefix("/cors").to("api").filter(
            Filter::new("cors")
                .set(
                    "allow_origins",
                    ["https://app.example.com", "https://*.example.org"],
                )
                .set("allow_methods", ["GET", "POST", "PUT"])
                .set("allow_headers", ["content-type", "x-token"])
                .set("expose_headers", ["x-backend"])
                .set("allow_credentials", true)
                .set("max_age", "10m"),
        ),
        Route::prefix("/public")
            .to("api")
            .filter(Filter::new("cors").set("allow_origins", ["*"])),
        Route::prefix("/guarded")
            .to("api")
            .filter(
                Filter::new("cors")
                    .set("allow_origins", ["https://app.example.com"])
                    .set("allow_headers", ["x-api-key"]),
            )
            .filter(Filter::new("api_key").set("keys", ["ak-guarded-1"])),
    ]
}

fn preflight(url: &str, origin: &str, method: &str, headers: &str) -> Curled {
    let mut args = vec![
        "-X".to_owned(),
        "OPTIONS".to_owned(),
        "-H".to_owned(),
        format!("Origin: {origin}"),
        "-H".to_owned(),
        format!("Access-Control-Request-Method: {method}"),
    ];
    if !headers.is_empty() {
        args.extend([
            "-H".to_owned(),
            format!("Access-Control-Request-Headers: {headers}"),
        ]);
    }
    args.push(url.to_owned());
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn cors_preflights_stop_at_the_gateway_and_forged_origins_get_no_cors_headers() {
    let backend = Backend::start("127.0.41.1", free_port(), "api");
    // Control: the backend itself answers a preflight like any request, without CORS headers.
    let direct = format!("http://{}/cors/items", backend.addr_string());
    let r = preflight(&direct, "https://app.example.com", "PUT", "");
    assert_eq!(
        (r.status, cors_headers(&r).len()),
        (200, 0),
        "{:?}",
        r.headers
    );
    assert_eq!(backend.hits(), 1);

    let gw = gateway(&backend, cors_routes());
    let url = gw.url("/cors/items");
    for origin in ["https://app.example.com", "https://a.b.example.org"] {
        let r = preflight(&url, origin, "PUT", "Content-Type, X-Token");
        assert_eq!(r.status, 204, "{origin}: {}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some("GET, POST, PUT")
        );
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("content-type, x-token")
        );
        assert_eq!(r.header("access-control-max-age"), Some("600"));
        assert_eq!(r.header("vary"), Some("Origin"));
        assert_eq!(r.header("content-length"), None, "a 204 has no body");
    }
    // Forged and odd origins, a method or header not allowed: refused, no CORS header at all.
    for (origin, method, headers) in [
        ("null", "PUT", ""),
        ("https://APP.example.com", "PUT", ""),
        ("https://app.example.com.", "PUT", ""),
        ("https://app.example.com.evil.net", "PUT", ""),
        ("https://example.org.evil.net", "PUT", ""),
        ("https://a.example.org.evil.net", "PUT", ""),
        ("http://app.example.com", "PUT", ""),
        ("https://app.example.com:8443", "PUT", ""),
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "put", ""),
        ("https://app.example.com", "PUT", "x-token, x-admin"),
    ] {
        let r = preflight(&url, origin, method, headers);
        assert_eq!(r.status, 403, "{origin} {method} {headers}");
        assert!(cors_headers(&r).is_empty(), "{origin}: {:?}", r.headers);
    }
    assert_eq!(backend.hits(), 1, "no preflight reached the backend");

    // Actual requests: an allowed origin gets its CORS headers on the backend's answer.
    let r = curl(&["-H", "Origin: https://app.example.com", &url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-backend"), Some("api"), "from the backend");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-expose-headers"), Some("x-backend"));
    assert_eq!(r.header("vary"), Some("Origin"));
    for origin in [
        "https://app.example.com.evil.net",
        "null",
        "https://App.example.com",
    ] {
        let r = curl(&["-H", &format!("Origin: {origin}"), &url]);
        assert_eq!(r.status, 200);
        assert!(cors_headers(&r).is_empty(), "{origin}: {:?}", r.headers);
        assert_eq!(
            r.header("vary"),
            Some("Origin"),
            "the answer depends on Origin"
        );
    }
    let r = curl(&[&url]);
    assert!(cors_headers(&r).is_empty());
    assert_eq!(r.header("vary"), Some("Origin"));
    // An OPTIONS without Access-Control-Request-Method is no preflight: the backend's.
    let r = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.example.com",
        &url,
    ]);
    assert_eq!(r.header("x-backend"), Some("api"));
    assert_eq!(backend.hits(), 7);

    // `*` without credentials: a literal `*`, and no Vary (the answer is the same for all).
    let r = curl(&["-H", "Origin: https://anyone.test", &gw.url("/public/x")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None);
    let r = preflight(&gw.url("/public/x"), "https://anyone.test", "GET", "");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // `cors` before `api_key`: the preflight needs no key, and the 401 is readable by the page.
    let guarded = gw.url("/guarded/x");
    let r = preflight(&guarded, "https://app.example.com", "GET", "x-api-key");
    assert_eq!(r.status, 204);
    let r = curl(&["-H", "Origin: https://app.example.com", &guarded]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(backend.hits(), 8, "only the /public GET went further");

    assert_eq!(events(&gw, "cors", "denied"), 11);
    assert_eq!(events(&gw, "cors", "preflight"), 4);
    gw.assert_no_panic();
}

const KEYS_FILE: &str = "# the team's keys\nalice: ak-alice-7f3kq9\n\nak-anon-91xzp2\n";

#[test]
fn api_keys_in_a_header_or_the_query_pass_and_never_reach_the_backend_or_the_logs() {
    let backend = Backend::start("127.0.41.2", free_port(), "api");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, KEYS_FILE).unwrap();
    // Control: straight to the backend, the key is there for it (and its logs) to see.
    let direct = format!(
        "http://{}/k/items?api_key=ak-anon-91xzp2",
        backend.addr_string()
    );
    let r = curl(&[&direct]);
    assert_eq!(
        r.header("x-request-target"),
        Some("/k/items?api_key=ak-anon-91xzp2")
    );

    let gw = gateway(
        &backend,
        vec![Route::prefix("/k").to("api").filter(
            Filter::new("api_key")
                .set("keys_file", &keys)
                .set("query", "api_key")
                .set("client_header", "x-client"),
        )],
    );
    let r = curl(&[
        "-H",
        "x-api-key: ak-alice-7f3kq9",
        "-H",
        "x-client: admin",
        &gw.url("/k/items"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-echo-x-client"),
        Some("alice"),
        "the key's name, not the client's"
    );
    assert_eq!(
        r.header("x-echo-x-api-key"),
        None,
        "the key stays at the gateway"
    );
    let r = curl(&[
        "-H",
        "x-client: admin",
        &gw.url("/k/items?x=1&api_key=ak-anon-91xzp2&y=2"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-request-target"), Some("/k/items?x=1&y=2"));
    assert_eq!(
        r.header("x-echo-x-client"),
        None,
        "a forged client name is removed"
    );
    let r = curl(&[&gw.url("/k/items?api%5Fkey=ak-anon-91xzp2")]);
    assert_eq!(
        r.status, 200,
        "an encoded parameter name is the same parameter"
    );
    assert_eq!(r.header("x-request-target"), Some("/k/items"));
    assert_eq!(backend.hits(), 4);

    let wrong = [
        vec![gw.url("/k/items")],
        vec![
            "-H".into(),
            "x-api-key: ak-wrong-55tt".into(),
            gw.url("/k/items"),
        ],
        vec![gw.url("/k/items?api_key=ak-wrong-66uu")],
        vec![
            "-H".into(),
            "x-api-key: ak-ALICE-7f3kq9".into(),
            gw.url("/k/items"),
        ],
        // Two keys, one of them valid: which one would count? Neither.
        vec![gw.url("/k/items?api_key=ak-wrong-77vv&api_key=ak-anon-91xzp2")],
    ];
    for args in &wrong {
        let r = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.status, 401, "{args:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("ApiKey realm=\"headway\"")
        );
        assert_eq!(r.text(), "a valid API key is required\n");
    }
    assert_eq!(
        backend.hits(),
        4,
        "refused requests never reach the backend"
    );
    assert_eq!(events(&gw, "api_key", "denied"), 5);

    // Every request is in the access log; no key, valid or not, is anywhere in the logs.
    assert!(wait_until(Duration::from_secs(5), || gw
        .stderr_log()
        .matches("path=/k/items")
        .count()
        == 8));
    let logs = format!("{}{}", gw.stderr_log(), gw.stdout_log());
    for key in ["ak-alice-7f3kq9", "ak-anon-91xzp2", "ak-wrong", "ak-ALICE"] {
        assert!(
            !logs.contains(key),
            "{key} is in the gateway's logs:\n{logs}"
        );
    }
}

/// `/orders` behind `jwt`: the issuer's JWKS and an HS256 secret (both written by mint_jwt.py
/// into `dir`), its subject and issuer forwarded as headers.
fn jwt_routes(dir: &Path) -> Vec<Route> {
    let secret = dir.join("hs.secret").display().to_string();
    vec![Route::prefix("/orders").to("api").filter(
        Filter::new("jwt")
            .set("jwks_file", dir.join("jwks.json"))
            .set(
                "keys",
                [map(&[
                    ("kid", "hs-1"),
                    ("alg", "HS256"),
                    ("file", secret.as_str()),
                ])],
            )
            .set("issuer", "https://issuer.test")
            .set("audiences", ["orders"])
            .set("leeway", "30s")
            .set(
                "claims_to_headers",
                [
                    map(&[("claim", "sub"), ("header", "x-user")]),
                    map(&[("claim", "iss"), ("header", "x-issuer")]),
                ],
            ),
    )]
}

/// A verified token is cached (an RS256 signature costs ~1M instructions to check): the cached
/// path still forwards the token's claims, not the client's, and a token that expires while
/// cached is refused as an uncached one would be.
#[test]
fn a_cached_token_keeps_its_claims_and_is_refused_once_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tokens) = support::jwt::mint(dir.path(), "jwt") else {
        return;
    };
    let token = tokens["short_lived"].as_str().unwrap().to_owned();
    let exp = tokens["short_lived_exp"].as_u64().unwrap();
    let backend = Backend::start("127.0.41.4", free_port(), "api");
    let routes = vec![Route::prefix("/orders").to("api").filter(
        Filter::new("jwt")
            .set("jwks_file", dir.path().join("jwks.json"))
            .set("issuer", "https://issuer.test")
            .set("audiences", ["orders"])
            .set("leeway", "0s")
            .set(
                "claims_to_headers",
                [map(&[("claim", "sub"), ("header", "x-user")])],
            ),
    )];
    let gw = gateway(&backend, routes);
    let url = gw.url("/orders");
    let bearer = format!("Authorization: Bearer {token}");
    for forged in ["x-user: root", "x-user: admin", "x-user: root"] {
        let r = curl(&["-H", &bearer, "-H", forged, &url]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-echo-x-user"), Some("erin"));
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert!(
        now() < exp,
        "the machine took over 6 s to get here: nothing was tested"
    );
    while now() <= exp {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let hits = backend.hits();
    let r = curl(&["-H", &bearer, &url]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("the token has expired")),
        "{:?}",
        r.header("www-authenticate")
    );
    assert_eq!(backend.hits(), hits, "an expired token reached the backend");
}

#[test]
fn jwt_tokens_of_the_issuer_pass_with_their_claims_and_every_bad_one_gets_401() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tokens) = support::jwt::mint(dir.path(), "jwt") else {
        return;
    };
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();
    let backend = Backend::start("127.0.41.3", free_port(), "api");
    // Control: the backend takes any token, and any x-user header.
    let direct = format!("http://{}/orders", backend.addr_string());
    let r = curl(&[
        "-H",
        "Authorization: Bearer garbage",
        "-H",
        "x-user: root",
        &direct,
    ]);
    assert_eq!((r.status, r.header("x-echo-x-user")), (200, Some("root")));

    let mut gw = gateway(&backend, jwt_routes(dir.path()));
    let url = gw.url("/orders");
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    for (name, user) in [("rs256", "alice"), ("es256", "bob"), ("hs256", "carol")] {
        let r = curl(&["-H", &bearer(&token(name)), "-H", "x-user: root", &url]);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(
            r.header("x-echo-x-user"),
            Some(user),
            "{name}: the claim, not the client's"
        );
        assert_eq!(r.header("x-echo-x-issuer"), Some("https://issuer.test"));
        assert_eq!(
            r.header("x-echo-authorization"),
            None,
            "the token is not forwarded"
        );
    }
    let hits = backend.hits();

    let invalid = |why: &str| {
        format!("Bearer realm=\"headway\", error=\"invalid_token\", error_description=\"{why}\"")
    };
    let sig = "the signature does not verify";
    let kid = "no key of this route has the token's kid";
    for (name, why) in [
        ("expired", "the token has expired"),
        ("not_yet_valid", "the token is not valid yet"),
        ("wrong_audience", "the token is for another audience"),
        ("wrong_issuer", "the token is from another issuer"),
        ("no_exp", "a required claim is missing"),
        ("string_exp", "a required claim is missing"),
        ("string_nbf", "a claim has the wrong type"),
        ("bad_signature", sig),
        ("tampered", sig),
        ("alg_none", "the token is malformed"),
        // kid rsa-1 is an RS256 key: no HS256 key has that kid, so no HMAC is even tried.
        ("hs256_with_rsa_public_key", kid),
        ("rs256_new_key", kid),
        ("garbage", "the token is malformed"),
    ] {
        let r = curl(&["-H", &bearer(&token(name)), "-H", "x-user: root", &url]);
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(invalid(why).as_str()),
            "{name}"
        );
    }
    for header in [None, Some("Basic YWxpY2U6cHc="), Some("Bearer ")] {
        let mut args = vec![url.clone()];
        if let Some(h) = header {
            args.extend(["-H".into(), format!("Authorization: {h}")]);
        }
        let r = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.status, 401, "{header:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"headway\"")
        );
    }
    assert_eq!(backend.hits(), hits, "no bad token reached the backend");
    assert_eq!(events(&gw, "jwt", "denied"), 16);

    // The issuer rotates its keys: the new JWKS and a SIGHUP, and the new key's tokens pass.
    std::fs::copy(
        dir.path().join("jwks_rotated.json"),
        dir.path().join("jwks.json"),
    )
    .unwrap();
    gw.signal("HUP");
    assert!(
        gw.wait_for_log("conf reloaded", Duration::from_secs(15)),
        "{}",
        gw.stderr_log()
    );
    let r = curl(&["-H", &bearer(&token("rs256_new_key")), &url]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-echo-x-user"), Some("dave"));
    // The rotated set has no EC key: ES256 tokens now find none.
    let r = curl(&["-H", &bearer(&token("es256")), &url]);
    assert_eq!(r.status, 401);
    // A broken JWKS file is refused at reload: the previous keys go on serving.
    std::fs::write(dir.path().join("jwks.json"), "{ not json").unwrap();
    gw.signal("HUP");
    assert!(gw.wait_for_log("conf not reloaded", Duration::from_secs(15)));
    assert!(
        gw.stderr_log().contains("is not a JWKS"),
        "{}",
        gw.stderr_log()
    );
    let r = curl(&["-H", &bearer(&token("rs256_new_key")), &url]);
    assert_eq!(r.status, 200, "{}", r.text());
    gw.assert_no_panic();
    let logs = gw.stderr_log();
    assert!(
        !logs.contains(&token("rs256")[..40]),
        "a token is in the logs"
    );
}

#[test]
fn bad_key_confs_are_refused_by_the_check_naming_the_key_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("bad.pem"),
        "-----BEGIN PUBLIC KEY-----\nnope\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("short.secret"), "too short\n").unwrap();
    let conf = dir.path().join("headway.yaml");
    std::fs::write(
        &conf,
        format!(
            r#"gateway:
  routes:
    - prefix: /a
      cluster: api
      filters: [{{ name: jwt, jwks_file: {d}/missing.json }}]
    - prefix: /b
      cluster: api
      filters: [{{ name: jwt, keys: [{{ alg: RS256, file: {d}/bad.pem }}] }}]
    - prefix: /c
      cluster: api
      filters: [{{ name: jwt, keys: [{{ alg: XS256, file: {d}/bad.pem }}] }}]
    - prefix: /d
      cluster: api
      filters: [{{ name: jwt, keys: [{{ alg: HS256, file: {d}/short.secret }}] }}]
    - prefix: /e
      cluster: api
      filters: [{{ name: api_key, keys_file: {d}/no-keys }}]
    - prefix: /f
      cluster: api
      filters: [{{ name: cors, allow_origins: ["https://app.example.com/"] }}]
  clusters:
    - {{ name: api, address: 127.0.41.4, port: 80 }}
"#
        ),
    )
    .unwrap();
    let (code, _, stderr) = support::run_headway(&["-t", "-c", conf.to_str().unwrap()]);
    assert_ne!(code, 0, "{stderr}");
    for expected in [
        format!("gateway.routes[0].filters[0]: jwks_file: cannot read {d}/missing.json"),
        format!("gateway.routes[1].filters[0]: keys[0].file: {d}/bad.pem is not a PEM public key"),
        "gateway.routes[2].filters[0]: keys[0].alg: `XS256` is not an algorithm".to_owned(),
        format!("gateway.routes[3].filters[0]: keys[0].file: {d}/short.secret: an HS256 secret"),
        format!("gateway.routes[4].filters[0]: keys_file: cannot read {d}/no-keys"),
        "gateway.routes[5].filters[0]: allow_origins[0]: `https://app.example.com/`".to_owned(),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
