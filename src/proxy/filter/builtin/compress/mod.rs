//! `compression`: responses compressed with gzip, brotli or zstd, as the client's
//! `Accept-Encoding` asks (Envoy's `compressor` filter; nginx's `gzip` and `brotli` modules).
//!
//! Why not pingora's `ResponseCompressionCtx` (pingora-core 0.9.1,
//! `protocols::http::compression`): it ignores q-values (`gzip;q=0` *picks* gzip) and takes
//! the client's first coding, not the server's preference; it reads `Accept-Encoding` as a
//! structured field, so one odd member drops the whole header with a warning logged per
//! request; its minimum size (20 bytes) and type list are fixed; it does not check
//! `Cache-Control: no-transform`, `Range` or HEAD; its encoders hold a streamed body until
//! their buffers fill (server-sent events stall), its brotli stream is flushed but never
//! finished (no last block), and it panics when called out of phase. Its encoders are
//! flate2, brotli and zstd, which headway uses here directly, at the same versions.
//!
//! The decision is made once per response: the request stage notes the client's choice, the
//! response stage checks the response and, when it compresses, keeps an encoder in the
//! request's vars for the body stage. Answers of the gateway's own (a filter's `Flow::Respond`)
//! are never compressed: their bodies do not pass the body stage.

mod encoder;
mod negotiate;
mod response;

use crate::proxy::filter::{Context, Filter, FilterSetup, Flow};
use async_trait::async_trait;
use bytes::Bytes;
use encoder::Encoder;
use negotiate::Coding;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};
use prometheus::IntCounter;
use response::MediaRange;
use serde::Deserialize;
use std::sync::{Arc, Mutex};

/// `min_length` default, in bytes: a smaller body gains a few hundred bytes at best, less
/// than the compressed stream's framing costs in CPU and latency (nginx: 20, Envoy: 30).
const DEFAULT_MIN_LENGTH: u64 = 1024;
/// `algorithms` default, best first, as measured on a 64 KB JSON body (BENCHMARKS.md,
/// "Compression"): zstd 3 sends 7% more bytes than gzip 6 for half its CPU; gzip 6 beats
/// brotli 4 on both counts (smaller, cheaper), and brotli only beats gzip from level 5 on, at
/// twice gzip 6's CPU. So brotli is last: a client that takes only br still gets it.
const DEFAULT_ALGORITHMS: [Coding; 3] = [Coding::Zstd, Coding::Gzip, Coding::Brotli];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conf {
    #[serde(default = "default_algorithms")]
    algorithms: Vec<Coding>,
    #[serde(default = "default_min_length")]
    min_length: u64,
    content_types: Option<Vec<String>>,
    #[serde(default)]
    levels: Levels,
}

/// `levels`: per coding. Defaults: gzip 6 (zlib's own default; Envoy's), br 4, zstd 3 (zstd's
/// own default): each a point where a higher level buys little ratio for much CPU.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Levels {
    #[serde(default = "default_gzip")]
    gzip: u32,
    #[serde(default = "default_br", alias = "brotli")]
    br: u32,
    #[serde(default = "default_zstd")]
    zstd: u32,
}

impl Default for Levels {
    fn default() -> Levels {
        Levels {
            gzip: default_gzip(),
            br: default_br(),
            zstd: default_zstd(),
        }
    }
}

fn default_algorithms() -> Vec<Coding> {
    DEFAULT_ALGORITHMS.to_vec()
}
fn default_min_length() -> u64 {
    DEFAULT_MIN_LENGTH
}
fn default_gzip() -> u32 {
    6
}
fn default_br() -> u32 {
    4
}
fn default_zstd() -> u32 {
    3
}

/// The filter of one route.
pub struct Compression {
    /// The codings offered, the server's preference first.
    algorithms: Vec<Coding>,
    min_length: u64,
    content_types: Vec<MediaRange>,
    /// Levels by `Coding as usize`.
    levels: [u32; 3],
    /// `compressed`, then one per coding by `Coding as usize`.
    compressed: IntCounter,
    by_coding: [IntCounter; 3],
}

/// What the request stage learnt, in the request's vars.
#[derive(Clone)]
struct Asked {
    /// The coding to send, when the client takes one and may get it (not HEAD, no `Range`,
    /// HTTP/1.1 or later, no trailers asked for).
    coding: Option<Coding>,
    /// A `Range` request: left alone (a HEAD is not compressed either, but gets the `Vary`).
    range: bool,
    /// The request went to a backend (the response is the backend's, not a filter's answer).
    proxied: bool,
}

/// The response's encoder, in the request's vars (vars hold `Clone` values: hence the Arc).
#[derive(Clone)]
struct Encoding(Arc<Mutex<Encoder>>);

