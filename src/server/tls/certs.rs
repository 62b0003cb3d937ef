//! A certificate and its key read from PEM files and checked before any client sees them: the
//! key matches the leaf, the leaf is valid now, and the names it may be served for (its DNS
//! SANs, else its CN). Every error names the file.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A certificate ready to serve.
pub struct Loaded {
    /// The chain and its signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names from the SANs (`*.example.com` kept as written), else the CN.
    pub names: Vec<String>,
    /// The leaf's subject, as OpenSSL prints it (`CN=…, O=…`).
    pub subject: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The end of the leaf's validity.
    pub not_after: SystemTime,
}

/// What the leaf of a chain says of itself.
pub struct Leaf {
    /// DNS SANs (lower case), else the CN.
    pub names: Vec<String>,
    /// `CN=…, O=…`.
    pub subject: String,
    /// Hex serial.
    pub serial: String,
    /// Validity.
    pub not_before: SystemTime,
    /// Validity.
    pub not_after: SystemTime,
}

/// Reads a leaf certificate's names, subject and validity.
pub fn leaf(der: &[u8]) -> Result<Leaf, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not X.509: {e}"))?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0).unsigned_abs());
    Ok(Leaf {
        names,
        subject: cert.subject().to_string(),
        serial: format!("{:X}", cert.serial),
        not_before: at(cert.validity().not_before.timestamp()),
        not_after: at(cert.validity().not_after.timestamp()),
    })
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
        names: leaf.names,
        subject: leaf.subject,
        serial: leaf.serial,
        not_after: leaf.not_after,
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
