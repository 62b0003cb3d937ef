//! A gateway of your own: headway's server with two filters written here, named in the conf
//! like headway's own.
//!
//! - `header_key`: a request without one of the configured keys in its header gets `401` (the
//!   key never reaches the backend);
//! - `tenant`: the tenant, read from the first label of the Host (`acme.example.com` → `acme`),
//!   is sent to the backend as `x-tenant` and returned to the client as `x-tenant` too.
//!
//! ```yaml
//! routes:
//!   - prefix: /api
//!     cluster: api
//!     filters:
//!       - { name: header_key, header: x-api-key, keys: [k-123, k-456] }
//!       - { name: tenant }
//! ```
//!
//! Run it as you run `headway`: `cargo run --example custom_filter -- -c conf.yaml`.

use async_trait::async_trait;
use headway::filter::{Answer, Context, Filter, FilterSetup, Flow};
use headway::Headway;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use serde::Deserialize;
use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

/// `{ name: header_key, header: x-api-key, keys: [...] }`. (headway's built-in `api_key` does
/// this and more; a program's filter takes a name of its own: `Headway::filter` refuses a
/// built-in's name, `Headway::replace_filter` replaces one on purpose.)
struct ApiKey {
    header: HeaderName,
    keys: HashSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyConf {
    #[serde(default = "default_header")]
    header: String,
    keys: Vec<String>,
}

fn default_header() -> String {
    "x-api-key".to_owned()
}

impl ApiKey {
    fn from_setup(setup: &FilterSetup<'_>) -> Result<Arc<dyn Filter>, String> {
        let conf: ApiKeyConf = setup.parse()?;
        let header = HeaderName::from_bytes(conf.header.as_bytes())
            .map_err(|_| format!("header: `{}` is not a header name", conf.header))?;
        if conf.keys.is_empty() {
            return Err("keys: at least one key is needed".to_owned());
        }
        Ok(Arc::new(ApiKey {
            header,
            keys: conf.keys.into_iter().collect(),
        }))
    }
}

#[async_trait]
impl Filter for ApiKey {
    async fn on_request(&self, req: &mut RequestHeader, _cx: &mut Context<'_>) -> Result<Flow> {
        let good = req
            .headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|key| self.keys.contains(key));
        if !good {
            let answer = Answer::new(401, "a valid API key is required\n").header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey"),
            );
            return Ok(Flow::Respond(answer));
        }
        // The backend needs no key: it never sees one.
        req.remove_header(&self.header);
        Ok(Flow::Continue)
    }
}

/// `{ name: tenant }`: the Host's first label, to the backend and back.
struct Tenant;

/// The request's tenant, kept from the request stage for the later ones.
#[derive(Clone)]
struct TenantOf(HeaderValue);

const X_TENANT: HeaderName = HeaderName::from_static("x-tenant");

#[async_trait]
impl Filter for Tenant {
    async fn on_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<Flow> {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let tenant = host.split(['.', ':']).next().unwrap_or_default();
        if let Ok(value) = HeaderValue::from_str(tenant) {
            cx.vars.insert(TenantOf(value));
        }
        Ok(Flow::Continue)
    }

    fn on_upstream_request(&self, req: &mut RequestHeader, cx: &mut Context<'_>) -> Result<()> {
        if let Some(TenantOf(tenant)) = cx.vars.get::<TenantOf>() {
            req.insert_header(X_TENANT, tenant.clone())?;
        }
        Ok(())
    }

    fn on_response(&self, resp: &mut ResponseHeader, cx: &mut Context<'_>) -> Result<()> {
        if let Some(TenantOf(tenant)) = cx.vars.get::<TenantOf>() {
            resp.insert_header(X_TENANT, tenant.clone())?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    Headway::new()
        .filter("header_key", ApiKey::from_setup)
        .filter("tenant", |_| Ok(Arc::new(Tenant)))
        .main()
}
