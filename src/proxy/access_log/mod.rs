//! One access-log line per request, plain `key=value` pairs or JSON, to stderr or a file.
//!
//! Only the path is logged, never the query string or a header value but `x-request-id`'s, so
//! tokens passed in a URL or an `Authorization` / `Cookie` header cannot leak into logs.
//!
//! A plain line is logfmt: a value that is not plain printable ASCII without spaces, `"`, `=`
//! or `\` is written in double quotes with `\"`, `\\`, `\t`, `\n`, `\r` and `\xNN` escapes, so
//! a client's `x-request-id` or path can never add a field or a line.
//!
//! The request's worker only formats its line and queues it; a thread of the log's own
//! (`access-log`, started with the first line) writes the queue, so a slow disk or a stderr
//! nobody reads never holds up a request. Queue: 8,192 lines; a line that finds it full is
//! dropped and counted (`headway_access_log_dropped_total`). Dropping the log, as the server
//! does when it exits, writes every queued line first (waiting at most 2 seconds).

mod writer;

use crate::config::{AccessLogConfig, AccessLogFormat};
use prometheus::IntCounter;
use serde::Serialize;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use writer::{Message, Queue, Stderr};

/// Lines queued for the writer thread at most; more are dropped and counted.
const QUEUE_LINES: usize = 8_192;
/// How long [`AccessLog::flush`] waits for the writer thread.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What is logged of one request: one key of the line per field, in this order after `time`;
/// `-` where a text is not known (an answer given before the request was read whole).
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// The client's IP address.
    pub client: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request target's path, never its query.
    pub path: &'a str,
    /// The status sent to the client; 499 when the client closed the request before its
    /// answer, 0 when no response reached it otherwise.
    pub status: u16,
    /// The route's cluster, or `-` (no route, or a direct response).
    pub cluster: &'a str,
    /// The last backend tried, or `-`.
    pub backend: &'a str,
    /// Upstream attempts made, retries included.
    pub attempts: usize,
    /// From the first upstream attempt to the upstream's response headers; None without one.
    pub upstream_ms: Option<f64>,
    /// The whole request, from its arrival to its end, in milliseconds.
    pub duration_ms: f64,
    /// The request id passed upstream: the client's `x-request-id`, or a generated UUID.
    pub request_id: &'a str,
    /// Request body bytes read from the client.
    pub bytes_received: usize,
    /// Response body bytes sent to the client.
    pub bytes_sent: usize,
    /// Why the request failed or was refused; `None` when it did not.
    pub error: Option<&'a str>,
}

/// The access log of `gateway.access_log` (Envoy: `access_log`): formats each [`Entry`] on
/// the request's worker and hands the line to its writer thread.
pub struct AccessLog {
    format: AccessLogFormat,
    /// None when the log is off.
    queue: Option<Queue>,
}

