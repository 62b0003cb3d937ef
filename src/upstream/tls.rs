//! A cluster's upstream TLS as pingora's peers take it — the CA and client certificate built
//! once per conf load and shared (`Arc`) by every request's peer and every probe — and what a
//! failed handshake was, as a closed set of reasons.

use crate::certificates::CertInfo;
use crate::config::{Alpn, UpstreamTls};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::{BasicPeer, HttpPeer, Scheme};
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use pingora::{Error, ErrorType};
use prometheus::{IntCounter, IntCounterVec};
use std::sync::Arc;

/// Why a handshake with a backend failed: the `reason` label of
/// `headway_upstream_tls_errors_total`, and the words of the 502 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The backend's certificate is past its notAfter.
    Expired,
    /// The backend's certificate is before its notBefore.
    NotYetValid,
    /// The backend's chain does not lead to `ca` (or the system roots).
    UnknownCa,
    /// The backend's certificate is not valid for the SNI name.
    WrongName,
    /// The backend requires a client certificate and the cluster has none (its
    /// `certificate_required` alert).
    NoClientCertificate,
    /// The backend refused the handshake (an alert: a refused client certificate, no common
    /// cipher or ALPN protocol), or its certificate is otherwise invalid.
    HandshakeFailure,
    /// No TLS version in common (the backend speaks only TLS 1.0/1.1, or not TLS at all).
    ProtocolVersion,
}

impl TlsFailure {
    /// Every reason, in the order of `TlsFailure::index`.
    pub const ALL: [TlsFailure; 7] = [
        TlsFailure::Expired,
        TlsFailure::NotYetValid,
        TlsFailure::UnknownCa,
        TlsFailure::WrongName,
        TlsFailure::NoClientCertificate,
        TlsFailure::HandshakeFailure,
        TlsFailure::ProtocolVersion,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::Expired => "expired",
            TlsFailure::NotYetValid => "not_yet_valid",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::WrongName => "wrong_name",
            TlsFailure::NoClientCertificate => "no_client_certificate",
            TlsFailure::HandshakeFailure => "handshake_failure",
            TlsFailure::ProtocolVersion => "protocol_version",
        }
    }

    /// As an answer or `/clusters` says it.
    pub fn text(self) -> &'static str {
        match self {
            TlsFailure::Expired => "certificate expired",
            TlsFailure::NotYetValid => "certificate not yet valid",
            TlsFailure::UnknownCa => "unknown CA",
            TlsFailure::WrongName => "certificate not valid for the name",
            TlsFailure::NoClientCertificate => "no client certificate",
            TlsFailure::HandshakeFailure => "handshake failure",
            TlsFailure::ProtocolVersion => "protocol version",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// What an error says of the handshake, if it was one. pingora keeps rustls' error as
    /// text only (`TLS connect() failed: invalid peer certificate: …`), so it is read from the
    /// words rustls writes (rustls 0.23 `Error` and `CertificateError` Display).
    ///
    /// A fatal alert counts whatever pingora calls the error: with TLS 1.3 the client's side of
    /// the handshake ends before the server has checked the client's certificate, so a refusal
    /// arrives at the first read of the new connection. The caller knows whether the
    /// connection was new and nothing was read.
    pub fn of(e: &Error) -> Option<TlsFailure> {
        let text = e.to_string();
        let handshake = matches!(
            e.etype(),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
        );
        if !handshake && !text.contains("received fatal alert") {
            return None;
        }
        let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
        Some(if has(&["certificate expired", "Expired"]) {
            TlsFailure::Expired
        } else if has(&["not valid yet", "NotValidYet"]) {
            TlsFailure::NotYetValid
        } else if has(&["UnknownIssuer"]) {
            TlsFailure::UnknownCa
        } else if has(&["not valid for name", "NotValidForName"]) {
            TlsFailure::WrongName
        } else if has(&["CertificateRequired"]) {
            TlsFailure::NoClientCertificate
        } else if has(&["ProtocolVersion", "PeerIncompatible", "InvalidContentType"]) {
            TlsFailure::ProtocolVersion
        } else {
            TlsFailure::HandshakeFailure
        })
    }
}

/// One cluster's TLS to its backends, ready to put on a peer.
pub struct PeerTls {
    sni: String,
    ca: Option<Arc<CaType>>,
    client_cert: Option<Arc<CertKey>>,
    alpn: Alpn,
    /// Keeps this cluster's connections apart in pingora's pool: its reuse hash covers the
    /// address, SNI and client certificate but not the CA or ALPN.
    group_key: u64,
    /// `headway_upstream_tls_errors_total{cluster, reason}`, by [`TlsFailure::index`].
    errors: [IntCounter; 7],
    /// The client certificate as `/clusters` and the expiry gauge show it (its leaf read once,
    /// here).
    pub client_cert_info: Option<CertInfo>,
}

