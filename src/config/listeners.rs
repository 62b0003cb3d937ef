//! `gateway.listen` and `gateway.admin`: where the proxy and the admin endpoints listen, apart.

use super::defaults;
use super::errors::Errors;
use super::listener_tls::ListenerTls;
use super::reader;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_yaml::Value;
use std::fmt;
use std::net::SocketAddr;

/// A proxy listener: plain TCP, or TLS-terminating with HTTP/2 offered by ALPN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `address` (or the entry itself when it is a plain `"ip:port"` string).
    pub addr: SocketAddr,
    /// `tls`: terminate TLS (certificates, client certificates, handshake limit); `None`:
    /// plain TCP.
    pub tls: Option<ListenerTls>,
}

/// `gateway.admin`: the admin endpoints (`/ready`, `/clusters`, `/metrics`).
#[derive(Debug, Clone)]
pub struct Admin {
    /// `admin.listen`: default `127.0.0.1:9901`; never one of the proxy's listeners (Envoy:
    /// `admin.address`).
    pub listen: SocketAddr,
    /// `admin.reload`: whether `POST /reload` re-reads the conf in place; default `false`: a
    /// state-changing endpoint is off unless asked for (the admin port is reachable from the
    /// whole cluster in k8s/). SIGHUP reloads either way.
    pub reload: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Option<ListenAddr>,
    reload: Option<bool>,
}

/// `ip:port`, as a listener takes it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
struct ListenAddr(SocketAddr);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ip:port address (e.g. 0.0.0.0:8000 or [::]:8000)")]
struct NotAListenAddress(String);

impl TryFrom<String> for ListenAddr {
    type Error = NotAListenAddress;

    fn try_from(text: String) -> Result<ListenAddr, NotAListenAddress> {
        text.parse()
            .map(ListenAddr)
            .map_err(|_| NotAListenAddress(text))
    }
}

/// A listener as listed: `"ip:port"`, or a mapping with its address and TLS files.
impl<'de> Deserialize<'de> for Listener {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListenerVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: ListenAddr,
    tls: Option<ListenerTls>,
}

struct ListenerVisitor;

impl<'de> Visitor<'de> for ListenerVisitor {
    type Value = Listener;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"ip:port\" or { address: \"ip:port\", tls: { cert, key } }")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Listener, E> {
        let ListenAddr(addr) = ListenAddr::try_from(text.to_owned()).map_err(E::custom)?;
        Ok(Listener { addr, tls: None })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Listener, A::Error> {
        let raw = RawListener::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Listener {
            addr: raw.address.0,
            tls: raw.tls,
        })
    }
}

/// The proxy listeners; each entry is read alone so that its path keeps its index.
pub(super) fn listeners(values: Option<Vec<Value>>, errors: &mut Errors) -> Vec<Listener> {
    let values = values.unwrap_or_else(|| vec![Value::from(defaults::LISTEN)]);
    if values.is_empty() {
        errors.push(
            "gateway.listen",
            "empty: give at least one address, e.g. [\"0.0.0.0:8000\"]",
        );
    }
    let mut listen: Vec<Listener> = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let path = format!("gateway.listen[{i}]");
        if let Some(l) = reader::read::<Listener>(value, &path, errors) {
            if listen.iter().any(|e| same_socket(e.addr, l.addr)) {
                errors.push(&path, format!("`{}` is listed twice", l.addr));
            }
            listen.push(l);
        }
    }
    listen
}

/// The admin endpoints' address: never one of the proxy's.
pub(super) fn admin(
    raw: Option<RawAdmin>,
    listen: &[Listener],
    errors: &mut Errors,
) -> Option<Admin> {
    let path = "gateway.admin.listen";
    let reload = raw
        .as_ref()
        .and_then(|a| a.reload)
        .unwrap_or(defaults::ADMIN_RELOAD);
    let addr = match raw.and_then(|a| a.listen) {
        Some(ListenAddr(addr)) => addr,
        None if errors.at(path) => return None,
        None => errors.check(path, defaults::ADMIN_LISTEN.parse::<SocketAddr>())?,
    };
    if listen.iter().any(|l| same_socket(l.addr, addr)) {
        errors.push(
            path,
            format!("`{addr}` clashes with a proxy listener: the admin endpoints must never be served on the public listener"),
        );
    }
    Some(Admin {
        listen: addr,
        reload,
    })
}

/// Two listeners clash when they share a port and one of them covers the other's IP.
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
