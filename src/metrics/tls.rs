//! The TLS listeners' series: certificate expiry, handshakes refused or timed out, reloads of
//! their files.

use super::{counter_vec, register};
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};

/// What the TLS listeners count.
pub struct TlsMetrics {
    /// `headway_tls_certificate_expiry_timestamp_seconds{used_by, certificate, subject}`: the
    /// end of validity of each certificate in use (`used_by`: `listener 0.0.0.0:8443`, `cluster
    /// service1`), set at scrape time; an alert compares it with `time()`.
    pub expiry: GaugeVec,
    /// `headway_tls_handshake_failures_total{listener, reason}`: `timeout`,
    /// `unknown_server_name`, `client_cert_expired`, `client_cert_unknown_ca`, …
    pub handshake_failures: IntCounterVec,
    /// `headway_tls_reloads_total{listener, result}`: the listener's files or TLS keys read
    /// again, `ok` or `error` (the previous ones kept).
    pub reloads: IntCounterVec,
}

impl TlsMetrics {
    pub(super) fn new(r: &Registry) -> prometheus::Result<TlsMetrics> {
        Ok(TlsMetrics {
            expiry: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "headway_tls_certificate_expiry_timestamp_seconds",
                        "When each certificate in use expires (Unix seconds): listeners' and clusters' client certificates.",
                    ),
                    &["used_by", "certificate", "subject"],
                )?,
            )?,
            handshake_failures: counter_vec(
                r,
                "headway_tls_handshake_failures_total",
                "TLS handshakes at a listener refused or timed out, by reason.",
                &["listener", "reason"],
            )?,
            reloads: counter_vec(
                r,
                "headway_tls_reloads_total",
                "A TLS listener's certificates read again in place, by result: ok or error.",
                &["listener", "result"],
            )?,
        })
    }
}
