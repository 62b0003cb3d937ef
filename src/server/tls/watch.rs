//! Renewal in place: every file of every TLS listener (certificates, keys, client CA) and of
//! every cluster's upstream TLS (CA, client certificate and key) is read four times a second,
//! through symlinks — the kubelet's swap of a mounted Secret's `..data` link is seen like an
//! edit. A listener's change reads that listener's files again; a cluster's reloads the conf in
//! place (the cluster, its files read anew, gets a new connection pool). cert-manager renews at
//! two thirds of a certificate's life; new handshakes get the new one within a second,
//! connections already open go on with theirs.

use super::ListenerTlsState;
use crate::server::reload::Reloader;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the files are read (a few small files; a renewed certificate is served within
/// this and one handshake).
const EVERY: Duration = Duration::from_millis(250);

/// Watches the TLS files of the listeners and of the clusters.
pub struct CertWatch {
    /// The TLS listeners.
    pub listeners: Vec<Arc<ListenerTlsState>>,
    /// Reloads the conf when a cluster's TLS file changes; its clusters say which files.
    pub reloader: Arc<Reloader>,
}

/// The TLS files of the clusters served now, each once.
fn cluster_files(reloader: &Reloader) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for cluster in reloader.clusters.load().iter() {
        if let Some(tls) = &cluster.config.tls {
            files.extend(tls.ca.iter().map(|ca| ca.path.clone()));
            if let Some(client) = &tls.client_cert {
                files.extend([client.cert_path.clone(), client.key_path.clone()]);
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// What the files held when last read (None: unreadable), in `files()` order.
fn contents(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

#[async_trait]
impl BackgroundService for CertWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen: Vec<(Vec<PathBuf>, Vec<Option<Vec<u8>>>)> = self
            .listeners
            .iter()
            .map(|l| {
                let files = l.conf().files();
                let now = contents(&files);
                (files, now)
            })
            .collect();
        let mut upstream = cluster_files(&self.reloader);
        let mut upstream_seen = contents(&upstream);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
            let now_files = cluster_files(&self.reloader);
            if now_files != upstream {
                // A reload named other files: they are the baseline now.
                upstream_seen = contents(&now_files);
                upstream = now_files;
            } else {
                let now = contents(&upstream);
                if now != upstream_seen {
                    let unreadable = now.iter().any(Option::is_none);
                    upstream_seen = now;
                    if unreadable {
                        log::warn!(
                            "tls: a cluster's TLS file cannot be read: keeping the one in use"
                        );
                    } else {
                        // Logged and counted by the reloader; a refused file waits for the next change.
                        let _ = self.reloader.reload("upstream TLS files changed").await;
                        upstream_seen = contents(&cluster_files(&self.reloader));
                    }
                }
            }
            for (listener, (files, before)) in self.listeners.iter().zip(seen.iter_mut()) {
                let conf = listener.conf();
                let now_files = conf.files();
                // A reload may have named other files: the new ones are the baseline.
                if &now_files != files {
                    *before = contents(&now_files);
                    *files = now_files;
                    continue;
                }
                let now = contents(files);
                if &now == before {
                    continue;
                }
                let gone: Vec<String> = files
                    .iter()
                    .zip(&now)
                    .filter(|(_, c)| c.is_none())
                    .map(|(f, _)| f.display().to_string())
                    .collect();
                *before = now;
                if !gone.is_empty() {
                    // Mid-swap, or removed: what is served stays; tried again on the next change.
                    log::warn!(
                        "tls: cannot read {}: keeping the certificates in use",
                        gone.join(", ")
                    );
                    continue;
                }
                // Logged and counted by `apply`; a refused file waits for the next change.
                let _ = listener.apply(&conf, "certificate files changed");
            }
        }
    }
}
