//! Defects found in review (issue 15), each shown through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::time::Duration;
use support::gateway::Gateway;

/// A second `headway -c` on the same conf while the first runs: it used to retry the taken
/// ports for ~30 s, then panic every listener thread and run on with none. It must exit
/// non-zero at once, with one line naming each taken address and its conf key.
#[test]
fn a_second_gateway_on_taken_ports_exits_at_once_naming_them() {
    let first = Gateway::builder()
        .routes_yaml(r#"- { prefix: /ok, direct_response: { status: 200, body: "ok\n" } }"#)
        .start();
    let (listen, admin) = (first.listen_addr(), first.admin_addr());
    let mut second = Gateway::builder()
        .listen(listen)
        .admin(admin)
        .routes_yaml(r#"- { prefix: /ok, direct_response: { status: 200, body: "ok\n" } }"#)
        .spawn();
    let code = second.wait_exit(Duration::from_secs(5));
    let log = second.stderr_log();
    assert!(
        code.is_some_and(|c| c != 0),
        "exit code {code:?} (None: still running after 5 s); stderr:\n{log}"
    );
    let named: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("address already in use"))
        .collect();
    assert_eq!(named.len(), 1, "one line naming the addresses:\n{log}");
    for wanted in [
        format!("gateway.listen[0] {listen}: address already in use"),
        format!("gateway.admin.listen {admin}: address already in use"),
    ] {
        assert!(
            named[0].contains(&wanted),
            "{wanted:?} not in {:?}",
            named[0]
        );
    }
    assert!(!log.contains("panicked"), "{log}");
    // The first one never noticed.
    assert_eq!(support::http::get(listen, "/ok").unwrap().status, 200);
}
