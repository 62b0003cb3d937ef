//! The request path: route by prefix, pick a ready backend, retry elsewhere, answer failures.

pub mod access_log;
pub mod router;

use crate::config::{HashKey, PathMatch, RequestLimits, Route, RouteAction, UpstreamProtocol};
use crate::proxy::access_log::Entry;
use crate::proxy::router::RouteMatch;
use crate::server::client_limits::KeptAlive;
use crate::server::{GatewayState, SELF_CHECK_HEADER, SELF_CHECK_PATH};
use crate::upstream::breaker::{AttemptSlot, Overflow, PendingSlot, RequestSlot, RetrySlot};
use crate::upstream::cluster::Cluster;
use async_trait::async_trait;
use bytes::Bytes;
use log::warn;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorSource, ErrorType, Result, RetryType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The gateway's `ProxyHttp`.
pub struct Gateway {
    state: Arc<GatewayState>,
}

impl Gateway {
    pub fn new(state: Arc<GatewayState>) -> Gateway {
        Gateway { state }
    }
}

/// Per-request state. The slots release the request's share of its cluster's limits when the
/// context is dropped, whatever path the request took.
pub struct RequestCtx {
    started: Instant,
    request_id: String,
    route: Option<RouteMatch>,
    cluster: Option<Arc<Cluster>>,
    /// The request's whole budget (the cluster's `timeout`), retries included.
    deadline: Option<Instant>,
    /// Backends this request was sent to, in order.
    tried: Vec<SocketAddr>,
    /// Attempts that count against `retries` (see [`NextAttempt`] for those that do not).
    counted_attempts: u32,
    /// What the next attempt is, after a failed one.
    next_attempt: NextAttempt,
    /// What went wrong on the last attempt, for the answer if no attempt succeeds.
    last_failure: Option<String>,
    /// When the first upstream attempt began, and how long until the response headers came.
    upstream_started: Option<Instant>,
    upstream_time: Option<Duration>,
    /// An upstream answer (e.g. 503) turned into a retry by `retry_on`.
    retry_status: Option<u16>,
    /// For `ring_hash` / `maglev`: the key from the cluster's `hash_policy`.
    hash_key: Option<Vec<u8>>,
    /// The gateway's own listener check: not counted, not logged.
    self_check: bool,
    /// The route's `max_request_body_bytes`, and the body bytes seen so far.
    body_limit: Option<u64>,
    body_seen: u64,
    request_slot: Option<RequestSlot>,
    pending: Option<PendingSlot>,
    attempt: Option<AttemptSlot>,
    retry_slot: Option<RetrySlot>,
    /// What the client limits keep per connection, handed on to the next request.
    kept_alive: Option<KeptAlive>,
}

