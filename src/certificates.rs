//! Every certificate the gateway serves or presents, with what an operator checks before it
//! expires: subject, names, serial, end of validity. The TLS listeners write theirs each time
//! their files are read; `/clusters`, `/stats`, the dashboard and the expiry gauge read them,
//! with the clusters' client certificates.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// What a leaf certificate says of itself.
pub struct Leaf {
    /// DNS SANs (lower case), else the CN.
    pub names: Vec<String>,
    /// `CN=…, O=…`.
    pub subject: String,
    /// Hex serial, as `openssl x509 -serial` prints it (without its leading zeros).
    pub serial: String,
    /// Validity.
    pub not_before: SystemTime,
    /// Validity.
    pub not_after: SystemTime,
}

/// Reads a leaf certificate's names, subject, serial and validity.
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

/// One certificate in use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertInfo {
    /// Who uses it: `listener 0.0.0.0:8443`, `cluster service1` (its client certificate).
    pub used_by: String,
    /// The PEM file it was read from.
    pub file: String,
    /// The leaf's subject.
    pub subject: String,
    /// DNS names from its SANs (else its CN).
    pub names: Vec<String>,
    /// Hex serial.
    pub serial: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days until then (negative: expired), as of the last [`CertInfo::as_of`].
    pub days_left: i64,
    /// The same end, Unix seconds (the expiry gauge).
    #[serde(skip)]
    pub expires_at: f64,
    #[serde(skip)]
    valid_until: SystemTime,
}

impl CertInfo {
    /// The certificate whose leaf is `leaf`, read from `file`, used by `used_by`.
    pub fn of(used_by: &str, file: &str, leaf: &Leaf) -> CertInfo {
        CertInfo::new(
            used_by,
            file,
            &leaf.subject,
            &leaf.names,
            &leaf.serial,
            leaf.not_after,
        )
    }

    /// The certificate read from `file`, used by `used_by`.
    pub fn new(
        used_by: &str,
        file: &str,
        subject: &str,
        names: &[String],
        serial: &str,
        not_after: SystemTime,
    ) -> CertInfo {
        CertInfo {
            used_by: used_by.to_owned(),
            file: file.to_owned(),
            subject: subject.to_owned(),
            names: names.to_vec(),
            serial: serial.to_owned(),
            not_after: crate::rfc3339(not_after),
            days_left: 0,
            expires_at: crate::unix_seconds(not_after),
            valid_until: not_after,
        }
        .as_of(SystemTime::now())
    }

    /// The same with its days left counted at `now`: the inventory keeps what was read when
    /// the files were, and counts the days when it is read.
    pub fn as_of(mut self, now: SystemTime) -> CertInfo {
        self.days_left = match self.valid_until.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs() / 86_400).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs().div_ceil(86_400)).unwrap_or(0),
        };
        self
    }
}

/// The certificates in use, by user.
#[derive(Debug, Default)]
pub struct Certificates(Mutex<BTreeMap<String, Vec<CertInfo>>>);

impl Certificates {
    /// `used_by` now uses `certs` (replacing what it used before).
    pub fn set(&self, used_by: &str, certs: Vec<CertInfo>) {
        crate::lock(&self.0).insert(used_by.to_owned(), certs);
    }

    /// Every certificate in use, by user, then in the order given; days left counted now.
    pub fn list(&self) -> Vec<CertInfo> {
        let now = SystemTime::now();
        let certs = crate::lock(&self.0);
        certs
            .values()
            .flatten()
            .map(|c| c.clone().as_of(now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_left_count_down_and_go_negative() {
        let day = Duration::from_secs(86_400);
        let info = |at| CertInfo::new("listener x", "f", "CN=a", &[], "01", at);
        assert_eq!(info(SystemTime::now() + day * 30 + day / 2).days_left, 30);
        assert_eq!(info(SystemTime::now() - day / 2).days_left, -1);
        let certs = Certificates::default();
        certs.set("listener b", vec![info(SystemTime::now())]);
        certs.set(
            "listener a",
            vec![info(SystemTime::now()), info(SystemTime::now())],
        );
        certs.set("listener b", vec![]);
        assert_eq!(certs.list().len(), 2);
        // Days left are counted when asked, not when the certificate was read.
        let later =
            info(SystemTime::now() + day * 30 + day / 2).as_of(SystemTime::now() + day * 10);
        assert_eq!(later.days_left, 20);
    }
}
