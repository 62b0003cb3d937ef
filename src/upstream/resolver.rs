//! The resolvers clusters ask: hickory-resolver set up as a pod's resolver is (search domains
//! and ndots from resolv.conf), over UDP with EDNS and TCP for truncated answers; one per lookup
//! family for the whole gateway, built again when resolv.conf changes or DNS keeps failing.

use crate::config::{LookupFamily, ResolverSettings};
use crate::lock;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often resolv.conf is read again to see whether it changed: a small file, read at most
/// once a second, and only when a lookup is due.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Lookups failing in a row (timeouts, I/O errors) after which the resolvers are built anew:
/// fresh sockets and connections, and resolv.conf read again.
const RENEW_AFTER_FAILURES: u32 = 3;

/// Builds one resolver. Search domains and ndots come from `resolv_conf` as in a pod;
/// nameservers from the conf when given, else from `resolv_conf`. Every nameserver is asked
/// over UDP with EDNS, and over TCP when an answer is truncated (hundreds of pods).
pub fn build_resolver(
    settings: &ResolverSettings,
    family: LookupFamily,
) -> std::result::Result<TokioResolver, String> {
    build_from(settings, &read_resolv_conf(settings), family)
}

/// resolv.conf's bytes, or why it cannot be read.
fn read_resolv_conf(settings: &ResolverSettings) -> Result<Vec<u8>, String> {
    std::fs::read(&settings.resolv_conf).map_err(|e| e.to_string())
}

/// The nameservers a resolver built from `settings` and resolv.conf's `file` asks.
fn nameservers(settings: &ResolverSettings, file: &ResolverConfig) -> Vec<SocketAddr> {
    if settings.nameservers.is_empty() {
        let mut seen = BTreeSet::new();
        file.name_servers()
            .iter()
            .map(|ns| ns.socket_addr)
            .filter(|a| seen.insert(*a))
            .collect()
    } else {
        settings.nameservers.clone()
    }
}

fn build_from(
    settings: &ResolverSettings,
    file: &Result<Vec<u8>, String>,
    family: LookupFamily,
) -> std::result::Result<TokioResolver, String> {
    let from_file = file.clone().and_then(|data| {
        hickory_resolver::system_conf::parse_resolv_conf(data).map_err(|e| e.to_string())
    });
    let (file_config, mut opts) = match from_file {
        Ok(parsed) => parsed,
        Err(e) if settings.nameservers.is_empty() => {
            return Err(format!(
                "cannot use {} ({e}) and gateway.resolver.nameservers is empty",
                settings.resolv_conf.display()
            ))
        }
        // The file only adds search domains and ndots when nameservers are configured.
        Err(_) => (ResolverConfig::new(), ResolverOpts::default()),
    };
    let servers = nameservers(settings, &file_config);
    if servers.is_empty() {
        return Err(format!(
            "{} lists no nameserver and gateway.resolver.nameservers is empty",
            settings.resolv_conf.display()
        ));
    }
    let mut group = NameServerConfigGroup::with_capacity(servers.len() * 2);
    let mut seen = BTreeSet::new();
    for addr in servers.into_iter().filter(|a| seen.insert(*a)) {
        group.push(NameServerConfig::new(addr, Protocol::Udp));
        group.push(NameServerConfig::new(addr, Protocol::Tcp));
    }
    let config = ResolverConfig::from_parts(
        file_config.domain().cloned(),
        file_config.search().to_vec(),
        group,
    );
    opts.timeout = settings.timeout;
    opts.attempts = settings.attempts as usize;
    // Every refresh must ask DNS: a cached answer would hide pods coming and going.
    opts.cache_size = 0;
    opts.edns0 = true;
    opts.try_tcp_on_error = true;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = match family {
        LookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
        LookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
        LookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
        LookupFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
        LookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
    };
    Ok(
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build(),
    )
}

