//! Certificate, key and CA files named by the conf: read and checked at load, kept in memory
//! (DER), so a file that is unreadable, not PEM, or a key that does not match its certificate
//! is a conf error naming the key and the file, and a bad file never replaces a good one.

use super::errors::Errors;
use pingora::tls::{ClientConfig, PrivateKeyDer, RootCertStore};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA bundle: the certificates in `path`, each DER. Equal when the path and every
/// certificate are: a renewed file makes a cluster's conf differ, so a reload rebuilds it.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// The file, as the conf names it.
    pub path: PathBuf,
    /// Its certificates, DER, in file order.
    pub certs: Arc<Vec<Vec<u8>>>,
    digest: String,
}

/// A client certificate chain (leaf first) and its private key. Equal when the paths, the
/// chain and the key are.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertKey {
    /// `cert`, as the conf names it.
    pub cert_path: PathBuf,
    /// `key`, as the conf names it.
    pub key_path: PathBuf,
    /// The chain, DER, leaf first.
    pub chain: Arc<Vec<Vec<u8>>>,
    /// The private key, DER (PKCS#8, PKCS#1 or SEC1). Never printed.
    pub key: Arc<Vec<u8>>,
    digest: String,
}

/// A short digest of what was read, for the Debug form (what a log shows of a conf): two
/// reads of a renewed file print differently, and the key itself is never printed.
fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaBundle({}, sha256:{})",
            self.path.display(),
            self.digest
        )
    }
}

impl fmt::Debug for ClientCertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClientCertKey({}, {}, sha256:{})",
            self.cert_path.display(),
            self.key_path.display(),
            self.digest
        )
    }
}

/// The certificates of a PEM file, each checked to be an X.509 certificate, in file order; an
/// error names the file. (The TLS listeners read their files again with it on renewal.)
pub fn read_certs(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile::certs(&mut text.as_slice()) {
        let der = item.map_err(|e| format!("{} is not PEM: {e}", file.display()))?;
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| {
            format!(
                "{} holds a certificate that does not parse: {e}",
                file.display()
            )
        })?;
        certs.push(der.to_vec());
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", file.display()));
    }
    Ok(certs)
}

/// Reads a CA bundle; every certificate must be usable as a trust anchor.
pub(super) fn read_ca(file: &Path, path: &str, errors: &mut Errors) -> Option<CaBundle> {
    let certs = errors.check(path, read_certs(file))?;
    let mut store = RootCertStore::empty();
    for der in &certs {
        if let Err(e) = store.add(der.clone().into()) {
            errors.push(
                path,
                format!("{}: a certificate is not a usable CA: {e}", file.display()),
            );
            return None;
        }
    }
    Some(CaBundle {
        path: file.to_owned(),
        digest: digest(certs.iter().map(Vec::as_slice)),
        certs: Arc::new(certs),
    })
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1); an error names the file.
pub fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    rustls_pemfile::private_key(&mut text.as_slice())
        .map_err(|e| format!("{} is not PEM: {e}", file.display()))?
        .ok_or_else(|| format!("{} holds no PEM private key", file.display()))
}

/// Reads a client certificate and its key, and checks that the key is the certificate's.
pub(super) fn read_client_cert(
    cert: &Path,
    key: &Path,
    path: &str,
    errors: &mut Errors,
) -> Option<ClientCertKey> {
    let chain = errors.check(format!("{path}.cert"), read_certs(cert));
    let private = errors.check(format!("{path}.key"), read_key(key));
    let (chain, private) = (chain?, private?);
    let key_der = private.secret_der().to_vec();
    // Checked with the same library that will use it: rustls refuses a key that is not the
    // certificate's (and pingora would otherwise panic at the first handshake).
    pingora::tls::install_default_crypto_provider();
    let certs = chain.iter().map(|c| c.clone().into()).collect();
    let matched = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_client_auth_cert(certs, private)
        .map(|_| ());
    let reread = PrivateKeyDer::try_from(key_der.clone()).map(|_| ());
    if let Err(e) = matched
        .map_err(|e| e.to_string())
        .and(reread.map_err(str::to_owned))
    {
        errors.push(
            format!("{path}.key"),
            format!(
                "{} does not go with the certificate in {}: {e}",
                key.display(),
                cert.display()
            ),
        );
        return None;
    }
    Some(ClientCertKey {
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
        digest: digest(chain.iter().map(Vec::as_slice).chain([key_der.as_slice()])),
        chain: Arc::new(chain),
        key: Arc::new(key_der),
    })
}
