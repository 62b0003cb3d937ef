//! Client certificates at a TLS listener: a verifier whose CA and mode can be swapped in place
//! (a reload, a renewed CA file) without rebuilding the listener, failures counted by reason,
//! and the verified certificate's identity kept with the connection for the proxy (XFCC).

use crate::client_cert::ClientCert;
use crate::config::{ClientAuth, ClientAuthMode};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use prometheus::IntCounterVec;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::SignatureScheme;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore};
use std::any::Any;
use std::sync::Arc;

/// Builds the verifier for `auth`: its CA file read and checked (at least one certificate,
/// each a usable CA); an error names the file.
pub fn verifier(
    auth: &ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in crate::config::read_certs(&auth.ca)? {
        roots
            .add(cert.into())
            .map_err(|e| format!("{}: not a CA certificate: {e}", auth.ca.display()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match auth.mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| format!("{}: {e}", auth.ca.display()))
}

/// The listener's client-certificate verifier: none (no certificate asked for) or the
/// current one, swapped in place.
pub struct SwappableVerifier {
    /// The verifier handshakes use now.
    pub current: ArcSwapOption<Arc<dyn ClientCertVerifier>>,
    /// Where refusals are counted, by reason (`headway_tls_handshake_failures_total`).
    pub failures: IntCounterVec,
    /// The listener, as the counter labels it.
    pub listener: String,
    /// For the signature checks' schemes when no verifier is set.
    pub provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for SwappableVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwappableVerifier")
    }
}

/// Why a client certificate was refused, as the counter's `reason` label says it.
fn reason(error: &Error) -> &'static str {
    match error {
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "client_cert_expired",
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "client_cert_not_yet_valid",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "client_cert_unknown_ca",
        _ => "client_cert_invalid",
    }
}

impl ClientCertVerifier for SwappableVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|v| v.offer_client_auth())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|v| v.client_auth_mandatory())
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // A borrow cannot outlive a swap: no hints (clients send the certificate they have).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let Some(verifier) = self.current.load_full() else {
            return Err(Error::General("no client certificate was asked for".into()));
        };
        let verified = verifier.verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &verified {
            self.failures
                .with_label_values(&[self.listener.as_str(), reason(e)])
                .inc();
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// After each handshake: the client certificate, if any, kept with the connection (its SSL
/// digest's extension) for the proxy's XFCC and the filters.
pub struct KeepClientCert;

#[async_trait]
impl TlsAccept for KeepClientCert {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let cert = ClientCert::from_der(tls.peer_certificate_der()?)?;
        Some(Arc::new(cert))
    }
}
