//! The `jwt` filter's verification keys: a JWKS file and inline keys, read when the filter is
//! built (so on every conf reload), or a JWKS fetched (`jwt_remote`); each bound to one
//! algorithm.
//!
//! A key verifies only tokens of its own algorithm: a JWKS key's `alg`, or the one its type
//! implies (RSA: RS256, EC P-256: ES256, P-384: ES384, oct: HS256, OKP: EdDSA); an inline key's
//! `alg`. So an HS256 token "signed" with an RSA public key as its secret finds no HS256 key.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An inline key: `{ kid, alg, file }`; `file` holds a PEM public key, or an HMAC secret (its
/// bytes, less one trailing newline).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineKey {
    #[serde(default)]
    kid: Option<String>,
    alg: String,
    file: PathBuf,
}

/// The keys a filter verifies with now. `serial` tells one set from the next: a token cached
/// as verified is good under the set that verified it only.
pub struct KeySet {
    /// The keys.
    pub keys: Vec<Key>,
    /// Which set this is (0: the conf's own keys; a remote JWKS counts up from 1).
    pub serial: u64,
}

/// One verification key.
pub struct Key {
    /// Matches a token's `kid`; a key without one is tried for any `kid`.
    pub kid: Option<String>,
    /// The only algorithm it verifies.
    pub alg: Algorithm,
    /// The key itself.
    pub key: DecodingKey,
}

/// The algorithms a conf may name.
const ALGORITHMS: &str = "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
                          ES384, EdDSA";

/// Shortest HMAC secret accepted: RFC 7518 §3.2 asks for one as long as the hash.
const MIN_SECRET: usize = 32;

/// Reads the keys of `jwks_file` and `inline`; every error names its key and file.
pub fn load(jwks_file: Option<&Path>, inline: &[InlineKey]) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    if let Some(path) = jwks_file {
        keys.extend(read_jwks(path)?);
    }
    for (i, k) in inline.iter().enumerate() {
        keys.push(read_inline(&format!("keys[{i}]"), k)?);
    }
    if keys.is_empty() {
        return Err("jwks_file, keys: no verification key: every token would be refused".into());
    }
    Ok(keys)
}

fn read_inline(at: &str, k: &InlineKey) -> Result<Key, String> {
    let alg = Algorithm::from_str(&k.alg).map_err(|_| {
        format!(
            "{at}.alg: `{}` is not an algorithm headway verifies ({ALGORITHMS}; never `none`)",
            k.alg
        )
    })?;
    let path = k.file.display();
    let bytes =
        std::fs::read(&k.file).map_err(|e| format!("{at}.file: cannot read {path}: {e}"))?;
    let key = match alg.family() {
        AlgorithmFamily::Hmac => {
            let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "{at}.file: {path}: an {alg:?} secret needs at least {MIN_SECRET} bytes"
                ));
            }
            DecodingKey::from_secret(secret)
        }
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&bytes),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&bytes),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&bytes),
    }
    .map_err(|e| format!("{at}.file: {path} is not a PEM public key for {alg:?}: {e}"))?;
    Ok(Key {
        kid: k.kid.clone(),
        alg,
        key,
    })
}

fn read_jwks(path: &Path) -> Result<Vec<Key>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("jwks_file: cannot read {shown}: {e}"))?;
    let (keys, unusable) = parse_jwks(&text).map_err(|e| format!("jwks_file: {shown} {e}"))?;
    match unusable.into_iter().next() {
        Some(e) => Err(format!("jwks_file: {shown}: {e}")),
        None => Ok(keys),
    }
}

/// The verification keys of a JWKS document (`use: enc` keys skipped), and why each key that
/// cannot be used is not (`keys[2]: …`); an error if `text` is no JWKS at all.
pub fn parse_jwks(text: &str) -> Result<(Vec<Key>, Vec<String>), String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("is not a JWKS (RFC 7517): {e}"))?;
    let mut keys = Vec::new();
    let mut unusable = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        match read_jwk(jwk) {
            Ok(key) => keys.push(key),
            Err(e) => unusable.push(format!("keys[{i}]{e}")),
        }
    }
    Ok((keys, unusable))
}

/// One JWK as a key; the error starts with the key's field (`.alg: …`) or `: `.
fn read_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Key, String> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKey(_) => Some(Algorithm::HS256),
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(
            Algorithm::try_from(a)
                .map_err(|_| format!(".alg: `{a}` is not one of {ALGORITHMS}"))?,
        ),
        None => implied,
    };
    let Some(alg) = alg else {
        return Err(": a key type or curve headway cannot verify with".into());
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!(": not a usable key: {e}"))?;
    if key.family() != alg.family() {
        return Err(format!(".alg: {alg:?} does not fit the key's type"));
    }
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_and_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let inline = |alg: &str, file: &Path| InlineKey {
            kid: None,
            alg: alg.into(),
            file: file.to_path_buf(),
        };
        let e = load(None, &[inline("RS256", &missing)]).err().unwrap();
        assert!(
            e.starts_with("keys[0].file: cannot read ") && e.contains("nope.pem"),
            "{e}"
        );
        let garbage = dir.path().join("bad.pem");
        std::fs::write(&garbage, "not a key\n").unwrap();
        let e = load(None, &[inline("ES256", &garbage)]).err().unwrap();
        assert!(
            e.starts_with("keys[0].file: ") && e.contains("bad.pem"),
            "{e}"
        );
        let e = load(None, &[inline("none", &garbage)]).err().unwrap();
        assert!(e.starts_with("keys[0].alg: `none`"), "{e}");
        let e = load(None, &[inline("HS256", &garbage)]).err().unwrap();
        assert!(e.contains("at least 32 bytes"), "{e}");
        let e = load(Some(&missing), &[]).err().unwrap();
        assert!(e.starts_with("jwks_file: cannot read "), "{e}");
        std::fs::write(
            &garbage,
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"RS256"}]}"#,
        )
        .unwrap();
        let e = load(Some(&garbage), &[]).err().unwrap();
        assert!(e.contains("keys[0].alg: RS256 does not fit"), "{e}");
    }
}
