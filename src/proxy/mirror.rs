//! Copies of a route's requests to its shadow clusters (`mirror`), that never delay, change or
//! fail the client's answer: each copy is a task of its own, sent through the shadow cluster's
//! [`ClusterClient`] (its discovery, health and TLS) once the request's body is complete or
//! the copy has all it carries, its answer read and dropped.
//!
//! The copy is the request as the route's filters' `on_request` left it: method, path and
//! query, headers (hop-by-hop ones and the body's framing left out), Host with `-shadow`
//! appended to its name (as Envoy does: `api.example.com:8080` → `api.example.com-shadow:8080`),
//! and the body as the client sent it, cut at `body_limit`. Copies unanswered at once are
//! bounded per route and shadow (`max_in_flight`): the bound is taken before anything is kept,
//! so a shadow that hangs costs at most that many tasks, connections and bodies.

use crate::config::Mirror;
use crate::metrics::mirror::{MirrorCounts, MirrorResult, MirrorSeries};
use crate::upstream::client::{CallFailure, ClusterClient};
use crate::upstream::Clusters;
use bytes::{Bytes, BytesMut};
use log::debug;
use pingora::proxy::Session;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One shadow of one route.
struct Shadow {
    client: ClusterClient,
    percent: f64,
    body_limit: usize,
    max_in_flight: u32,
    in_flight: AtomicU32,
    timeout: Duration,
    counts: MirrorCounts,
}

/// A route's shadows (`mirror`), held by its `ServedRoute`.
pub(super) struct RouteMirror {
    shadows: Box<[Arc<Shadow>]>,
}

impl RouteMirror {
    /// The shadows `mirrors` of the route `route` (as its series name it), over the running
    /// `clusters`; None when it has none.
    pub(super) fn new(
        mirrors: &[Mirror],
        route: &str,
        clusters: &Clusters,
        series: &MirrorSeries,
    ) -> Option<RouteMirror> {
        if mirrors.is_empty() {
            return None;
        }
        let shadows = mirrors.iter().filter_map(|m| {
            let cluster = clusters.iter().find(|c| c.name() == m.cluster)?;
            Some(Arc::new(Shadow {
                client: ClusterClient::new(cluster.clone()).discarding_response_body(),
                percent: m.percent,
                body_limit: usize::try_from(m.body_limit).unwrap_or(usize::MAX),
                max_in_flight: m.max_in_flight,
                in_flight: AtomicU32::new(0),
                timeout: m.timeout.unwrap_or(cluster.config.timeout),
                counts: series.counts(route, &m.cluster),
            }))
        });
        Some(RouteMirror {
            shadows: shadows.collect(),
        })
    }

    /// The copies of the request of `session` that the route matched (as the route's filters
    /// left it), or None when no shadow takes this request. A request without a body is copied
    /// at once.
    pub(super) fn begin(&self, session: &mut Session) -> Option<Box<Copies>> {
        let slots: Vec<InFlight> = self
            .shadows
            .iter()
            .filter(|s| s.percent >= 100.0 || fastrand::f64() * 100.0 < s.percent)
            .filter_map(InFlight::take)
            .collect();
        if slots.is_empty() {
            return None;
        }
        let limit = slots.iter().map(|s| s.0.body_limit).max().unwrap_or(0);
        let copies = Box::new(Copies {
            head: copy_head(session.req_header()),
            slots,
            body: BytesMut::new(),
            limit,
            seen: 0,
        });
        if session.is_body_empty() {
            copies.send();
            return None;
        }
        Some(copies)
    }
}

/// Hands a piece of the client's body to the request's copies, if it has any, and sends them
/// once they have all they carry (`read`: the body bytes the client has sent so far).
pub(super) fn on_body(
    copies: &mut Option<Box<Copies>>,
    piece: Option<&Bytes>,
    end: bool,
    read: usize,
) {
    if copies
        .as_mut()
        .is_some_and(|c| c.take_body(piece, end, read))
    {
        if let Some(c) = copies.take() {
            c.send();
        }
    }
}

/// A copy's place among its shadow's `max_in_flight`, given back when the copy is answered.
struct InFlight(Arc<Shadow>);

