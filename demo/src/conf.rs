//! What the demo takes from headway's conf, so that the DNS server, the pods and headway cannot
//! disagree: where to serve DNS, the pods' port, the DNS names, headway's listeners, and how
//! often headway refreshes DNS. headway itself validates the rest.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

/// headway's default `dns_refresh_rate`.
const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);
/// headway's defaults for `gateway.listen` and `gateway.admin.listen`.
const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConf {
    pub path: PathBuf,
    /// `gateway.listen`.
    pub proxy: Vec<SocketAddr>,
    /// `gateway.admin.listen`.
    pub admin: SocketAddr,
    /// The one entry of `gateway.resolver.nameservers`: where the demo serves DNS.
    pub nameserver: SocketAddr,
    pub clusters: Vec<ClusterConf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConf {
    pub name: String,
    /// The DNS name, as written (`service1.default.svc.cluster.local.`); `None` for an IP literal.
    pub dns_name: Option<String>,
    pub port: u16,
    pub dns_refresh_rate: Duration,
}

impl DemoConf {
    pub fn load(path: &Path) -> Result<DemoConf, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        parse(path, &text).map_err(|errors| {
            format!(
                "{}: not usable for the demo:\n  {}",
                path.display(),
                errors.join("\n  ")
            )
        })
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterConf> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// Reads `text`; every problem is reported, each with its key.
pub fn parse(path: &Path, text: &str) -> Result<DemoConf, Vec<String>> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| vec![format!("not YAML: {e}")])?;
    let gateway = &root["gateway"];
    let mut errors = Vec::new();

    let proxy = match &gateway["listen"] {
        Value::Null => vec![DEFAULT_LISTEN.to_owned()],
        Value::Sequence(list) => list.iter().map(string).collect(),
        _ => vec![String::new()],
    }
    .iter()
    .enumerate()
    .filter_map(|(i, a)| socket_addr(a, None, &format!("gateway.listen[{i}]"), &mut errors))
    .collect();

    let admin_text = match &gateway["admin"]["listen"] {
        Value::Null => DEFAULT_ADMIN.to_owned(),
        value => string(value),
    };
    let admin = socket_addr(&admin_text, None, "gateway.admin.listen", &mut errors);

    let nameservers: Vec<String> = match &gateway["resolver"]["nameservers"] {
        Value::Sequence(list) => list.iter().map(string).collect(),
        _ => Vec::new(),
    };
    let nameserver = match nameservers.as_slice() {
        [one] => socket_addr(
            one,
            Some(53),
            "gateway.resolver.nameservers[0]",
            &mut errors,
        ),
        _ => {
            errors.push(format!(
                "gateway.resolver.nameservers: the demo serves DNS itself and needs exactly one \
                 nameserver, on loopback (e.g. [\"127.0.0.1:15353\"]); found {}",
                nameservers.len()
            ));
            None
        }
    };
    if let Some(ns) = nameserver {
        if !ns.ip().is_loopback() {
            errors.push(format!(
                "gateway.resolver.nameservers[0]: {ns} is not a loopback address: the demo serves DNS on loopback"
            ));
        }
    }

    let mut clusters = Vec::new();
    if let Value::Sequence(list) = &gateway["clusters"] {
        for (i, cluster) in list.iter().enumerate() {
            let key = format!("gateway.clusters[{i}]");
            let name = string(&cluster["name"]);
            let address = string(&cluster["address"]);
            let port = match cluster["port"].as_u64().map(u16::try_from) {
                Some(Ok(port)) if port != 0 => port,
                _ => {
                    errors.push(format!("{key}.port: missing or not a port"));
                    continue;
                }
            };
            let dns_refresh_rate = match &cluster["dns_refresh_rate"] {
                Value::Null => DEFAULT_DNS_REFRESH,
                value => match duration(&string(value)) {
                    Some(rate) => rate,
                    None => {
                        errors.push(format!(
                            "{key}.dns_refresh_rate: {} is not a duration",
                            string(value)
                        ));
                        continue;
                    }
                },
            };
            let dns_name = (address.parse::<IpAddr>().is_err()).then_some(address);
            clusters.push(ClusterConf {
                name,
                dns_name,
                port,
                dns_refresh_rate,
            });
        }
    }

    match (admin, nameserver) {
        (Some(admin), Some(nameserver)) if errors.is_empty() => Ok(DemoConf {
            path: path.to_owned(),
            proxy,
            admin,
            nameserver,
            clusters,
        }),
        _ => Err(errors),
    }
}

fn string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `ip:port`, `[v6]:port`, or (with `default_port`) a bare ip.
fn socket_addr(
    text: &str,
    default_port: Option<u16>,
    key: &str,
    errors: &mut Vec<String>,
) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    if let (Some(port), Ok(ip)) = (default_port, text.parse::<IpAddr>()) {
        return Some(SocketAddr::new(ip, port));
    }
    errors.push(format!("{key}: {text:?} is not an ip:port address"));
    None
}

/// headway's duration syntax: a number and a unit, `250ms`, `2s`, `0.5s`, `1m`, `1h`.
pub fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// An address to connect to for a listener bound to `addr` (`0.0.0.0` means every address:
/// connect to loopback).
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<DemoConf, Vec<String>> {
        parse(Path::new("t.yaml"), text)
    }

    #[test]
    fn reads_the_repository_demo_conf() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/headway.yaml");
        let conf = DemoConf::load(&path).unwrap();
        assert_eq!(conf.nameserver, "127.0.0.1:15353".parse().unwrap());
        assert_eq!(conf.proxy, vec!["127.0.0.1:8000".parse().unwrap()]);
        assert_eq!(conf.admin, "127.0.0.1:9901".parse().unwrap());
        for name in ["service1", "service2"] {
            let cluster = conf.cluster(name).unwrap();
            assert_eq!(cluster.port, 8080);
            assert_eq!(
                cluster.dns_name.as_deref(),
                Some(format!("{name}.default.svc.cluster.local.").as_str())
            );
        }
    }

    #[test]
    fn defaults_and_ip_literals() {
        let conf = parse_text(
            "gateway:\n  resolver: { nameservers: [\"127.0.0.1\"] }\n  clusters:\n    - { name: a, address: 127.0.0.9, port: 80 }\n",
        )
        .unwrap();
        assert_eq!(conf.proxy, vec!["0.0.0.0:8000".parse().unwrap()]);
        assert_eq!(conf.admin, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(conf.nameserver.port(), 53);
        assert_eq!(conf.clusters[0].dns_name, None);
        assert_eq!(conf.clusters[0].dns_refresh_rate, Duration::from_secs(5));
    }

    #[test]
    fn every_problem_with_its_key() {
        let errors = parse_text(
            "gateway:\n  listen: [\"nowhere\"]\n  resolver: { nameservers: [\"10.0.0.1:53\"] }\n  clusters:\n    - { name: a, address: a.test, port: 0 }\n    - { name: b, address: b.test, port: 80, dns_refresh_rate: soon }\n",
        )
        .unwrap_err();
        let all = errors.join("\n");
        for key in [
            "gateway.listen[0]",
            "nameservers[0]: 10.0.0.1:53 is not a loopback",
            "gateway.clusters[0].port",
            "gateway.clusters[1].dns_refresh_rate",
        ] {
            assert!(all.contains(key), "{key} missing in:\n{all}");
        }
        let errors = parse_text("gateway: {}\n").unwrap_err();
        assert!(errors[0].contains("exactly one nameserver"), "{errors:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(duration("5"), None);
        assert_eq!(duration("s"), None);
    }
}
