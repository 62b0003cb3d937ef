//! headway's own filters. Each is one file; `register` names them for the conf's `filters:`,
//! and `from_route_keys` builds them from a route's own keys (`request_headers_to_add`, …).

mod access;
mod api_key;
mod body_limit;
mod buckets;
mod compress;
mod cors;
mod direct;
mod headers;
mod jwt;
mod jwt_cache;
mod jwt_keys;
mod jwt_remote;
mod rate_limit;
mod redis_store;
mod rewrite;

use super::build::Build;
use super::registry::Registry;
use super::stages::{Chain, Filter};
use crate::config::{Route, RouteAction};
use std::sync::Arc;

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    /// A registry with headway's built-in filters.
    pub fn new() -> Registry {
        let mut registry = Registry::empty();
        register(&mut registry);
        registry
    }
}

/// Adds every built-in filter to `registry` (an empty one: nothing is replaced).
fn register(registry: &mut Registry) {
    registry
        .replace("max_request_body", body_limit::factory)
        .replace("request_headers", headers::request_factory)
        .replace("response_headers", headers::response_factory)
        .replace("prefix_rewrite", rewrite::prefix_factory)
        .replace("host_rewrite", rewrite::host_factory)
        .replace("direct_response", direct::factory)
        .replace("rate_limit", rate_limit::factory)
        .replace("access_control", access::factory)
        .replace("cors", cors::factory)
        .replace("api_key", api_key::factory)
        .replace("jwt", jwt::factory)
        .replace("compression", compress::factory);
}

/// The filters a route's own keys ask for, in the order they run (before its `filters:`).
fn from_route_keys(route: &Route) -> Vec<Arc<dyn Filter>> {
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
fn direct_response(route: &Route) -> Option<Arc<dyn Filter>> {
    match &route.action {
        RouteAction::Direct { status, body } => {
            Some(Arc::new(direct::DirectResponse::new(*status, body)))
        }
        RouteAction::Cluster(_) | RouteAction::Split(_) => None,
    }
}

/// The filters of `route`, in the order they run: the route's own keys
/// (`max_request_body_bytes`, rewrites, header changes) as built-in filters, then its
/// `filters:` list as `registry` builds them, then its `direct_response`. Every error, each
/// with its path. `build` holds what the conf's filters are built with.
pub(crate) fn chain(
    registry: &Registry,
    route: &Route,
    build: &Build<'_>,
) -> Result<Chain, Vec<String>> {
    let mut filters = from_route_keys(route);
    let mut errors = Vec::new();
    for (i, spec) in route.filters.iter().enumerate() {
        let built = registry.build(&spec.name, &spec.config, route, &spec.path, i, build);
        match built {
            Ok(f) => filters.push(f),
            Err(e) => errors.push(e),
        }
    }
    filters.extend(direct_response(route));
    if errors.is_empty() {
        Ok(Chain::new(filters))
    } else {
        Err(errors)
    }
}
