//! `direct_response`: the route answers itself with a fixed status and body (Envoy's route
//! `direct_response`; nginx's `return`).

use crate::proxy::filter::{Answer, Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::Result;
use serde::Deserialize;
use std::sync::Arc;

/// Answers every request with the same status and body.
pub struct DirectResponse {
    status: u16,
    body: Bytes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    status: u16,
    #[serde(default)]
    body: String,
}

impl DirectResponse {
    pub fn new(status: u16, body: &str) -> DirectResponse {
        DirectResponse {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    if !(200..=599).contains(&conf.status) {
        return Err(format!(
            "status: {} is not a status from 200 to 599",
            conf.status
        ));
    }
    Ok(Arc::new(DirectResponse::new(conf.status, &conf.body)))
}

#[async_trait]
impl Filter for DirectResponse {
    async fn on_request(&self, _req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<Flow> {
        Ok(Flow::Respond(Answer::new(self.status, self.body.clone())))
    }
}