impl InFlight {
    fn take(shadow: &Arc<Shadow>) -> Option<InFlight> {
        let before = shadow.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= shadow.max_in_flight {
            shadow.in_flight.fetch_sub(1, Ordering::AcqRel);
            shadow.counts.count(MirrorResult::DroppedFull);
            return None;
        }
        Some(InFlight(shadow.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The copies of one request, gathering its body as it streams to the upstream. Dropped
/// before they are sent (the request ended before its body did), they count as `failed`.
pub(super) struct Copies {
    head: http::request::Parts,
    slots: Vec<InFlight>,
    body: BytesMut,
    /// The longest `body_limit` among the copies.
    limit: usize,
    /// Body bytes of the client's seen so far: a retry replays the start of the body.
    seen: usize,
}

impl Copies {
    /// Takes a piece of the client's body (`read`: how many body bytes the client has sent so
    /// far, pieces replayed for a retry included once); true when the copies have all they
    /// carry and should be sent.
    fn take_body(&mut self, piece: Option<&Bytes>, end: bool, read: usize) -> bool {
        if let Some(piece) = piece {
            // A retry hands the start of the body again: only bytes not seen yet are new.
            let new = read.saturating_sub(self.seen).min(piece.len());
            self.seen += new;
            let fresh = &piece[piece.len() - new..];
            let room = self.limit.saturating_sub(self.body.len());
            self.body.extend_from_slice(&fresh[..fresh.len().min(room)]);
        }
        end || self.body.len() >= self.limit
    }

    /// Sends every copy, each in a task of its own.
    fn send(mut self: Box<Self>) {
        let body = std::mem::take(&mut self.body).freeze();
        for slot in std::mem::take(&mut self.slots) {
            let body = body.slice(..body.len().min(slot.0.body_limit));
            let request = http::Request::from_parts(self.head.clone(), body);
            tokio::spawn(async move {
                let shadow = &slot.0;
                let result = match shadow.client.send(request, shadow.timeout).await {
                    Ok(r) if r.status().is_server_error() => MirrorResult::ErrorStatus,
                    Ok(_) => MirrorResult::Ok,
                    Err(e) if e.failure == CallFailure::Timeout => MirrorResult::Timeout,
                    Err(e) => {
                        debug!("mirror copy failed: {e}");
                        MirrorResult::Failed
                    }
                };
                shadow.counts.count(result);
            });
        }
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.0.counts.count(MirrorResult::Failed);
        }
    }
}

/// Headers a copy does not repeat: hop-by-hop ones, and the body's framing (the client sets
/// the copy's own `Content-Length`).
const LEFT_OUT: [http::HeaderName; 7] = [
    http::header::CONNECTION,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::EXPECT,
    http::header::TE,
    http::header::UPGRADE,
    http::HeaderName::from_static("keep-alive"),
];

/// The copy's method, target (origin form) and headers, with `-shadow` after the host's name.
fn copy_head(request: &pingora::http::RequestHeader) -> http::request::Parts {
    let mut head = request.as_owned_parts();
    for name in &LEFT_OUT {
        head.headers.remove(name);
    }
    let host = head
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| head.uri.authority().map(|a| a.as_str()))
        .map(shadow_host);
    if let Some(value) = host.and_then(|h| http::HeaderValue::from_str(&h).ok()) {
        head.headers.insert(http::header::HOST, value);
    }
    if let Some(target) = head.uri.path_and_query().cloned() {
        head.uri = http::Uri::from(target);
    }
    head.version = http::Version::HTTP_11;
    head
}

/// `host[:port]` with `-shadow` after the name.
fn shadow_host(host: &str) -> String {
    let port_at = if host.starts_with('[') {
        host.find("]:").map(|i| i + 1)
    } else {
        host.rfind(':')
    };
    match port_at {
        Some(at) => format!("{}-shadow{}", &host[..at], &host[at..]),
        None => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_host_keeps_the_port() {
        assert_eq!(shadow_host("api.example.com"), "api.example.com-shadow");
        assert_eq!(shadow_host("api:8080"), "api-shadow:8080");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }
}
