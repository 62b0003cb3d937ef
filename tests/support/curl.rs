//! curl, the third-party HTTP client of the policy tests: run with the test's arguments, its
//! last response (a 100-continue or an HTTP/2 exchange may print more than one head) read into
//! status, headers and body. curl is required, not skipped: `scripts/setup.sh` installs it.

use std::process::{Command, Stdio};

/// What curl got: the HTTP version, status, headers (names lowercased, in order), body.
pub struct Curled {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Curled {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl -sS --max-time 10 --noproxy '*' <args>`: the heads to stdout, the body to a file (it
/// may be binary). Fails the test when curl fails.
pub fn curl(args: &[&str]) -> Curled {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "*", "-D", "-", "-o"])
        .arg(&body)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("curl: {e} (scripts/setup.sh installs it)"));
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heads = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = heads.trim_end().rsplit("\r\n\r\n").next().unwrap_or("");
    let mut lines = last.lines();
    let mut status_line = lines.next().unwrap_or("").split_whitespace();
    let version = status_line.next().unwrap_or("").to_owned();
    let status = status_line.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Curled {
        version,
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}
