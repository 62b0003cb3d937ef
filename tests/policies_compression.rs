//! The `compression` filter through the real binary: an origin of the test's own serving a
//! large JSON body, a small one, a streamed one, an already gzipped one, an image, a
//! `no-transform` one and server-sent events; curl and Python's stdlib as the clients that
//! decode, each run also straight against the origin as the control.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::conf::{map, Cluster, Filter, Route};
use support::curl::Curled;
use support::gateway::Gateway;

/// The large JSON body: ~60 KB of an API's list answer.
fn big_json() -> Vec<u8> {
    let items: Vec<String> = (0..600)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"item {i}","tags":["alpha","beta","gamma"],"price":{}.{:02},"in_stock":{}}}"#,
                i * 7 % 100,
                i % 100,
                i % 3 == 0
            )
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

fn small_json() -> Vec<u8> {
    br#"{"ok":true,"items":[1,2,3]}"#.to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The origin: HTTP/1.1 keep-alive on `127.0.0.1:<port>`, answering by the path's last
/// segment (whatever the route's prefix). Every response carries `x-seen-accept-encoding`.
struct Origin {
    port: u16,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        Origin { port }
    }
}

/// Serves requests on one connection until the client closes it.
fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_owned();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let seen = format!("x-seen-accept-encoding: {}\r\n", header("accept-encoding"));
        let head = method == "HEAD";
        let name = path.rsplit('/').next().unwrap_or("").to_owned();
        if name == "events" || name == "stream.json" {
            let (ctype, pieces, pause): (&str, Vec<Vec<u8>>, u64) = if name == "events" {
                let events = vec![b"data: one\n\n".to_vec(), b"data: two\n\n".to_vec()];
                ("text/event-stream", events, 1500)
            } else {
                let body = big_json();
                let pieces = body.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
                ("application/json", pieces, 20)
            };
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n{seen}\r\n"
            );
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(pause));
                }
                let _ = write!(out, "{:x}\r\n", piece.len());
                let _ = out.write_all(piece);
                let _ = out.write_all(b"\r\n");
                let _ = out.flush();
            }
            let _ = out.write_all(b"0\r\n\r\n");
            continue;
        }
        if name == "trailer.json" {
            // A body that announces and ends with a trailer.
            let body = big_json();
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n{seen}\r\n{:x}\r\n",
                body.len()
            );
            let _ = out.write_all(&body);
            let _ = out.write_all(b"\r\n0\r\nx-checksum: v1\r\n\r\n");
            let _ = out.flush();
            continue;
        }
        if name == "big.json" && !header("if-none-match").is_empty() {
            // As nginx answers a revalidation: no body, no Content-Type, its validator.
            let _ = write!(
                out,
                "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\nvary: Origin\r\n{seen}\r\n"
            );
            let _ = out.flush();
            continue;
        }
        let big = big_json();
        let (status, extra, body): (&str, String, Vec<u8>) = match name.as_str() {
            _ if !header("range").is_empty() => (
                "206 Partial Content",
                format!(
                    "content-type: application/json\r\ncontent-range: bytes 0-99/{}\r\n",
                    big.len()
                ),
                big[..100].to_vec(),
            ),
            "big.json" => (
                "200 OK",
                "content-type: application/json; charset=utf-8\r\netag: \"v1\"\r\naccept-ranges: bytes\r\nvary: Origin\r\n".to_owned(),
                big,
            ),
            "small.json" => ("200 OK", "content-type: application/json\r\n".to_owned(), small_json()),
            "encoded.json" => (
                "200 OK",
                "content-type: application/json\r\ncontent-encoding: gzip\r\n".to_owned(),
                gzip(&big),
            ),
            "no-transform.json" => (
                "200 OK",
                "content-type: application/json\r\ncache-control: public, no-transform\r\n".to_owned(),
                big,
            ),
            "image.png" => ("200 OK", "content-type: image/png\r\n".to_owned(), big),
            "empty" => ("204 No Content", String::new(), Vec::new()),
            _ => ("404 Not Found", "content-type: text/plain\r\n".to_owned(), b"no\n".to_vec()),
        };
        let length = if status.starts_with("204") {
            String::new()
        } else {
            format!("content-length: {}\r\n", body.len())
        };
        let _ = write!(out, "HTTP/1.1 {status}\r\n{extra}{length}{seen}\r\n");
        if !head {
            let _ = out.write_all(&body);
        }
        let _ = out.flush();
    }
}

