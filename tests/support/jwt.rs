//! Tokens and key sets for the `jwt` tests, made by a peer nobody here wrote: PyJWT with
//! `cryptography` (tests/interop/mint_jwt.py) writes the issuer's keys, its JWKS and signed
//! tokens into a directory.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the issuer into `dir` and returns its `tokens.json`; None (and a loud SKIP of `test`)
/// when PyJWT or cryptography is missing.
pub fn mint(dir: &Path, test: &str) -> Option<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/mint_jwt.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .args(["https://issuer.test", "orders"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("ModuleNotFoundError") => {
            super::skip(
                test,
                "PyJWT/cryptography missing: scripts/setup.sh installs them (scripts/python-peers.txt)",
            );
            return None;
        }
        Ok(out) => panic!("mint_jwt.py: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("python3: {e}"),
    }
    let path = dir.join("tokens.json");
    let tokens = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("mint_jwt.py wrote no {}: {e}", path.display()));
    let tokens = serde_json::from_str(&tokens)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    Some(tokens)
}
