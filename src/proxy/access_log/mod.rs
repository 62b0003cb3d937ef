//! One access-log line per request, plain `key=value` pairs or JSON, to stderr or a file.
//!
//! Only the path is logged, never the query string or a header value but `x-request-id`'s, so
//! tokens passed in a URL or an `Authorization` / `Cookie` header cannot leak into logs.
//!
//! A plain line is logfmt: a value that is not plain printable ASCII without spaces, `"`, `=`
//! or `\` is written in double quotes with `\"`, `\\`, `\t`, `\n`, `\r` and `\xNN` escapes, so
//! a client's `x-request-id` or path can never add a field or a line.
//!
//! The request's worker writes its line into the log's buffer (no allocation; the time's date
//! formatted once a second) and goes on; a thread of the log's own (`access-log`, started with
//! the first line) writes the buffer, at most every 100 ms, so a slow disk or a stderr nobody
//! reads never holds up a request, and steady traffic costs no system call per line. Queue:
//! 8,192 lines; a line that finds it full is dropped and counted
//! (`headway_access_log_dropped_total`). Dropping the log, as the server does when it exits,
//! writes every queued line first (waiting at most 2 seconds).

mod line;
mod writer;

use crate::config::{AccessLogConfig, AccessLogFormat};
use prometheus::IntCounter;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
#[cfg(test)]
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use writer::{Queue, Stderr};

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

/// The access log of `gateway.access_log` (Envoy: `access_log`): writes each [`Entry`] into
/// the buffer of its writer thread.
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
        AccessLog {
            format,
            queue: Some(Queue::new(out, capacity)),
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
        let at = SystemTime::now();
        let format = self.format;
        queue.push(|p| match format {
            AccessLogFormat::Plain => line::plain(&mut p.buf, &mut p.clock, entry, at),
            AccessLogFormat::Json => line::json(&mut p.buf, &mut p.clock, entry, at),
        });
    }

    /// Waits (at most 2 seconds) until every line queued so far is written.
    pub fn flush(&self) {
        if let Some(queue) = &self.queue {
            queue.flush(Instant::now() + FLUSH_TIMEOUT);
        }
    }

    /// The entry's line as [`AccessLog::write`] writes it, at `at`.
    #[cfg(test)]
    fn format(&self, e: &Entry<'_>, at: SystemTime) -> String {
        let (mut out, mut clock) = (Vec::new(), line::Clock::default());
        match self.format {
            AccessLogFormat::Plain => line::plain(&mut out, &mut clock, e, at),
            AccessLogFormat::Json => line::json(&mut out, &mut clock, e, at),
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some(queue) = &self.queue {
            queue.close();
        }
        self.flush();
    }
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
