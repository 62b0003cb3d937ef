//! Assembles the daemon: every cluster, the proxy listeners and the admin listener, as pingora
//! services, with the proxy held closed until every cluster has run its first discovery.

pub mod client_limits;
pub mod signals;

use crate::admin::Admin;
use crate::config::{Address, Cidr, Config, Gateway as GatewayConfig, RequestLimits};
use crate::metrics::{Metrics, RouteMetrics};
use crate::proxy::access_log::AccessLog;
use crate::proxy::router::Router;
use crate::proxy::Gateway;
use crate::server::client_limits::ClientLimits;
use crate::server::signals::SignalWatch;
use crate::upstream::cluster::Cluster;
use crate::upstream::discovery::build_resolver;
use async_trait::async_trait;
use log::info;
use pingora::apps::http_app::HttpServer;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, GenBackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceReadyNotifier;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The path and header of the listener self-check (see [`GatewayState::self_check`]).
pub const SELF_CHECK_PATH: &str = "/.well-known/headway/self-check";
pub const SELF_CHECK_HEADER: &str = "x-headway-self-check";

/// What the request path and the admin endpoints share: read-only but for health and DNS state.
pub struct GatewayState {
    pub clusters: Vec<Arc<Cluster>>,
    pub router: Router,
    pub metrics: Metrics,
    /// Request counters per route, in the router's order.
    pub route_metrics: Vec<RouteMetrics>,
    /// Request counters of requests that matched no route.
    pub unrouted: RouteMetrics,
    pub access_log: AccessLog,
    pub limits: RequestLimits,
    pub trusted_proxies: Vec<Cidr>,
    /// Set on SIGTERM / SIGQUIT: `/ready` answers 503 so load balancers stop sending traffic.
    draining: AtomicBool,
    /// The proxy listeners' addresses, and whether they accept connections yet: pingora binds
    /// them only after the first discovery, so `/ready` must wait for them too.
    listen: Vec<(SocketAddr, bool)>,
    listening: AtomicBool,
    /// A per-process secret: the proxy answers a request carrying it with 204, so the
    /// listener check knows it reached this process and not another one on the same port.
    pub self_check: String,
}

impl GatewayState {
    /// Builds every cluster and its resolver. Fails on what the conf cannot express, such as a
    /// missing resolv.conf when no nameservers are configured.
    pub fn new(config: &GatewayConfig) -> Result<GatewayState, String> {
        let metrics = Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        let mut clusters = Vec::with_capacity(config.clusters.len());
        for c in &config.clusters {
            let resolver = match c.address {
                Address::Name(_) => Some(
                    build_resolver(&config.resolver, c.dns.lookup_family)
                        .map_err(|e| format!("gateway.resolver: {e}"))?,
                ),
                Address::Ip(_) => None,
            };
            let cluster_metrics = metrics.cluster(&c.name);
            clusters.push(Arc::new(Cluster::new(
                c.clone(),
                resolver,
                cluster_metrics,
            )?));
        }
        let router = Router::new(&config.routes, |name| {
            config.clusters.iter().position(|c| c.name == name)
        });
        let route_metrics = (0..router.len())
            .map(|i| {
                let cluster = router
                    .cluster_of(i)
                    .and_then(|c| clusters.get(c))
                    .map_or("direct", |c| c.name());
                metrics.route(cluster, &router.describe(i))
            })
            .collect();
        let unrouted = metrics.route("none", "none");
        Ok(GatewayState {
            clusters,
            router,
            route_metrics,
            unrouted,
            metrics,
            access_log: AccessLog::open(&config.access_log)?,
            limits: config.limits,
            trusted_proxies: config.trusted_proxies.clone(),
            draining: AtomicBool::new(false),
            listen: config
                .listen
                .iter()
                .map(|l| (l.addr, l.tls.is_some()))
                .collect(),
            listening: AtomicBool::new(false),
            self_check: format!("{:032x}", fastrand::u128(..)),
        })
    }

    /// Logs and counts an answer given before the proxy's hooks ran (see
    /// `downstream::OnOwnAnswer`): no route, method or path is known for it.
    pub fn log_own_answer(&self, status: u16, client: Option<std::net::IpAddr>, why: &str) {
        self.unrouted.count(status);
        if !self.access_log.enabled() {
            return;
        }
        let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        self.access_log.write(&crate::proxy::access_log::Entry {
            client: &client,
            method: "-",
            path: "-",
            status,
            cluster: "-",
            backend: "-",
            attempts: 0,
            upstream_ms: None,
            duration_ms: 0.0,
            request_id: "-",
            bytes_received: 0,
            bytes_sent: 0,
            error: Some(why),
        });
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// From now on `/ready` answers 503 and responses ask clients to close their connections.
    pub fn start_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Clusters that have not finished their first discovery yet.
    pub fn pending_clusters(&self) -> Vec<&str> {
        self.clusters
            .iter()
            .filter(|c| !c.is_ready())
            .map(|c| c.name())
            .collect()
    }

    /// Whether the proxy listeners accept connections.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Relaxed)
    }

