//! Assembles the daemon: every cluster, the proxy listeners and the admin listener, as pingora
//! services, with the proxy held closed until every cluster has run its first discovery.

pub mod client_limits;
pub mod preflight;
pub mod readiness;
pub mod reload;
pub mod signals;
pub mod socket;
pub mod tls;
pub mod watch;

use crate::admin::{Admin, AdminState, ReloadHook};
use crate::config::Config;
use crate::lifecycle::{ActiveConf, Lifecycle};
use crate::metrics::Metrics;
use crate::proxy::filter::Registry;
use crate::proxy::Proxy;
use crate::upstream::Clusters;
use arc_swap::ArcSwap;
use client_limits::ClientLimits;
use log::info;
use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server};
use pingora::services::background::GenBackgroundService;
use pingora::services::listening::Service;
use readiness::ClusterSupervisor;
use reload::Reloader;
use signals::SignalWatch;
use socket::Parking;
use std::sync::Arc;

/// Reads every TLS listener's files (an error names the listener and the file): pingora would
/// read them only when the proxy service starts, where a bad file panics that service's thread.
fn tls_listeners(
    config: &Config,
    metrics: &Arc<Metrics>,
    inventory: &Arc<crate::certificates::Certificates>,
) -> Result<Vec<Arc<tls::ListenerTlsState>>, String> {
    let mut states = Vec::new();
    let mut errors = Vec::new();
    for (i, listener) in config.gateway.listen.iter().enumerate() {
        if let Some(conf) = &listener.tls {
            match tls::ListenerTlsState::new(listener.addr, conf, metrics, inventory) {
                Ok(state) => states.push(state),
                Err(e) => errors.push(format!("gateway.listen[{i}].tls: {e}")),
            }
        }
    }
    if errors.is_empty() {
        Ok(states)
    } else {
        Err(errors.join("\n"))
    }
}

/// Checks every TLS listener's files as `-t` does: each error with its listener and file.
pub fn check_tls(config: &Config) -> Result<(), Vec<String>> {
    let metrics = Arc::new(Metrics::new().map_err(|e| vec![format!("metrics: {e}")])?);
    tls_listeners(config, &metrics, &Default::default())
        .map(|_| ())
        .map_err(|e| e.lines().map(str::to_owned).collect())
}

/// Starts the filters' background tasks once the server runs, and keeps their runtime until
/// the server stops.
struct FilterTasks(Proxy);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for FilterTasks {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        self.0.start_filter_tasks();
        let _ = shutdown.changed().await;
    }
}

/// Raises the soft open-files limit to the hard one, as HAProxy and Go's runtime do: a
/// gateway's connections are its open files, and the soft default (often 1024) is far below
/// what the hard limit allows. Returns the limit in force.
fn raise_open_files_limit() -> u64 {
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return 1024;
    };
    if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
        info!("open files limit raised from {soft} to {hard}");
        return hard;
    }
    soft
}

