//! The floor of the framework, for bench/: the smallest pingora HTTP proxy (a `ProxyHttp` whose
//! only hook returns one fixed upstream, pooled keep-alive), with headway's allocator and
//! runtime settings. What headway costs beyond it is the price of its own request path.
//!
//! `pingora_floor LISTEN UPSTREAM [THREADS]`, e.g. `pingora_floor 127.0.0.1:8000 127.0.0.1:8080`.

use async_trait::async_trait;
use pingora::prelude::{http_proxy_service, HttpPeer, ProxyHttp, Result, Server, Session};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [listen, upstream] => (listen.parse::<SocketAddr>(), upstream.parse(), Ok(1)),
        [listen, upstream, threads] => (listen.parse(), upstream.parse(), threads.parse()),
        _ => {
            eprintln!("usage: pingora_floor LISTEN UPSTREAM [THREADS]");
            return ExitCode::from(2);
        }
    };
    let (Ok(listen), Ok(upstream), Ok(threads)) = parsed else {
        eprintln!("pingora_floor: LISTEN and UPSTREAM are ip:port, THREADS a number");
        return ExitCode::from(2);
    };
    let conf = ServerConf {
        threads,
        work_stealing: false,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Floor { upstream });
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    server.run_forever()
}
