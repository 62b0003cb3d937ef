//! `gateway.listen[].tls`: a TLS listener's certificates (chosen by the name a client asks
//! for), client certificates, and how long a handshake may take. Every key but the listener's
//! address applies in place on a reload; the files are read again when they change.

use super::choices::{ClientAuthMode, UnknownServerName};
use super::defaults;
use super::duration::ConfDuration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A TLS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawListenerTls")]
pub struct ListenerTls {
    /// `certificates` (or the one `cert` and `key`): each served to the clients that ask for a
    /// name among its SANs (exact, or under a `*.` name); the first one also to clients that
    /// ask for no name or an unknown one, unless `unknown_server_name: refuse` (Envoy: several
    /// `tls_certificates`, chosen by SNI; HAProxy: `crt` per name; nginx: `server_name`).
    pub certificates: Vec<CertFiles>,
    /// `unknown_server_name`: what a client gets that sends no SNI or a name no certificate
    /// carries; default `default`: the first certificate.
    pub unknown_server_name: UnknownServerName,
    /// `client_auth`: client certificates verified against `ca`; none by default (Envoy:
    /// `require_client_certificate` + `validation_context.trusted_ca`).
    pub client_auth: Option<ClientAuth>,
    /// `handshake_timeout`: a client must finish its TLS handshake within this, else its
    /// connection is closed; default 10 s (Envoy: listener `transport_socket_connect_timeout`;
    /// nginx: `ssl_handshake_timeout`, 60 s).
    pub handshake_timeout: Duration,
}

/// A certificate chain and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    /// `cert`: the chain, leaf first.
    pub cert: PathBuf,
    /// `key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `client_auth`: which client certificates the listener accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// `ca`: the CA bundle (PEM) a client certificate must chain to.
    pub ca: PathBuf,
    /// `mode`: `required` (a client without a valid certificate fails the handshake) or
    /// `optional` (one without a certificate is served, one with a bad certificate is not);
    /// default `required`.
    #[serde(default = "defaults::client_auth_mode")]
    pub mode: ClientAuthMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    certificates: Option<Vec<CertFiles>>,
    unknown_server_name: Option<UnknownServerName>,
    client_auth: Option<ClientAuth>,
    handshake_timeout: Option<ConfDuration>,
}

impl TryFrom<RawListenerTls> for ListenerTls {
    type Error = String;

    fn try_from(raw: RawListenerTls) -> Result<ListenerTls, String> {
        let certificates = match (raw.cert, raw.key, raw.certificates) {
            (Some(cert), Some(key), None) => vec![CertFiles { cert, key }],
            (None, None, Some(list)) if !list.is_empty() => list,
            (None, None, Some(_)) => return Err("certificates: empty: list at least one".into()),
            (Some(_), None, None) => return Err("missing field `key` (beside `cert`)".into()),
            (None, Some(_), None) => return Err("missing field `cert` (beside `key`)".into()),
            (None, None, None) => {
                return Err("give `cert` and `key`, or `certificates: [{ cert, key }, …]`".into())
            }
            _ => return Err("give either `cert` and `key` or `certificates`, not both".into()),
        };
        let handshake_timeout = raw
            .handshake_timeout
            .map_or(defaults::TLS_HANDSHAKE_TIMEOUT, |ConfDuration(d)| d);
        if handshake_timeout.is_zero() {
            return Err("handshake_timeout: must be greater than zero".into());
        }
        Ok(ListenerTls {
            certificates,
            unknown_server_name: raw
                .unknown_server_name
                .unwrap_or(defaults::UNKNOWN_SERVER_NAME),
            client_auth: raw.client_auth,
            handshake_timeout,
        })
    }
}

impl ListenerTls {
    /// Every file the listener reads, each once: watched for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .certificates
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .chain(self.client_auth.iter().map(|a| a.ca.clone()))
            .collect();
        files.sort();
        files.dedup();
        files
    }
}
