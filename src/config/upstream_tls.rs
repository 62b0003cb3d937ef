//! A cluster's `tls`: how the gateway speaks TLS to its backends (Envoy: `UpstreamTlsContext`);
//! every file it names is read and checked here, once per conf load.

use super::errors::Errors;
use super::tls_files::{read_ca, read_client_cert, CaBundle, ClientCertKey};
use serde::Deserialize;
use std::path::PathBuf;

/// A cluster's `tls`: the backends are reached over TLS, verified against `ca` for the name
/// `sni`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// `sni`: the name sent in the ClientHello, and the name the backend's certificate must be
    /// valid for (one of its subjectAltNames); default: the cluster's `address` without a
    /// trailing dot. Required when `address` is an IP: pingora's connector sends no SNI and
    /// verifies nothing without one.
    pub sni: String,
    /// `ca`: the certificates a backend's chain must lead to; `None` (the default): the system
    /// roots.
    pub ca: Option<CaBundle>,
    /// `cert` and `key`: the client certificate presented to backends that ask (mutual TLS).
    pub client_cert: Option<ClientCertKey>,
    /// `alpn`: the protocols offered, in order of preference; default `[http/1.1]`, or `[h2]`
    /// with `protocol: http2`.
    pub alpn: Alpn,
}

/// `tls.alpn`: what the gateway offers in the ClientHello's ALPN extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `[http/1.1]`.
    Http1,
    /// `[h2]`: HTTP/2 only (gRPC backends).
    H2,
    /// `[h2, http/1.1]`: HTTP/2 when the backend offers it.
    H2Http1,
}

/// What the cluster's `address` says of the default `sni`.
pub(super) enum AddressKind {
    /// A DNS name: the default SNI, without a trailing dot (and, for an SRV name, without its
    /// `_service._proto.` labels).
    Name(String),
    /// An IP: no default.
    Ip,
    /// Missing or invalid (already reported).
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    sni: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    alpn: Option<Vec<String>>,
    min_version: Option<String>,
}

/// Checks a cluster's `tls` and reads its files. `http2`: the cluster's `protocol` is `http2`,
/// which sets the default ALPN to `[h2]`.
pub(super) fn upstream_tls(
    raw: RawUpstreamTls,
    address: AddressKind,
    http2: bool,
    path: &str,
    errors: &mut Errors,
) -> Option<UpstreamTls> {
    let before = errors.count();
    let sni = match (raw.sni, address) {
        (Some(sni), _) => {
            let valid = !sni.is_empty()
                && sni.len() <= 253
                && sni.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !valid {
                errors.push(format!("{path}.sni"), format!("`{sni}` is not a DNS name"));
            }
            Some(sni)
        }
        (None, AddressKind::Name(name)) => Some(name.trim_end_matches('.').to_owned()),
        (None, AddressKind::Ip) => {
            errors.push(
                path,
                "missing field `sni`: with an IP address, the name the backend's certificate \
                 must carry is needed (without one nothing would be verified)",
            );
            None
        }
        (None, AddressKind::Unknown) => None,
    };
    let ca = raw
        .ca
        .and_then(|file| read_ca(&file, &format!("{path}.ca"), errors));
    let client_cert = match (raw.cert, raw.key) {
        (Some(cert), Some(key)) => read_client_cert(&cert, &key, path, errors),
        (Some(_), None) => {
            errors.push(path, "missing field `key`: `cert` needs its private key");
            None
        }
        (None, Some(_)) => {
            errors.push(path, "missing field `cert`: `key` needs its certificate");
            None
        }
        (None, None) => None,
    };
    let alpn = match raw.alpn {
        None if http2 => Alpn::H2,
        None => Alpn::Http1,
        Some(list) => {
            let list: Vec<&str> = list.iter().map(String::as_str).collect();
            let alpn = match list.as_slice() {
                ["http/1.1"] => Some(Alpn::Http1),
                ["h2"] => Some(Alpn::H2),
                ["h2", "http/1.1"] => Some(Alpn::H2Http1),
                _ => {
                    errors.push(
                        format!("{path}.alpn"),
                        format!("{list:?} is not one of [http/1.1], [h2], [h2, http/1.1]"),
                    );
                    None
                }
            };
            if http2 && alpn.is_some_and(|a| a != Alpn::H2) {
                errors.push(
                    format!("{path}.alpn"),
                    "protocol: http2 speaks HTTP/2 only: use alpn: [h2] (or leave it out)",
                );
            }
            alpn.unwrap_or(Alpn::Http1)
        }
    };
    if let Some(version) = raw.min_version {
        // The connector (pingora's rustls) offers TLS 1.2 and 1.3 to every backend, and has no
        // per-backend setting to offer fewer: "1.2" is what it always enforces, "1.3" it cannot.
        if version != "1.2" {
            errors.push(
                format!("{path}.min_version"),
                format!(
                    "`{version}` is not supported: backends are always offered TLS 1.2 and 1.3 \
                     (\"1.2\" is the only minimum the connector enforces)"
                ),
            );
        }
    }
    if errors.count() > before {
        return None;
    }
    Some(UpstreamTls {
        sni: sni?,
        ca,
        client_cert,
        alpn,
    })
}
