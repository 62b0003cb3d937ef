//! Headers the gateway adds or reads on every request: `x-request-id`, `X-Forwarded-For`, and
//! the key a consistent-hashing cluster hashes on.

use crate::config::HashKey;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

/// Header names looked up on every request, parsed once.
pub(super) const X_FORWARDED_FOR: http::HeaderName =
    http::HeaderName::from_static("x-forwarded-for");
pub(super) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The names of the headers added to every upstream request, as pingora's inserts take them:
/// given as static bytes, no copy of the name is made for the case it is written in.
pub(super) const X_FORWARDED_FOR_CASE: bytes::Bytes = bytes::Bytes::from_static(b"x-forwarded-for");
pub(super) const X_FORWARDED_PROTO_CASE: bytes::Bytes =
    bytes::Bytes::from_static(b"x-forwarded-proto");
pub(super) const X_REQUEST_ID_CASE: bytes::Bytes = bytes::Bytes::from_static(b"x-request-id");

/// `X-Forwarded-For` for a request from `client`: the trusted list it came with, if any, and
/// the client's address appended. Formats an IPv4 address by hand: through `Display` it cost
/// more than the rest of this filter (bench/README.md, callgrind).
pub(super) fn forwarded_for(earlier: Option<&[u8]>, client: std::net::IpAddr) -> http::HeaderValue {
    let mut text = Vec::with_capacity(earlier.map_or(0, |e| e.len() + 2) + 15);
    if let Some(earlier) = earlier {
        text.extend_from_slice(earlier);
        text.extend_from_slice(b", ");
    }
    match client {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                if octet >= 100 {
                    text.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    text.push(b'0' + octet / 10 % 10);
                }
                text.push(b'0' + octet % 10);
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(text, "{v6}");
        }
    }
    // Digits, dots, colons and what a valid header value already held: always valid. The
    // buffer becomes the value as it is (no copy).
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// The address of the client a request came from: the connection's `peer`, unless the peer is
/// one of `trusted` proxies; then the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy (entries left of it could be forged by the client). An entry that is not an
/// address ends the walk at the last address before it.
pub(super) fn client_address(
    peer: std::net::IpAddr,
    req: &RequestHeader,
    trusted: &[crate::config::Cidr],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let lists = req.headers.get_all(X_FORWARDED_FOR).iter().rev();
    for entry in lists.flat_map(|l| l.as_bytes().rsplit(|b| *b == b',')) {
        let Some(ip) = std::str::from_utf8(entry.trim_ascii())
            .ok()
            .and_then(|e| e.parse::<std::net::IpAddr>().ok())
        else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// A request's id: the client's `x-request-id` (its header value, shared, never copied), or a
/// UUID the gateway made, kept as its text: it becomes a header value once, when it is added to
/// the upstream request (a value shared between the context and the header would cost an
/// allocation more, in `bytes`, on every request).
#[derive(Clone, Debug)]
pub(super) enum RequestId {
    Client(http::HeaderValue),
    Made([u8; 36]),
}

impl Default for RequestId {
    fn default() -> RequestId {
        RequestId::Client(http::HeaderValue::from_static(""))
    }
}

impl RequestId {
    /// The id as text (visible ASCII: checked when it was taken, or hex digits and dashes).
    pub(super) fn as_str(&self) -> &str {
        match self {
            RequestId::Client(value) => value.to_str().unwrap_or_default(),
            RequestId::Made(text) => std::str::from_utf8(text).unwrap_or_default(),
        }
    }

    /// The id as a header value.
    pub(super) fn header(&self) -> http::HeaderValue {
        match self {
            RequestId::Client(value) => value.clone(),
            RequestId::Made(text) => header_value(text),
        }
    }

    /// The id to add to the upstream request: one the gateway made (the client's own is there).
    pub(super) fn to_add(&self) -> Option<http::HeaderValue> {
        match self {
            RequestId::Client(_) => None,
            RequestId::Made(text) => Some(header_value(text)),
        }
    }
}

/// Hex digits and dashes: always a valid header value.
fn header_value(text: &[u8; 36]) -> http::HeaderValue {
    http::HeaderValue::from_bytes(text).unwrap_or_else(|_| http::HeaderValue::from_static("-"))
}

/// The request's `x-request-id`: the client's, or a new one when the client sent none (or one
/// that is not visible ASCII). A new one is added to the upstream request only
/// ([`RequestId::to_add`]): pingora copies the client's request for the upstream one, and
/// every header added before is copied with it.
pub(super) fn request_id(req: &RequestHeader) -> RequestId {
    match req
        .headers
        .get(X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.to_str().is_ok())
    {
        Some(id) => RequestId::Client(id.clone()),
        None => RequestId::Made(new_request_id()),
    }
}

/// A random version-4 UUID, formatted as usual (no allocation: this runs on every request).
pub(super) fn new_request_id() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    out
}

/// The key a consistent-hashing cluster hashes this request on: the first `hash_policy` entry
/// that yields one (Envoy's semantics); None when none does (the pick is then random).
pub(super) fn hash_key(session: &Session, policy: &[HashKey]) -> Option<Vec<u8>> {
    let req = session.req_header();
    policy.iter().find_map(|p| match p {
        HashKey::Header(name) => req
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes().to_vec()),
        HashKey::SourceIp => session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = new_request_id();
        let id = std::str::from_utf8(&id).unwrap();
        assert_eq!(id.len(), 36);
        for (i, c) in id.chars().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                assert_eq!(c, '-', "{id}");
            } else {
                assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
            }
        }
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id.as_bytes(), new_request_id());
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_forwarded_address_behind_a_trusted_peer() {
        use crate::config::Cidr;
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let req = |xff: &[&str]| {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            for v in xff {
                r.append_header("x-forwarded-for", *v).unwrap();
            }
            r
        };
        // An untrusted peer's header is ignored: anyone could write it.
        let forged = req(&["1.2.3.4"]);
        assert_eq!(
            client_address(ip("9.9.9.9"), &forged, &trusted),
            ip("9.9.9.9")
        );
        // Behind a trusted proxy: the right-most address that is not a proxy of ours.
        let r = req(&["6.6.6.6, 5.5.5.5", "10.0.0.2"]);
        assert_eq!(client_address(ip("10.0.0.1"), &r, &trusted), ip("5.5.5.5"));
        // All trusted: the left-most; none: the peer; garbage stops the walk.
        let r = req(&["10.0.0.3, 10.0.0.2"]);
        assert_eq!(client_address(ip("10.0.0.1"), &r, &trusted), ip("10.0.0.3"));
        assert_eq!(
            client_address(ip("10.0.0.1"), &req(&[]), &trusted),
            ip("10.0.0.1")
        );
        let r = req(&["5.5.5.5, junk, 10.0.0.2"]);
        assert_eq!(client_address(ip("10.0.0.1"), &r, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_for_formats_addresses_and_appends_to_a_trusted_list() {
        use std::net::IpAddr;
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "10.1.20.254",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(forwarded_for(None, addr), ip);
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(forwarded_for(None, v6), "2001:db8::1");
        let client: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            forwarded_for(Some(b"203.0.113.9, 10.0.0.2"), client),
            "203.0.113.9, 10.0.0.2, 10.0.0.7"
        );
    }
}
