//! Filters: request-path logic per route, headway's own and the user's, on one public trait.
//!
//! A route runs its filters in order at each stage of a request: [`Filter::on_request`] once
//! the route is known and before a backend is chosen (a filter may answer the request itself),
//! [`Filter::on_request_body`] on each piece of the request body, [`Filter::on_upstream_request`]
//! on the request as it goes to the backend, [`Filter::on_response`] on the response headers
//! (the backend's, or a filter's own answer), and [`Filter::on_response_body`] on each piece of
//! the response body. Every stage has a default that does nothing, so a filter writes only the
//! stages it needs. A route without filters runs none of this.
//!
//! Errors are pingora's: `Error::explain(ErrorType::HTTPStatus(403), "why")` answers the
//! client with that status and reason, logged and counted like every answer of the gateway's.
//! Filters are built once, from the conf, by a [`Registry`] of factories by name.

mod build;
mod builtin;
mod kept;
mod registry;
mod stages;

pub use build::Task;
pub(crate) use build::{Build, Reach, Tasks};
pub(crate) use builtin::chain;
pub(crate) use kept::Kept;
pub use registry::{Factory, FilterSetup, NameTaken, Registry};
pub use stages::{Answer, Chain, Context, Filter, Flow};
