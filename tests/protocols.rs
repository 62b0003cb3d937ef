#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail
//! Protocols a front proxy must carry, each through the real binary with real clients and
//! servers on loopback: gRPC over h2c upstreams (trailers intact), WebSocket upgrades, TLS
//! termination with HTTP/2 by ALPN, and h2c from clients.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use support::backend::Backend;
use support::conf::{Cluster, Route};
use support::dns::DnsServer;
use support::gateway::Gateway;
use support::{free_port, run_headway};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tonic::codec::ProstCodec;
use tonic::codegen::{http, Service};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

/// Every async part of a test must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `f` on `rt`, failing the test if it takes longer than [`TEST_TIMEOUT`].
fn bounded<T>(rt: &Runtime, what: &str, f: impl Future<Output = T>) -> T {
    rt.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| panic!("{what}: not done within {TEST_TIMEOUT:?}"))
    })
}

/// A cluster entry with fast discovery for tests, no active health checks.
fn cluster(name: &str, address: &str, port: u16) -> Cluster {
    Cluster::new(name)
        .address(address, port)
        .refresh("300ms")
        .connect_timeout("500ms")
        .timeout("10s")
}

// ---------------------------------------------------------------------------------------------
// gRPC: a hand-written service (no protoc), served by tonic over h2c, behind a `protocol: http2`
// cluster found by DNS.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
    /// The server's address, so the test knows who answered.
    #[prost(string, tag = "2")]
    served_by: String,
    /// The value of the request's `x-client-meta` metadata, as the server saw it.
    #[prost(string, tag = "3")]
    client_meta: String,
}

const SAY: &str = "/headway.test.Echo/Say";
const MISSING: &str = "/headway.test.Echo/Missing";
const FAIL_LATE: &str = "/headway.test.Echo/FailLate";

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `Say`: echoes the message, with a custom response header (`x-custom-header`).
#[derive(Clone)]
struct Say {
    served_by: String,
}

impl Service<Request<EchoRequest>> for Say {
    type Response = Response<EchoReply>;
    type Error = Status;
    type Future = BoxFut<Result<Response<EchoReply>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let served_by = self.served_by.clone();
        Box::pin(async move {
            let client_meta = request
                .metadata()
                .get("x-client-meta")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let mut response = Response::new(EchoReply {
                message: request.into_inner().message,
                served_by,
                client_meta,
            });
            response
                .metadata_mut()
                .insert("x-custom-header", MetadataValue::from_static("from-server"));
            Ok(response)
        })
    }
}

/// `Missing`: fails at once with `NotFound "x"` (a trailers-only response).
#[derive(Clone)]
struct Missing;

impl Service<Request<EchoRequest>> for Missing {
    type Response = Response<EchoReply>;
    type Error = Status;
    type Future = BoxFut<Result<Response<EchoReply>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<EchoRequest>) -> Self::Future {
        Box::pin(async { Err(Status::not_found("x")) })
    }
}

/// `FailLate` (server streaming): one reply, then `NotFound "late"`, which can only travel in
/// the trailers after the data.
#[derive(Clone)]
struct FailLate;

type ReplyStream = Pin<Box<dyn futures::Stream<Item = Result<EchoReply, Status>> + Send>>;

impl Service<Request<EchoRequest>> for FailLate {
    type Response = Response<ReplyStream>;
    type Error = Status;
    type Future = BoxFut<Result<Response<ReplyStream>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let first = EchoReply {
                message: request.into_inner().message,
                ..EchoReply::default()
            };
            let stream: ReplyStream = Box::pin(futures::stream::iter([
                Ok(first),
                Err(Status::not_found("late")),
            ]));
            Ok(Response::new(stream))
        })
    }
}

/// What the gRPC server saw of each request: path, HTTP version and headers.
type Seen = Arc<Mutex<Vec<(String, http::Version, http::HeaderMap)>>>;

/// The server: routes the gRPC paths by hand (what tonic-build would generate) and adds a
/// custom trailer (`x-custom-trailer: bye`) to every response that has trailers.
#[derive(Clone)]
struct EchoServer {
    served_by: String,
    seen: Seen,
}

