//! Before starting anything: is every address the demo will listen on free? One clear message
//! naming each busy one beats a child process dying with "address in use" in a log file.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    /// Both on the same port, as a DNS server listens.
    UdpAndTcp,
}

/// An address the demo will listen on, and who for (`headway's admin listener (gateway.admin.listen)`).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub what: String,
}

/// Binds each address as its server will, and releases it at once. Err lists every busy one.
///
/// Plain binds, as `std` does them: TCP with SO_REUSEADDR (so a connection of an earlier run
/// lingering in TIME_WAIT is not mistaken for a server, exactly as the servers themselves bind),
/// which on Linux still fails against any listener on the address; UDP without it, so a DNS
/// server already on the port is seen.
pub fn check(wanted: &[Wanted]) -> Result<(), String> {
    let busy: Vec<String> = wanted
        .iter()
        .filter_map(|w| {
            probe(w.addr, w.transport).err().map(|e| {
                format!(
                    "{} {} ({}): {e}",
                    w.addr,
                    transport_name(w.transport),
                    w.what
                )
            })
        })
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    Err(format!(
        "cannot start: {} address(es) already in use or not bindable:\n  {}\n\
         Is another demo or headway still running? `ss -ltnup` shows who holds a port.",
        busy.len(),
        busy.join("\n  ")
    ))
}

fn probe(addr: SocketAddr, transport: Transport) -> std::io::Result<()> {
    if matches!(transport, Transport::Udp | Transport::UdpAndTcp) {
        drop(std::net::UdpSocket::bind(addr)?);
    }
    if matches!(transport, Transport::Tcp | Transport::UdpAndTcp) {
        drop(std::net::TcpListener::bind(addr)?);
    }
    Ok(())
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
        Transport::UdpAndTcp => "UDP+TCP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_busy_address_and_who_wanted_it() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let free_addr = free.local_addr().unwrap();
        drop(free);
        let wanted = [
            Wanted {
                addr: tcp.local_addr().unwrap(),
                transport: Transport::Tcp,
                what: "the proxy".into(),
            },
            Wanted {
                addr: udp.local_addr().unwrap(),
                transport: Transport::UdpAndTcp,
                what: "the DNS server".into(),
            },
            Wanted {
                addr: free_addr,
                transport: Transport::Tcp,
                what: "a pod".into(),
            },
        ];
        let error = check(&wanted).unwrap_err();
        assert!(error.contains("2 address(es)"), "{error}");
        assert!(error.contains(&format!("{} TCP (the proxy)", tcp.local_addr().unwrap())));
        assert!(error.contains(&format!(
            "{} UDP+TCP (the DNS server)",
            udp.local_addr().unwrap()
        )));
        assert!(!error.contains("a pod"), "{error}");
        assert!(check(&wanted[2..]).is_ok());
    }
}
