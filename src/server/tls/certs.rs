//! A certificate and its key read from PEM files and checked before any client sees them: the
//! key matches the leaf, the leaf is valid now, and the names it may be served for (its DNS
//! SANs, else its CN). Every error names the file.

use crate::certificates::leaf;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// A certificate ready to serve.
pub struct Loaded {
    /// The chain and its signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// What its leaf says: names (`*.example.com` kept as written), subject, serial, validity.
    pub leaf: crate::certificates::Leaf,
}

/// Reads `cert` (the chain, leaf first) and `key`, and checks them as a pair.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, String> {
    let chain = read_chain(cert)?;
    let Some(first) = chain.first() else {
        return Err(format!(
            "{}: no certificate in it (not PEM?)",
            cert.display()
        ));
    };
    let leaf = leaf(first).map_err(|e| format!("{}: {e}", cert.display()))?;
    let now = SystemTime::now();
    if leaf.not_before > now {
        return Err(format!(
            "{}: not valid yet (from {})",
            cert.display(),
            humantime::format_rfc3339_seconds(leaf.not_before)
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{}: no private key read from it: {}",
            key.display(),
            pem_error(&e)
        )
    })?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        format!(
            "{} and {}: the key does not go with the certificate: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        leaf,
    })
}

/// Every certificate of a PEM file, in order; an error names the file.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read: {}", path.display(), pem_error(&e)))?;
    iter.collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM: {}", path.display(), pem_error(&e)))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM section of that kind".to_owned(),
        other => format!("{other:?}"),
    }
}
