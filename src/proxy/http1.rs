//! HTTP/1 hygiene: request limits (414, 431), one canonical form for every request head, and
//! the listener self-check.

use super::{SELF_CHECK_HEADER, SELF_CHECK_PATH};
use crate::config::RequestLimits;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};

/// The listener self-check of this very process (its secret token in the header).
pub(super) fn is_self_check(req: &RequestHeader, token: &str) -> bool {
    req.uri.path() == SELF_CHECK_PATH
        && req
            .headers
            .get(SELF_CHECK_HEADER)
            .is_some_and(|v| v.as_bytes() == token.as_bytes())
}

/// 414 for a request target, 431 for headers, beyond the conf's limits.
pub(super) fn check_limits(req: &RequestHeader, limits: &RequestLimits) -> Result<()> {
    let target = req
        .uri
        .path_and_query()
        .map_or(req.uri.path().len(), |pq| pq.as_str().len());
    if target > limits.max_uri {
        return Err(Error::explain(
            ErrorType::HTTPStatus(414),
            format!(
                "request target too long: {target} bytes (limit {})",
                limits.max_uri
            ),
        ));
    }
    if req.headers.len() > limits.max_headers {
        return Err(Error::explain(
            ErrorType::HTTPStatus(431),
            format!(
                "too many request headers: {} (limit {})",
                req.headers.len(),
                limits.max_headers
            ),
        ));
    }
    let bytes: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > limits.max_header_bytes {
        return Err(Error::explain(
            ErrorType::HTTPStatus(431),
            format!(
                "request headers too large: {bytes} bytes (limit {})",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// Puts an HTTP/1 request head into the one form every backend reads the same way, or refuses
/// it. pingora has already refused conflicting framing (different Content-Lengths, a
/// Transfer-Encoding not ending in chunked, CL with TE, a Host unlike the absolute-form
/// authority); what is left here:
/// - HTTP/1.1 without Host: 400 (RFC 9112 §3.2);
/// - a transfer coding other than chunked (`gzip, chunked`): 501 (RFC 9112 §6.1), since
///   pingora would forward the body de-chunked but still gzipped, labelled as plain;
/// - repeated identical Content-Lengths (`5, 5` or two fields): forwarded as one (RFC 9110 §8.6);
/// - absolute-form targets (`GET http://host/x`): forwarded in origin-form (`GET /x`), as an
///   origin server expects (RFC 9112 §3.2.1); the authority is the Host, which pingora checked.
pub(super) fn normalize_http1(req: &mut RequestHeader) -> Result<()> {
    use pingora::protocols::http::authority::{raw_target_authority, RawTargetAuthority};
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        return Err(Error::explain(
            ErrorType::HTTPStatus(400),
            "HTTP/1.1 request without a Host header",
        ));
    }
    let unsupported = req
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"chunked"));
    if let Some(coding) = unsupported {
        return Err(Error::explain(
            ErrorType::HTTPStatus(501),
            format!(
                "transfer coding not implemented: {}",
                String::from_utf8_lossy(coding).escape_default()
            ),
        ));
    }
    let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.next().is_some() || first.as_bytes().contains(&b',') {
            // pingora refused them unless every value is the same number.
            let one = first
                .as_bytes()
                .split(|&b| b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii()
                .to_vec();
            let one = http::HeaderValue::from_bytes(&one)
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "Content-Length", e))?;
            req.insert_header(http::header::CONTENT_LENGTH, one)?;
        }
    }
    let (target, authority) = match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::Absolute {
            authority,
            path_and_query,
            ..
        } => {
            let target = match path_and_query.first() {
                Some(b'/') => path_and_query.to_vec(),
                Some(_) => [b"/", path_and_query].concat(),
                None => b"/".to_vec(),
            };
            (target, authority.to_vec())
        }
        RawTargetAuthority::None | RawTargetAuthority::AmbiguousAuthority => return Ok(()),
    };
    if !req.headers.contains_key(http::header::HOST) {
        // HTTP/1.0 may omit Host; the authority it named stays the request's host.
        let host = http::HeaderValue::from_bytes(&authority)
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "request authority", e))?;
        req.insert_header(http::header::HOST, host)?;
    }
    req.set_raw_path(&target)
}