/// `/c/` with the filter's defaults, `/tuned/` with its own codings, levels, types and
/// minimum, `/plain/` without the filter.
fn routes() -> Vec<Route> {
    vec![
        Route::prefix("/c/")
            .to("origin")
            .filter(Filter::new("compression")),
        Route::prefix("/tuned/").to("origin").filter(
            Filter::new("compression")
                .set("algorithms", ["gzip", "br"])
                .set("min_length", 10)
                .set("content_types", ["application/json"])
                .set("levels", map(&[("gzip", 1), ("br", 11)])),
        ),
        Route::prefix("/plain/").to("origin"),
    ]
}

fn start() -> (Origin, Gateway) {
    let origin = Origin::start();
    let gateway = Gateway::builder()
        .gateway_yaml("h2c: true")
        .routes(routes())
        .cluster(Cluster::new("origin").address("127.0.0.1", origin.port))
        .start();
    (origin, gateway)
}

/// curl at `url` with `args` (support::curl).
fn curl(url: &str, args: &[&str]) -> Curled {
    let mut args = args.to_vec();
    args.push(url);
    support::curl::curl(&args)
}

/// Whether this curl decodes `coding` (`curl -V`'s features: libz, brotli, zstd).
fn curl_decodes(coding: &str) -> bool {
    let out = Command::new("curl").arg("-V").output().expect("curl");
    let features = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let feature = match coding {
        "gzip" => "libz",
        "br" => "brotli",
        other => other,
    };
    features
        .lines()
        .any(|l| l.starts_with("features:") && l.split_whitespace().any(|f| f == feature))
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => drop(
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap(),
        ),
        "br" => drop(
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap(),
        ),
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

#[test]
fn curl_decodes_every_coding_to_the_origins_body_over_http1_and_h2c() {
    let (origin, gateway) = start();
    let big = big_json();
    let direct = format!("http://127.0.0.1:{}/c/big.json", origin.port);
    // The control: curl straight to the origin gets the body plain (it never compresses).
    let control = curl(&direct, &["--compressed"]);
    assert_eq!(control.status, 200);
    assert_eq!(control.header("content-encoding"), None);
    assert_eq!(control.body, big);

    let url = gateway.url("/c/big.json");
    // curl's own Accept-Encoding (deflate, gzip, br, zstd as built): the server's order
    // (zstd, gzip, br) picks the first that this curl decodes.
    let preferred = ["zstd", "gzip", "br"]
        .into_iter()
        .find(|c| curl_decodes(c))
        .expect("a curl with zlib");
    let got = curl(&url, &["--compressed"]);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-encoding"), Some(preferred));
    assert_eq!(
        got.body, big,
        "curl decodes the gateway's {preferred} to the origin's body"
    );
    for (coding, http2) in [
        ("gzip", false),
        ("br", false),
        ("zstd", false),
        ("gzip", true),
        ("br", true),
    ] {
        let ae = format!("accept-encoding: {coding}");
        let mut args = vec!["-H", ae.as_str()];
        if http2 {
            args.push("--http2-prior-knowledge");
        }
        // Decoded by curl (libcurl's zlib, brotli and zstd, when it was built with them)…
        if curl_decodes(coding) {
            let decoded = curl(&url, &[&args[..], &["--compressed"]].concat());
            assert_eq!(
                decoded.header("content-encoding"),
                Some(coding),
                "{coding} h2={http2}"
            );
            assert_eq!(decoded.body, big, "{coding} h2={http2}: curl's decoding");
        } else {
            eprintln!("this curl does not decode {coding}: checked by the Rust decoders only");
        }
        // …and raw, by the Rust crates: the wire says what it is.
        let raw = curl(&url, &args);
        assert_eq!(raw.status, 200);
        assert_eq!(raw.version, if http2 { "HTTP/2" } else { "HTTP/1.1" });
        assert_eq!(
            raw.header("content-length"),
            None,
            "{coding}: no length of the plain body"
        );
        assert_eq!(
            raw.all("vary"),
            ["Origin", "Accept-Encoding"],
            "{coding}: Vary appended"
        );
        assert_eq!(
            raw.header("etag"),
            Some("W/\"v1\""),
            "{coding}: the ETag weakened"
        );
        assert_eq!(raw.header("accept-ranges"), None, "{coding}");
        assert!(
            raw.body.len() * 4 < big.len(),
            "{coding}: {} of {}",
            raw.body.len(),
            big.len()
        );
        assert_eq!(decode(coding, &raw.body), big, "{coding} h2={http2}");
    }

    // A streamed body (chunked, no length) is compressed too, piece by piece.
    let streamed = curl(
        &gateway.url("/c/stream.json"),
        &["-H", "accept-encoding: gzip"],
    );
    assert_eq!(streamed.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &streamed.body), big);
    gateway.assert_no_panic();
}

