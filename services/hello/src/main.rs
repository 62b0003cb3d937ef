//! The demo backend standing in for the seed's Express apps.
//!
//! `SERVICE_NAME` (e.g. `1`) and `LISTEN_ADDR` (default `0.0.0.0:8080`) come from the
//! environment. `GET /service/<name>` and every path below it answer with the service name and
//! the instance that served it, so load balancing is visible with curl; `GET /healthz` answers
//! 200; anything else 404. HTTP/1.1 and HTTP/2 cleartext (prior knowledge) on the same port.
//! SIGTERM / Ctrl-C stop accepting, let open requests finish, and exit 0.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

struct Service {
    name: String,
    /// `/service/<name>`: this service's path prefix.
    prefix: String,
    /// The hostname: a pod or container name.
    host: String,
}

/// Which instance answered: the hostname and the address the request reached (the pod's IP,
/// even when listening on 0.0.0.0).
fn instance(host: &str, local: SocketAddr) -> String {
    format!("{host} {local}")
}

impl Service {
    fn answer(&self, method: &Method, path: &str, instance: &str) -> (StatusCode, String) {
        if method != Method::GET && method != Method::HEAD {
            return (StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
        }
        if path == "/healthz" {
            return (StatusCode::OK, "ok\n".to_owned());
        }
        let below = path
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if below {
            (
                StatusCode::OK,
                format!(
                    "Hello I am a simple api service {} (instance {instance})\n",
                    self.name
                ),
            )
        } else {
            (StatusCode::NOT_FOUND, format!("no such path: {path}\n"))
        }
    }
}

async fn handle(
    service: Arc<Service>,
    instance: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = service.answer(req.method(), req.uri().path(), &instance);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&instance) {
        headers.insert("x-served-by", v);
    }
    Ok(resp)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let name = std::env::var("SERVICE_NAME").unwrap_or_else(|_| "1".to_owned());
    let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "0.0.0.0:8080".to_owned());
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("hello-service: LISTEN_ADDR `{listen}` is not an ip:port address");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello-service: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let service = Arc::new(Service {
        prefix: format!("/service/{name}"),
        host: hostname(),
        name,
    });
    eprintln!(
        "hello-service {} listening on {addr} (HTTP/1.1 and h2c)",
        service.name
    );

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let local = stream.local_addr().unwrap_or(addr);
                let instance: Arc<str> = instance(&service.host, local).into();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| handle(service.clone(), instance.clone(), req)),
                );
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    eprintln!(
        "hello-service {}: stopping, letting open requests finish",
        service.name
    );
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            name: "1".into(),
            prefix: "/service/1".into(),
            host: "pod-a".into(),
        }
    }

    #[test]
    fn answers_its_prefix_and_below_only() {
        let s = service();
        let me = instance(&s.host, "127.0.0.11:8080".parse().unwrap());
        let (status, body) = s.answer(&Method::GET, "/service/1", &me);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "Hello I am a simple api service 1 (instance pod-a 127.0.0.11:8080)\n"
        );
        assert_eq!(
            s.answer(&Method::GET, "/service/1/x/y", &me).0,
            StatusCode::OK
        );
        assert_eq!(
            s.answer(&Method::GET, "/service/10", &me).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            s.answer(&Method::GET, "/service/2", &me).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(s.answer(&Method::GET, "/", &me).0, StatusCode::NOT_FOUND);
        assert_eq!(s.answer(&Method::GET, "/healthz", &me).0, StatusCode::OK);
        assert_eq!(
            s.answer(&Method::POST, "/service/1", &me).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