impl Service<http::Request<tonic::body::Body>> for EchoServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        support::lock(&self.seen).push((
            path.clone(),
            request.version(),
            request.headers().clone(),
        ));
        let served_by = self.served_by.clone();
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            let response = match path.as_str() {
                SAY => grpc.unary(Say { served_by }, request).await,
                MISSING => grpc.unary(Missing, request).await,
                FAIL_LATE => grpc.server_streaming(FailLate, request).await,
                _ => Status::unimplemented(path).into_http(),
            };
            let (parts, body) = response.into_parts();
            let body = body.map_frame(|mut frame| {
                if let Some(trailers) = frame.trailers_mut() {
                    trailers.insert("x-custom-trailer", http::HeaderValue::from_static("bye"));
                }
                frame
            });
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

/// Starts the gRPC server on `addr` (h2c only, as tonic serves) on `rt`.
fn start_grpc_server(rt: &Runtime, addr: SocketAddr) -> Seen {
    let seen = Seen::default();
    let server = EchoServer {
        served_by: addr.to_string(),
        seen: seen.clone(),
    };
    let listener = rt
        .block_on(TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("gRPC server: cannot bind {addr}: {e}"));
    rt.spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .serve_with_incoming(server, incoming)
            .await
        {
            eprintln!("gRPC server on {addr} failed: {e}");
        }
    });
    seen
}

/// What the calls returned, checked the same way directly and through the gateway.
async fn grpc_calls(target: SocketAddr, backend: SocketAddr) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{target}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC client: cannot connect to {target}: {e}"));
    let mut client = tonic::client::Grpc::new(channel);
    let codec = || ProstCodec::<EchoRequest, EchoReply>::default();
    let path = |p: &'static str| http::uri::PathAndQuery::from_static(p);

    // 1. Unary: the server's reply, its response header and its trailer.
    client.ready().await.unwrap();
    let mut request = Request::new(EchoRequest {
        message: "hello through headway".into(),
    });
    request
        .metadata_mut()
        .insert("x-client-meta", MetadataValue::from_static("abc"));
    let response = client
        .unary(request, path(SAY), codec())
        .await
        .unwrap_or_else(|status| panic!("unary Say via {target}: {status:?}"));
    let metadata = response.metadata().clone();
    let reply = response.into_inner();
    assert_eq!(reply.message, "hello through headway");
    assert_eq!(reply.served_by, backend.to_string());
    assert_eq!(
        reply.client_meta, "abc",
        "request metadata must reach the server"
    );
    assert_eq!(
        metadata
            .get("x-custom-header")
            .and_then(|v| v.to_str().ok()),
        Some("from-server"),
        "response header lost via {target}: {metadata:?}"
    );
    // tonic merges the trailers into the response metadata after reading the body: the
    // trailer can only be there if the trailers frame arrived.
    assert_eq!(
        metadata
            .get("x-custom-trailer")
            .and_then(|v| v.to_str().ok()),
        Some("bye"),
        "response trailer lost via {target}: {metadata:?}"
    );
    assert_eq!(
        metadata.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0"),
        "grpc-status trailer lost via {target}: {metadata:?}"
    );

    // 2. Unary failing at once: NotFound "x" (grpc-status / grpc-message, trailers-only).
    client.ready().await.unwrap();
    let status = client
        .unary(
            Request::new(EchoRequest {
                message: "?".into(),
            }),
            path(MISSING),
            codec(),
        )
        .await
        .expect_err("Missing must fail");
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "x"),
        "via {target}: {status:?}"
    );

    // 3. Server streaming failing after a message: the status travels in real trailers.
    client.ready().await.unwrap();
    let response = client
        .server_streaming(
            Request::new(EchoRequest {
                message: "first".into(),
            }),
            path(FAIL_LATE),
            codec(),
        )
        .await
        .unwrap_or_else(|status| panic!("FailLate via {target}: {status:?}"));
    let mut stream = response.into_inner();
    let first = stream
        .message()
        .await
        .unwrap_or_else(|status| panic!("FailLate first message via {target}: {status:?}"));
    assert_eq!(first.map(|r| r.message).as_deref(), Some("first"));
    let status = stream
        .message()
        .await
        .expect_err("FailLate must end with an error status");
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "late"),
        "via {target}: {status:?}"
    );
    assert_eq!(
        status
            .metadata()
            .get("x-custom-trailer")
            .and_then(|v| v.to_str().ok()),
        Some("bye"),
        "the error's trailers must carry the custom trailer too via {target}: {status:?}"
    );
}

