//! Address blocks as `trusted_proxies` lists them: `10.0.0.0/8`, or a single address.

use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// An address block of `gateway.trusted_proxies`, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr(IpNet);

/// Why a text is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Neither an address nor `address/prefix`.
    #[error("`{0}` is not an address or address/prefix")]
    NotAnAddress(String),
    /// An address with a prefix length too long for its family.
    #[error("`{text}`: the prefix must be 0 to {max}")]
    Prefix {
        /// The text as written.
        text: String,
        /// The longest prefix of the address's family: 32 or 128.
        max: u8,
    },
}

impl Cidr {
    /// Reads `10.0.0.0/8`, `fd00::/8`, or a single address (a block of one).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Cidr(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip)));
        }
        match text.split_once('/').map(|(ip, _)| ip.parse::<IpAddr>()) {
            Some(Ok(ip)) => Err(CidrError::Prefix {
                text: text.to_owned(),
                max: if ip.is_ipv4() { 32 } else { 128 },
            }),
            _ => Err(CidrError::NotAnAddress(text.to_owned())),
        }
    }

    /// Whether `ip` is in the block; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener reports an IPv4 peer as v4-mapped v6: a v4 block holds it too.
        let ip = match (self.0, ip) {
            (IpNet::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(text: String) -> Result<Cidr, CidrError> {
        Cidr::parse(&text)
    }
}