pub fn factory(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
    let conf: Conf = setup.parse()?;
    if conf.algorithms.is_empty() {
        return Err("algorithms: name at least one of gzip, br, zstd".to_owned());
    }
    let mut algorithms = Vec::with_capacity(3);
    for coding in conf.algorithms {
        if algorithms.contains(&coding) {
            return Err(format!("algorithms: `{}` is listed twice", coding.token()));
        }
        algorithms.push(coding);
    }
    let content_types = match &conf.content_types {
        Some(types) => types
            .iter()
            .enumerate()
            .map(|(i, t)| MediaRange::parse(t).map_err(|e| format!("content_types[{i}]: {e}")))
            .collect::<Result<Vec<_>, String>>()?,
        None => response::DEFAULT_CONTENT_TYPES
            .iter()
            .map(|t| MediaRange::parse(t))
            .collect::<Result<Vec<_>, String>>()?,
    };
    let levels = conf.levels;
    for (key, level, range) in [
        ("gzip", levels.gzip, 1..=9),
        ("br", levels.br, 0..=11),
        ("zstd", levels.zstd, 1..=22),
    ] {
        if !range.contains(&level) {
            return Err(format!(
                "levels.{key}: {level} is out of range {}..={}",
                range.start(),
                range.end()
            ));
        }
    }
    Ok(Arc::new(Compression {
        algorithms,
        min_length: conf.min_length,
        content_types,
        levels: [levels.gzip, levels.br, levels.zstd],
        compressed: setup.counter("compressed"),
        by_coding: [Coding::Gzip, Coding::Brotli, Coding::Zstd]
            .map(|c| setup.counter(&format!("compressed_{}", c.token()))),
    }))
}

impl Compression {
    /// Whether the response is one this route compresses for a client that asks: the answer
    /// depends on `Accept-Encoding`, and caches must know (`Vary`).
    fn eligible(&self, resp: &ResponseHeader, asked: &Asked) -> bool {
        let status = resp.status.as_u16();
        asked.proxied
            && !asked.range
            && status >= 200
            && !matches!(status, 204 | 206 | 304)
            && response::type_listed(resp, &self.content_types)
            && !response::left_alone(resp, self.min_length)
    }

    /// Whether the response is a 304 for what this route compresses: a 304 has no body and
    /// often no `Content-Type`; one that names a type must name a listed one.
    fn revalidated(&self, resp: &ResponseHeader, asked: &Asked) -> bool {
        resp.status.as_u16() == 304
            && asked.proxied
            && !asked.range
            && (!resp.headers.contains_key(http::header::CONTENT_TYPE)
                || response::type_listed(resp, &self.content_types))
            && !response::no_transform(resp)
    }
}

#[async_trait]
impl Filter for Compression {
    async fn on_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<Flow> {
        let head = req.method == http::Method::HEAD;
        let range = req.headers.contains_key(http::header::RANGE);
        // `TE: trailers` (gRPC clients send it): the response may end with trailers, and
        // pingora ends a body with its trailers or with a filter's last bytes, not both.
        let trailers = response::names_token(req.headers.get_all(http::header::TE), b"trailers");
        let coding = if head || range || trailers || req.version < http::Version::HTTP_11 {
            None
        } else {
            negotiate::choose(
                req.headers
                    .get_all(http::header::ACCEPT_ENCODING)
                    .iter()
                    .map(|v| v.as_bytes()),
                &self.algorithms,
            )
        };
        cx.vars.insert(Asked {
            coding,
            range,
            proxied: false,
        });
        Ok(Flow::Continue)
    }

    fn on_upstream_request(&self, _req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<()> {
        if let Some(asked) = cx.vars.get_mut::<Asked>() {
            asked.proxied = true;
        }
        Ok(())
    }

    fn on_response(&self, resp: &mut ResponseHeader, cx: &mut Context<'_>) -> Result<()> {
        let Some(asked) = cx.vars.get::<Asked>() else {
            return Ok(());
        };
        if self.revalidated(resp, asked) {
            // A 304 carries the Vary and ETag the 200 would have (RFC 9110 §15.4.5): the
            // client's copy was compressed (weak ETag) if it asks for a coding now.
            response::vary_on_accept_encoding(resp)?;
            if asked.coding.is_some() {
                response::weaken_etag(resp)?;
            }
            return Ok(());
        }
        if !self.eligible(resp, asked) {
            return Ok(());
        }
        response::vary_on_accept_encoding(resp)?;
        let Some(coding) = asked.coding else {
            return Ok(());
        };
        let encoder = match Encoder::new(coding, self.levels[coding as usize]) {
            Ok(encoder) => encoder,
            Err(e) => {
                log::warn!("compression: no {} encoder: {e}", coding.token());
                return Ok(());
            }
        };
        response::mark_encoded(resp, coding.token())?;
        cx.vars.insert(Encoding(Arc::new(Mutex::new(encoder))));
        self.compressed.inc();
        if let Some(counter) = self.by_coding.get(coding as usize) {
            counter.inc();
        }
        Ok(())
    }

    fn on_response_body(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        cx: &mut Context<'_>,
    ) -> Result<()> {
        let Some(Encoding(encoder)) = cx.vars.get::<Encoding>() else {
            return Ok(());
        };
        let failed = |e: String| Error::explain(ErrorType::InternalError, e);
        let mut encoder = encoder
            .lock()
            .map_err(|_| failed("compression: encoder poisoned".to_owned()))?;
        let input = body.as_deref().unwrap_or_default();
        if input.is_empty() && !end_of_stream {
            return Ok(());
        }
        let out = encoder
            .encode(input, end_of_stream)
            .map_err(|e| failed(format!("compression: {e}")))?;
        drop(encoder);
        if end_of_stream {
            cx.vars.remove::<Encoding>();
        }
        *body = (!out.is_empty()).then_some(out);
        Ok(())
    }
}
