//! `jwt`'s `remote_jwks` (issue 24, item 5) through the real binary: Debian's nginx is the
//! identity provider, serving its JWKS file over HTTPS with a certificate the `openssl` command
//! line made (tests/support/pki.rs), found by DNS as a cluster with upstream TLS; PyJWT with
//! `cryptography` signs the tokens and writes both key sets (tests/interop/mint_jwt.py); curl
//! sends the requests. The test rotates the file, breaks it, removes it and stops nginx.
//!
//! The control fetches the JWKS with curl straight from nginx, trusting the same root, so that
//! a failure through the gateway is the gateway's. Each test prints one `jwks | …` line.
//!
//! Addresses: 127.0.51.0/24.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::conf::{map, Cluster, Filter, Route, UpstreamTls};
use support::curl::curl;
use support::dns::DnsServer;
use support::gateway::{Gateway, GatewayBuilder};
use support::nginx::{self, Nginx, PodTls};
use support::pki::{self, Pki};
use support::{free_port, http, wait_until};

/// A token signed by no key anyone publishes, with a `kid` no JWKS has: `{"alg":"RS256",
/// "typ":"JWT","kid":"made-up-kid"}`, then any payload and signature.
const MADE_UP_HEADER: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6Im1hZGUtdXAta2lkIn0";

/// The identity provider: nginx on `ip` serving `/files/jwks.json` over HTTPS as `idp.test`
/// (its certificate signed by the PKI's intermediate), found by DNS.
struct Provider {
    pki: Pki,
    nginx: Nginx,
    dns: DnsServer,
}

impl Provider {
    fn start(ip: &str, jwks: &[u8]) -> Provider {
        let pki = Pki::new();
        let cert = pki.server("idp", &["idp.test"]);
        let nginx = Nginx::start_tls(
            ip,
            free_port(),
            PodTls {
                chain: cert.chain.clone(),
                key: cert.key.clone(),
                client_ca: None,
                protocols: None,
            },
        );
        nginx.put_file("jwks.json", jwks);
        let dns = DnsServer::start();
        dns.set_a("idp.test", &[ip]);
        Provider { pki, nginx, dns }
    }

    /// The control: curl fetches the JWKS straight from nginx, trusting the PKI's root.
    fn curl_jwks(&self) -> (u16, Vec<u8>) {
        let resolve = format!("idp.test:{}:{}", self.nginx.port(), self.nginx.ip());
        let root = self.pki.path("root.pem");
        let url = format!("https://idp.test:{}/files/jwks.json", self.nginx.port());
        let r = curl(&[
            "--resolve",
            &resolve,
            "--cacert",
            root.to_str().unwrap(),
            &url,
        ]);
        (r.status, r.body)
    }

    /// Requests for the JWKS that reached nginx.
    fn fetches(&self) -> usize {
        self.nginx
            .requests()
            .iter()
            .filter(|l| l.split(' ').nth(1) == Some("/files/jwks.json"))
            .count()
    }

    /// The cluster `idp`: the provider by DNS, over TLS trusting the PKI's root.
    fn cluster(&self) -> Cluster {
        Cluster::new("idp")
            .dns("idp.test", self.nginx.port())
            .tls(UpstreamTls::new().ca(&self.pki.path("root.pem")))
    }
}

/// `/orders` behind `jwt` with keys from the cluster `idp` (no token cache: every request is
/// verified against the keys held now), and the two clusters.
fn section(provider: &Provider, backend: &Backend, refresh: &str, idp: Cluster) -> GatewayBuilder {
    let remote = map(&[
        ("cluster", "idp"),
        ("path", "/files/jwks.json"),
        ("refresh", refresh),
        ("min_refetch_interval", "1s"),
    ]);
    Gateway::builder()
        .nameserver(provider.dns.addr())
        .route(
            Route::prefix("/orders").to("api").filter(
                Filter::new("jwt")
                    .set("remote_jwks", remote)
                    .set("issuer", "https://issuer.test")
                    .set("audiences", ["orders"])
                    .set("cache_size", 0)
                    .set(
                        "claims_to_headers",
                        [map(&[("claim", "sub"), ("header", "x-user")])],
                    ),
            ),
        )
        .cluster(Cluster::new("api").address(&backend.ip(), backend.port()))
        .cluster(idp)
}

/// `headway_filter_events_total` of the route's `jwt` for `event`.
fn events(gw: &Gateway, event: &str) -> f64 {
    gw.metric(&format!(
        "headway_filter_events_total{{event=\"{event}\",filter=\"jwt\",route=\"/orders\"}}"
    ))
}

/// The status `token` gets on `/orders`, and the `x-user` the backend saw.
fn ask(gw: &Gateway, token: &str) -> (u16, Option<String>) {
    let r = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &gw.url("/orders"),
    ]);
    (r.status, r.header("x-echo-x-user").map(str::to_owned))
}