#[test]
fn grpc_through_an_http2_cluster_keeps_status_metadata_and_trailers() {
    let rt = runtime();
    let dns = DnsServer::start();
    let port = free_port();
    let backend: SocketAddr = format!("127.0.9.1:{port}").parse().unwrap();
    let seen = start_grpc_server(&rt, backend);
    dns.set_a("grpc.test", &["127.0.9.1"]);

    // The server itself is right: any failure below is the gateway's.
    bounded(
        &rt,
        "gRPC calls straight to the server",
        grpc_calls(backend, backend),
    );
    support::lock(&seen).clear();

    let gateway = Gateway::builder()
        .nameserver(dns.addr())
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/headway.test.Echo/").to("grpc"))
        .cluster(cluster("grpc", "grpc.test", port).protocol("http2"))
        .start();
    // The gateway's plain listener (with `h2c: true`) takes the client's h2c prior-knowledge
    // connection.
    bounded(
        &rt,
        "gRPC calls through the gateway",
        grpc_calls(gateway.listen_addr(), backend),
    );

    let seen = support::lock(&seen).clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(paths, [SAY, MISSING, FAIL_LATE], "requests the server got");
    for (path, version, headers) in &seen {
        assert_eq!(
            *version,
            http::Version::HTTP_2,
            "{path}: h2c to the upstream"
        );
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header("content-type"), Some("application/grpc"), "{path}");
        assert_eq!(header("x-forwarded-proto"), Some("http"), "{path}");
        assert!(
            header("x-request-id").is_some(),
            "{path}: the gateway adds x-request-id: {headers:?}"
        );
    }
    drop(gateway);
    drop(dns);
    rt.shutdown_timeout(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// WebSocket: an echo server behind a plain http1 cluster; a real client upgrades through the
// gateway.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct WsLog {
    /// Headers of each upgrade request the server accepted.
    upgrades: Vec<HashMap<String, String>>,
    /// Messages echoed.
    echoed: usize,
    /// Connections that ended with the client's Close frame, no error.
    clean_closes: usize,
}

fn start_ws_echo_server(rt: &Runtime, addr: SocketAddr) -> Arc<Mutex<WsLog>> {
    use tokio_tungstenite::tungstenite::handshake::server::{
        Request as WsRequest, Response as WsResponse,
    };
    use tokio_tungstenite::tungstenite::Message;

    let log = Arc::new(Mutex::new(WsLog::default()));
    let listener = rt
        .block_on(TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("WebSocket server: cannot bind {addr}: {e}"));
    let accept_log = log.clone();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let log = accept_log.clone();
            tokio::spawn(async move {
                let upgrade_log = log.clone();
                // The callback's signature (and its large error type) is tungstenite's.
                #[allow(clippy::result_large_err)]
                let callback = move |request: &WsRequest, response: WsResponse| {
                    let headers = request
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                v.to_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    support::lock(&upgrade_log).upgrades.push(headers);
                    Ok(response)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let mut closed_by_client = false;
                while let Some(message) = ws.next().await {
                    match message {
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                            if ws.send(m).await.is_err() {
                                return;
                            }
                            support::lock(&log).echoed += 1;
                        }
                        Ok(Message::Close(_)) => closed_by_client = true,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
                // The stream ends once tungstenite has answered the Close frame.
                if closed_by_client {
                    support::lock(&log).clean_closes += 1;
                }
            });
        }
    });
    log
}

