//! The filter trait and what its stages take and return: [`Filter`], [`Flow`], [`Answer`],
//! [`Context`], and a route's [`Chain`].

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use std::net::IpAddr;
use std::sync::Arc;

/// What a filter's request stage decided.
#[derive(Debug)]
pub enum Flow {
    /// Go on: the next filter, then the backend.
    Continue,
    /// Answer the client with this; no backend is chosen. The route's filters see the answer
    /// in [`Filter::on_response`] like any response.
    Respond(Answer),
}

/// An answer of the gateway's own, given by a filter.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers besides `content-length`, `content-type` and `x-request-id`, which are set.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `content-type` (default `text/plain; charset=utf-8`).
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// A plain-text answer.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Answer {
        self.headers.push((name, value));
        self
    }
}

/// What a filter knows of the request besides its headers, and a place for its own state from
/// one stage of the request to the next.
pub struct Context<'a> {
    /// The client's address: the connection's peer, or, when the peer is one of
    /// `gateway.trusted_proxies`, the right-most `X-Forwarded-For` address that is not.
    pub client: Option<IpAddr>,
    /// The address of the connection's peer (a load balancer's, behind one).
    pub peer: Option<IpAddr>,
    /// The request's `x-request-id` (the client's, or one the gateway made).
    pub request_id: &'a str,
    /// Per-request values by type, shared by the route's filters (`vars.insert(MyState(…))`).
    /// On a TLS listener with `client_auth`, it holds the client's verified certificate as a
    /// [`crate::client_cert::ClientCert`].
    pub vars: &'a mut http::Extensions,
}

/// Request-path logic for the routes that name it. Implementations must be cheap to call
/// concurrently: one instance serves every request of its route.
#[async_trait]
pub trait Filter: Send + Sync + 'static {
    /// The request, once its route is known and before a backend is chosen. Changes to `req`
    /// reach the backend. `Flow::Respond` answers the client instead.
    async fn on_request(&self, _req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// A piece of the request body (`None` or empty: nothing this time); `end_of_stream` on
    /// the last one.
    fn on_request_body(
        &self,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _cx: &mut Context<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// The request as it goes to the chosen backend (on each attempt: a retry runs it again on
    /// a fresh copy of the client's request).
    fn on_upstream_request(&self, _req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }

    /// The response headers before they go to the client: the backend's, or a filter's
    /// answer.
    fn on_response(&self, _resp: &mut ResponseHeader, _cx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }

    /// A piece of the response body; `end_of_stream` on the last one. A filter that changes
    /// the body's length removes `content-length` in [`Filter::on_response`].
    fn on_response_body(
        &self,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        _cx: &mut Context<'_>,
    ) -> Result<()> {
        Ok(())
    }
}

/// A route's filters, in the order they run.
#[derive(Clone, Default)]
pub struct Chain(Arc<[Arc<dyn Filter>]>);

impl Chain {
    /// A chain of `filters`, run in this order.
    pub fn new(filters: Vec<Arc<dyn Filter>>) -> Chain {
        Chain(filters.into())
    }

    /// Whether the chain has no filter.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many filters it has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Runs every filter's request stage until one answers.
    pub async fn on_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<Flow> {
        for f in self.0.iter() {
            if let Flow::Respond(answer) = f.on_request(req, cx).await? {
                return Ok(Flow::Respond(answer));
            }
        }
        Ok(Flow::Continue)
    }

    /// Runs every filter's request-body stage.
    pub fn on_request_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        cx: &mut Context<'_>,
    ) -> Result<()> {
        self.0
            .iter()
            .try_for_each(|f| f.on_request_body(body, end_of_stream, cx))
    }

    /// Runs every filter's upstream-request stage.
    pub fn on_upstream_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<()> {
        self.0
            .iter()
            .try_for_each(|f| f.on_upstream_request(req, cx))
    }

    /// Runs every filter's response stage.
    pub fn on_response(&self, resp: &mut ResponseHeader, cx: &mut Context<'_>) -> Result<()> {
        self.0.iter().try_for_each(|f| f.on_response(resp, cx))
    }

    /// Runs every filter's response-body stage.
    pub fn on_response_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        cx: &mut Context<'_>,
    ) -> Result<()> {
        self.0
            .iter()
            .try_for_each(|f| f.on_response_body(body, end_of_stream, cx))
    }
}
