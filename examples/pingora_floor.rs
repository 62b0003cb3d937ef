//! The floor of the framework, for bench/: the smallest pingora HTTP proxy (a `ProxyHttp` whose
//! only hook returns one fixed upstream, pooled keep-alive), with headway's allocator and
//! runtime settings. What headway costs beyond it is the price of its own request path.
//!
//! `pingora_floor LISTEN UPSTREAM [THREADS] [h2c | tls:CERT:KEY]`, e.g. `pingora_floor
//! 127.0.0.1:8000 127.0.0.1:8080`. `h2c`: HTTP/2 with prior knowledge on the listener (beside
//! HTTP/1.1) and to the upstream, headway's gRPC path; `tls:CERT:KEY`: the listener speaks TLS
//! (PEM files) and offers h2 by ALPN before http/1.1, the upstream stays HTTP/1.1.

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{http_proxy_service, HttpPeer, ProxyHttp, Result, Server, Session};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    upstream: SocketAddr,
    h2c: bool,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        if self.h2c {
            peer.options.set_http_version(2, 2);
        }
        Ok(Box::new(peer))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pingora_floor LISTEN UPSTREAM [THREADS] [h2c | tls:CERT:KEY]";
    let (mode, args) = match args.split_last() {
        Some((last, rest)) if last == "h2c" || last.starts_with("tls:") => (last.as_str(), rest),
        _ => ("", args.as_slice()),
    };
    let parsed = match args {
        [listen, upstream] => (listen.parse::<SocketAddr>(), upstream.parse(), Ok(1)),
        [listen, upstream, threads] => (listen.parse(), upstream.parse(), threads.parse()),
        _ => {
            eprintln!("{usage}");
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
    let h2c = mode == "h2c";
    let mut proxy = http_proxy_service(&server.configuration, Floor { upstream, h2c });
    if let Some(app) = proxy.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        app.server_options = Some(options);
    }
    match mode
        .strip_prefix("tls:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((cert, key)) => {
            let mut settings = match TlsSettings::intermediate(cert, key) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("pingora_floor: {cert}, {key}: {e}");
                    return ExitCode::from(2);
                }
            };
            settings.enable_h2();
            proxy.add_tls_with_settings(&listen.to_string(), None, settings);
        }
        None if mode.starts_with("tls:") => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
        None => proxy.add_tcp(&listen.to_string()),
    }
    server.add_service(proxy);
    server.run_forever()
}
