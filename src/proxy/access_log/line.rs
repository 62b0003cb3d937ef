//! An access-log line written straight into the writer's buffer: no allocation, the time's
//! date and second formatted once a second, numbers by `itoa`, clean values copied whole.

use super::Entry;
use serde::Serialize;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time of a line, `2023-11-14T22:13:20.123Z`: everything up to the second's `.` is kept
/// from the previous line of the same second, only the milliseconds are written anew.
#[derive(Default)]
pub(super) struct Clock {
    /// The second `prefix` shows, since the epoch; None before the first line.
    second: Option<u64>,
    /// `2023-11-14T22:13:20.`
    prefix: Vec<u8>,
}

impl Clock {
    /// Appends `at` as RFC 3339 in UTC with milliseconds (truncated, as humantime writes them).
    pub(super) fn push(&mut self, out: &mut Vec<u8>, at: SystemTime) {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second != Some(second) {
            self.prefix.clear();
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            // `2023-11-14T22:13:20Z`; nothing after year 9999 (humantime writes nothing then).
            let _ = write!(self.prefix, "{}", humantime::format_rfc3339_seconds(whole));
            self.prefix.pop();
            self.prefix.push(b'.');
            self.second = Some(second);
        }
        out.extend_from_slice(&self.prefix);
        let ms = since.subsec_millis();
        out.extend_from_slice(&[digit(ms / 100), digit(ms / 10 % 10), digit(ms % 10), b'Z']);
    }
}

fn digit(d: u32) -> u8 {
    // d < 10
    b'0' + (d % 10) as u8
}

/// A plain line: `time key=value …\n`, each value bare when a logfmt reader reads it back as it
/// is, else quoted (see the module's doc).
pub(super) fn plain(out: &mut Vec<u8>, clock: &mut Clock, e: &Entry<'_>, at: SystemTime) {
    clock.push(out, at);
    push_field(out, b" client=", e.client);
    push_field(out, b" method=", e.method);
    push_field(out, b" path=", e.path);
    push_number(out, b" status=", e.status);
    push_field(out, b" cluster=", e.cluster);
    push_field(out, b" backend=", e.backend);
    push_number(out, b" attempts=", e.attempts);
    out.extend_from_slice(b" upstream_ms=");
    match e.upstream_ms {
        Some(ms) => push_ms(out, ms),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" duration_ms=");
    push_ms(out, e.duration_ms);
    push_field(out, b" request_id=", e.request_id);
    push_number(out, b" bytes_received=", e.bytes_received);
    push_number(out, b" bytes_sent=", e.bytes_sent);
    if let Some(error) = e.error {
        out.extend_from_slice(b" error=");
        push_quoted(out, error.as_bytes());
    }
    out.push(b'\n');
}

/// A JSON line: the entry's fields after `time`, then `\n`. Nothing is written if serde_json
/// fails (it cannot on these fields).
pub(super) fn json(out: &mut Vec<u8>, clock: &mut Clock, e: &Entry<'_>, at: SystemTime) {
    #[derive(Serialize)]
    struct Line<'a> {
        time: &'a str,
        #[serde(flatten)]
        entry: &'a Entry<'a>,
    }
    let start = out.len();
    let mut time = Vec::with_capacity(24);
    clock.push(&mut time, at);
    let line = Line {
        time: std::str::from_utf8(&time).unwrap_or("-"),
        entry: e,
    };
    match serde_json::to_writer(&mut *out, &line) {
        Ok(()) => out.push(b'\n'),
        Err(_) => out.truncate(start),
    }
}

fn push_number(out: &mut Vec<u8>, key: &[u8], n: impl itoa::Integer) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals, as `{:.3}` writes them (a value within half a nanosecond
/// of a tie may round the other way).
fn push_ms(out: &mut Vec<u8>, ms: f64) {
    if !(0.0..1e12).contains(&ms) {
        let _ = write!(out, "{ms:.3}");
        return;
    }
    // In range: the cast neither saturates nor loses the sign.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let micros = (ms * 1000.0).round() as u64;
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u32;
    out.extend_from_slice(&[
        b'.',
        digit(frac / 100),
        digit(frac / 10 % 10),
        digit(frac % 10),
    ]);
}

/// The bytes a value may hold and stay bare: printable ASCII but space, `"`, `=` and `\`.
const BARE: [bool; 256] = {
    let mut bare = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        bare[b] = !matches!(b as u8, b'"' | b'=' | b'\\');
        b += 1;
    }
    bare
};

/// ` key=value`, the value bare when a logfmt reader reads it back as it is, else quoted.
fn push_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    let value = value.as_bytes();
    if !value.is_empty() && value.iter().all(|&b| BARE[usize::from(b)]) {
        out.extend_from_slice(value);
    } else {
        push_quoted(out, value);
    }
}

/// `"value"`, with every byte outside printable ASCII, `"` and `\` escaped; runs of bytes that
/// need none are copied whole.
fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    let mut rest = value;
    while let Some(at) = rest
        .iter()
        .position(|&b| !matches!(b, b' '..=b'~') || matches!(b, b'"' | b'\\'))
    {
        out.extend_from_slice(&rest[..at]);
        match rest[at] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> String {
        let mut out = Vec::new();
        push_ms(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn milliseconds_read_as_format_writes_them() {
        for v in [
            0.0,
            0.0004,
            0.0006,
            1.25,
            1.5,
            12.3456,
            999.9996,
            1234.5678,
            86_400_000.0,
        ] {
            assert_eq!(ms(v), format!("{v:.3}"), "{v}");
        }
        assert_eq!(ms(f64::NAN), "NaN");
        assert_eq!(ms(-1.0), "-1.000");
    }

    #[test]
    fn the_time_is_rfc3339_with_milliseconds_across_seconds() {
        let mut clock = Clock::default();
        for at_ms in [
            0u64,
            999,
            1_000,
            1_700_000_000_123,
            1_700_000_000_999,
            1_700_000_001_000,
        ] {
            let at = UNIX_EPOCH + Duration::from_millis(at_ms) + Duration::from_nanos(999_999);
            let mut out = Vec::new();
            clock.push(&mut out, at);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                humantime::format_rfc3339_millis(at).to_string()
            );
        }
    }

    #[test]
    fn quoting_copies_clean_runs_and_escapes_the_rest() {
        let mut out = Vec::new();
        push_quoted(&mut out, "ab\"c\\d\n\r\t\u{1}é end".as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"ab\\\"c\\\\d\\n\\r\\t\\x01\\xc3\\xa9 end\""
        );
    }
}
