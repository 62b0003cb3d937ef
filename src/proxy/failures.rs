//! What a failed attempt becomes: its kind, what passive health hears of it, and whether the
//! request goes again (see `retry.rs` for the decision) or ends with an error for the client.

use super::answers::refused_by_backend;
use super::attempt::Attempt;
use super::retry::{
    self, head_not_written, replayable, AttemptFailure, Failed, NextAttempt, Outcome,
};
use crate::upstream::tls::TlsFailure;
use log::warn;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorSource, ErrorType, RetryType};

/// A connect failed: nothing reached the backend. Decides the free retry elsewhere.
pub(super) fn connect_failed(peer: &HttpPeer, attempt: &mut Attempt, e: Box<Error>) -> Box<Error> {
    let tls = attempt
        .cluster
        .tls
        .as_ref()
        .and_then(|tls| tls.count_failure(&e));
    connect_failed_as(peer, attempt, e, tls)
}

/// [`connect_failed`], once what the handshake said (`tls`) is known.
fn connect_failed_as(
    peer: &HttpPeer,
    attempt: &mut Attempt,
    mut e: Box<Error>,
    tls: Option<TlsFailure>,
) -> Box<Error> {
    let cluster = std::sync::Arc::clone(&attempt.cluster);
    cluster.metrics.connect_failures.inc();
    let outcome = if e.etype() == &ErrorType::ConnectRefused {
        Outcome::Refused
    } else {
        Outcome::Failure
    };
    attempt.end_try(Some(outcome));
    // Nothing reached the backend: any method may go elsewhere, and trying costs no
    // `retries` and no retry budget (they ration load re-sent to backends; this sent none).
    let retry =
        cluster.config.retry.on.connect_failure && attempt.in_time() && attempt.has_other_backend();
    if retry {
        attempt.set_next(NextAttempt::Undelivered);
    }
    let what = match tls {
        Some(failure) => format!("upstream TLS error: {}", failure.text()),
        None => e.etype().as_str().to_owned(),
    };
    warn!(
        "upstream connect failed cluster={} backend={} attempt={} error=\"{what}\"{}",
        cluster.name(),
        peer.address(),
        attempt.tries(),
        if retry {
            " retrying on another backend"
        } else {
            ""
        }
    );
    attempt.set_last_failure(format!("{what} to {}", peer.address()));
    if let (Some(failure), false) = (tls, retry) {
        // The answer names the cluster and why the handshake failed; nothing was sent.
        let mut answer = Error::explain(
            ErrorType::HTTPStatus(502),
            format!(
                "upstream TLS error for cluster {}: {}",
                cluster.name(),
                failure.text()
            ),
        );
        answer.set_retry(false);
        return answer;
    }
    e.set_retry(retry);
    e
}

/// An established attempt failed: what the failure was, what passive health hears, and whether
/// and how the request goes again — or the error the client gets.
pub(super) fn attempt_failed(
    peer: &HttpPeer,
    session: &mut Session,
    e: Box<Error>,
    attempt: &mut Attempt,
    client_reused: bool,
) -> Box<Error> {
    let head_not_written = head_not_written(&e) || refused_by_backend(&e);
    let mut e = e.more_context(format!("peer: {peer}"));
    let cluster = std::sync::Arc::clone(&attempt.cluster);
    let fresh =
        !client_reused && attempt.upstream_time().is_none() && session.response_written().is_none();
    if let Some(tls) = cluster.tls.as_ref().filter(|_| fresh) {
        if let Some(failure) = tls.count_failure(&e) {
            // The backend refused the handshake after the gateway's side of it ended (TLS 1.3
            // client authentication): it processed nothing, as with a failed connect.
            return connect_failed_as(peer, attempt, e, Some(failure));
        }
    }
    if matches!(e.esource(), ErrorSource::Downstream | ErrorSource::Internal)
        || matches!(e.etype(), ErrorType::HTTPStatus(_))
    {
        // The client went away or broke the exchange, the gateway answers it itself (a
        // body over the route's limit: 413), or the gateway failed: nothing to retry, and
        // the backend did nothing wrong (it must not count towards ejection).
        attempt.end_try(None);
        e.set_retry(false);
        return e;
    }
    let failure = if attempt.retrying_on_status() {
        AttemptFailure::Status
    } else if head_not_written {
        AttemptFailure::HeadNotWritten
    } else if client_reused && e.retry == RetryType::ReusedOnly {
        // pingora marks errors before any response byte as retryable on a reused
        // connection only; it decides that after this hook, so `e.retry()` would panic here.
        AttemptFailure::StalePooledConnection
    } else if matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    ) {
        AttemptFailure::Timeout
    } else {
        AttemptFailure::Reset
    };
    let failed = Failed {
        failure,
        response_started: attempt.upstream_time().is_some() || session.response_written().is_some(),
        body_kept: !session.as_ref().retry_buffer_truncated(),
        replayable: replayable(session),
        in_time: attempt.in_time(),
        client_reused,
    };
    let next = retry::next_attempt(&failed, &cluster.config.retry.on, || attempt.may_resend())
        // An undelivered attempt needs another backend to go to.
        .filter(|n| *n != NextAttempt::Undelivered || attempt.has_other_backend());
    if !matches!(failed.failure, AttemptFailure::Status) {
        attempt.end_try(Some(retry::outcome_of(&failed)));
        attempt.set_last_failure(format!("{} from {}", e.etype().as_str(), peer.address()));
    }
    if let Some(next) = next {
        attempt.set_next(next);
        e.set_retry(true);
        return e;
    }
    let broke_pooled = client_reused
        && matches!(
            failed.failure,
            AttemptFailure::StalePooledConnection | AttemptFailure::Reset
        )
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    if broke_pooled && !failed.response_started && !failed.replayable {
        // RFC 9110 §9.2.2: a non-idempotent request is not sent again unless the failure
        // proves the backend never saw it; a connection closed after the request was
        // written proves nothing (the backend may have acted, then closed).
        let method = session.req_header().method.clone();
        let mut refused = Error::explain(
            ErrorType::HTTPStatus(502),
            format!(
                "upstream {} of cluster {} closed a kept-alive connection as the {method} \
                 request arrived; not sent again: it may have been processed",
                peer.address(),
                cluster.name()
            ),
        );
        refused.set_retry(false);
        return refused;
    }
    e.set_retry(false);
    e
}