#[test]
fn python_stdlib_decodes_gzip_and_the_control_gets_it_plain() {
    let (origin, gateway) = start();
    let script = r#"
import gzip, sys, urllib.request, zlib
req = urllib.request.Request(sys.argv[1], headers={"Accept-Encoding": "gzip;q=1.0, br;q=0.5"})
with urllib.request.urlopen(req, timeout=10) as r:
    data = r.read()
    enc = r.headers.get("Content-Encoding")
if enc == "gzip":
    plain = gzip.decompress(data)
    assert zlib.decompress(data, 16 + zlib.MAX_WBITS) == plain
else:
    plain = data
sys.stdout.buffer.write(((enc or "none") + "\n").encode() + plain)
"#;
    let run = |url: &str| {
        let out = Command::new("python3")
            .args(["-c", script, url])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let split = out.stdout.iter().position(|b| *b == b'\n').unwrap();
        (
            String::from_utf8(out.stdout[..split].to_vec()).unwrap(),
            out.stdout[split + 1..].to_vec(),
        )
    };
    let (enc, body) = run(&format!("http://127.0.0.1:{}/c/big.json", origin.port));
    assert_eq!(
        (enc.as_str(), body.as_slice()),
        ("none", big_json().as_slice())
    );
    let (enc, body) = run(&gateway.url("/c/big.json"));
    assert_eq!(enc, "gzip", "gzip weighed above br");
    assert_eq!(body, big_json());
}

#[test]
fn q_values_identity_and_malformed_headers() {
    let (_origin, gateway) = start();
    let url = gateway.url("/c/big.json");
    for (accept, expect) in [
        ("gzip;q=0, br", Some("br")),
        ("br, gzip", Some("gzip")),
        ("gzip;q=0.9, br;q=0.8, zstd;q=0.1", Some("gzip")),
        ("identity", None),
        ("*;q=0", None),
        ("*", Some("zstd")),
        ("gzip;q=0.5, identity", None),
        ("deflate, compress", None),
        (";;q=x,,gzip;q=", None),
        (";;q=x,,gzip;q=, br;q=0.3", Some("br")),
        ("gzip;q=7, zstd;q=0.000", None),
        ("ZSTD;Q=0.5", Some("zstd")),
    ] {
        let got = curl(&url, &["-H", &format!("accept-encoding: {accept}")]);
        assert_eq!(got.status, 200, "{accept}");
        assert_eq!(got.header("content-encoding"), expect, "{accept}");
        assert!(
            got.all("vary").contains(&"Accept-Encoding"),
            "{accept}: eligible, so Vary"
        );
        let plain = match expect {
            Some(coding) => decode(coding, &got.body),
            None => got.body.clone(),
        };
        assert_eq!(plain, big_json(), "{accept}");
        assert_eq!(
            got.header("x-seen-accept-encoding"),
            Some(accept),
            "the origin gets the client's header as it was"
        );
    }
    // The route's own order and levels: gzip first, zstd not offered.
    let tuned = curl(
        &gateway.url("/tuned/big.json"),
        &["-H", "accept-encoding: zstd, br, gzip"],
    );
    assert_eq!(tuned.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &tuned.body), big_json());
    let tuned = curl(
        &gateway.url("/tuned/big.json"),
        &["-H", "accept-encoding: zstd"],
    );
    assert_eq!(tuned.header("content-encoding"), None);
    gateway.assert_no_panic();
}

