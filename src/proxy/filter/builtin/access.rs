//! `access_control`: allow and deny lists of addresses and CIDR blocks, judged on the client's
//! address after `gateway.trusted_proxies`; refused requests get `403` (nginx's `allow` /
//! `deny`; Envoy's `rbac` filter with `remote_ip` principals).

use crate::config::Cidr;
use crate::proxy::filter::{Answer, Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::Result;
use prometheus::IntCounter;
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;

/// Deny wins; then, if there is an allow list, only what it holds; else everyone.
pub struct AccessControl {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    denied: IntCounter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Reads a list of blocks; an error names the key and the entry.
fn blocks(key: &str, texts: &[String]) -> Result<Vec<Cidr>, String> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| Cidr::parse(text).map_err(|e| format!("{key}[{i}]: {e}")))
        .collect()
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    if conf.allow.is_empty() && conf.deny.is_empty() {
        return Err("allow, deny: name at least one address or block".into());
    }
    Ok(Arc::new(AccessControl {
        allow: blocks("allow", &conf.allow)?,
        deny: blocks("deny", &conf.deny)?,
        denied: setup.counter("denied"),
    }))
}

impl AccessControl {
    /// Whether `client` may use the route. A client whose address is unknown (not an IP
    /// listener) matches no entry: it passes a deny list and fails an allow list.
    fn permits(&self, client: Option<IpAddr>) -> bool {
        let listed = |list: &[Cidr]| client.is_some_and(|ip| list.iter().any(|c| c.contains(ip)));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }
}

#[async_trait]
impl Filter for AccessControl {
    async fn on_request(&self, _req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<Flow> {
        if self.permits(cx.client) {
            return Ok(Flow::Continue);
        }
        self.denied.inc();
        Ok(Flow::Respond(Answer::new(
            403,
            "forbidden: this route does not accept requests from your address\n",
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn control(allow: &[&str], deny: &[&str]) -> AccessControl {
        let list = |l: &[&str]| l.iter().map(|t| Cidr::parse(t).unwrap()).collect();
        AccessControl {
            allow: list(allow),
            deny: list(deny),
            denied: IntCounter::new("t", "t").unwrap(),
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn deny_wins_then_the_allow_list_if_any() {
        let both = control(&["10.0.0.0/8"], &["10.0.0.66"]);
        assert!(both.permits(ip("10.1.2.3")));
        assert!(!both.permits(ip("10.0.0.66")));
        assert!(!both.permits(ip("192.0.2.1")));
        assert!(!both.permits(None));
        assert!(
            both.permits(ip("::ffff:10.9.9.9")),
            "v4-mapped counts as v4"
        );

        let deny_only = control(&[], &["192.0.2.0/24", "2001:db8::/32"]);
        assert!(!deny_only.permits(ip("192.0.2.200")));
        assert!(!deny_only.permits(ip("2001:db8::1")));
        assert!(deny_only.permits(ip("198.51.100.1")));
        assert!(deny_only.permits(None));
    }

    #[test]
    fn bad_blocks_name_their_key_and_index() {
        let err = blocks("deny", &["10.0.0.0/8".into(), "10.0.0.0/33".into()]).unwrap_err();
        assert_eq!(err, "deny[1]: `10.0.0.0/33`: the prefix must be 0 to 32");
        let err = blocks("allow", &["nope".into()]).unwrap_err();
        assert_eq!(err, "allow[0]: `nope` is not an address or address/prefix");
    }
}
