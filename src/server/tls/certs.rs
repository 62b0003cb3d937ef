//! A certificate and its key read from PEM files and checked before any client sees them: the
//! key matches the leaf, the leaf is valid now, and the names it may be served for (its DNS
//! SANs, else its CN). Every error names the file.

use crate::certificates::leaf;
use crate::config::{read_certs, read_key};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
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
    let chain: Vec<CertificateDer<'static>> = read_certs(cert)?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    // `read_certs` refuses a file without a certificate: the chain has a leaf.
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{} holds no PEM certificate", cert.display()))
        .and_then(|first| leaf(first).map_err(|e| format!("{}: {e}", cert.display())))?;
    let now = SystemTime::now();
    if leaf.not_before > now {
        return Err(format!(
            "{}: not valid yet (from {})",
            cert.display(),
            humantime::format_rfc3339_seconds(leaf.not_before)
        ));
    }
    let private = read_key(key)?;
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