#[test]
fn responses_that_must_stay_as_they_are_pass_untouched() {
    let (origin, gateway) = start();
    let big = big_json();
    let ae = ["-H", "accept-encoding: gzip, br, zstd"];
    // Already gzipped by the origin: the same bytes, no second coding, no Vary of ours.
    let encoded = curl(&gateway.url("/c/encoded.json"), &ae);
    assert_eq!(encoded.header("content-encoding"), Some("gzip"));
    assert_eq!(encoded.body, gzip(&big), "the origin's bytes, untouched");
    assert!(encoded.all("vary").is_empty());
    for (path, why) in [
        ("/c/no-transform.json", "Cache-Control: no-transform"),
        ("/c/small.json", "under min_length"),
        ("/c/image.png", "a type not worth compressing"),
        ("/plain/big.json", "a route without the filter"),
        ("/tuned/events", "a type the route does not list"),
    ] {
        let got = curl(&gateway.url(path), &ae);
        assert_eq!(got.status, 200, "{why}");
        assert_eq!(got.header("content-encoding"), None, "{why}");
        assert!(
            !got.all("vary").contains(&"Accept-Encoding"),
            "{why}: not eligible, no Vary"
        );
        assert!(
            got.header("content-length").is_some() || path.ends_with("events"),
            "{why}"
        );
        let direct = curl(&format!("http://127.0.0.1:{}{path}", origin.port), &ae);
        assert_eq!(got.body, direct.body, "{why}: the origin's body");
    }
    // The small body on a route whose min_length is 10: compressed.
    let small = curl(&gateway.url("/tuned/small.json"), &ae);
    assert_eq!(small.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &small.body), small_json());

    // HEAD: not compressed (its length stays the plain body's), but it learns the Vary.
    let head = curl(&gateway.url("/c/big.json"), &[&ae[..], &["-I"]].concat());
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), None);
    assert_eq!(
        head.header("content-length"),
        Some(big.len().to_string().as_str())
    );
    assert!(head.all("vary").contains(&"Accept-Encoding"));

    // A range request: the origin's 206, as it sent it.
    let range = curl(
        &gateway.url("/c/big.json"),
        &[&ae[..], &["-H", "range: bytes=0-99"]].concat(),
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), None);
    assert_eq!(range.body, big[..100]);

    // 204: no body, nothing to do.
    let empty = curl(&gateway.url("/c/empty"), &ae);
    assert_eq!(empty.status, 204);
    assert_eq!(empty.header("content-encoding"), None);
    assert!(empty.all("vary").is_empty());
    gateway.assert_no_panic();
}

#[test]
fn responses_that_may_end_with_trailers_stay_plain() {
    let (origin, gateway) = start();
    let big = big_json();
    let gzip_asked = ["-H", "accept-encoding: gzip"];
    // Control: the same request without TE is compressed.
    let compressed = curl(&gateway.url("/c/big.json"), &gzip_asked);
    assert_eq!(compressed.header("content-encoding"), Some("gzip"));
    // A client that takes trailers (as gRPC clients say): the response may end with some, and
    // a compressed stream could not be finished before them.
    let te = curl(
        &gateway.url("/c/big.json"),
        &[&gzip_asked[..], &["-H", "te: trailers"]].concat(),
    );
    assert_eq!(te.status, 200);
    assert_eq!(te.header("content-encoding"), None);
    assert_eq!(te.body, big);
    // A response that announces a trailer: plain, as the origin sent it.
    let direct = curl(
        &format!("http://127.0.0.1:{}/c/trailer.json", origin.port),
        &gzip_asked,
    );
    assert_eq!(direct.body, big, "control: the origin's body");
    let announced = curl(&gateway.url("/c/trailer.json"), &gzip_asked);
    assert_eq!(announced.status, 200);
    assert_eq!(announced.header("content-encoding"), None);
    assert_eq!(announced.body, big);
    gateway.assert_no_panic();
}

