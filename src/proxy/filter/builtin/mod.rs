//! headway's own filters. Each is one file; `register` names them for the conf's `filters:`,
//! and `from_route_keys` builds them from a route's own keys (`request_headers_to_add`, …).

mod body_limit;
mod direct;
mod headers;
mod rewrite;

use super::{Filter, Registry};
use crate::config::{Route, RouteAction};
use std::sync::Arc;

/// Adds every built-in filter to `registry`.
pub fn register(registry: &mut Registry) {
    registry
        .register("max_request_body", body_limit::factory)
        .register("request_headers", headers::request_factory)
        .register("response_headers", headers::response_factory)
        .register("prefix_rewrite", rewrite::prefix_factory)
        .register("host_rewrite", rewrite::host_factory)
        .register("direct_response", direct::factory);
}

/// The filters a route's own keys ask for, in the order they run (before its `filters:`).
pub fn from_route_keys(route: &Route) -> Vec<Arc<dyn Filter>> {
    let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
    if let Some(max) = route.max_request_body_bytes {
        filters.push(Arc::new(body_limit::BodyLimit::new(max)));
    }
    if let Some(to) = &route.prefix_rewrite {
        filters.push(Arc::new(rewrite::PrefixRewrite::new(route, to)));
    }
    if let Some(host) = &route.host_rewrite {
        filters.extend(rewrite::HostRewrite::new(host).map(|f| Arc::new(f) as Arc<dyn Filter>));
    }
    let request = headers::HeaderChanges::new(
        &route.request_headers_to_add,
        &route.request_headers_to_remove,
    );
    if !request.is_empty() {
        filters.push(Arc::new(headers::RequestHeaders(request)));
    }
    let response = headers::HeaderChanges::new(
        &route.response_headers_to_add,
        &route.response_headers_to_remove,
    );
    if !response.is_empty() {
        filters.push(Arc::new(headers::ResponseHeaders(response)));
    }
    filters
}

/// The route's `direct_response`, as the last filter.
pub fn direct_response(route: &Route) -> Option<Arc<dyn Filter>> {
    match &route.action {
        RouteAction::Direct { status, body } => {
            Some(Arc::new(direct::DirectResponse::new(*status, body)))
        }
        RouteAction::Cluster(_) => None,
    }
}
