//! Signals, handled before pingora's own shutdown so that nothing is dropped:
//!
//! - SIGTERM: `/ready` answers 503 and responses carry `Connection: close` at once, while the
//!   listeners keep serving for `drain_time` (load balancers notice and stop sending); then
//!   pingora closes the listeners, lets requests in flight finish within
//!   `grace_period_seconds`, and exits.
//! - SIGQUIT: graceful upgrade. A new `headway -u` process must already be waiting on
//!   `upgrade_sock`; the listening sockets are handed to it and this process drains. When no new
//!   process waits (its conf was bad, it was never started), SIGQUIT is refused and this process
//!   keeps serving — pingora alone would stop serving with nobody to take over.
//! - SIGINT: fast shutdown: the access log is written out and the process exits at once
//!   (requests in flight are dropped). pingora's own fast shutdown stops the worker runtimes
//!   under their accept loops, which can then spin on "Accept() failed … being shutdown"
//!   for ever, never exiting (tests/lifecycle.rs).
//! - SIGHUP: reload in place (`reload.rs`): the conf file is read again and swapped in, or
//!   refused whole with every error logged.

use super::reload::Reloader;
use crate::lifecycle::Lifecycle;
use async_trait::async_trait;
use log::{error, info};
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The server's shutdown-signal watch: SIGTERM, SIGQUIT and SIGINT as the module doc says.
pub struct SignalWatch {
    /// SIGHUP re-reads the conf with it.
    pub reloader: Arc<Reloader>,
    /// Marked draining on SIGTERM and on an accepted SIGQUIT, so `/ready` answers 503 and
    /// responses ask clients to close their connections.
    pub lifecycle: Arc<Lifecycle>,
    /// `gateway.drain_time`: how long the listeners keep serving after SIGTERM; default 2 s.
    pub drain_time: Duration,
    /// pingora's `upgrade_sock`: a successor waits there for the listeners on SIGQUIT; default
    /// `/tmp/headway_upgrade.sock`.
    pub upgrade_sock: PathBuf,
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .map_err(|e| error!("cannot handle {name}: {e}"))
        .ok()
}

async fn next(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl SignalWatch {
    /// A new process waiting for the sockets has bound the upgrade socket; it removes it once
    /// the sockets arrive or it gives up, so the socket's presence means someone is waiting.
    fn successor_waiting(&self) -> bool {
        std::fs::metadata(&self.upgrade_sock).is_ok_and(|m| m.file_type().is_socket())
    }
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = listen(SignalKind::quit(), "SIGQUIT");
        let mut term = listen(SignalKind::terminate(), "SIGTERM");
        let mut int = listen(SignalKind::interrupt(), "SIGINT");
        // SIGHUP re-reads the conf (its default action would end the process).
        let mut hup = listen(SignalKind::hangup(), "SIGHUP");
        loop {
            tokio::select! {
                _ = next(&mut hup) => {
                    // Logged and counted by the reloader, whatever the outcome.
                    let _ = self.reloader.reload("SIGHUP").await;
                }
                _ = next(&mut quit) => {
                    if self.successor_waiting() {
                        info!("SIGQUIT: handing the listeners to the new process and draining");
                        self.lifecycle.start_draining();
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    error!(
                        "SIGQUIT refused: no new headway waits on {} (start one with `headway -u -c <conf>` first; a conf it rejects never gets there): still serving",
                        self.upgrade_sock.display()
                    );
                }
                _ = next(&mut term) => {
                    info!(
                        "SIGTERM: draining for {:?} with /ready at 503, then closing the listeners",
                        self.drain_time
                    );
                    self.lifecycle.start_draining();
                    tokio::select! {
                        _ = tokio::time::sleep(self.drain_time) => {}
                        _ = next(&mut int) => {
                    info!("SIGINT: fast shutdown, exiting now (requests in flight are dropped)");
                    self.reloader.proxy.flush_access_log();
                    std::process::exit(0);
                }
                    }
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = next(&mut int) => {
                    info!("SIGINT: fast shutdown, exiting now (requests in flight are dropped)");
                    self.reloader.proxy.flush_access_log();
                    std::process::exit(0);
                }
            }
        }
    }
}