#[test]
fn a_304_carries_the_vary_and_the_etag_its_200_had() {
    let (origin, gateway) = start();
    let revalidate = |url: &str, ae: &str| {
        let mut args = vec!["-H", "if-none-match: W/\"v1\""];
        if !ae.is_empty() {
            args.extend(["-H", ae]);
        }
        curl(url, &args)
    };
    // Control: the origin's 304 has its own Vary and its strong ETag.
    let direct = revalidate(
        &format!("http://127.0.0.1:{}/c/big.json", origin.port),
        "accept-encoding: gzip",
    );
    assert_eq!(direct.status, 304);
    assert_eq!(direct.all("vary"), ["Origin"]);
    assert_eq!(direct.header("etag"), Some("\"v1\""));
    // Through the gateway, for a client whose copy was compressed: the weak ETag it was given
    // with the 200, and the Vary (RFC 9110 §15.4.5).
    let gzipped = revalidate(&gateway.url("/c/big.json"), "accept-encoding: gzip");
    assert_eq!(gzipped.status, 304);
    assert_eq!(gzipped.all("vary"), ["Origin", "Accept-Encoding"]);
    assert_eq!(gzipped.header("etag"), Some("W/\"v1\""));
    assert_eq!(gzipped.header("content-encoding"), None);
    assert!(gzipped.body.is_empty());
    // A client that asks for no coding had the plain 200: its strong ETag, and the Vary.
    let plain = revalidate(&gateway.url("/c/big.json"), "");
    assert_eq!(plain.status, 304);
    assert_eq!(plain.all("vary"), ["Origin", "Accept-Encoding"]);
    assert_eq!(plain.header("etag"), Some("\"v1\""));
    // A route without the filter: the origin's 304 as it is.
    let unfiltered = revalidate(&gateway.url("/plain/big.json"), "accept-encoding: gzip");
    assert_eq!(unfiltered.status, 304);
    assert_eq!(unfiltered.all("vary"), ["Origin"]);
    assert_eq!(unfiltered.header("etag"), Some("\"v1\""));
    gateway.assert_no_panic();
}

#[test]
fn two_compressed_responses_on_one_kept_alive_connection() {
    let (_origin, gateway) = start();
    let big = big_json();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    // One curl, two URLs: the second reuses the connection (num_connects 0) only if the first
    // response's framing (chunked, no length) ended cleanly.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--compressed",
            "-w",
            "%{num_connects} %{content_type}\n",
        ])
        .arg("-o")
        .arg(&one)
        .arg(gateway.url("/c/big.json"))
        .arg("-o")
        .arg(&two)
        .arg(gateway.url("/c/stream.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let connects: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        connects,
        ["1", "0"],
        "the second request went on the same connection"
    );
    assert_eq!(std::fs::read(&one).unwrap(), big);
    assert_eq!(std::fs::read(&two).unwrap(), big);

    // The same on the wire, by hand: chunked framing, then a second request on the socket.
    let mut socket = TcpStream::connect(gateway.listen_addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    for _ in 0..2 {
        write!(
            socket,
            "GET /c/big.json HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\n\r\n"
        )
        .unwrap();
        let (head, body) = read_chunked(&mut reader);
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(decode("gzip", &body), big);
    }
}

/// Reads one response with a chunked body from `reader`: (head lowercased, body).
fn read_chunked(reader: &mut impl BufRead) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut piece = vec![0; size + 2];
        reader.read_exact(&mut piece).unwrap();
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&piece[..size]);
    }
}

