//! The conf contract through the real binary: `-t` accepts every conf we ship and refuses bad
//! ones, naming each bad key; the daemon itself refuses them before binding anything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::path::Path;
use support::conf::{Cluster, Route};
use support::gateway::Gateway;
use support::run_headway;

#[test]
fn every_shipped_conf_passes_dash_t() {
    let mut checked = 0;
    for dir in ["conf", "conf/compose", "conf/k8s"] {
        let Ok(entries) = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let p = path.to_string_lossy().into_owned();
                let (code, stdout, stderr) = run_headway(&["-t", "-c", &p]);
                assert_eq!(code, 0, "{p}: {stdout}{stderr}");
                assert!(stdout.contains("configuration OK"), "{stdout}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no conf found in conf/");
}

/// `--version` and `-V` name the version and the commit the binary was built from; `--help`
/// describes headway's own flags in its own words; a missing conf says what to run.
#[test]
fn the_command_line_speaks_for_headway() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    for flag in ["--version", "-V"] {
        let (code, stdout, stderr) = run_headway(&[flag]);
        assert_eq!(code, 0, "{flag}: {stdout}{stderr}");
        let line = stdout.trim();
        assert!(
            line.starts_with(&format!("headway {} (", env!("CARGO_PKG_VERSION"))),
            "{flag}: {line}"
        );
        // Built from this checkout: the commit is its HEAD (the build stamps it), never empty.
        match &commit {
            Some(commit) => assert!(line.ends_with(&format!("({commit})")), "{line} vs {commit}"),
            None => assert!(!line.ends_with("()"), "{line}"),
        }
    }
    let (code, stdout, _) = run_headway(&["--help"]);
    assert_eq!(code, 0, "{stdout}");
    for words in [
        "--conf <FILE>",
        "--test",
        "--daemon",
        "--upgrade",
        "--version",
        "headway -c",
    ] {
        assert!(stdout.contains(words), "--help lacks {words}:\n{stdout}");
    }
    assert!(!stdout.contains("pingora-based service"), "{stdout}");
    let (code, _, stderr) = run_headway(&[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("headway -c conf/headway.yaml"), "{stderr}");
    let (code, _, stderr) = run_headway(&["--no-such-flag"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

fn check_bad(conf: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, conf).unwrap();
    let (code, _stdout, stderr) = run_headway(&["-t", "-c", &path.to_string_lossy()]);
    assert_ne!(code, 0, "a bad conf passed -t:\n{conf}");
    stderr
}

#[test]
fn bad_confs_exit_non_zero_naming_every_bad_key() {
    let stderr = check_bad(
        "version: 1\ngrace_period_second: 5\ngateway:\n  listen: []\n  routes:\n    - { prefix: /a, cluster: nope }\n  clusters:\n    - { name: a, address: a.test, port: 0, dns_refresh_rate: fast }\n",
    );
    for needle in [
        "grace_period_second: unknown key (did you mean `grace_period_seconds`?)",
        "gateway.listen: empty",
        "gateway.routes[0].cluster: unknown cluster `nope`",
        "gateway.clusters[0].port: 0 is not a port",
        "gateway.clusters[0].dns_refresh_rate: `fast`",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(check_bad("gateway:\n  routes: [ { prefix: /a, cluster: a, weight: 2 } ]\n  clusters: [ { name: a, address: a.test, port: 80 } ]\n")
        .contains("gateway.routes[0].weight: unknown field `weight`"));
    assert!(check_bad("gateway: {").contains("not valid YAML"));
    let (code, _, stderr) = run_headway(&["-t", "-c", "/nonexistent/headway.yaml"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot read conf file"), "{stderr}");
}

#[test]
fn the_daemon_refuses_a_bad_conf_before_binding() {
    let (code, stderr) = Gateway::builder()
        .cluster(Cluster::new("a").dns("a.test", 80).retries(99))
        .start_expect_exit();
    assert_ne!(code, 0);
    assert!(stderr.contains("gateway.clusters[0].retries"), "{stderr}");
    assert!(
        !stderr.contains("Server starting"),
        "it started serving: {stderr}"
    );
}

#[test]
fn a_missing_resolv_conf_without_nameservers_is_a_clear_start_error() {
    let (code, stderr) = Gateway::builder()
        .resolver_yaml("resolv_conf: /nonexistent/resolv.conf")
        .route(Route::prefix("/").to("a"))
        .cluster(Cluster::new("a").dns("a.test", 80))
        .start_expect_exit();
    assert_ne!(code, 0);
    assert!(
        stderr.contains("gateway.resolver: cannot use /nonexistent/resolv.conf"),
        "{stderr}"
    );
}

/// issue 15: `-t` reported only the misspelling; the bad port of the same cluster showed up
/// once it was fixed. Both at once now, the misspelling with the name it is close to.
#[test]
fn dash_t_reports_a_misspelt_key_and_a_bad_port_of_one_cluster_together() {
    let stderr = check_bad(
        "gateway:\n  clusters:\n    - { name: a, address: a.test, port: 0, dns_refresh_rat: 5s }\n",
    );
    for needle in [
        "gateway.clusters[0].dns_refresh_rat: unknown field `dns_refresh_rat` (did you mean `dns_refresh_rate`?)",
        "gateway.clusters[0].port: 0 is not a port",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(!stderr.contains("expected one of"), "{stderr}");
}