/// Sends a token of a made-up kid (each asks for a refetch, at most one a second) until
/// `event` has been counted `times`; false after 10 s.
fn poke_until(gw: &Gateway, made_up: &str, event: &str, times: f64) -> bool {
    wait_until(Duration::from_secs(10), || {
        assert_eq!(ask(gw, made_up).0, 401);
        events(gw, event) >= times
    })
}

fn peers_available(test: &str) -> bool {
    nginx::available(test) && pki::available(test)
}

#[test]
fn keys_rotate_with_their_provider_and_the_last_good_set_outlives_it() {
    let test = "keys_rotate_with_their_provider_and_the_last_good_set_outlives_it";
    if !peers_available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tokens) = support::jwt::mint(dir.path(), "jwks") else {
        return;
    };
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();
    let (old, ec, new) = (token("rs256"), token("es256"), token("rs256_new_key"));
    let made_up = format!("{MADE_UP_HEADER}.{}", old.split_once('.').unwrap().1);
    let first = std::fs::read(dir.path().join("jwks.json")).unwrap();
    let rotated = std::fs::read(dir.path().join("jwks_rotated.json")).unwrap();

    let mut provider = Provider::start("127.0.51.1", &first);
    // Control: nginx serves the JWKS over HTTPS to a client trusting the root.
    assert_eq!(provider.curl_jwks(), (200, first.clone()));
    let backend = Backend::start("127.0.51.2", free_port(), "api");
    let gw = section(&provider, &backend, "1h", provider.cluster()).start();

    // The first fetch, in the background: rsa-1 and ec-1 verify.
    assert!(
        wait_until(Duration::from_secs(10), || ask(&gw, &old).0 == 200),
        "the first JWKS never arrived:\n{}",
        gw.stderr_log()
    );
    assert_eq!(ask(&gw, &old), (200, Some("alice".into())));
    assert_eq!(ask(&gw, &ec), (200, Some("bob".into())));
    assert_eq!(ask(&gw, &new).0, 401, "rsa-2 is not published yet");

    // The provider rotates: rsa-2 in, ec-1 out. The refresh is an hour away: the unknown kid
    // of the first rsa-2 token asks for the refetch.
    provider.nginx.put_file("jwks.json", &rotated);
    assert_eq!(provider.curl_jwks(), (200, rotated.clone()));
    let rotated_at = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || ask(&gw, &new).0 == 200),
        "rsa-2 never verified:\n{}",
        gw.stderr_log()
    );
    let picked_up = rotated_at.elapsed();
    assert_eq!(ask(&gw, &new), (200, Some("dave".into())));
    assert_eq!(ask(&gw, &old).0, 200, "rsa-1 is still published");
    assert_eq!(ask(&gw, &ec).0, 401, "ec-1 was withdrawn");
    assert!(events(&gw, "jwks_refetch_unknown_kid") >= 1.0);
    assert_eq!(events(&gw, "jwks_keys_changed"), 2.0);

    // Made-up kids, as fast as curl goes, over a second after the last fetch: the first asks
    // for a refetch, the others wait for the next second.
    std::thread::sleep(Duration::from_millis(1200));
    let before = provider.fetches();
    let started = Instant::now();
    for _ in 0..30 {
        assert_eq!(ask(&gw, &made_up).0, 401);
    }
    let flood = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let during = provider.fetches() - before;
    assert!(
        during >= 1 && during as f64 <= flood.as_secs_f64().ceil(),
        "{during} fetches for 30 made-up kids in {flood:?}"
    );

    // The provider breaks, three ways: the last good set stays, each failure counted.
    provider
        .nginx
        .put_file("jwks.json", b"<html>502 Bad Gateway</html>");
    assert!(poke_until(&gw, &made_up, "jwks_fetch_invalid", 1.0));
    provider.nginx.remove_file("jwks.json");
    assert!(poke_until(&gw, &made_up, "jwks_fetch_bad_status", 1.0));
    let last_good = gw.metric(
        "headway_filter_event_timestamp_seconds{event=\"jwks_fetch_ok\",filter=\"jwt\",route=\"/orders\"}",
    );
    provider.nginx.stop_term();
    assert!(poke_until(&gw, &made_up, "jwks_fetch_unreachable", 1.0));
    assert_eq!(ask(&gw, &old), (200, Some("alice".into())));
    assert_eq!(ask(&gw, &new), (200, Some("dave".into())));
    assert_eq!(ask(&gw, &ec).0, 401);

    // The set's age: stamped at the last good fetch, not since.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        last_good > now - 60.0 && last_good <= now,
        "{last_good} vs {now}"
    );
    assert_eq!(
        gw.metric(
            "headway_filter_event_timestamp_seconds{event=\"jwks_fetch_ok\",filter=\"jwt\",route=\"/orders\"}"
        ),
        last_good
    );
    let log = gw.stderr_log();
    assert!(log.contains("keeping the 2 key(s) fetched"), "{log}");
    assert!(
        log.contains("filters: 1 background task(s) started"),
        "{log}"
    );
    gw.assert_no_panic();
    println!(
        "jwks | rotation picked up in {picked_up:?}; 30 made-up kids in {flood:?}: {during} fetch(es); fetches ok {} unknown-kid refetches {} invalid {} bad_status {} unreachable {}",
        events(&gw, "jwks_fetch_ok"),
        events(&gw, "jwks_refetch_unknown_kid"),
        events(&gw, "jwks_fetch_invalid"),
        events(&gw, "jwks_fetch_bad_status"),
        events(&gw, "jwks_fetch_unreachable"),
    );
}