/// What the next attempt of a request is. Attempts that cannot have reached a backend's
/// application cost no `retries` and no retry budget: nothing was re-sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextAttempt {
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
enum AttemptFailure {
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

impl Gateway {
    fn cluster_name<'a>(&self, ctx: &'a RequestCtx) -> &'a str {
        ctx.cluster.as_deref().map_or("-", |c| c.name())
    }

    fn overflow(&self, cluster: &Cluster, overflow: Overflow) -> Box<Error> {
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

    /// Whether this request may be sent again to another backend now: within `retries` and the
    /// deadline, with another ready backend, and — unless the backend it failed on fails alone
    /// (failover, see [`Cluster::fails_alone`]) — within the cluster's retry budget (whose slot
    /// it then holds until it ends).
    fn may_resend(&self, cluster: &Arc<Cluster>, ctx: &mut RequestCtx) -> bool {
        if ctx.counted_attempts > cluster.config.retries
            || !in_time(ctx)
            || !cluster.has_ready_backend(&ctx.tried)
        {
            return false;
        }
        if ctx.tried.last().is_some_and(|a| cluster.fails_alone(a)) {
            return true;
        }
        if ctx.retry_slot.is_none() {
            match RetrySlot::take(cluster, &cluster.config.retry) {
                Some(slot) => ctx.retry_slot = Some(slot),
                None => {
                    cluster.metrics.retry_budget_exhausted.inc();
                    warn!(
                        "retry budget exhausted cluster={} retries_in_progress={}",
                        cluster.name(),
                        cluster.load.retries()
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Ends the current attempt, reporting its outcome to passive health.
    fn end_attempt(cluster: &Cluster, ctx: &mut RequestCtx, outcome: Outcome) {
        ctx.pending = None;
        if let Some(attempt) = ctx.attempt.take() {
            if let (Some(state), Some(addr)) = (attempt.backend(), ctx.tried.last()) {
                match outcome {
                    Outcome::Success => cluster.report_success(state),
                    Outcome::Failure => cluster.report_failure(*addr, state, false),
                    Outcome::Refused => cluster.report_failure(*addr, state, true),
                    Outcome::NotItsFault => {}
                }
            }
        }
    }
}

/// What an attempt tells of its backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
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
fn head_not_written(e: &Error) -> bool {
    e.etype() == &ErrorType::WriteError
        && e.context
            .as_ref()
            .is_some_and(|c| c.as_str().starts_with("while writing request headers"))
}

/// Whether the request's deadline is still ahead.
fn in_time(ctx: &RequestCtx) -> bool {
    ctx.deadline.is_none_or(|d| Instant::now() < d)
}

/// Requests that may be sent twice: idempotent methods whose body is still buffered.
fn replayable(session: &Session) -> bool {
    session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated()
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            route: None,
            cluster: None,
            deadline: None,
            tried: Vec::new(),
            counted_attempts: 0,
            next_attempt: NextAttempt::Counted,
            last_failure: None,
            upstream_started: None,
            upstream_time: None,
            retry_status: None,
            hash_key: None,
            self_check: false,
            body_limit: None,
            body_seen: 0,
            request_slot: None,
            pending: None,
            attempt: None,
            retry_slot: None,
            kept_alive: None,
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::server::client_limits::mark_headers_read();
        // Limits first: they judge what the client sent, not the id added below.
        let limits = check_limits(session.req_header(), &self.state.limits);
        let normalized = if limits.is_ok() && !session.is_http2() {
            normalize_http1(session.req_header_mut())
        } else {
            Ok(())
        };
        // Every answer carries the id, refusals included.
        ctx.request_id = request_id(session.req_header_mut());
        limits.and(normalized)
    }

    /// Marks kept-alive connections, so the client limits know a request is not the first,
    /// and hands on what they keep per connection.
    fn persist_connection_context(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(ctx.kept_alive.clone().unwrap_or_default()))
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
        previous: Box<dyn std::any::Any + Send + Sync>,
    ) {
        ctx.kept_alive = previous.downcast::<KeptAlive>().ok().map(|k| *k);
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if is_self_check(session.req_header(), &self.state.self_check) {
            ctx.self_check = true;
            let mut resp = ResponseHeader::build(204, Some(1))?;
            resp.insert_header("content-length", "0")?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
        let matched = self.state.router.route(host, req.uri.path().as_bytes());
        let Some(matched) = matched else {
            let body = format!("no route for {}\n", session.req_header().uri.path());
            respond(session, 404, &body, &ctx.request_id).await?;
            return Ok(true);
        };
        ctx.route = Some(matched);
        let Some(route) = self.state.router.get(matched.route) else {
            return Err(Error::explain(ErrorType::InternalError, "route vanished"));
        };
        if let RouteAction::Direct { status, body } = &route.action {
            respond_direct(session, *status, body, route, &ctx.request_id).await?;
            return Ok(true);
        }
        let Some(cluster) = matched
            .cluster
            .and_then(|c| self.state.clusters.get(c))
            .cloned()
        else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "route to no cluster",
            ));
        };
        ctx.deadline = Some(ctx.started + route.timeout.unwrap_or(cluster.config.timeout));
        if let Some(max) = route.max_request_body_bytes {
            let declared = session
                .req_header()
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return Err(body_too_large(max));
            }
            ctx.body_limit = Some(max);
        }
        if cluster.config.lb_policy.hashes() {
            ctx.hash_key = hash_key(session, &cluster.config.hash_policy);
        }
        match RequestSlot::take(&cluster, &cluster.config.breakers) {
            Ok(slot) => ctx.request_slot = Some(slot),
            Err(overflow) => {
                let e = self.overflow(&cluster, overflow);
                ctx.cluster = Some(cluster);
                return Err(e);
            }
        }
        ctx.cluster = Some(cluster);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if end_of_stream && body.as_ref().is_some_and(Bytes::is_empty) {
            // An HTTP/2 client may end its upload with an empty DATA frame. pingora would write
            // it to an HTTP/1.1 backend as an empty chunk — `0\r\n\r\n`, the last-chunk — and
            // then the last-chunk again: a stray request on the pooled connection, whose answer
            // the next client of that connection got (notes/upstream-reports.md). Only at the
            // end: pingora takes `None` for the end of the body, and its chunked reader hands
            // out empty pieces mid-body too, which it skips itself.
            *body = None;
        }
        if let (Some(max), Some(chunk)) = (ctx.body_limit, body.as_ref()) {
            ctx.body_seen += chunk.len() as u64;
            if ctx.body_seen > max {
                return Err(body_too_large(max));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let cluster = ctx
            .cluster
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request has no cluster"))?;
        let name = cluster.name();
        let key = ctx.hash_key.as_deref();
        let selected = cluster.select(&ctx.tried, key).or_else(|| {
            // A stale pooled connection says nothing about the backend: it may be retried.
            (ctx.next_attempt == NextAttempt::StalePooled)
                .then(|| cluster.select(&[], key))
                .flatten()
        });
        let Some(addr) = selected else {
            let message = match &ctx.last_failure {
                None => format!("no healthy upstream for cluster {name}"),
                Some(failure) => format!(
                    "upstream connect error for cluster {name}: {failure}; no other healthy backend to retry"
                ),
            };
            return Err(Error::explain(ErrorType::HTTPStatus(503), message));
        };
        let now = Instant::now();
        let remaining = ctx
            .deadline
            .map_or(cluster.config.timeout, |d| d.saturating_duration_since(now));
        if remaining.is_zero() {
            return Err(Error::explain(
                ErrorType::HTTPStatus(504),
                format!("upstream timeout for cluster {name}: no time left to retry"),
            ));
        }
        let limits = &cluster.config.breakers;
        ctx.attempt = None;
        ctx.pending =
            Some(PendingSlot::take(&cluster, limits).map_err(|o| self.overflow(&cluster, o))?);
        let backend = cluster.table().get(&addr);
        ctx.attempt = Some(
            AttemptSlot::take(&cluster, limits, backend).map_err(|o| self.overflow(&cluster, o))?,
        );
        if ctx.next_attempt == NextAttempt::Counted {
            ctx.counted_attempts += 1;
        }
        if !ctx.tried.is_empty() {
            cluster.metrics.retries.inc();
        }
        ctx.next_attempt = NextAttempt::Counted;
        ctx.retry_status = None;
        ctx.tried.push(addr);
        ctx.upstream_started.get_or_insert(now);

        let mut peer = HttpPeer::new(addr, false, String::new());
        let connect = cluster.config.connect_timeout.min(remaining);
        let per_try = if session.is_upgrade_req() {
            // Once upgraded (WebSocket), the connection is a tunnel: `timeout` no longer
            // applies, and either side may be quiet for up to `tunnel_timeout`. The wait for
            // the 101 is bounded by it too: pingora sets a peer's timeouts once, at connect.
            let tunnel = cluster.config.tunnel_timeout;
            session.set_read_timeout(Some(tunnel));
            session.set_write_timeout(Some(tunnel));
            tunnel
        } else {
            cluster
                .config
                .retry
                .per_try_timeout
                .map_or(remaining, |t| t.min(remaining))
        };
        peer.options.connection_timeout = Some(connect);
        peer.options.total_connection_timeout = Some(connect);
        peer.options.read_timeout = Some(per_try);
        peer.options.write_timeout = Some(per_try);
        peer.options.idle_timeout = Some(cluster.config.idle_timeout);
        if cluster.config.protocol == UpstreamProtocol::Http2 {
            // Cleartext HTTP/2 with prior knowledge (h2c), as gRPC backends expect.
            peer.options.set_http_version(2, 2);
        }
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.pending = None;
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            // Only a trusted proxy's X-Forwarded-For is kept: anyone else could claim any
            // address, so theirs is replaced by the address we saw.
            let trusted = self
                .state
                .trusted_proxies
                .iter()
                .any(|c| c.contains(client.ip()));
            let earlier = upstream_request
                .headers
                .get(X_FORWARDED_FOR)
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|v| trusted && !v.is_empty());
            upstream_request
                .insert_header("x-forwarded-for", forwarded_for(earlier, client.ip()))?;
        }
        let tls = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some();
        let proto = http::HeaderValue::from_static(if tls { "https" } else { "http" });
        upstream_request.insert_header("x-forwarded-proto", proto)?;
        if let Some(route) = ctx.route.and_then(|m| self.state.router.get(m.route)) {
            apply_request_rewrites(route, upstream_request)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        let Some(cluster) = ctx.cluster.clone() else {
            return Ok(());
        };
        let failed = status >= 500;
        if cluster.config.retry.on.status(status)
            && replayable(session)
            && self.may_resend(&cluster, ctx)
        {
            Self::end_attempt(&cluster, ctx, Outcome::Failure);
            let backend = ctx.tried.last().map_or_else(String::new, |a| a.to_string());
            warn!(
                "upstream answered {status} cluster={} backend={backend}: retrying on another backend",
                cluster.name()
            );
            ctx.last_failure = Some(format!("{status} from {backend}"));
            ctx.retry_status = Some(status);
            return Err(Error::explain(
                ErrorType::Custom("RetryOnStatus"),
                format!("upstream answered {status}"),
            ));
        }
        let outcome = if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        Self::end_attempt(&cluster, ctx, outcome);
        ctx.upstream_time = ctx.upstream_started.map(|t| t.elapsed());
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(route) = ctx.route.and_then(|m| self.state.router.get(m.route)) {
            apply_response_headers(route, upstream_response)?;
        }
        if self.state.is_draining() {
            // Clients reconnect, and find a gateway that is not going away.
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let Some(cluster) = ctx.cluster.clone() else {
            return e;
        };
        cluster.metrics.connect_failures.inc();
        let outcome = if e.etype() == &ErrorType::ConnectRefused {
            Outcome::Refused
        } else {
            Outcome::Failure
        };
        Self::end_attempt(&cluster, ctx, outcome);
        // Nothing reached the backend: any method may go elsewhere, and trying costs no
        // `retries` and no retry budget (they ration load re-sent to backends; this sent none).
        let retry = cluster.config.retry.on.connect_failure
            && in_time(ctx)
            && cluster.has_ready_backend(&ctx.tried);
        if retry {
            ctx.next_attempt = NextAttempt::Undelivered;
        }
        warn!(
            "upstream connect failed cluster={} backend={} attempt={} error=\"{}\"{}",
            cluster.name(),
            peer.address(),
            ctx.tried.len(),
            e.etype().as_str(),
            if retry {
                " retrying on another backend"
            } else {
                ""
            }
        );
        ctx.last_failure = Some(format!("{} to {}", e.etype().as_str(), peer.address()));
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let head_not_written = head_not_written(&e) || refused_by_backend(&e);
        let mut e = e.more_context(format!("peer: {peer}"));
        let Some(cluster) = ctx.cluster.clone() else {
            e.set_retry(false);
            return e;
        };
        if matches!(e.esource(), ErrorSource::Downstream | ErrorSource::Internal)
            || matches!(e.etype(), ErrorType::HTTPStatus(_))
        {
            // The client went away or broke the exchange, the gateway answers it itself (a
            // body over the route's limit: 413), or the gateway failed: nothing to retry, and
            // the backend did nothing wrong (it must not count towards ejection).
            ctx.pending = None;
            ctx.attempt = None;
            e.set_retry(false);
            return e;
        }
        let failure = if ctx.retry_status.is_some() {
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
        let response_started = ctx.upstream_time.is_some() || session.response_written().is_some();
        let body_kept = !session.as_ref().retry_buffer_truncated();
        let on = &cluster.config.retry.on;
        let next = if response_started {
            None
        } else {
            match failure {
                AttemptFailure::Status => Some(NextAttempt::Counted),
                AttemptFailure::HeadNotWritten => {
                    (body_kept && in_time(ctx)).then_some(if client_reused {
                        NextAttempt::StalePooled
                    } else {
                        NextAttempt::Undelivered
                    })
                }
                AttemptFailure::StalePooledConnection => {
                    (replayable(session) && in_time(ctx)).then_some(NextAttempt::StalePooled)
                }
                AttemptFailure::Timeout => {
                    (on.timeout() && replayable(session) && self.may_resend(&cluster, ctx))
                        .then_some(NextAttempt::Counted)
                }
                AttemptFailure::Reset => {
                    (on.reset && replayable(session) && self.may_resend(&cluster, ctx))
                        .then_some(NextAttempt::Counted)
                }
            }
        };
        // An undelivered attempt needs another backend to go to.
        let next = next
            .filter(|n| *n != NextAttempt::Undelivered || cluster.has_ready_backend(&ctx.tried));
        if !matches!(failure, AttemptFailure::Status) {
            // Closing an idle pooled connection is no fault of a backend's; everything else
            // counts towards its passive health.
            let outcome = match failure {
                AttemptFailure::StalePooledConnection => Outcome::NotItsFault,
                AttemptFailure::HeadNotWritten if client_reused => Outcome::NotItsFault,
                _ => Outcome::Failure,
            };
            Self::end_attempt(&cluster, ctx, outcome);
            ctx.last_failure = Some(format!("{} from {}", e.etype().as_str(), peer.address()));
        }
        if let Some(next) = next {
            ctx.next_attempt = next;
            e.set_retry(true);
            return e;
        }
        let broke_pooled = client_reused
            && matches!(
                failure,
                AttemptFailure::StalePooledConnection | AttemptFailure::Reset
            )
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if broke_pooled && !response_started && !replayable(session) {
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

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = failure_response(e, self.cluster_name(ctx));
        // The connection closes after this answer (the request body may be unread), and the
        // answer says so, rather than promising a keep-alive it will not keep.
        session.set_keepalive(None);
        if code > 0 && session.response_written().is_none() {
            if let Err(write_error) = respond(session, code, &body, &ctx.request_id).await {
                warn!("could not send {code} to the client: {write_error}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// pingora's error log names the request by method and path only: a query string can carry
    /// tokens, and logs must not.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    /// The gateway's own answers (404, 503 no healthy upstream, …) are in the access log with
    /// their reason; pingora's error log is kept for failures it did not choose.
    fn suppress_error_log(&self, session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // A client hanging up or cancelling is routine (load generators do it at the end of
        // every run; gRPC clients at every deadline); the access log records it as 499.
        // A tunnel closed by `tunnel_timeout` is routine too: it is counted, and logged as 101.
        let tunnel_timed_out = session.response_written().is_some_and(|r| r.status == 101)
            && matches!(
                error.etype(),
                ErrorType::ReadTimedout | ErrorType::WriteTimedout
            );
        client_gone(error) || tunnel_timed_out || matches!(error.etype(), ErrorType::HTTPStatus(_))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.pending = None;
        ctx.attempt = None;
        if ctx.self_check {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let route_metrics = match ctx.route {
            Some(m) => self.state.route_metrics.get(m.route),
            None => Some(&self.state.unrouted),
        };
        if let Some(counters) = route_metrics {
            counters.count(status);
        }
        let tunnel_timed_out = status == 101
            && e.is_some_and(|e| {
                matches!(
                    e.etype(),
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout
                )
            });
        if let Some(c) = &ctx.cluster {
            if tunnel_timed_out {
                c.metrics.tunnel_timeouts.inc();
            }
            c.metrics.request_duration.observe(elapsed.as_secs_f64());
            if let Some(t) = ctx.upstream_time {
                c.metrics.upstream_duration.observe(t.as_secs_f64());
            }
        }

        if !self.state.access_log.enabled() {
            return;
        }
        let req = session.req_header();
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or_else(|| "-".to_owned(), |a| a.ip().to_string());
        let backend = ctx
            .tried
            .last()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        // nginx's 499: the client closed the request before it had an answer.
        let cancelled = status == 0 && e.is_some_and(client_gone);
        let error = e.map(|e| match (e.etype(), &e.context) {
            _ if cancelled => "client closed the request".to_owned(),
            (ErrorType::HTTPStatus(_), Some(why)) => why.as_str().to_owned(),
            _ => e.etype().as_str().to_owned(),
        });
        self.state.access_log.write(&Entry {
            client: &client,
            method: req.method.as_str(),
            path: req.uri.path(),
            status: if cancelled { 499 } else { status },
            cluster: self.cluster_name(ctx),
            backend: &backend,
            attempts: ctx.tried.len(),
            upstream_ms: ctx.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            request_id: &ctx.request_id,
            bytes_received: session.body_bytes_read(),
            bytes_sent: session.body_bytes_sent(),
            error: error.as_deref(),
        });
    }
}

/// The key a consistent-hashing cluster hashes this request on: the first `hash_policy` entry
/// that yields one (Envoy's semantics); None when none does (the pick is then random).
fn hash_key(session: &Session, policy: &[HashKey]) -> Option<Vec<u8>> {
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

/// Header names looked up on every request, parsed once.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// `X-Forwarded-For` for a request from `client`: the trusted list it came with, if any, and
/// the client's address appended. Formats an IPv4 address by hand: through `Display` it cost
/// more than the rest of this filter (bench/README.md, callgrind).
fn forwarded_for(earlier: Option<&[u8]>, client: std::net::IpAddr) -> http::HeaderValue {
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
    // Digits, dots, colons and what a valid header value already held: always valid.
    http::HeaderValue::from_bytes(&text).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// The listener self-check of this very process (its secret token in the header).
fn is_self_check(req: &RequestHeader, token: &str) -> bool {
    req.uri.path() == SELF_CHECK_PATH
        && req
            .headers
            .get(SELF_CHECK_HEADER)
            .is_some_and(|v| v.as_bytes() == token.as_bytes())
}

/// 414 for a request target, 431 for headers, beyond the conf's limits.
fn check_limits(req: &RequestHeader, limits: &RequestLimits) -> Result<()> {
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
fn normalize_http1(req: &mut RequestHeader) -> Result<()> {
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

fn body_too_large(max: u64) -> Box<Error> {
    Error::explain(
        ErrorType::HTTPStatus(413),
        format!("request body too large: limit {max} bytes for this route"),
    )
}

/// `prefix_rewrite`, `host_rewrite` and the request header changes of a route.
fn apply_request_rewrites(route: &Route, req: &mut RequestHeader) -> Result<()> {
    if let Some(rewrite) = &route.prefix_rewrite {
        let path = req.uri.path();
        let rest = match &route.matcher {
            PathMatch::Prefix(prefix) => path.get(prefix.len()..).unwrap_or(""),
            _ => "",
        };
        let mut target = format!("{rewrite}{rest}");
        if let Some(q) = req.uri.query() {
            target.push('?');
            target.push_str(q);
        }
        // Scheme and authority stay: an HTTP/2 request's host is its URI's authority, which an
        // h2 upstream request needs; an HTTP/1 one is still written in origin-form.
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = Some(target.parse().map_err(|e| {
            Error::because(
                ErrorType::HTTPStatus(400),
                "prefix_rewrite made an invalid URI",
                e,
            )
        })?);
        let uri = http::Uri::from_parts(parts).map_err(|e| {
            Error::because(
                ErrorType::HTTPStatus(400),
                "prefix_rewrite made an invalid URI",
                e,
            )
        })?;
        req.set_uri(uri);
    }
    if let Some(host) = &route.host_rewrite {
        req.insert_header(http::header::HOST, host.as_str())?;
    }
    for name in &route.request_headers_to_remove {
        req.remove_header(name.as_str());
    }
    for (name, value) in &route.request_headers_to_add {
        req.append_header(name.clone(), value.as_str())?;
    }
    Ok(())
}

/// The response header changes of a route.
fn apply_response_headers(route: &Route, resp: &mut ResponseHeader) -> Result<()> {
    for name in &route.response_headers_to_remove {
        resp.remove_header(name.as_str());
    }
    for (name, value) in &route.response_headers_to_add {
        resp.append_header(name.clone(), value.as_str())?;
    }
    Ok(())
}

/// A route's fixed answer.
async fn respond_direct(
    session: &mut Session,
    status: u16,
    body: &str,
    route: &Route,
    request_id: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", request_id)?;
    apply_response_headers(route, &mut resp)?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await
}

/// The request's `x-request-id`, generated and set on the request when the client sent none.
fn request_id(req: &mut RequestHeader) -> String {
    if let Some(id) = req
        .headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return id.to_owned();
    }
    let id = new_request_id();
    // The id is ASCII hex: inserting it cannot fail.
    let _ = req.insert_header("x-request-id", &id);
    id
}

/// A random version-4 UUID, formatted as usual (one allocation: this runs on every request).
fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// The status and body the client gets when proxying fails: 503 when no backend could be
/// reached, 504 when the upstream was too slow, 502 when it broke the exchange, never a 500 for
/// an upstream's failure.
fn failure_response(e: &Error, cluster: &str) -> (u16, String) {
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
fn client_gone(e: &Error) -> bool {
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
fn refused_by_backend(e: &Error) -> bool {
    h2_cause(e).is_some_and(|h2| {
        h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
    })
}

/// An error and the pingora errors it was caused by; pingora chains its own errors boxed
/// (`BError`), as its `chain_display` reads them.
fn chain(e: &Error) -> impl Iterator<Item = &Error> {
    std::iter::successors(Some(e), |e| {
        e.cause
            .as_deref()
            .and_then(|c| c.downcast_ref::<Box<Error>>())
            .map(|b| &**b)
    })
}

/// The h2 error at the root of `e`, if there is one.
fn h2_cause(e: &Error) -> Option<&h2::Error> {
    chain(e).find_map(|e| e.cause.as_deref()?.downcast_ref::<h2::Error>())
}

/// Sends a short plain-text answer of the gateway's own.
async fn respond(session: &mut Session, status: u16, body: &str, request_id: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    if !request_id.is_empty() {
        resp.insert_header("x-request-id", request_id)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = new_request_id();
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
        assert_ne!(id, new_request_id());
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
