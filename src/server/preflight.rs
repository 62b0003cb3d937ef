//! Before start-up: every address the conf listens on is free, or one line naming each taken one.
//!
//! pingora binds the proxy and admin listeners on their own threads once the server runs; a
//! taken port there is retried for ~30 s, then panics that service's thread while the process
//! lives on without it. Binding each address once first turns that into an error at start-up.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};

/// Binds each address (then lets it go at once) and names, in one line, every address that
/// cannot be bound and the conf key that wants it, such as
/// `gateway.listen[0] 0.0.0.0:8000: address already in use`.
///
/// Each entry is `(conf key, address)`. Bound as pingora binds (`SO_REUSEADDR`): a port whose
/// old connections linger in `TIME_WAIT` counts as free, one with a listener does not.
///
/// Not for upgrade mode (`-u`): the listeners are then handed over by the running process,
/// which holds them until it has, so every address would be reported in use.
pub fn check_addresses(addrs: &[(String, SocketAddr)]) -> Result<(), String> {
    let taken: Vec<String> = addrs
        .iter()
        .filter_map(|(what, addr)| {
            let error = TcpListener::bind(addr).err()?;
            let why = match error.kind() {
                ErrorKind::AddrInUse => "address already in use".to_owned(),
                ErrorKind::AddrNotAvailable => "no such address on this host".to_owned(),
                ErrorKind::PermissionDenied => format!(
                    "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE): {error}"
                ),
                _ => error.to_string(),
            };
            Some(format!("{what} {addr}: {why}"))
        })
        .collect();
    if taken.is_empty() {
        Ok(())
    } else {
        Err(taken.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// An address that was free a moment ago (the listener that found it is gone).
    fn free() -> SocketAddr {
        listening().1
    }

    #[test]
    fn free_addresses_pass_and_are_not_held() {
        let addrs = [
            ("gateway.listen[0]".to_owned(), free()),
            ("gateway.admin.listen".to_owned(), free()),
        ];
        assert_eq!(check_addresses(&addrs), Ok(()));
        // Let go at once: the server binds them next.
        for (_, addr) in &addrs {
            TcpListener::bind(addr).unwrap();
        }
    }

    #[test]
    fn every_taken_address_is_named_with_its_conf_key_in_one_line() {
        let (_first, taken) = listening();
        let (_second, also_taken) = listening();
        let addrs = [
            ("gateway.listen[0]".to_owned(), taken),
            ("gateway.listen[1]".to_owned(), free()),
            ("gateway.admin.listen".to_owned(), also_taken),
        ];
        assert_eq!(
            check_addresses(&addrs),
            Err(format!(
                "gateway.listen[0] {taken}: address already in use; \
                 gateway.admin.listen {also_taken}: address already in use"
            ))
        );
    }

    #[test]
    fn the_wildcard_address_is_taken_when_a_listener_holds_the_port_on_loopback() {
        let (_held, taken) = listening();
        let wildcard = SocketAddr::from(([0, 0, 0, 0], taken.port()));
        let error = check_addresses(&[("gateway.listen[0]".to_owned(), wildcard)]).unwrap_err();
        assert_eq!(
            error,
            format!(
                "gateway.listen[0] 0.0.0.0:{}: address already in use",
                taken.port()
            )
        );
    }

    #[test]
    fn an_address_of_another_host_is_named_too() {
        // TEST-NET-1 (RFC 5737): never an address of this host.
        let elsewhere: SocketAddr = "192.0.2.1:8000".parse().unwrap();
        let error = check_addresses(&[("gateway.listen[0]".to_owned(), elsewhere)]).unwrap_err();
        assert_eq!(
            error,
            "gateway.listen[0] 192.0.2.1:8000: no such address on this host"
        );
    }
}