#[test]
fn websocket_upgrade_is_passed_through_and_echoes_both_ways() {
    use tokio_tungstenite::tungstenite::Message;

    let rt = runtime();
    let port = free_port();
    let backend: SocketAddr = format!("127.0.9.2:{port}").parse().unwrap();
    let log = start_ws_echo_server(&rt, backend);
    let gateway = Gateway::builder()
        .route(Route::prefix("/ws").to("ws"))
        .cluster(cluster("ws", "127.0.9.2", port))
        .start();
    let listen = gateway.listen_addr();

    bounded(&rt, "WebSocket session through the gateway", async {
        let tcp = TcpStream::connect(listen).await.unwrap();
        let (mut ws, response) =
            tokio_tungstenite::client_async(format!("ws://{listen}/ws/echo"), tcp)
                .await
                .unwrap_or_else(|e| panic!("WebSocket handshake through {listen}: {e}"));
        assert_eq!(response.status(), 101);

        let text = Message::text("hello, websocket");
        ws.send(text.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), text);

        let binary = Message::binary(vec![0u8, 1, 2, 0xfe, 0xff]);
        ws.send(binary.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), binary);

        // A larger message, split over many TCP segments on the way.
        let big = Message::binary(vec![0x5a; 256 * 1024]);
        ws.send(big.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), big);

        // Close handshake: our Close, the server's Close back, then the end of the stream.
        ws.close(None).await.unwrap();
        let mut got_close = false;
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(_)) => got_close = true,
                Ok(other) => panic!("unexpected message after close: {other:?}"),
                Err(e) => panic!("WebSocket error during the close handshake: {e}"),
            }
        }
        assert!(got_close, "the server's Close frame must come back");
    });

    assert!(
        support::wait_until(Duration::from_secs(5), || support::lock(&log).clean_closes
            == 1),
        "the backend must see the close handshake"
    );
    let log = support::lock(&log);
    assert_eq!(log.echoed, 3);
    assert_eq!(
        log.upgrades.len(),
        1,
        "one upgrade request reached the backend"
    );
    let headers = &log.upgrades[0];
    let header = |name: &str| headers.get(name).map(String::as_str).unwrap_or_default();
    assert!(
        header("upgrade").eq_ignore_ascii_case("websocket"),
        "{headers:?}"
    );
    assert!(
        header("connection")
            .to_ascii_lowercase()
            .contains("upgrade"),
        "{headers:?}"
    );
    assert!(!header("sec-websocket-key").is_empty(), "{headers:?}");
    assert_eq!(header("sec-websocket-version"), "13", "{headers:?}");
    assert_eq!(header("x-forwarded-proto"), "http", "{headers:?}");
    drop(log);
    drop(gateway);
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn a_quiet_websocket_outlives_the_request_timeout_and_closes_at_the_tunnel_timeout() {
    use tokio_tungstenite::tungstenite::Message;

    let rt = runtime();
    let port = free_port();
    let backend: SocketAddr = format!("127.0.9.3:{port}").parse().unwrap();
    let log = start_ws_echo_server(&rt, backend);
    // `timeout` 1 s bounds ordinary requests; once upgraded, only `tunnel_timeout` (3 s) counts.
    let gateway = Gateway::builder()
        .route(Route::prefix("/ws").to("ws"))
        .cluster(
            Cluster::new("ws")
                .address("127.0.9.3", port)
                .connect_timeout("500ms")
                .timeout("1s")
                .tunnel_timeout("3s"),
        )
        .start();
    let listen = gateway.listen_addr();

    let idle_end = bounded(&rt, "a quiet WebSocket through the gateway", async {
        let tcp = TcpStream::connect(listen).await.unwrap();
        let (mut ws, response) =
            tokio_tungstenite::client_async(format!("ws://{listen}/ws/quiet"), tcp)
                .await
                .unwrap_or_else(|e| panic!("WebSocket handshake through {listen}: {e}"));
        assert_eq!(response.status(), 101);
        for round in 0..2 {
            // Twice the request timeout without a byte either way, then an echo.
            tokio::time::sleep(Duration::from_millis(2_200)).await;
            let text = Message::text(format!("still here {round}"));
            ws.send(text.clone())
                .await
                .unwrap_or_else(|e| panic!("send after {round} quiet spells: {e}"));
            assert_eq!(ws.next().await.unwrap().unwrap(), text);
        }
        // Past the tunnel timeout: the gateway closes the connection (a clean TCP close or a
        // reset, never a hang).
        let quiet = std::time::Instant::now();
        let end = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        (quiet.elapsed(), format!("{end:?}"))
    });
    let (after, how) = idle_end;
    assert!(
        after >= Duration::from_millis(2_500) && after < Duration::from_secs(6),
        "closed after {after:?} of quiet ({how}); tunnel_timeout is 3 s"
    );
    assert!(!how.contains("Elapsed"), "never closed: {how}");
    assert_eq!(support::lock(&log).echoed, 2);
    let metrics = support::http::get(gateway.admin_addr(), "/metrics")
        .unwrap()
        .body;
    assert!(
        metrics.contains("headway_tunnel_idle_timeouts_total{cluster=\"ws\"} 1"),
        "the closed tunnel is counted:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("tunnel"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(gateway);
    rt.shutdown_timeout(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// TLS termination, HTTP/2 by ALPN, HTTP/1.1 over TLS; h2c from clients.
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for `localhost` and 127.0.0.1, written as cert.pem / key.pem into
/// `dir`. Returns the certificate (DER), for clients to trust.
fn write_self_signed(dir: &Path) -> rustls::pki_types::CertificateDer<'static> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("rcgen: self-signed certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), signing_key.serialize_pem()).unwrap();
    cert.der().clone()
}

/// A TLS client that trusts `cert` only and offers `alpn`.
fn tls_connector(
    cert: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A response read by the raw clients below.
struct RawResponse {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `GET uri` as HTTP/2 over `io` (TLS with ALPN h2, or cleartext with prior knowledge),
/// twice at once on the one connection, and returns both responses.
async fn h2_get_twice<T>(io: T, uri: &str) -> [RawResponse; 2]
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io)
        .await
        .unwrap_or_else(|e| panic!("HTTP/2 handshake for {uri}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let get = |client: h2::client::SendRequest<Bytes>| async move {
        let request = http::Request::get(uri).body(()).unwrap();
        let (response, _) = client
            .ready()
            .await
            .unwrap()
            .send_request(request, true)
            .unwrap();
        let response = response
            .await
            .unwrap_or_else(|e| panic!("HTTP/2 GET {uri}: {e}"));
        assert_eq!(response.version(), http::Version::HTTP_2);
        let (parts, mut body) = response.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            data.extend_from_slice(&chunk);
        }
        RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: data.into(),
        }
    };
    let (a, b) = tokio::join!(get(client.clone()), get(client));
    [a, b]
}

/// Sends `GET path` as HTTP/1.1 (`Connection: close`) over `io` and reads the response by its
/// Content-Length.
async fn h1_get<T>(mut io: T, host: &str, path: &str) -> RawResponse
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    io.write_all(request.as_bytes()).await.unwrap();
    io.flush().await.unwrap();
    read_response(&mut io).await
}