/// The background refresh takes a withdrawn key away with no request asking; a reload that
/// leaves `remote_jwks` as it was keeps the keys, even with the provider down.
#[test]
fn the_refresh_runs_unasked_and_a_reload_keeps_the_keys() {
    let test = "the_refresh_runs_unasked_and_a_reload_keeps_the_keys";
    if !peers_available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tokens) = support::jwt::mint(dir.path(), "jwks") else {
        return;
    };
    let (old, new) = (
        tokens["rs256"].as_str().unwrap().to_owned(),
        tokens["rs256_new_key"].as_str().unwrap().to_owned(),
    );
    let rotated = std::fs::read(dir.path().join("jwks_rotated.json")).unwrap();
    // rsa-2 alone: rsa-1 withdrawn.
    let mut only_new: serde_json::Value = serde_json::from_slice(&rotated).unwrap();
    only_new["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == "rsa-2");
    let only_new = serde_json::to_vec(&only_new).unwrap();

    let mut provider = Provider::start("127.0.51.11", &rotated);
    assert_eq!(provider.curl_jwks(), (200, rotated.clone()));
    let backend = Backend::start("127.0.51.12", free_port(), "api");
    let mut gw = section(&provider, &backend, "1s", provider.cluster()).start();
    assert!(wait_until(Duration::from_secs(10), || ask(&gw, &old).0 == 200));

    provider.nginx.put_file("jwks.json", &only_new);
    let withdrawn = wait_until(Duration::from_secs(10), || ask(&gw, &old).0 == 401);
    assert!(withdrawn, "rsa-1 still verifies:\n{}", gw.stderr_log());
    assert_eq!(ask(&gw, &new).0, 200);
    assert_eq!(events(&gw, "jwks_refetch_unknown_kid"), 0.0);

    // Provider down, then a reload that changes another route only: the keys stay.
    provider.nginx.stop_term();
    assert!(wait_until(Duration::from_secs(10), || events(
        &gw,
        "jwks_fetch_unreachable"
    ) >= 1.0));
    gw.rewrite(
        section(&provider, &backend, "1s", provider.cluster())
            .route(Route::prefix("/other").to("api")),
    );
    gw.signal("HUP");
    assert!(gw.wait_for_log("conf reloaded", Duration::from_secs(15)));
    assert_eq!(ask(&gw, &new), (200, Some("dave".into())));
    assert_eq!(
        http::get(backend.addr(), "/other").unwrap().status,
        200,
        "control: the backend answers /other"
    );
    let r = curl(&[&gw.url("/other")]);
    assert_eq!(r.status, 200, "the reloaded conf serves /other");

    // The reloaded conf's task refreshes once the provider is back, and alone: the task of the
    // conf before it has stopped (two would fetch twice a second).
    let ok = events(&gw, "jwks_fetch_ok");
    provider.nginx.restart();
    assert!(
        wait_until(Duration::from_secs(10), || events(&gw, "jwks_fetch_ok")
            > ok),
        "no fetch after the reload:\n{}",
        gw.stderr_log()
    );
    let before = provider.fetches();
    std::thread::sleep(Duration::from_secs(3));
    let in_3s = provider.fetches() - before;
    let log = gw.stderr_log();
    assert_eq!(
        log.matches("filters: 1 background task(s) started").count(),
        2,
        "one task at start, one for the reloaded conf:\n{log}"
    );
    assert!(
        (1..=4).contains(&in_3s),
        "{in_3s} fetches in 3 s at refresh 1s"
    );
    gw.assert_no_panic();
    println!(
        "jwks | refresh 1s: withdrawn key refused without a request asking; after a reload with the provider down: still verified; provider back: {in_3s} fetches in 3 s; fetches ok {} unreachable {}",
        events(&gw, "jwks_fetch_ok"),
        events(&gw, "jwks_fetch_unreachable")
    );
}