impl AccessLog {
    /// Opens the log file (appending) when the conf names one. The writer thread starts with
    /// the first line, after pingora has forked (`-d`): a thread does not survive a fork.
    pub fn open(config: &AccessLogConfig) -> Result<AccessLog, String> {
        if !config.enabled {
            return Ok(AccessLog {
                format: config.format,
                queue: None,
            });
        }
        let out: Box<dyn Write + Send> = match &config.path {
            None => Box::new(Stderr),
            Some(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        format!(
                            "gateway.access_log.path: cannot open {}: {e}",
                            path.display()
                        )
                    })?,
            ),
        };
        Ok(AccessLog::to_writer(config.format, out, QUEUE_LINES))
    }

    fn to_writer(format: AccessLogFormat, out: Box<dyn Write + Send>, capacity: usize) -> Self {
        let (lines, pending) = crossbeam_channel::bounded(capacity);
        AccessLog {
            format,
            queue: Some(Queue {
                lines,
                writer: Mutex::new(Some((pending, out))),
                started: OnceLock::new(),
                dropped: None,
                warned: AtomicBool::new(false),
            }),
        }
    }

    /// Counts dropped lines in `counter` (`headway_access_log_dropped_total`); without one a
    /// drop is only logged, once.
    pub fn counting_drops_in(mut self, counter: IntCounter) -> Self {
        if let Some(queue) = &mut self.queue {
            queue.dropped = Some(counter);
        }
        self
    }

    /// Whether lines are written at all: the request path skips building an entry otherwise.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues the entry's line for the writer thread; drops and counts it if the queue is full.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(queue) = &self.queue else {
            return;
        };
        queue.push(self.format(entry, SystemTime::now()));
    }

    /// Waits (at most 2 seconds) until every line queued so far is written.
    pub fn flush(&self) {
        let Some(queue) = &self.queue else {
            return;
        };
        if queue.started.get() != Some(&true) {
            return;
        }
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let (done, written) = crossbeam_channel::bounded(1);
        if queue
            .lines
            .send_deadline(Message::Flush(done), deadline)
            .is_ok()
        {
            let _ = written.recv_deadline(deadline);
        }
    }

    fn format(&self, e: &Entry<'_>, at: SystemTime) -> String {
        let time = humantime::format_rfc3339_millis(at);
        match self.format {
            AccessLogFormat::Json => {
                #[derive(Serialize)]
                struct Line<'a> {
                    time: String,
                    #[serde(flatten)]
                    entry: &'a Entry<'a>,
                }
                let line = Line {
                    time: time.to_string(),
                    entry: e,
                };
                serde_json::to_string(&line).unwrap_or_default() + "\n"
            }
            AccessLogFormat::Plain => {
                let mut line = String::with_capacity(256);
                // Writing to a String cannot fail.
                let _ = write!(line, "{time}");
                for (key, value) in [("client", e.client), ("method", e.method), ("path", e.path)] {
                    push_field(&mut line, key, value);
                }
                let _ = write!(line, " status={}", e.status);
                push_field(&mut line, "cluster", e.cluster);
                push_field(&mut line, "backend", e.backend);
                let _ = write!(line, " attempts={}", e.attempts);
                match e.upstream_ms {
                    Some(ms) => {
                        let _ = write!(line, " upstream_ms={ms:.3}");
                    }
                    None => line.push_str(" upstream_ms=-"),
                }
                let _ = write!(line, " duration_ms={:.3}", e.duration_ms);
                push_field(&mut line, "request_id", e.request_id);
                let _ = write!(
                    line,
                    " bytes_received={} bytes_sent={}",
                    e.bytes_received, e.bytes_sent
                );
                if let Some(error) = e.error {
                    line.push_str(" error=");
                    push_quoted(&mut line, error);
                }
                line.push('\n');
                line
            }
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// ` key=value`, the value bare when a logfmt reader reads it back as it is, else quoted.
fn push_field(line: &mut String, key: &str, value: &str) {
    line.push(' ');
    line.push_str(key);
    line.push('=');
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\'));
    if bare {
        line.push_str(value);
    } else {
        push_quoted(line, value);
    }
}

/// `"value"`, with every byte outside printable ASCII, `"` and `\` escaped.
fn push_quoted(line: &mut String, value: &str) {
    line.push('"');
    for b in value.bytes() {
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            b' '..=b'~' => line.push(char::from(b)),
            _ => {
                let _ = write!(line, "\\x{b:02x}");
            }
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry() -> Entry<'static> {
        Entry {
            client: "10.0.0.9",
            method: "GET",
            path: "/service/1",
            status: 200,
            cluster: "service1",
            backend: "10.1.2.3:8080",
            attempts: 1,
            upstream_ms: Some(1.25),
            duration_ms: 1.5,
            request_id: "abc",
            bytes_received: 0,
            bytes_sent: 42,
            error: None,
        }
    }

    fn log(format: AccessLogFormat) -> AccessLog {
        AccessLog {
            format,
            queue: None,
        }
    }

    const AT_MS: u64 = 1_700_000_000_123;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(AT_MS)
    }

    #[test]
    fn plain_lines_are_key_value_pairs() {
        let line = log(AccessLogFormat::Plain).format(&entry(), at());
        assert_eq!(
            line,
            "2023-11-14T22:13:20.123Z client=10.0.0.9 method=GET path=/service/1 status=200 cluster=service1 backend=10.1.2.3:8080 attempts=1 upstream_ms=1.250 duration_ms=1.500 request_id=abc bytes_received=0 bytes_sent=42\n"
        );
    }

    #[test]
    fn client_values_are_quoted_so_they_cannot_add_fields_or_lines() {
        let forged = Entry {
            path: "/a=b",
            request_id: "x status=500 client=1.2.3.4\nfake line \"q\" \\ \t\u{7f}é",
            upstream_ms: None,
            error: Some("said \"no\""),
            ..entry()
        };
        let line = log(AccessLogFormat::Plain).format(&forged, at());
        assert_eq!(
            line,
            "2023-11-14T22:13:20.123Z client=10.0.0.9 method=GET path=\"/a=b\" status=200 cluster=service1 backend=10.1.2.3:8080 attempts=1 upstream_ms=- duration_ms=1.500 request_id=\"x status=500 client=1.2.3.4\\nfake line \\\"q\\\" \\\\ \\t\\x7f\\xc3\\xa9\" bytes_received=0 bytes_sent=42 error=\"said \\\"no\\\"\"\n"
        );
        let empty = Entry {
            request_id: "",
            ..entry()
        };
        let line = log(AccessLogFormat::Plain).format(&empty, at());
        assert!(line.contains(" request_id=\"\" "), "{line}");
    }

    #[test]
    fn json_lines_parse_back() {
        let line = log(AccessLogFormat::Json).format(&entry(), SystemTime::now());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["cluster"], "service1");
        assert_eq!(v["upstream_ms"], 1.25);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
    }

    /// Collects what is written; each `write` first waits while `gate` is closed.
    #[derive(Clone, Default)]
    struct Collect {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Collect {
        fn closed() -> Collect {
            let c = Collect::default();
            *c.gate.0.lock().unwrap() = true;
            c
        }

        fn open_gate(&self) {
            *self.gate.0.lock().unwrap() = false;
            self.gate.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut closed = self.gate.0.lock().unwrap();
            while *closed {
                closed = self.gate.1.wait(closed).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn numbered(i: usize) -> Entry<'static> {
        Entry {
            attempts: i,
            ..entry()
        }
    }

    #[test]
    fn a_full_queue_drops_lines_and_counts_them_without_blocking() {
        let out = Collect::closed();
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let log = AccessLog::to_writer(AccessLogFormat::Plain, Box::new(out.clone()), 4)
            .counting_drops_in(dropped.clone());
        // The writer takes line 0 and blocks writing it: the queue is empty again.
        log.write(&numbered(0));
        let blocked = std::time::Instant::now() + Duration::from_secs(5);
        while out.writes.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < blocked,
                "the writer never wrote"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Four lines fill the queue; three more find it full. None of this waits.
        let started = std::time::Instant::now();
        for i in 1..=7 {
            log.write(&numbered(i));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(dropped.get(), 3);
        out.open_gate();
        log.flush();
        let attempts: Vec<String> = out
            .text()
            .lines()
            .map(|l| {
                l.split(" attempts=")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(attempts, ["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn dropping_the_log_writes_every_queued_line_first() {
        let out = Collect::default();
        let log = AccessLog::to_writer(AccessLogFormat::Json, Box::new(out.clone()), QUEUE_LINES);
        for i in 0..5_000 {
            log.write(&numbered(i));
        }
        drop(log);
        let text = out.text();
        assert_eq!(text.lines().count(), 5_000);
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["attempts"], 4_999);
    }

    #[test]
    fn an_access_log_that_is_off_writes_nothing() {
        let config = AccessLogConfig {
            enabled: false,
            path: None,
            format: AccessLogFormat::Plain,
        };
        let log = AccessLog::open(&config).unwrap();
        assert!(!log.enabled());
        log.write(&entry());
        log.flush();
    }
}