/// Reads one HTTP/1.1 response by its Content-Length.
async fn read_response<T>(io: &mut T) -> RawResponse
where
    T: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((head_len, status, headers)) = parse_head(&buf) {
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("HTTP/1.1 response without content-length");
            if buf.len() >= head_len + length {
                let body = Bytes::copy_from_slice(&buf[head_len..head_len + length]);
                return RawResponse {
                    status,
                    headers,
                    body,
                };
            }
        }
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a whole response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// (head length, status, headers) of an HTTP/1.1 response once its head is complete.
fn parse_head(buf: &[u8]) -> Option<(usize, u16, http::HeaderMap)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("response head is not UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next()?.parse().ok()?;
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            http::HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    Some((end + 4, status, headers))
}

#[test]
fn tls_listener_terminates_with_h2_by_alpn_and_http1_and_forwards_https() {
    let rt = runtime();
    let port = free_port();
    let backend = Backend::start("127.0.9.3", port, "tls-backend");
    let dir = tempfile::tempdir().unwrap();
    let cert = write_self_signed(dir.path());
    let tls = free_port();
    let gateway = Gateway::builder()
        .listen(format!("127.0.0.1:{}", free_port()))
        .listen_tls(
            format!("127.0.0.1:{tls}"),
            &dir.path().join("cert.pem"),
            &dir.path().join("key.pem"),
        )
        .route(Route::prefix("/tls").to("tls"))
        .cluster(cluster("tls", "127.0.9.3", port))
        .start();
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls}").parse().unwrap();
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    // (a) ALPN h2 and http/1.1 offered: h2 is chosen, and HTTP/2 requests get the answer.
    let responses = bounded(&rt, "HTTP/2 over TLS", async {
        let tcp = TcpStream::connect(tls_addr).await.unwrap();
        let stream = tls_connector(&cert, &[b"h2", b"http/1.1"])
            .connect(server_name.clone(), tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {tls_addr}: {e}"));
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "the TLS listener must choose h2 when offered"
        );
        h2_get_twice(stream, &format!("https://localhost:{tls}/tls/h2")).await
    });
    for response in &responses {
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, backend.body().as_bytes());
        assert_eq!(response.header("x-echo-x-forwarded-proto"), Some("https"));
        assert_eq!(response.header("x-request-target"), Some("/tls/h2"));
    }

    // (b) Only http/1.1 offered: HTTP/1.1 over TLS.
    let response = bounded(&rt, "HTTP/1.1 over TLS", async {
        let tcp = TcpStream::connect(tls_addr).await.unwrap();
        let stream = tls_connector(&cert, &[b"http/1.1"])
            .connect(server_name.clone(), tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {tls_addr}: {e}"));
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        h1_get(stream, "localhost", "/tls/h1").await
    });
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body, backend.body().as_bytes());
    assert_eq!(response.header("x-echo-x-forwarded-proto"), Some("https"));
    assert_eq!(response.header("x-request-target"), Some("/tls/h1"));

    // (c) A request the HTTP/1 parser refuses, sent on a kept-alive TLS connection the moment
    // the previous answer arrived: a 400, and an access-log line for it like any other answer.
    let (first, refusal) = bounded(&rt, "a refused request on kept-alive TLS", async {
        let tcp = TcpStream::connect(tls_addr).await.unwrap();
        let mut stream = tls_connector(&cert, &[b"http/1.1"])
            .connect(server_name.clone(), tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {tls_addr}: {e}"));
        stream
            .write_all(b"GET /tls/kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let first = read_response(&mut stream).await;
        stream
            .write_all(b"G(T /tls/kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        // rustls reports a close without close_notify as an error: what came before counts.
        let _ = stream.read_to_end(&mut rest).await;
        (first, rest)
    });
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert!(
        refusal.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        String::from_utf8_lossy(&refusal)
    );
    assert!(
        support::wait_until(Duration::from_secs(3), || gateway
            .stderr_log()
            .contains("status=400 ")),
        "no access-log line for the refusal: {}",
        gateway.stderr_log()
    );
    let log = gateway.stderr_log();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("status=400 ")).collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains("error=\"request refused by the HTTP/1 parser\""),
        "{}",
        refused[0]
    );

    // The plain listener beside it still speaks plain HTTP, marked as such.
    let response = support::http::get(gateway.listen_addr(), "/tls/plain").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-echo-x-forwarded-proto"), Some("http"));
    assert_eq!(backend.hits(), 5);
    drop(gateway);
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// The conf file of a gateway whose second listener uses `cert` and `key`.
fn conf_with_tls_files(dir: &Path, cert: &Path, key: &Path) -> std::path::PathBuf {
    let conf = format!(
        r#"version: 1
threads: 1
pid_file: "{dir}/headway.pid"
upgrade_sock: "{dir}/upgrade.sock"
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
gateway:
  listen:
    - "127.0.0.1:{plain}"
    - {{ address: "127.0.0.1:{tls}", tls: {{ cert: "{cert}", key: "{key}" }} }}
  admin: {{ listen: "127.0.0.1:{admin}" }}
"#,
        dir = dir.display(),
        plain = free_port(),
        tls = free_port(),
        admin = free_port(),
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.join("headway.yaml");
    std::fs::write(&path, conf).unwrap();
    path
}

#[test]
fn unusable_tls_files_make_headway_exit_naming_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    write_self_signed(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    write_self_signed(&other);
    let cases = [
        (
            "a missing cert",
            dir.path().join("missing.pem"),
            dir.path().join("key.pem"),
        ),
        (
            "a missing key",
            dir.path().join("cert.pem"),
            dir.path().join("missing.pem"),
        ),
        (
            "a key that is a cert",
            dir.path().join("cert.pem"),
            dir.path().join("cert.pem"),
        ),
        (
            "the key of another cert",
            dir.path().join("cert.pem"),
            other.join("key.pem"),
        ),
    ];
    for (what, cert, key) in cases {
        let conf = conf_with_tls_files(dir.path(), &cert, &key);
        let (code, _stdout, stderr) = run_headway(&["-c", conf.to_str().unwrap()]);
        assert_ne!(code, 0, "{what}: headway must not run; stderr:\n{stderr}");
        assert!(
            stderr.contains("gateway.listen[1].tls"),
            "{what}: the error must name gateway.listen[1].tls; stderr:\n{stderr}"
        );
    }
}

#[test]
fn h2c_prior_knowledge_from_clients_reaches_an_http1_backend() {
    let rt = runtime();
    let port = free_port();
    let backend = Backend::start("127.0.9.4", port, "h2c-backend");
    let gateway = Gateway::builder()
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/h2c").to("plain"))
        .cluster(cluster("plain", "127.0.9.4", port))
        .start();
    let listen = gateway.listen_addr();
    let responses = bounded(&rt, "h2c requests", async {
        let tcp = TcpStream::connect(listen).await.unwrap();
        h2_get_twice(tcp, &format!("http://{listen}/h2c/hello")).await
    });
    for response in &responses {
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, backend.body().as_bytes());
        assert_eq!(response.header("x-backend"), Some("h2c-backend"));
        assert_eq!(response.header("x-request-target"), Some("/h2c/hello"));
        assert_eq!(response.header("x-echo-x-forwarded-proto"), Some("http"));
    }
    assert_eq!(
        backend.hits(),
        2,
        "both streams reached the HTTP/1.1 backend"
    );
    drop(gateway);
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn an_http2_client_cancelling_its_stream_is_logged_as_499_not_answered_400() {
    let rt = runtime();
    let port = free_port();
    let backend = Backend::start("127.0.9.5", port, "slow");
    backend.set_delay(Duration::from_secs(2));
    let gateway = Gateway::builder()
        .gateway_yaml("h2c: true")
        .route(Route::prefix("/slow").to("slow"))
        .cluster(cluster("slow", "127.0.9.5", port))
        .start();
    let listen = gateway.listen_addr();
    bounded(&rt, "an h2c stream cancelled by its client", async {
        let tcp = TcpStream::connect(listen).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::get(format!("http://{listen}/slow/cancelled"))
            .body(())
            .unwrap();
        let (_response, mut stream) = client.send_request(request, true).unwrap();
        // The backend takes 2 s; the client gives up first, as a gRPC deadline or cancel does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.send_reset(h2::Reason::CANCEL);
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    assert!(
        gateway.wait_for_log("path=/slow/cancelled", Duration::from_secs(5)),
        "no access-log line for the cancelled request:\n{}",
        gateway.stderr_log()
    );
    let log = gateway.stderr_log();
    let line = log
        .lines()
        .find(|l| l.contains("path=/slow/cancelled"))
        .unwrap_or_default();
    assert!(
        line.contains("status=499") && line.contains("client closed the request"),
        "{line}"
    );
    assert!(!log.contains("could not send"), "{log}");
    drop(gateway);
    rt.shutdown_timeout(Duration::from_secs(5));
}