/// Every resolver of the gateway: one per lookup family in use, shared by every cluster (one
/// cache-less resolver, one connection pool), built from `gateway.resolver` and the resolv.conf
/// it names. resolv.conf is read again at most once a second when a lookup is due; when its
/// content changed (kube-dns's Service re-created, the file rewritten) the next lookup asks the
/// new nameservers. After `RENEW_AFTER_FAILURES` (3) failed lookups in a row the resolvers are
/// built anew, so sockets a dead path left behind are not used again.
pub struct Resolvers {
    state: Mutex<ResolversState>,
}

struct ResolversState {
    settings: ResolverSettings,
    /// resolv.conf as last read (or why it could not be).
    file: Result<Vec<u8>, String>,
    /// When resolv.conf was last read; `None`: at the next lookup.
    checked: Option<Instant>,
    built: Vec<(LookupFamily, TokioResolver)>,
    failures: u32,
}

impl Resolvers {
    /// The resolvers of `settings`. Fails as [`build_resolver`] does (no nameserver to ask),
    /// so a conf that cannot resolve anything is refused before anything starts.
    pub fn new(settings: &ResolverSettings) -> Result<Resolvers, String> {
        let file = read_resolv_conf(settings);
        build_from(settings, &file, LookupFamily::V4Only)?;
        Ok(Resolvers {
            state: Mutex::new(ResolversState {
                settings: settings.clone(),
                file,
                checked: Some(Instant::now()),
                built: Vec::new(),
                failures: 0,
            }),
        })
    }

    /// The resolver for `family`, after reading resolv.conf again if a second has passed. A
    /// resolv.conf that became unusable keeps the resolvers built from the last usable one.
    pub fn get(&self, family: LookupFamily) -> Result<TokioResolver, String> {
        let mut state = lock(&self.state);
        if state.checked.is_none_or(|at| at.elapsed() >= RECHECK_EVERY) {
            state.checked = Some(Instant::now());
            let file = read_resolv_conf(&state.settings);
            if file != state.file {
                match build_from(&state.settings, &file, family) {
                    Ok(_) => {
                        log::warn!(
                            "dns resolver: {} changed, nameservers now {}: resolvers built anew",
                            state.settings.resolv_conf.display(),
                            describe(&state.settings, &file)
                        );
                        state.file = file;
                        state.built.clear();
                    }
                    Err(e) => log::warn!(
                        "dns resolver: {} changed but cannot be used ({e}): keeping the last usable one",
                        state.settings.resolv_conf.display()
                    ),
                }
            }
        }
        if let Some((_, resolver)) = state.built.iter().find(|(f, _)| *f == family) {
            return Ok(resolver.clone());
        }
        let resolver = build_from(&state.settings, &state.file, family)?;
        state.built.push((family, resolver.clone()));
        Ok(resolver)
    }

    /// The settings they were built from.
    pub fn settings(&self) -> ResolverSettings {
        lock(&self.state).settings.clone()
    }

    /// A lookup's outcome: `failed` when the resolver could not get an answer at all. Enough
    /// failures in a row drop every resolver, so the next lookup opens new sockets and reads
    /// resolv.conf again.
    pub fn record(&self, failed: bool) {
        let mut state = lock(&self.state);
        if !failed {
            state.failures = 0;
            return;
        }
        state.failures += 1;
        if state.failures >= RENEW_AFTER_FAILURES && !state.built.is_empty() {
            log::warn!(
                "dns resolver: {} lookups failed in a row: resolvers built anew with fresh sockets",
                state.failures
            );
            state.built.clear();
            state.failures = 0;
            // Read resolv.conf at the next lookup: the failures may be a moved nameserver.
            state.checked = None;
        }
    }
}

/// The nameservers of `settings` and resolv.conf's `file`, for logs.
fn describe(settings: &ResolverSettings, file: &Result<Vec<u8>, String>) -> String {
    let parsed = file.clone().and_then(|data| {
        hickory_resolver::system_conf::parse_resolv_conf(data).map_err(|e| e.to_string())
    });
    let file_config = parsed.map_or_else(|_| ResolverConfig::new(), |p| p.0);
    let servers: Vec<String> = nameservers(settings, &file_config)
        .iter()
        .map(SocketAddr::to_string)
        .collect();
    servers.join(",")
}
