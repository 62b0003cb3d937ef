//! The demo's services and where their pods live: service N's pods on the pod IP base plus
//! N*10+1, N*10+2, ... (127.0.0.11-20 for service1, 127.0.0.21-30 for service2), all on the
//! cluster's port, as the pods of a headless service share one port on different IPs.

use std::net::Ipv4Addr;

/// One service of the demo: a cluster of headway's conf, served by `hello-service` pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoService {
    /// The cluster's name in headway's conf, and the service's name on the demo's command line.
    pub name: &'static str,
    /// `hello-service`'s SERVICE_NAME: it answers `/service/<it>`.
    pub service_name: &'static str,
    /// Pods started with the demo.
    pub initial_replicas: usize,
    /// Its pods' addresses are `base + 10 * block + 1 + slot`.
    pub block: u32,
}

pub const SERVICES: [DemoService; 2] = [
    DemoService {
        name: "service1",
        service_name: "1",
        initial_replicas: 3,
        block: 1,
    },
    DemoService {
        name: "service2",
        service_name: "2",
        initial_replicas: 2,
        block: 2,
    },
];

/// Pods a service can have: the addresses of its block.
pub const MAX_REPLICAS: usize = 10;

/// `service1`, or just `1`.
pub fn find(name: &str) -> Option<&'static DemoService> {
    SERVICES
        .iter()
        .find(|s| s.name == name || s.service_name == name)
}

/// The address of the pod in `slot` (0-based) of `service`; `None` past [`MAX_REPLICAS`] or
/// outside 127.0.0.0/8.
pub fn pod_ip(base: Ipv4Addr, service: &DemoService, slot: usize) -> Option<Ipv4Addr> {
    if slot >= MAX_REPLICAS {
        return None;
    }
    let offset = service.block * 10 + 1 + u32::try_from(slot).ok()?;
    let ip = Ipv4Addr::from(u32::from(base).checked_add(offset)?);
    ip.is_loopback().then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_the_addresses_of_their_block() {
        let base = Ipv4Addr::new(127, 0, 0, 0);
        let [service1, service2] = &SERVICES;
        assert_eq!(
            pod_ip(base, service1, 0),
            Some(Ipv4Addr::new(127, 0, 0, 11))
        );
        assert_eq!(
            pod_ip(base, service1, 9),
            Some(Ipv4Addr::new(127, 0, 0, 20))
        );
        assert_eq!(pod_ip(base, service1, 10), None);
        assert_eq!(
            pod_ip(base, service2, 0),
            Some(Ipv4Addr::new(127, 0, 0, 21))
        );
        let base = Ipv4Addr::new(127, 0, 3, 0);
        assert_eq!(
            pod_ip(base, service2, 1),
            Some(Ipv4Addr::new(127, 0, 3, 22))
        );
        let top = Ipv4Addr::new(127, 255, 255, 250);
        assert_eq!(pod_ip(top, service1, 0), None, "leaves 127/8");
    }

    #[test]
    fn services_by_either_name() {
        assert_eq!(find("service2").map(|s| s.name), Some("service2"));
        assert_eq!(find("1").map(|s| s.name), Some("service1"));
        assert_eq!(find("service3"), None);
    }
}
