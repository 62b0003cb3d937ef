//! `x-forwarded-client-cert` (Envoy's XFCC): the client certificate a TLS listener verified,
//! passed to the backend; a client's own header is dropped unless a trusted proxy sent it (then
//! ours is appended, as Envoy's `APPEND_FORWARD`), so a backend can believe what it reads.

use crate::client_cert::ClientCert;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

const XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

/// The certificate the client's connection presented and the listener verified, if any.
pub(super) fn client_cert(session: &Session) -> Option<&ClientCert> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<ClientCert>()
}

/// Sets the upstream request's XFCC: `trusted_peer`'s own kept, then this connection's.
pub(super) fn apply(
    session: &Session,
    upstream: &mut RequestHeader,
    trusted_peer: bool,
) -> Result<()> {
    let earlier = if trusted_peer {
        upstream.headers.get(XFCC).cloned()
    } else {
        None
    };
    let ours = client_cert(session).map(ClientCert::xfcc);
    let value = match (earlier, ours) {
        (None, None) => {
            upstream.remove_header(&XFCC);
            return Ok(());
        }
        (Some(_), None) => return Ok(()),
        (None, Some(ours)) => ours,
        (Some(earlier), Some(ours)) => {
            format!("{},{ours}", String::from_utf8_lossy(earlier.as_bytes()))
        }
    };
    let value = http::HeaderValue::from_str(&value).map_err(|e| {
        pingora::Error::explain(pingora::ErrorType::InternalError, format!("xfcc: {e}"))
    })?;
    upstream.insert_header(XFCC, value)?;
    Ok(())
}
