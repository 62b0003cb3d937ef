//! The gateway's pingora `ProxyHttp` hooks: each one short, calling into the file that does
//! its job.

use super::access_log::Entry;
use super::answers::{
    answer_head, client_gone, failure_response, refused_by_backend, respond, send_answer,
};
use super::context::RequestCtx;
use super::filter::{Context, Flow};
use super::headers::{forwarded_for, hash_key, request_id, X_FORWARDED_FOR};
use super::http1::{check_limits, is_self_check, normalize_http1};
use super::retry::{
    self, head_not_written, replayable, AttemptFailure, Failed, NextAttempt, Outcome,
};
use super::Proxy;
use crate::config::UpstreamProtocol;
use crate::upstream::breaker::{AttemptSlot, PendingSlot, RequestSlot};
use async_trait::async_trait;
use bytes::Bytes;
use log::warn;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorSource, ErrorType, Result, RetryType};
use std::time::{Duration, Instant};

/// The client's address, for the filters.
fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::connection::mark_headers_read(session.as_downstream());
        // Limits first: they judge what the client sent, not the id added below.
        let limits = check_limits(session.req_header(), &self.0.limits);
        let normalized = if limits.is_ok() && !session.is_http2() {
            normalize_http1(session.req_header_mut())
        } else {
            Ok(())
        };
        // Every answer carries the id, refusals included.
        ctx.request_id = request_id(session.req_header_mut());
        limits.and(normalized)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if is_self_check(session.req_header(), &self.0.self_check) {
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
        let matched = self.0.router.route(host, req.uri.path().as_bytes());
        let Some(matched) = matched else {
            let body = format!("no route for {}\n", session.req_header().uri.path());
            respond(session, 404, &body, &ctx.request_id).await?;
            return Ok(true);
        };
        ctx.route = Some(matched);
        let Some(route) = self.0.router.get(matched.route) else {
            return Err(Error::explain(ErrorType::InternalError, "route vanished"));
        };
        ctx.filters = self.0.filters.get(matched.route).cloned().flatten();
        if let Some(chain) = &ctx.filters {
            let client = client_ip(session);
            let mut cx = Context {
                client,
                request_id: &ctx.request_id,
                vars: &mut ctx.vars,
            };
            if let Flow::Respond(answer) =
                chain.on_request(session.req_header_mut(), &mut cx).await?
            {
                let mut head = answer_head(&answer, &ctx.request_id)?;
                chain.on_response(&mut head, &mut cx)?;
                send_answer(session, head, answer.body).await?;
                return Ok(true);
            }
        }
        let Some(cluster) = matched
            .cluster
            .and_then(|c| self.0.clusters.get(c))
            .cloned()
        else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "route to no cluster",
            ));
        };
        ctx.deadline = Some(ctx.started + route.timeout.unwrap_or(cluster.config.timeout));
        if cluster.config.lb_policy.hashes() {
            ctx.hash_key = hash_key(session, &cluster.config.hash_policy);
        }
        match RequestSlot::take(&cluster.load, &cluster.config.breakers) {
            Ok(slot) => ctx.request_slot = Some(slot),
            Err(o) => {
                let e = retry::overflow(&cluster, o);
                ctx.cluster = Some(cluster);
                return Err(e);
            }
        }
        ctx.cluster = Some(cluster);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
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
        if let Some(chain) = &ctx.filters {
            let mut cx = Context {
                client: client_ip(session),
                request_id: &ctx.request_id,
                vars: &mut ctx.vars,
            };
            chain.on_request_body(body, end_of_stream, &mut cx)?;
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
        ctx.pending = Some(
            PendingSlot::take(&cluster.load, limits).map_err(|o| retry::overflow(&cluster, o))?,
        );
        let backend = cluster.table().get(&addr);
        ctx.attempt = Some(
            AttemptSlot::take(&cluster.load, limits, backend)
                .map_err(|o| retry::overflow(&cluster, o))?,
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
                .0
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
        if let Some(chain) = &ctx.filters {
            let mut cx = Context {
                client: client_ip(session),
                request_id: &ctx.request_id,
                vars: &mut ctx.vars,
            };
            chain.on_upstream_request(upstream_request, &mut cx)?;
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
            && retry::may_resend(&cluster, ctx)
        {
            retry::end_attempt(&cluster, ctx, Outcome::Failure);
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
        retry::end_attempt(&cluster, ctx, outcome);
        ctx.upstream_time = ctx.upstream_started.map(|t| t.elapsed());
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chain) = &ctx.filters {
            let mut cx = Context {
                client: client_ip(session),
                request_id: &ctx.request_id,
                vars: &mut ctx.vars,
            };
            chain.on_response(upstream_response, &mut cx)?;
        }
        if self.0.lifecycle.is_draining() {
            // Clients reconnect, and find a gateway that is not going away.
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chain) = &ctx.filters {
            let mut cx = Context {
                client: client_ip(session),
                request_id: &ctx.request_id,
                vars: &mut ctx.vars,
            };
            chain.on_response_body(body, end_of_stream, &mut cx)?;
        }
        Ok(None)
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
        retry::end_attempt(&cluster, ctx, outcome);
        // Nothing reached the backend: any method may go elsewhere, and trying costs no
        // `retries` and no retry budget (they ration load re-sent to backends; this sent none).
        let retry = cluster.config.retry.on.connect_failure
            && ctx.in_time()
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
        let failed = Failed {
            failure,
            response_started: ctx.upstream_time.is_some() || session.response_written().is_some(),
            body_kept: !session.as_ref().retry_buffer_truncated(),
            replayable: replayable(session),
            in_time: ctx.in_time(),
            client_reused,
        };
        let next = retry::next_attempt(&failed, &cluster.config.retry.on, || {
            retry::may_resend(&cluster, ctx)
        })
        // An undelivered attempt needs another backend to go to.
        .filter(|n| *n != NextAttempt::Undelivered || cluster.has_ready_backend(&ctx.tried));
        if !matches!(failed.failure, AttemptFailure::Status) {
            retry::end_attempt(&cluster, ctx, retry::outcome_of(&failed));
            ctx.last_failure = Some(format!("{} from {}", e.etype().as_str(), peer.address()));
        }
        if let Some(next) = next {
            ctx.next_attempt = next;
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

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = failure_response(e, ctx.cluster_name());
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
            Some(m) => self.0.route_metrics.get(m.route),
            None => Some(&self.0.unrouted),
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

        if !self.0.access_log.enabled() {
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
        self.0.access_log.write(&Entry {
            client: &client,
            method: req.method.as_str(),
            path: req.uri.path(),
            status: if cancelled { 499 } else { status },
            cluster: ctx.cluster_name(),
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
