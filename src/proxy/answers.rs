//! The gateway's own answers: what a failure becomes for the client, the plain-text answers,
//! and how a client's disappearance is told from a bad request.

use super::headers::{RequestId, X_REQUEST_ID};
use crate::proxy::filter::Answer;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

/// The status and body the client gets when proxying fails: 503 when no backend could be
/// reached, 504 when the upstream was too slow, 502 when it broke the exchange, never a 500 for
/// an upstream's failure.
pub(super) fn failure_response(e: &Error, cluster: &str) -> (u16, String) {
    use ErrorType::*;
    let code = match e.etype() {
        HTTPStatus(code) => {
            let message = e.context.as_ref().map_or_else(
                || format!("error for cluster {cluster}"),
                |c| c.as_str().to_owned(),
            );
            return (*code, format!("{message}\n"));
        }
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError
        | BindError | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError
        | ConnectProxyFailure => 503,
        ReadTimedout | WriteTimedout if e.esource() == &ErrorSource::Upstream => 504,
        ReadTimedout => 408,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream if client_gone(e) => 0,
            ErrorSource::Downstream => 400,
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    };
    let body = match code {
        503 => format!(
            "upstream connect error for cluster {cluster}: {}",
            e.etype().as_str()
        ),
        504 => format!("upstream timeout for cluster {cluster}"),
        502 => format!(
            "bad gateway: upstream of cluster {cluster} failed: {}",
            e.etype().as_str()
        ),
        408 => "request timeout".to_owned(),
        400 => "bad request".to_owned(),
        _ => "internal error".to_owned(),
    };
    (code, format!("{body}\n"))
}

/// Whether the client went away: it hung up, or reset its HTTP/2 stream (a gRPC call
/// cancelled by its client). Nobody is left to answer, and it is no bad request. pingora says
/// so in an error's context ("Client closed H2", from its watch on an idle stream) or leaves
/// h2's own error as the cause.
pub(super) fn client_gone(e: &Error) -> bool {
    use ErrorType::*;
    if e.esource() != &ErrorSource::Downstream {
        return false;
    }
    if matches!(e.etype(), ReadError | WriteError | ConnectionClosed) {
        return true;
    }
    let closed_h2 = chain(e).any(|e| {
        e.context.as_ref().is_some_and(|c| {
            let c = c.as_str();
            c.starts_with("Client closed H2") || c.starts_with("downstream error while idling")
        })
    });
    closed_h2 || h2_cause(e).is_some_and(|h2| h2.is_remote() && (h2.is_reset() || h2.is_go_away()))
}

/// Whether an HTTP/2 backend said it did not process the stream: REFUSED_STREAM, or a GOAWAY
/// that the stream came after (RFC 9113 §8.7): any method may go again.
pub(super) fn refused_by_backend(e: &Error) -> bool {
    h2_cause(e).is_some_and(|h2| {
        h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
    })
}

/// An error and the pingora errors it was caused by; pingora chains its own errors boxed
/// (`BError`), as its `chain_display` reads them.
pub(super) fn chain(e: &Error) -> impl Iterator<Item = &Error> {
    std::iter::successors(Some(e), |e| {
        e.cause
            .as_deref()
            .and_then(|c| c.downcast_ref::<Box<Error>>())
            .map(|b| &**b)
    })
}

/// The h2 error at the root of `e`, if there is one.
pub(super) fn h2_cause(e: &Error) -> Option<&h2::Error> {
    chain(e).find_map(|e| e.cause.as_deref()?.downcast_ref::<h2::Error>())
}

/// Sends a short plain-text answer of the gateway's own.
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    body: &str,
    request_id: &RequestId,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    let id = request_id.header();
    if !id.is_empty() {
        resp.insert_header(X_REQUEST_ID, id)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await
}

/// The response head of a filter's answer (before the route's response filters see it).
pub(super) fn answer_head(answer: &Answer, request_id: &str) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(answer.status, Some(4 + answer.headers.len()))?;
    resp.insert_header("content-type", answer.content_type)?;
    resp.insert_header("content-length", answer.body.len().to_string())?;
    if !request_id.is_empty() {
        resp.insert_header(X_REQUEST_ID, request_id)?;
    }
    for (name, value) in &answer.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    Ok(resp)
}

/// Sends a filter's answer whose head is `head`.
pub(super) async fn send_answer(
    session: &mut Session,
    head: ResponseHeader,
    body: Bytes,
) -> Result<()> {
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_gateway_statuses() {
        let connect = Error::new(ErrorType::ConnectRefused);
        assert_eq!(failure_response(&connect, "s1").0, 503);
        let timeout = Error::new_up(ErrorType::ReadTimedout);
        let (code, body) = failure_response(&timeout, "s1");
        assert_eq!(
            (code, body.as_str()),
            (504, "upstream timeout for cluster s1\n")
        );
        let reset = Error::new_up(ErrorType::ConnectionClosed);
        assert_eq!(failure_response(&reset, "s1").0, 502);
        let gone = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(failure_response(&gone, "s1").0, 0);
        let own = Error::explain(
            ErrorType::HTTPStatus(503),
            "no healthy upstream for cluster s1",
        );
        assert_eq!(
            failure_response(&own, "s1"),
            (503, "no healthy upstream for cluster s1\n".to_owned())
        );
    }
}
