//! The resolver a cluster asks: hickory-resolver set up as a pod's resolver is (search domains
//! and ndots from resolv.conf), over UDP with EDNS and TCP for truncated answers.

use crate::config::{LookupFamily, ResolverSettings};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Builds the resolver a cluster uses. Search domains and ndots come from `resolv_conf` as in a
/// pod; nameservers from the conf when given, else from `resolv_conf`. Every nameserver is asked
/// over UDP with EDNS, and over TCP when an answer is truncated (hundreds of pods).
pub fn build_resolver(
    settings: &ResolverSettings,
    family: LookupFamily,
) -> std::result::Result<TokioResolver, String> {
    let from_file = std::fs::read(&settings.resolv_conf)
        .map_err(|e| e.to_string())
        .and_then(|data| {
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
    let servers: Vec<SocketAddr> = if settings.nameservers.is_empty() {
        file_config
            .name_servers()
            .iter()
            .map(|ns| ns.socket_addr)
            .collect()
    } else {
        settings.nameservers.clone()
    };
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
