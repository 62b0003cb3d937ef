//! The gateway's pingora `ProxyHttp` hooks: each one short, calling into the file that does
//! its job.

use super::answers::{answer_head, client_gone, failure_response, respond, send_answer};
use super::attempt::Attempt;
use super::context::RequestCtx;
use super::failures::{attempt_failed, connect_failed};
use super::filter::Flow;
use super::headers::{
    client_address, forwarded_for, hash_key, request_id, X_FORWARDED_FOR, X_FORWARDED_FOR_CASE,
    X_FORWARDED_PROTO_CASE, X_REQUEST_ID_CASE,
};
use super::http1::{check_limits, is_self_check, normalize_http1};
use super::retry::replayable;
use super::Proxy;
use async_trait::async_trait;
use bytes::Bytes;
use log::warn;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::Duration;

/// The client's address, for the filters.
fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

#[async_trait]
impl ProxyHttp for Proxy {
    /// Boxed: pingora keeps the context in its request future, which is moved whole into
    /// its own box on every request, and measured, every byte of a context kept inline cost
    /// ~4 instructions a request in copies (callgrind: 456 bytes, ~2k instructions).
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(self.current.load_full()))
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        crate::connection::mark_headers_read(session.as_downstream());
        // Limits first: they judge what the client sent, not the id added below.
        let limits = check_limits(session.req_header(), &ctx.routing.limits);
        let normalized = if limits.is_ok() && !session.is_http2() {
            normalize_http1(session.req_header_mut())
        } else {
            Ok(())
        };
        // Every answer carries the id, refusals included.
        ctx.request_id = request_id(session.req_header());
        limits.and(normalized)
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        if is_self_check(session.req_header(), &self.self_check) {
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
        let routing = Arc::clone(&ctx.routing);
        let facts = super::route_match::RequestFacts::of(req);
        let matched = routing.route(host, req.uri.path().as_bytes(), &facts);
        let Some((index, route)) = matched else {
            let body = format!("no route for {}\n", session.req_header().uri.path());
            respond(session, 404, &body, &ctx.request_id).await?;
            return Ok(true);
        };
        ctx.route = Some(index);
        ctx.filters = route.filters.clone();
        if ctx.filters.is_some() {
            ctx.peer = client_ip(session);
            ctx.client = ctx
                .peer
                .map(|peer| client_address(peer, session.req_header(), &routing.trusted_proxies));
            if let Some(cert) = super::xfcc::client_cert(session) {
                ctx.vars.insert(cert.clone());
            }
        }
        if let Some((chain, mut cx)) = ctx.filters() {
            if let Flow::Respond(answer) =
                chain.on_request(session.req_header_mut(), &mut cx).await?
            {
                let mut head = answer_head(&answer, cx.request_id)?;
                chain.on_response(&mut head, &mut cx)?;
                send_answer(session, head, answer.body).await?;
                return Ok(true);
            }
        }
        ctx.mirror = route.mirror.as_ref().and_then(|m| m.begin(session));
        let picked = route
            .target
            .pick(|key| hash_key(session, std::slice::from_ref(key)));
        let Some(cluster) = picked.cloned() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "route to no cluster",
            ));
        };
        let key = cluster
            .config
            .lb_policy
            .hashes()
            .then(|| hash_key(session, &cluster.config.hash_policy))
            .flatten();
        let attempt = ctx
            .upstream
            .insert(Attempt::new(cluster, ctx.started, route.timeout, key));
        attempt.admit()?;
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
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
        let read = session.body_bytes_read();
        super::mirror::on_body(&mut ctx.mirror, body.as_ref(), end_of_stream, read);
        if let Some((chain, mut cx)) = ctx.filters() {
            chain.on_request_body(body, end_of_stream, &mut cx)?;
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        let attempt = ctx
            .upstream
            .as_mut()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request has no cluster"))?;
        let tunnel = session.is_upgrade_req().then(|| {
            // Once upgraded (WebSocket), the connection is a tunnel: `timeout` no longer
            // applies, and either side may be quiet for up to `tunnel_timeout`. The wait for
            // the 101 is bounded by it too: pingora sets a peer's timeouts once, at connect.
            let tunnel = attempt.cluster.config.tunnel_timeout;
            session.set_read_timeout(Some(tunnel));
            session.set_write_timeout(Some(tunnel));
            tunnel
        });
        let peer = attempt.next_peer(tunnel)?;
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
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let Some(attempt) = ctx.upstream.as_mut() {
            attempt.connected();
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        // HTTP/1.0 lets a client leave Host out, but the request goes upstream as HTTP/1.1,
        // which requires one (nginx answers 400 without): the URI's authority, else the
        // cluster's name, as nginx's `proxy_set_header Host $proxy_host` would send.
        if session.req_header().version < http::Version::HTTP_11
            && !upstream_request.headers.contains_key(http::header::HOST)
        {
            let cluster = ctx.upstream.as_ref().map(|a| &a.cluster);
            let host = match (upstream_request.uri.authority(), cluster) {
                (Some(authority), _) => Some(authority.as_str().to_owned()),
                (None, Some(cluster)) => Some(cluster.config.default_host()),
                (None, None) => None,
            };
            if let Some(host) = host {
                upstream_request.insert_header("Host", host)?;
            }
        }
        if let Some(id) = ctx.request_id.to_add() {
            upstream_request.insert_header(X_REQUEST_ID_CASE, id.clone())?;
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        // Only a trusted proxy's X-Forwarded-For (and XFCC) is kept: anyone else could claim
        // any address, so theirs is replaced by the address we saw.
        let trusted =
            client.is_some_and(|ip| ctx.routing.trusted_proxies.iter().any(|c| c.contains(ip)));
        if let Some(client) = client {
            let earlier = trusted
                .then(|| upstream_request.headers.get(X_FORWARDED_FOR))
                .flatten()
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|v| !v.is_empty());
            upstream_request.insert_header(X_FORWARDED_FOR_CASE, forwarded_for(earlier, client))?;
        }
        super::xfcc::apply(session, upstream_request, trusted)?;
        let tls = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some();
        let proto = http::HeaderValue::from_static(if tls { "https" } else { "http" });
        upstream_request.insert_header(X_FORWARDED_PROTO_CASE, proto)?;
        if let Some((chain, mut cx)) = ctx.filters() {
            chain.on_upstream_request(upstream_request, &mut cx)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        match ctx.upstream.as_mut() {
            Some(attempt) => attempt.answered(status, replayable(session)),
            None => Ok(()),
        }
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let Some((chain, mut cx)) = ctx.filters() {
            chain.on_response(upstream_response, &mut cx)?;
        }
        if self.lifecycle.is_draining() {
            // Clients reconnect, and find a gateway that is not going away.
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<Duration>> {
        if let Some((chain, mut cx)) = ctx.filters() {
            chain.on_response_body(body, end_of_stream, &mut cx)?;
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        e: Box<Error>,
    ) -> Box<Error> {
        match ctx.upstream.as_mut() {
            Some(attempt) => connect_failed(peer, attempt, e),
            None => e,
        }
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<RequestCtx>,
        client_reused: bool,
    ) -> Box<Error> {
        match ctx.upstream.as_mut() {
            Some(attempt) => attempt_failed(peer, session, e, attempt, client_reused),
            None => {
                let mut e = e.more_context(format!("peer: {peer}"));
                e.set_retry(false);
                e
            }
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
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
    fn request_summary(&self, session: &Session, _ctx: &Box<RequestCtx>) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    /// The gateway's own answers (404, 503 no healthy upstream, …) are in the access log with
    /// their reason; pingora's error log is kept for failures it did not choose.
    fn suppress_error_log(&self, session: &Session, _ctx: &Box<RequestCtx>, error: &Error) -> bool {
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        self.record(session, e, ctx);
    }
}
