//! Whether a failed attempt goes again, where, and at what cost: the retry decision as a
//! function of what is known of the failure, and what passive health is told.

use crate::config::RetryOn;
use crate::upstream::breaker::Overflow;
use crate::upstream::cluster::Cluster;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

/// What the next attempt of a request is. Attempts that cannot have reached a backend's
/// application cost no `retries` and no retry budget: nothing was re-sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextAttempt {
    /// The first attempt, or a retry that re-sends the request: counted against `retries`.
    Counted,
    /// The request never reached the backend (a refused or failed connect): another backend,
    /// free.
    Undelivered,
    /// A pooled connection was closed by its backend as the request arrived: a fresh
    /// connection, free, to any backend (the same one too: it closed one idle connection, which
    /// says nothing about its health).
    StalePooled,
}

/// Why an established attempt failed, for `retry_on` and passive health.
pub(super) enum AttemptFailure {
    /// The request head could not be written (the backend had already reset the connection), or
    /// an HTTP/2 backend refused the stream: it cannot have processed the request, so any
    /// method may go again.
    HeadNotWritten,
    /// A pooled connection closed or reset before any answer: what a backend's keep-alive
    /// timeout does to a connection a request is just being sent on (Node's `http`: 5 s).
    StalePooledConnection,
    /// The answer did not come within the per-try or request timeout.
    Timeout,
    /// The connection broke or the answer was malformed.
    Reset,
    /// The upstream answered with a status `retry_on` names.
    Status,
}

/// What an attempt tells of its backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Success,
    /// A 5xx, a reset, a timeout, a failed connect.
    Failure,
    /// A refused connect: nothing listens (a passing probe ends an ejection this caused).
    Refused,
    /// Nothing to say: a pooled connection the backend closed while idle.
    NotItsFault,
}

/// Whether writing the request head failed: the connection was already reset (a write into a
/// connection closed with FIN succeeds), so the backend cannot have read the request. pingora
/// tells this error apart only by its context.
pub(super) fn head_not_written(e: &Error) -> bool {
    e.etype() == &ErrorType::WriteError
        && e.context
            .as_ref()
            .is_some_and(|c| c.as_str().starts_with("while writing request headers"))
}

/// Requests that may be sent twice: idempotent methods whose body is still buffered.
pub(super) fn replayable(session: &Session) -> bool {
    session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated()
}

/// What is known of a failed attempt when deciding whether the request goes again.
pub(super) struct Failed {
    pub failure: AttemptFailure,
    /// Part of the response reached the client: nothing can go again.
    pub response_started: bool,
    /// The request body is still buffered (pingora keeps the first 64 KiB for retries).
    pub body_kept: bool,
    /// The method is idempotent and the body is kept.
    pub replayable: bool,
    pub in_time: bool,
    /// The attempt used a pooled connection.
    pub client_reused: bool,
}

/// The next attempt after `failed`, if any. `may_resend` is asked only for attempts that
/// re-send the request to a backend that may have processed it (it takes a retry-budget
/// slot); the rest cost nothing.
pub(super) fn next_attempt(
    failed: &Failed,
    on: &RetryOn,
    may_resend: impl FnOnce() -> bool,
) -> Option<NextAttempt> {
    if failed.response_started {
        return None;
    }
    match failed.failure {
        AttemptFailure::Status => Some(NextAttempt::Counted),
        AttemptFailure::HeadNotWritten => {
            (failed.body_kept && failed.in_time).then_some(if failed.client_reused {
                NextAttempt::StalePooled
            } else {
                NextAttempt::Undelivered
            })
        }
        AttemptFailure::StalePooledConnection => {
            (failed.replayable && failed.in_time).then_some(NextAttempt::StalePooled)
        }
        AttemptFailure::Timeout => {
            (on.timeout() && failed.replayable && may_resend()).then_some(NextAttempt::Counted)
        }
        AttemptFailure::Reset => {
            (on.reset && failed.replayable && may_resend()).then_some(NextAttempt::Counted)
        }
    }
}

/// What passive health hears of a failed attempt (a retry on status reports when it is
/// decided).
pub(super) fn outcome_of(failed: &Failed) -> Outcome {
    match failed.failure {
        // Closing an idle pooled connection is no fault of a backend's.
        AttemptFailure::StalePooledConnection => Outcome::NotItsFault,
        AttemptFailure::HeadNotWritten if failed.client_reused => Outcome::NotItsFault,
        _ => Outcome::Failure,
    }
}

/// The 503 for a request a circuit breaker refused, counted.
pub(super) fn overflow(cluster: &Cluster, overflow: Overflow) -> Box<Error> {
    let index = match overflow {
        Overflow::Requests(_) => 0,
        Overflow::Pending(_) => 1,
        Overflow::Connections(_) => 2,
    };
    cluster.metrics.overflows[index].inc();
    Error::explain(
        ErrorType::HTTPStatus(503),
        format!(
            "circuit breaker open for cluster {}: {} ({}) reached",
            cluster.name(),
            overflow.label(),
            overflow.limit()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(failure: AttemptFailure) -> Failed {
        Failed {
            failure,
            response_started: false,
            body_kept: true,
            replayable: true,
            in_time: true,
            client_reused: false,
        }
    }

    fn on() -> RetryOn {
        RetryOn {
            connect_failure: true,
            reset: true,
            gateway_error: true,
            any_5xx: false,
            statuses: Vec::new(),
        }
    }

    #[test]
    fn what_goes_again_and_what_it_costs() {
        let never = || -> bool { panic!("a free retry must not take a budget slot") };
        let f = failed(AttemptFailure::HeadNotWritten);
        assert_eq!(
            next_attempt(&f, &on(), never),
            Some(NextAttempt::Undelivered)
        );
        let f = Failed {
            client_reused: true,
            replayable: false,
            ..failed(AttemptFailure::HeadNotWritten)
        };
        assert_eq!(
            next_attempt(&f, &on(), never),
            Some(NextAttempt::StalePooled)
        );
        assert_eq!(outcome_of(&f), Outcome::NotItsFault);
        let f = Failed {
            replayable: false,
            ..failed(AttemptFailure::StalePooledConnection)
        };
        assert_eq!(
            next_attempt(&f, &on(), never),
            None,
            "a POST is not re-sent"
        );
        let f = failed(AttemptFailure::Reset);
        assert_eq!(next_attempt(&f, &on(), || true), Some(NextAttempt::Counted));
        assert_eq!(next_attempt(&f, &on(), || false), None, "budget spent");
        let f = Failed {
            response_started: true,
            ..failed(AttemptFailure::Timeout)
        };
        assert_eq!(next_attempt(&f, &on(), never), None);
    }
}