/// Builds the pingora server for `config`, with the filters `registry` names, and runs it
/// until it is told to stop.
///
/// `path` is the conf file `config` was read from: SIGHUP (and `POST /reload` when
/// `admin.reload` is on) read it again; without one, they say there is nothing to read.
pub fn run(
    config: Config,
    opt: Opt,
    registry: &Registry,
    path: Option<std::path::PathBuf>,
) -> Result<(), String> {
    if !opt.upgrade {
        // pingora would retry a taken port for ~30 s, then run on without that listener.
        let mut addrs: Vec<(String, std::net::SocketAddr)> = config
            .gateway
            .listen
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("gateway.listen[{i}]"), l.addr))
            .collect();
        addrs.push((
            "gateway.admin.listen".to_owned(),
            config.gateway.admin.listen,
        ));
        preflight::check_addresses(&addrs)?;
    }
    let open_files = raise_open_files_limit();
    let metrics = Arc::new(Metrics::new().map_err(|e| format!("metrics: {e}"))?);
    metrics.count_panics();
    let lifecycle = Arc::new(Lifecycle::default());
    lifecycle.set_conf(ActiveConf::of(&match &path {
        Some(path) => std::fs::read(path).unwrap_or_default(),
        // A program's own Config: its Debug form stands for the file.
        None => format!("{:?}", config.gateway).into_bytes(),
    }));
    let clusters = Arc::new(Clusters::build(&config.gateway, &metrics)?);
    let cluster_set = Arc::new(ArcSwap::from(clusters.clone()));
    let (start, added) = tokio::sync::mpsc::unbounded_channel();
    let proxy = Proxy::new(
        &config.gateway,
        clusters.clone(),
        &metrics,
        registry,
        lifecycle.clone(),
    )
    .map_err(|errors| errors.join("\n"))?;
    let certificates = Arc::new(crate::certificates::Certificates::default());
    let tls = tls_listeners(&config, &metrics, &certificates)?;
    let parking = Parking::new(open_files, metrics.parked_connections.clone());
    metrics
        .parking_budget
        .set(i64::try_from(parking.budget()).unwrap_or(i64::MAX));
    let upgrade_sock = config.server.upgrade_sock.clone();
    let fixed = reload::fixed_part(&config);
    let admin_reload = config.gateway.admin.reload;
    let watch_conf = config.gateway.watch_conf;
    let mut server = Server::new_with_opt_and_conf(opt, config.server);
    server.bootstrap();

    let supervisor = GenBackgroundService::new(
        "cluster discovery".to_owned(),
        Arc::new(ClusterSupervisor {
            clusters: clusters.clone(),
            lifecycle: lifecycle.clone(),
            listen: config
                .gateway
                .listen
                .iter()
                .map(|l| (l.addr, l.tls.is_some()))
                .collect(),
            self_check: proxy.self_check_token().to_owned(),
            added: std::sync::Mutex::new(Some(added)),
        }),
    );
    let supervisor = server.add_service(supervisor);

    // The filters' background tasks (a `jwt` filter's JWKS refresh), on a runtime of their
    // own; a conf without any has no such service.
    if proxy.pending_filter_tasks() > 0 {
        server.add_service(GenBackgroundService::new(
            "filter tasks".to_owned(),
            Arc::new(FilterTasks(proxy.clone())),
        ));
    }
    let proxy_handle = proxy.clone();
    let at_exit = proxy.clone();
    let mut proxy_app = pingora::proxy::http_proxy(&server.configuration, proxy.clone());
    let mut options = HttpServerOptions::default();
    options.h2c = config.gateway.h2c;
    proxy_app.server_options = Some(options);
    let proxy_app = ClientLimits::new(
        Arc::new(proxy_app),
        config.gateway.request_headers_timeout,
        config.gateway.idle_timeout,
        metrics.client_header_timeouts.clone(),
        Box::new(move |status, client, why| proxy.log_own_answer(status, client, why)),
        parking,
    );
    let mut proxy = Service::new(
        "headway proxy".to_owned(),
        tls::HandshakeDone::new(
            crate::connection::ClientStreams::new(proxy_app, metrics.open_connections.clone()),
            tls.iter().map(|t| t.handshakes()).collect(),
        ),
    );
    if !tls.is_empty() {
        proxy
            .endpoints()
            .set_pre_tls_callback(Arc::new(tls::ArmTimer(
                tls.iter().map(|t| (t.addr(), t.handshakes())).collect(),
            )));
    }
    for listener in &config.gateway.listen {
        let addr = listener.addr.to_string();
        match tls.iter().find(|t| t.addr() == listener.addr) {
            // pingora gives every accepted connection a 64 KiB read buffer under the HTTP
            // parser, which reads into buffers of its own: plaintext listeners go without it
            // (one copy less per read, 64 KiB less per idle connection; see BENCHMARKS.md).
            // TLS listeners keep it, where it batches the reads of 16 KiB records.
            None => proxy.add_listener(
                ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(0)),
            ),
            Some(state) => proxy.add_tls_with_settings(&addr, None, state.settings()?),
        }
    }
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&supervisor);

    let reloader = Arc::new(Reloader {
        path,
        registry: registry.clone(),
        metrics: metrics.clone(),
        proxy: proxy_handle,
        clusters: cluster_set.clone(),
        start,
        fixed,
        lifecycle: lifecycle.clone(),
        running: tokio::sync::Mutex::new(()),
        tls: tls.clone(),
    });
    // Only a gateway that starts with TLS (a listener or a cluster) watches certificate files;
    // TLS first named by a reload is read by each later reload.
    if !tls.is_empty() || config.gateway.clusters.iter().any(|c| c.tls.is_some()) {
        server.add_service(GenBackgroundService::new(
            "tls certificate watch".to_owned(),
            Arc::new(tls::watch::CertWatch {
                listeners: tls,
                reloader: reloader.clone(),
            }),
        ));
    }

    if let (true, Some(path)) = (watch_conf, reloader.path.clone()) {
        // The content loaded is the baseline: an edit made between loading and now is seen.
        let loaded = std::fs::read(&path).unwrap_or_default();
        server.add_service(GenBackgroundService::new(
            "conf watch".to_owned(),
            Arc::new(watch::ConfWatch {
                path,
                reloader: reloader.clone(),
                loaded,
            }),
        ));
    }

    let mut admin = Service::new(
        "headway admin".to_owned(),
        HttpServer::new_app(Admin::new(AdminState {
            clusters: cluster_set.clone(),
            reload: admin_reload.then(|| {
                let reloader = reloader.clone();
                let hook: ReloadHook = Arc::new(move || {
                    let reloader = reloader.clone();
                    Box::pin(async move { reloader.reload("POST /reload").await })
                });
                hook
            }),
            metrics,
            lifecycle: lifecycle.clone(),
            certificates,
        })),
    );
    admin.add_tcp(&config.gateway.admin.listen.to_string());
    server.add_service(admin);

    info!(
        "headway starting: proxy on {}, admin on {}",
        config
            .gateway
            .listen
            .iter()
            .map(|l| format!("{}{}", l.addr, if l.tls.is_some() { " (tls)" } else { "" }))
            .collect::<Vec<_>>()
            .join(", "),
        config.gateway.admin.listen
    );
    let signals = SignalWatch {
        reloader,
        lifecycle,
        drain_time: config.gateway.drain_time,
        upgrade_sock: upgrade_sock.into(),
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    // pingora gives each service runtime `graceful_shutdown_timeout_seconds` to exit and then
    // moves on, so the access log's own flush (when its last holder drops it) may come too late:
    // its queued lines are written here, before the process exits.
    at_exit.flush_access_log();
    Ok(())
}