    async fn answers_self_check(&self, addr: SocketAddr, tls: bool) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            return false;
        };
        if tls {
            return true;
        }
        let request = format!(
            "GET {SELF_CHECK_PATH} HTTP/1.1\r\nHost: headway\r\n{SELF_CHECK_HEADER}: {}\r\nConnection: close\r\n\r\n",
            self.self_check
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.is_ok() && &answer == b"HTTP/1.1 204"
    }

    /// Waits until every proxy listener is this process's (pingora opens them once the first
    /// discovery is done; another process may hold the port meanwhile), then marks the gateway
    /// as listening. Plain listeners must answer the self-check; TLS ones must accept.
    async fn wait_for_listeners(&self) {
        let reachable = |addr: SocketAddr| {
            let mut to = addr;
            if to.ip().is_unspecified() {
                to.set_ip(match to {
                    SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                });
            }
            to
        };
        for &(addr, tls) in &self.listen {
            let addr = reachable(addr);
            loop {
                let attempt = tokio::time::timeout(
                    std::time::Duration::from_millis(500),
                    self.answers_self_check(addr, tls),
                );
                if matches!(attempt.await, Ok(true)) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        self.listening.store(true, Relaxed);
        info!("proxy listeners accept connections: ready");
    }
}

/// Runs discovery and health checks of every cluster on one background runtime, and signals
/// pingora once all of them finished their first round so the proxy listeners can open.
struct ClusterSupervisor {
    state: Arc<GatewayState>,
}

#[async_trait]
impl BackgroundService for ClusterSupervisor {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let waiting = AtomicUsize::new(self.state.clusters.len());
        let ready = Mutex::new(Some(ready));
        let signal_ready = || {
            if let Some(ready) = crate::lock(&ready).take() {
                info!("every cluster has run its first discovery: opening the proxy listeners");
                ready.notify_ready();
            }
        };
        if self.state.clusters.is_empty() {
            signal_ready();
        }
        let runs = self.state.clusters.iter().map(|cluster| {
            cluster.run(shutdown.clone(), || {
                if waiting.fetch_sub(1, Relaxed) == 1 {
                    signal_ready();
                }
            })
        });
        let mut drain_watch = shutdown.clone();
        let drain = async {
            while !*drain_watch.borrow() {
                if drain_watch.changed().await.is_err() {
                    return;
                }
            }
            self.state.start_draining();
        };
        let listeners = async {
            while !self.state.pending_clusters().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            self.state.wait_for_listeners().await;
        };
        tokio::join!(futures::future::join_all(runs), drain, listeners);
    }
}

/// Loads a TLS listener's files as pingora will. pingora reads them only when the proxy service
/// starts, and a bad file then panics that service's thread: the process would live on without
/// its proxy listener. Checking first makes it a start-up error naming the listener.
fn check_tls_files(cert: &str, key: &str) -> Result<(), String> {
    use pingora::tls::{load_certs_and_key_files, version, ServerConfig};
    pingora::tls::install_default_crypto_provider();
    let (certs, key) = load_certs_and_key_files(cert, key)
        .map_err(|e| e.to_string())?
        .ok_or("no certificate in the cert file, or no private key in the key file")?;
    ServerConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13])
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Raises the soft open-files limit to the hard one, as HAProxy and Go's runtime do: a
/// gateway's connections are its open files, and the soft default (often 1024) is far below
/// what the hard limit allows. Returns the limit in force.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                info!(
                    "open files limit raised from {} to {}",
                    limit.rlim_cur, limit.rlim_max
                );
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Builds the pingora server for `config` and runs it until it is told to stop.
pub fn run(config: Config, opt: Opt) -> Result<(), String> {
    crate::server::client_limits::set_parking_budget(raise_open_files_limit());
    let state = Arc::new(GatewayState::new(&config.gateway)?);
    state.metrics.count_panics();
    let upgrade_sock = config.server.upgrade_sock.clone();
    let mut server = Server::new_with_opt_and_conf(opt, config.server);
    server.bootstrap();

    let supervisor = GenBackgroundService::new(
        "cluster discovery".to_owned(),
        Arc::new(ClusterSupervisor {
            state: state.clone(),
        }),
    );
    let supervisor = server.add_service(supervisor);

    let mut proxy_app =
        pingora::proxy::http_proxy(&server.configuration, Gateway::new(state.clone()));
    let mut options = HttpServerOptions::default();
    options.h2c = config.gateway.h2c;
    proxy_app.server_options = Some(options);
    let proxy_app = ClientLimits::new(
        Arc::new(proxy_app),
        config.gateway.request_headers_timeout,
        config.gateway.idle_timeout,
        state.metrics.client_header_timeouts.clone(),
        {
            let state = state.clone();
            Box::new(move |status, client, why| state.log_own_answer(status, client, why))
        },
    );
    let mut proxy = Service::new(
        "headway proxy".to_owned(),
        crate::connection::ClientStreams::new(proxy_app),
    );
    for (i, listener) in config.gateway.listen.iter().enumerate() {
        let addr = listener.addr.to_string();
        match &listener.tls {
            // pingora gives every accepted connection a 64 KiB read buffer under the HTTP
            // parser, which reads into buffers of its own: plaintext listeners go without it
            // (one copy less per read, 64 KiB less per idle connection; see BENCHMARKS.md).
            // TLS listeners keep it, where it batches the reads of 16 KiB records.
            None => proxy.add_listener(
                ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(0)),
            ),
            Some(tls) => {
                let (cert, key) = (tls.cert.to_string_lossy(), tls.key.to_string_lossy());
                check_tls_files(&cert, &key).map_err(|e| {
                    format!("gateway.listen[{i}].tls: cannot use {cert} and {key}: {e}")
                })?;
                let mut settings = TlsSettings::intermediate(&cert, &key).map_err(|e| {
                    format!("gateway.listen[{i}].tls: cannot use {cert} and {key}: {e}")
                })?;
                // HTTP/2 offered by ALPN, HTTP/1.1 for clients that do not ask.
                settings.enable_h2();
                proxy.add_tls_with_settings(&addr, None, settings);
            }
        }
    }
    let proxy = server.add_service(proxy);
    proxy.add_dependency(&supervisor);

    let mut admin = Service::new(
        "headway admin".to_owned(),
        HttpServer::new_app(Admin::new(state.clone())),
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
        state: state.clone(),
        drain_time: config.gateway.drain_time,
        upgrade_sock: upgrade_sock.into(),
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    Ok(())
}
