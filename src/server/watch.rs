//! `watch_conf`: the conf file is read four times a second and reloaded in place when its content
//! changes. Reading through the path follows symlinks, so the kubelet's update of a mounted
//! ConfigMap (an atomic swap of the `..data` symlink, no write to the file) is seen like an edit.

use super::reload::Reloader;
use async_trait::async_trait;
use log::warn;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the file is read (a small file: four reads a second cost nothing measurable, and a
/// change is applied well within a second).
const EVERY: Duration = Duration::from_millis(250);

/// Watches the conf file for the reloader.
pub struct ConfWatch {
    /// The conf file.
    pub path: PathBuf,
    /// Reloads when the content changes.
    pub reloader: Arc<Reloader>,
    /// The content loaded at start.
    pub loaded: Vec<u8>,
}

#[async_trait]
impl BackgroundService for ConfWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut seen = self.loaded.clone();
        let mut unreadable = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
            // A small file: a plain read on this background runtime.
            match std::fs::read(&self.path) {
                Ok(now) if now != seen => {
                    unreadable = false;
                    seen = now;
                    // Logged and counted by the reloader; a refused conf waits for the next edit.
                    let _ = self.reloader.reload("conf file changed").await;
                }
                Ok(_) => unreadable = false,
                Err(e) if !unreadable => {
                    // Mid-swap, or removed: the running conf stays; said once.
                    unreadable = true;
                    warn!("watch_conf: cannot read {}: {e}", self.path.display());
                }
                Err(_) => {}
            }
        }
    }
}
