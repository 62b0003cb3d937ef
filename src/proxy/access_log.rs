//! One access-log line per request, plain `key=value` pairs or JSON, to stderr or a file.
//!
//! Only the path is logged, never the query string or any header value, so tokens passed in a
//! URL or an `Authorization` / `Cookie` header cannot leak into logs.

use crate::config::{AccessLogConfig, AccessLogFormat};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::sync::Mutex;
use std::time::SystemTime;

/// What is logged of one request.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// 0 when no response reached the client.
    pub status: u16,
    pub cluster: &'a str,
    /// The last backend tried, or `-`.
    pub backend: &'a str,
    pub attempts: usize,
    /// From the first upstream attempt to the upstream's response headers; None without one.
    pub upstream_ms: Option<f64>,
    pub duration_ms: f64,
    pub request_id: &'a str,
    pub bytes_received: usize,
    pub bytes_sent: usize,
    pub error: Option<&'a str>,
}

enum Sink {
    Stderr,
    File(Mutex<LineWriter<File>>),
}

pub struct AccessLog {
    format: AccessLogFormat,
    sink: Option<Sink>,
}

impl AccessLog {
    /// Opens the log file (appending) when the conf names one.
    pub fn open(config: &AccessLogConfig) -> Result<AccessLog, String> {
        let sink = match (&config.path, config.enabled) {
            (_, false) => None,
            (None, true) => Some(Sink::Stderr),
            (Some(path), true) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        format!(
                            "gateway.access_log.path: cannot open {}: {e}",
                            path.display()
                        )
                    })?;
                Some(Sink::File(Mutex::new(LineWriter::new(file))))
            }
        };
        Ok(AccessLog {
            format: config.format,
            sink,
        })
    }

    /// Whether lines are written at all: the request path skips building an entry otherwise.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    pub fn write(&self, entry: &Entry<'_>) {
        let Some(sink) = &self.sink else {
            return;
        };
        let line = self.format(entry, SystemTime::now());
        let written = match sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(file) => crate::lock(file).write_all(line.as_bytes()),
        };
        if let Err(e) = written {
            log::warn!("access log: cannot write: {e}");
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
                let upstream = e
                    .upstream_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3}"));
                let error = e
                    .error
                    .map(|err| format!(" error=\"{}\"", err.replace('"', "'")))
                    .unwrap_or_default();
                format!(
                    "{time} client={} method={} path={} status={} cluster={} backend={} attempts={} upstream_ms={upstream} duration_ms={:.3} request_id={} bytes_received={} bytes_sent={}{error}\n",
                    e.client,
                    e.method,
                    e.path,
                    e.status,
                    e.cluster,
                    e.backend,
                    e.attempts,
                    e.duration_ms,
                    e.request_id,
                    e.bytes_received,
                    e.bytes_sent,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        AccessLog { format, sink: None }
    }

    #[test]
    fn plain_lines_are_key_value_pairs() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let line = log(AccessLogFormat::Plain).format(&entry(), at);
        assert_eq!(
            line,
            "2023-11-14T22:13:20.123Z client=10.0.0.9 method=GET path=/service/1 status=200 cluster=service1 backend=10.1.2.3:8080 attempts=1 upstream_ms=1.250 duration_ms=1.500 request_id=abc bytes_received=0 bytes_sent=42\n"
        );
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
}