#[test]
fn a_streamed_event_reaches_the_client_compressed_before_the_next_one_is_sent() {
    let (_origin, gateway) = start();
    let mut socket = TcpStream::connect(gateway.listen_addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        socket,
        "GET /c/events HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let mut reader = BufReader::new(socket);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.contains("content-encoding: gzip"), "{head}");
    // The first chunk holds the first event, decodable on its own (a sync flush).
    let mut size = String::new();
    reader.read_line(&mut size).unwrap();
    let size = usize::from_str_radix(size.trim(), 16).unwrap();
    let mut piece = vec![0; size];
    reader.read_exact(&mut piece).unwrap();
    let waited = started.elapsed();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    decoder.write_all(&piece).unwrap();
    decoder.flush().unwrap();
    assert_eq!(decoder.get_ref().as_slice(), b"data: one\n\n");
    assert!(
        waited < Duration::from_millis(1000),
        "the first event came after {waited:?}: held back until the second (sent at 1.5 s)"
    );
}

#[test]
fn compressed_responses_are_counted_per_route_and_coding() {
    let (_origin, gateway) = start();
    for ae in ["gzip", "gzip", "br", "identity"] {
        curl(
            &gateway.url("/c/big.json"),
            &["-H", &format!("accept-encoding: {ae}")],
        );
    }
    let metrics = curl(&gateway.admin_url("/metrics"), &[]);
    let text = String::from_utf8_lossy(&metrics.body);
    let count = |event: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("headway_filter_events_total")
                    && l.contains("filter=\"compression\"")
                    && l.contains("route=\"/c/\"")
                    && l.contains(&format!("event=\"{event}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(count("compressed"), Some(3), "{text}");
    assert_eq!(count("compressed_gzip"), Some(2));
    assert_eq!(count("compressed_br"), Some(1));
}

#[test]
fn bad_confs_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (filter, key) in [
        ("{ name: compression, levels: { gzip: 12 } }", "levels.gzip"),
        ("{ name: compression, levels: { zstd: 0 } }", "levels.zstd"),
        ("{ name: compression, algorithms: [gzip, lz4] }", "lz4"),
        ("{ name: compression, algorithms: [] }", "algorithms"),
        ("{ name: compression, algorithms: [br, br] }", "algorithms"),
        (
            "{ name: compression, content_types: [json] }",
            "content_types[0]",
        ),
        ("{ name: compression, min_lenght: 5 }", "min_lenght"),
    ] {
        let path = dir.path().join("headway.yaml");
        std::fs::write(
            &path,
            format!(
                "gateway:\n  routes:\n    - {{ prefix: /, cluster: c, filters: [{filter}] }}\n  clusters:\n    - {{ name: c, address: 127.0.0.1, port: 80 }}\n"
            ),
        )
        .unwrap();
        let (code, _out, err) = support::run_headway(&["-t", "-c", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{filter}");
        assert!(
            err.contains("filters[0]") && err.contains(key),
            "{filter}: {err}"
        );
    }
}

#[test]
fn tls_clients_on_http2_by_alpn_get_compressed_bodies_too() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, signing_key.serialize_pem()).unwrap();
    let tls = support::free_port();
    let gateway = Gateway::builder()
        .listen(format!("127.0.0.1:{}", support::free_port()))
        .listen_tls(format!("127.0.0.1:{tls}"), &cert_pem, &key_pem)
        .routes(routes())
        .cluster(Cluster::new("origin").address("127.0.0.1", origin.port))
        .start();
    let url = format!("https://localhost:{tls}/c/big.json");
    let resolve = format!("localhost:{tls}:127.0.0.1");
    let base = [
        "--http2",
        "--cacert",
        cert_pem.to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    for coding in ["gzip", "br", "zstd"] {
        let ae = format!("accept-encoding: {coding}");
        let raw = curl(&url, &[&base[..], &["-H", &ae]].concat());
        assert_eq!(raw.version, "HTTP/2", "ALPN chose h2");
        assert_eq!(raw.header("content-encoding"), Some(coding));
        assert_eq!(raw.header("content-length"), None);
        assert_eq!(
            decode(coding, &raw.body),
            big_json(),
            "{coding} over TLS h2"
        );
    }
    drop(gateway);
}

#[test]
fn an_http_1_0_client_gets_the_body_plain_it_could_not_read_chunks() {
    let (_origin, gateway) = start();
    let mut socket = TcpStream::connect(gateway.listen_addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        socket,
        "GET /c/big.json HTTP/1.0\r\nhost: x\r\naccept-encoding: gzip\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert_eq!(&response[split + 4..], big_json().as_slice());
}
