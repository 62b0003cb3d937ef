//! A TLS listener that an operator can run for years: certificates chosen by SNI, client
//! certificates, a handshake limit, and every file read again in place — on a reload, and when
//! a file changes (`watch.rs`) — with a bad new file refused, named and counted while the
//! old certificates go on serving.

mod certs;
mod client_auth;
mod handshake;
mod sni;
pub mod watch;

pub use handshake::{ArmTimer, HandshakeDone, Handshakes};

use crate::certificates::{CertInfo, Certificates};
use crate::config::{ListenerTls, UnknownServerName};
use crate::metrics::Metrics;
use arc_swap::{ArcSwap, ArcSwapOption};
use pingora::listeners::tls::TlsSettings;
use rustls::crypto::CryptoProvider;
use sni::{CertTable, SniResolver};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One TLS listener's certificates, client verifier and handshake timer.
pub struct ListenerTlsState {
    addr: SocketAddr,
    /// The listener's address, as the metrics label it.
    label: String,
    resolver: Arc<SniResolver>,
    verifier: Arc<client_auth::SwappableVerifier>,
    handshakes: Arc<Handshakes>,
    /// The settings now served (the watch compares files, a reload compares settings).
    conf: Mutex<ListenerTls>,
    metrics: Arc<Metrics>,
    provider: Arc<CryptoProvider>,
    /// Where `/clusters` and the dashboard read the certificates in use.
    inventory: Arc<Certificates>,
}

/// What a listener will serve, read and checked, not yet swapped in ([`ListenerTlsState::prepare`]).
pub struct Prepared(Built);

/// A listener's certificates and verifier, built from its settings before any is swapped in.
struct Built {
    table: CertTable,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// What `/clusters` shows of each certificate (its `used_by` filled in at swap).
    infos: Vec<CertInfo>,
    summary: String,
}

impl ListenerTlsState {
    /// Reads the listener's files; an error names the file.
    pub fn new(
        addr: SocketAddr,
        conf: &ListenerTls,
        metrics: &Arc<Metrics>,
        inventory: &Arc<Certificates>,
    ) -> Result<Arc<ListenerTlsState>, String> {
        pingora::tls::install_default_crypto_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let label = addr.to_string();
        let built = build(conf, &provider)?;
        let failures = metrics.tls.handshake_failures.clone();
        let state = Arc::new(ListenerTlsState {
            resolver: Arc::new(SniResolver {
                table: ArcSwap::from_pointee(CertTable::default()),
                refused: failures.with_label_values(&[label.as_str(), "unknown_server_name"]),
            }),
            verifier: Arc::new(client_auth::SwappableVerifier {
                current: ArcSwapOption::empty(),
                failures: failures.clone(),
                listener: label.clone(),
                provider: provider.clone(),
            }),
            handshakes: Handshakes::new(
                conf.handshake_timeout,
                failures.with_label_values(&[label.as_str(), "timeout"]),
            ),
            addr,
            label,
            conf: Mutex::new(conf.clone()),
            metrics: metrics.clone(),
            provider,
            inventory: inventory.clone(),
        });
        state.swap_in(built);
        Ok(state)
    }

    /// pingora's settings for the listener: HTTP/2 offered by ALPN, the certificate chosen by
    /// SNI, client certificates as the conf says, the verified one kept for the proxy.
    pub fn settings(&self) -> Result<TlsSettings, String> {
        let mut settings = TlsSettings::with_callbacks(Box::new(client_auth::KeepClientCert))
            .map_err(|e| e.to_string())?;
        settings.set_cert_resolver(self.resolver.clone());
        settings.set_client_cert_verifier(self.verifier.clone());
        settings.enable_h2();
        Ok(settings)
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handshakes under way, for [`ArmTimer`] and [`HandshakeDone`].
    pub fn handshakes(&self) -> Arc<Handshakes> {
        self.handshakes.clone()
    }

    /// Reads `conf`'s files and builds what the listener would serve, without serving it yet:
    /// a reload prepares every listener before it swaps anything. The error names the file.
    pub fn prepare(&self, conf: &ListenerTls) -> Result<Prepared, String> {
        build(conf, &self.provider).map(Prepared)
    }

    /// Serves what `prepare` built from `conf`, with `conf`'s other keys; counted as a reload.
    pub fn install(&self, prepared: Prepared, conf: &ListenerTls, why: &str) -> String {
        let Prepared(built) = prepared;
        let summary = built.summary.clone();
        self.swap_in(built);
        self.handshakes.set_timeout(conf.handshake_timeout);
        *crate::lock(&self.conf) = conf.clone();
        self.count("ok");
        log::info!("tls: listener {}: {why}: now serving {summary}", self.label);
        summary
    }

    /// Reads `conf`'s files again and swaps them in whole, with its other keys; on any error
    /// nothing changes and the error names the file. Counted either way.
    pub fn apply(&self, conf: &ListenerTls, why: &str) -> Result<String, String> {
        match self.prepare(conf) {
            Ok(prepared) => Ok(self.install(prepared, conf, why)),
            Err(e) => {
                self.count("error");
                log::error!(
                    "tls: listener {}: {why}: keeping the certificates in use: {e}",
                    self.label
                );
                Err(e)
            }
        }
    }

    /// The settings now served.
    pub fn conf(&self) -> ListenerTls {
        crate::lock(&self.conf).clone()
    }

    fn count(&self, result: &str) {
        self.metrics
            .tls
            .reloads
            .with_label_values(&[self.label.as_str(), result])
            .inc();
    }

    fn swap_in(&self, built: Built) {
        self.resolver.table.store(Arc::new(built.table));
        self.verifier.current.store(built.verifier.map(Arc::new));
        let used_by = format!("listener {}", self.label);
        let infos = built
            .infos
            .into_iter()
            .map(|mut info| {
                info.used_by.clone_from(&used_by);
                info
            })
            .collect();
        self.inventory.set(&used_by, infos);
    }
}

fn build(conf: &ListenerTls, provider: &Arc<CryptoProvider>) -> Result<Built, String> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for files in &conf.certificates {
        match certs::load(&files.cert, &files.key, provider) {
            Ok(l) => loaded.push((files.cert.display().to_string(), l)),
            Err(e) => errors.push(e),
        }
    }
    let verifier = match &conf.client_auth {
        None => None,
        Some(auth) => match client_auth::verifier(auth, provider) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let now = std::time::SystemTime::now();
    for (file, l) in &loaded {
        if l.leaf.not_after < now {
            log::warn!(
                "tls: {file}: expired (serial {}): clients will refuse it",
                l.leaf.serial
            );
        }
    }
    let table = CertTable::new(
        &loaded
            .iter()
            .map(|(_, l)| (l.key.clone(), l.leaf.names.clone()))
            .collect::<Vec<_>>(),
        conf.unknown_server_name == UnknownServerName::Default,
    );
    let summary = loaded
        .iter()
        .map(|(file, l)| {
            format!(
                "{file} (serial {}, {})",
                l.leaf.serial,
                l.leaf.names.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let infos = loaded
        .iter()
        .map(|(file, l)| CertInfo::of("", file, &l.leaf))
        .collect();
    Ok(Built {
        table,
        verifier,
        infos,
        summary,
    })
}
