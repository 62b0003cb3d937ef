//! `max_request_body`: a request body over a limit gets `413` (nginx's
//! `client_max_body_size`; Envoy's `buffer` filter's `max_request_bytes`).

use crate::proxy::filter::{Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};
use serde::Deserialize;
use std::sync::Arc;

/// Refuses a declared `content-length` over the limit at once, and a streamed body as soon as
/// it passes the limit.
pub struct BodyLimit {
    max: u64,
}

/// Body bytes seen so far, in the request's vars.
#[derive(Clone, Copy)]
struct Seen(u64);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    bytes: u64,
}

impl BodyLimit {
    pub fn new(max: u64) -> BodyLimit {
        BodyLimit { max }
    }

    fn too_large(&self) -> Box<Error> {
        Error::explain(
            ErrorType::HTTPStatus(413),
            format!(
                "request body too large: limit {} bytes for this route",
                self.max
            ),
        )
    }
}

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    Ok(Arc::new(BodyLimit::new(conf.bytes)))
}

#[async_trait]
impl Filter for BodyLimit {
    async fn on_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<Flow> {
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max) {
            return Err(self.too_large());
        }
        Ok(Flow::Continue)
    }

    fn on_request_body(
        &self,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        cx: &mut Context<'_>,
    ) -> Result<()> {
        let Some(chunk) = body.as_ref() else {
            return Ok(());
        };
        let seen = cx.vars.get::<Seen>().map_or(0, |s| s.0) + chunk.len() as u64;
        cx.vars.insert(Seen(seen));
        if seen > self.max {
            return Err(self.too_large());
        }
        Ok(())
    }
}
