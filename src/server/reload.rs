//! Reload in place (SIGHUP, `POST /reload`): the conf file is read again; a conf that fails
//! changes nothing, a valid one is swapped in while requests already routed finish on theirs.
//!
//! Clusters whose conf did not change keep their backends, health, ejections and pooled
//! connections; a new cluster is started and waited for (its first discovery and probes) before
//! any route sends to it; a removed one stops discovering and probing once its last request
//! ends. Listeners, the admin listener, pingora's keys (threads, …) and the client timeouts
//! cannot change in place: the log and the answer say so, and the process hand-over
//! (`headway -u`, SIGQUIT) applies them.

use crate::config::Config;
use crate::lifecycle::{ActiveConf, Lifecycle};
use crate::metrics::Metrics;
use crate::proxy::filter::Registry;
use crate::proxy::Proxy;
use crate::upstream::cluster::Cluster;
use crate::upstream::{Clusters, Rebuilt};
use arc_swap::ArcSwap;
use log::{error, info, warn};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long a removed cluster's discovery and probes go on for its requests in flight, at most.
const RETIRE_WAIT: Duration = Duration::from_secs(3600);

/// How long a reload waits for a new cluster's first discovery and probes.
const NEW_CLUSTER_WAIT: Duration = Duration::from_secs(10);

/// Re-reads the conf file and swaps what can be swapped.
pub struct Reloader {
    /// The conf file; None when the gateway was given a `Config` by a program, not a file.
    pub path: Option<PathBuf>,
    /// The filters routes may name.
    pub registry: Registry,
    /// Where `headway_reloads_total` is counted, and new series are made.
    pub metrics: Arc<Metrics>,
    /// The proxy whose routing is swapped.
    pub proxy: Proxy,
    /// The clusters admin shows (swapped with the proxy's).
    pub clusters: Arc<ArcSwap<Clusters>>,
    /// Starts a new cluster's discovery and probes.
    pub start: UnboundedSender<Arc<Cluster>>,
    /// What cannot change in place, as the running process was started with.
    pub fixed: String,
    /// Where the conf now served is recorded.
    pub lifecycle: Arc<Lifecycle>,
    /// One reload at a time.
    pub running: tokio::sync::Mutex<()>,
    /// The TLS listeners: their certificates and TLS keys are read again in place.
    pub tls: Vec<Arc<super::tls::ListenerTlsState>>,
}

/// What cannot change in place: the listeners' addresses (and whether each speaks TLS), the
/// admin listener, the client timeouts, pingora's keys. A TLS listener's certificates and
/// settings change in place.
pub fn fixed_part(config: &Config) -> String {
    let g = &config.gateway;
    let listen: Vec<String> = g
        .listen
        .iter()
        .map(|l| format!("{}{}", l.addr, if l.tls.is_some() { " tls" } else { "" }))
        .collect();
    format!(
        "listen {:?}\nh2c {}\nadmin.listen {}\nrequest_headers_timeout {:?}\nidle_timeout {:?}\ndrain_time {:?}\nthreads {}\nwork_stealing {}\nupgrade_sock {}\npid_file {}",
        listen,
        g.h2c,
        g.admin.listen,
        g.request_headers_timeout,
        g.idle_timeout,
        g.drain_time,
        config.server.threads,
        config.server.work_stealing,
        config.server.upgrade_sock,
        config.server.pid_file,
    )
}

impl Reloader {
    /// The running TLS listeners that `config` still has, each with its index and new settings.
    fn tls_in<'a>(
        &'a self,
        config: &'a Config,
    ) -> Vec<(
        usize,
        &'a Arc<super::tls::ListenerTlsState>,
        &'a crate::config::ListenerTls,
    )> {
        config
            .gateway
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let state = self.tls.iter().find(|t| t.addr() == l.addr)?;
                Some((i, state, l.tls.as_ref()?))
            })
            .collect()
    }

    /// Reads the conf again and swaps it in. `Ok`: what changed (and what could not); `Err`:
    /// why nothing did, every problem with its path. Both are logged and counted.
    pub async fn reload(&self, why: &str) -> Result<String, String> {
        let _one = self.running.lock().await;
        let outcome = self.reload_now().await;
        match &outcome {
            Ok(summary) => {
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                info!("{why}: conf reloaded: {summary}");
            }
            Err(problems) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                for line in problems.lines() {
                    error!("{why}: conf not reloaded, still serving the previous one: {line}");
                }
            }
        }
        outcome
    }

    async fn reload_now(&self) -> Result<String, String> {
        let Some(path) = &self.path else {
            return Err("no conf file to read: this gateway was started from a Config".into());
        };
        let bytes = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read conf file: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let config = Config::from_yaml(&text).map_err(|e| e.to_string().trim_end().to_owned())?;
        crate::proxy::filter_chains(&config.gateway, &self.registry, None)
            .map_err(|e| e.join("\n"))?;
        // Every TLS listener's files read and checked before anything starts or is swapped.
        let mut tls = Vec::new();
        let mut bad_tls = Vec::new();
        for (i, state, conf) in self.tls_in(&config) {
            match state.prepare(conf) {
                Ok(prepared) => tls.push((state, prepared, conf)),
                Err(e) => bad_tls.push(format!("gateway.listen[{i}].tls: {e}")),
            }
        }
        if !bad_tls.is_empty() {
            return Err(bad_tls.join("\n"));
        }
        let current = self.clusters.load_full();
        let Rebuilt {
            clusters,
            added,
            removed,
        } = current.rebuild(&config.gateway, &self.metrics)?;
        for cluster in &added {
            // The supervisor runs it; it has gone only when the server is stopping.
            let _ = self.start.send(cluster.clone());
        }
        let deadline = Instant::now() + NEW_CLUSTER_WAIT;
        while added.iter().any(|c| !c.is_ready()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(slow) = added.iter().find(|c| !c.is_ready()) {
            warn!(
                "reload: cluster={} has not finished its first discovery after {NEW_CLUSTER_WAIT:?}: swapping in anyway",
                slow.name()
            );
        }
        let clusters = Arc::new(clusters);
        if let Err(problems) = self.proxy.reload(
            &config.gateway,
            clusters.clone(),
            &self.metrics,
            &self.registry,
        ) {
            added.iter().for_each(|c| c.retire());
            return Err(problems.join("\n"));
        }
        self.clusters.store(clusters.clone());
        self.lifecycle.set_conf(ActiveConf::of(&bytes));
        for (state, prepared, conf) in tls {
            state.install(prepared, conf, "conf reloaded");
        }
        for cluster in removed.iter().cloned() {
            // Its requests in flight finish first, with discovery and probes still running.
            tokio::spawn(async move {
                let since = Instant::now();
                while cluster.load.requests() > 0 && since.elapsed() < RETIRE_WAIT {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                cluster.retire();
            });
        }
        let mut summary = format!(
            "{} route(s), {} cluster(s): {} kept, {} new, {} removed",
            config.gateway.routes.len(),
            clusters.len(),
            clusters.len() - added.len(),
            added.len(),
            removed.len()
        );
        let fixed = fixed_part(&config);
        if fixed != self.fixed {
            let changed: Vec<&str> = fixed
                .lines()
                .zip(self.fixed.lines())
                .filter(|(new, old)| new != old)
                .filter_map(|(new, _)| new.split(' ').next())
                .collect();
            summary.push_str(&format!(
                "; not applied in place (start `headway -u -c <conf>` and send SIGQUIT for them): {}",
                changed.join(", ")
            ));
        }
        Ok(summary)
    }
}