/// The fetch verifies the provider as the cluster's TLS says: a provider whose certificate the
/// cluster's CA did not sign gives no keys (the TLS reason counted as for any request), and
/// every token is refused until one does.
#[test]
fn a_provider_the_cluster_does_not_trust_gives_no_keys() {
    let test = "a_provider_the_cluster_does_not_trust_gives_no_keys";
    if !peers_available(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tokens) = support::jwt::mint(dir.path(), "jwks") else {
        return;
    };
    let old = tokens["rs256"].as_str().unwrap().to_owned();
    let first = std::fs::read(dir.path().join("jwks.json")).unwrap();
    let provider = Provider::start("127.0.51.31", &first);
    // Control: curl trusting the other root refuses the provider (exit 60: peer certificate
    // cannot be authenticated), trusting the right one it gets the JWKS.
    let resolve = format!("idp.test:{}:{}", provider.nginx.port(), provider.nginx.ip());
    let url = format!("https://idp.test:{}/files/jwks.json", provider.nginx.port());
    let other = provider.pki.path("other-root.pem");
    let refused = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "--noproxy",
            "*",
            "--resolve",
            &resolve,
        ])
        .arg("--cacert")
        .arg(&other)
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");
    assert_eq!(provider.curl_jwks(), (200, first));

    let backend = Backend::start("127.0.51.32", free_port(), "api");
    let distrusting = Cluster::new("idp")
        .dns("idp.test", provider.nginx.port())
        .tls(UpstreamTls::new().ca(&other));
    let gw = section(&provider, &backend, "1h", distrusting).start();
    let tls_errors = "headway_upstream_tls_errors_total{cluster=\"idp\",reason=\"unknown_ca\"}";
    assert!(
        wait_until(Duration::from_secs(10), || gw.metric(tls_errors) >= 1.0),
        "{}",
        gw.stderr_log()
    );
    assert!(events(&gw, "jwks_fetch_unreachable") >= 1.0);
    assert_eq!(events(&gw, "jwks_fetch_ok"), 0.0);
    let (status, _) = ask(&gw, &old);
    assert_eq!(status, 401);
    assert_eq!(
        provider.fetches(),
        1,
        "only the control's request reached nginx"
    );
    let log = gw.stderr_log();
    assert!(log.contains("TLS error: unknown CA"), "{log}");
    assert!(log.contains("no key yet: every token is refused"), "{log}");
    gw.assert_no_panic();
    println!(
        "jwks | untrusted provider: {} TLS errors (unknown_ca), {} fetches unreachable, 0 keys",
        gw.metric(tls_errors),
        events(&gw, "jwks_fetch_unreachable")
    );
}

#[test]
fn bad_remote_jwks_confs_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = dir.path().join("headway.yaml");
    std::fs::write(
        &conf,
        format!(
            r#"gateway:
  routes:
    - prefix: /a
      cluster: api
      filters: [{{ name: jwt, remote_jwks: {{ cluster: idq, path: /jwks.json }} }}]
    - prefix: /b
      cluster: api
      filters: [{{ name: jwt, jwks_file: {d}/jwks.json, remote_jwks: {{ cluster: idp, path: /jwks.json }} }}]
    - prefix: /c
      cluster: api
      filters: [{{ name: jwt, remote_jwks: {{ cluster: idp, path: /jwks.json, refresh: soon }} }}]
    - prefix: /d
      cluster: api
      filters: [{{ name: jwt, remote_jwks: {{ cluster: idp, path: jwks.json }} }}]
    - prefix: /e
      cluster: api
      filters: [{{ name: jwt, remote_jwks: {{ cluster: idp, path: /jwks.json, timeout: 0s }} }}]
    - prefix: /f
      cluster: api
      filters: [{{ name: jwt, remote_jwks: {{ cluster: idp, uri: /jwks.json }} }}]
  clusters:
    - {{ name: api, address: 127.0.51.21, port: 80 }}
    - {{ name: idp, address: 127.0.51.22, port: 443, tls: {{ sni: idp.test }} }}
"#
        ),
    )
    .unwrap();
    let (code, _, stderr) = support::run_headway(&["-t", "-c", conf.to_str().unwrap()]);
    assert_ne!(code, 0, "{stderr}");
    for expected in [
        "gateway.routes[0].filters[0]: remote_jwks.cluster: unknown cluster `idq` (did you mean idp?)",
        "gateway.routes[1].filters[0]: remote_jwks: not with `jwks_file` or `keys`",
        "gateway.routes[2].filters[0]: remote_jwks.refresh: ",
        "gateway.routes[3].filters[0]: remote_jwks.path: `jwks.json` is not a path",
        "gateway.routes[4].filters[0]: remote_jwks.timeout: must be more than 0",
        "gateway.routes[5].filters[0]: remote_jwks: unknown field `uri`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
