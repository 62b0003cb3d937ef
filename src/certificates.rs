//! Every certificate the gateway serves or presents, with what an operator checks before it
//! expires: subject, names, serial, end of validity. Written where certificates are loaded (the
//! TLS listeners, each time their files are read), read by `/clusters`, `/stats` and the
//! dashboard.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// One certificate in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Whole days until then (negative: expired).
    pub days_left: i64,
}

impl CertInfo {
    /// The certificate read from `file`, used by `used_by`.
    pub fn new(
        used_by: &str,
        file: &str,
        subject: &str,
        names: &[String],
        serial: &str,
        not_after: SystemTime,
    ) -> CertInfo {
        let now = SystemTime::now();
        let days_left = match not_after.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs() / 86_400).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs().div_ceil(86_400)).unwrap_or(0),
        };
        CertInfo {
            used_by: used_by.to_owned(),
            file: file.to_owned(),
            subject: subject.to_owned(),
            names: names.to_vec(),
            serial: serial.to_owned(),
            not_after: crate::rfc3339(not_after),
            days_left,
        }
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

    /// Every certificate in use, by user, then in the order given.
    pub fn list(&self) -> Vec<CertInfo> {
        crate::lock(&self.0).values().flatten().cloned().collect()
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
    }
}