impl PeerTls {
    /// Builds the cluster's CA and client certificate from the DER the conf load read and
    /// checked (so the parses pingora would panic on cannot fail here).
    pub fn new(cluster: &str, tls: &UpstreamTls, errors: &IntCounterVec) -> PeerTls {
        let ca = tls.ca.as_ref().map(|ca| {
            let certs: Vec<WrappedX509> = ca
                .certs
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            Arc::<CaType>::from(certs)
        });
        let client_cert = tls.client_cert.as_ref().map(|c| {
            Arc::new(CertKey::new(
                c.chain.as_ref().clone(),
                c.key.as_ref().clone(),
            ))
        });
        let client_cert_info = tls.client_cert.as_ref().and_then(|c| {
            let leaf = crate::certificates::leaf(c.chain.first()?).ok()?;
            let file = c.cert_path.display().to_string();
            Some(CertInfo::of(&format!("cluster {cluster}"), &file, &leaf))
        });
        PeerTls {
            client_cert_info,
            sni: tls.sni.clone(),
            ca,
            client_cert,
            alpn: tls.alpn,
            group_key: xxhash_rust::xxh3::xxh3_64(format!("{cluster} {tls:?}").as_bytes()),
            errors: TlsFailure::ALL.map(|r| errors.with_label_values(&[cluster, r.label()])),
        }
    }

    /// Makes `peer` speak this TLS: SNI, verification against the CA for the SNI name, the
    /// client certificate, ALPN, and a pool of its own.
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.scheme = Scheme::HTTPS;
        peer.sni = self.sni.clone();
        peer.client_cert_key = self.client_cert.clone();
        peer.group_key = self.group_key;
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = self.ca.clone();
        let (max, min) = self.versions();
        peer.options.set_http_version(max, min);
    }

    /// The same for a TCP probe's peer (which carries no client certificate: the conf allows
    /// no TCP probe with one).
    pub fn apply_basic(&self, peer: &mut BasicPeer) {
        peer.sni = self.sni.clone();
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = self.ca.clone();
        let (max, min) = self.versions();
        peer.options.set_http_version(max, min);
    }

    fn versions(&self) -> (u8, u8) {
        match self.alpn {
            Alpn::Http1 => (1, 1),
            Alpn::H2 => (2, 2),
            Alpn::H2Http1 => (2, 1),
        }
    }

    /// Counts a failed handshake; returns its reason, or `None` if `e` is no TLS failure.
    pub fn count_failure(&self, e: &Error) -> Option<TlsFailure> {
        let failure = TlsFailure::of(e)?;
        self.errors[failure.index()].inc();
        Some(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::TlsFailure::{self, *};
    use pingora::{Error, ErrorType};

    #[test]
    fn rustls_words_become_reasons() {
        let handshake = |text: &str| {
            let e = Error::explain(
                ErrorType::TLSHandshakeFailure,
                format!("TLS connect() failed: {text}, SNI: a.test"),
            );
            TlsFailure::of(&e)
        };
        for (text, reason) in [
            ("invalid peer certificate: certificate expired: verification time 1800000000 (UNIX), but certificate is not valid after 1577923200 (222076800 seconds ago)", Expired),
            ("invalid peer certificate: certificate not valid yet: verification time 1 (UNIX), but certificate is not valid before 2 (1 seconds in future)", NotYetValid),
            ("invalid peer certificate: UnknownIssuer", UnknownCa),
            ("invalid peer certificate: certificate not valid for name \"a.test\"; certificate is only valid for DnsName(\"b.test\")", WrongName),
            ("received fatal alert: ProtocolVersion", ProtocolVersion),
            ("received fatal alert: HandshakeFailure", HandshakeFailure),
            ("invalid peer certificate: BadSignature", HandshakeFailure),
        ] {
            assert_eq!(handshake(text), Some(reason), "{text}");
        }
        let read =
            |text: &str| TlsFailure::of(&Error::explain(ErrorType::ReadError, text.to_owned()));
        assert_eq!(
            read("received fatal alert: CertificateRequired"),
            Some(NoClientCertificate)
        );
        assert_eq!(read("Connection reset by peer"), None);
        assert!(TlsFailure::ALL
            .iter()
            .enumerate()
            .all(|(i, r)| r.index() == i));
    }
}
