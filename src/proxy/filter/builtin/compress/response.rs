//! What a response must be to be compressed (its type, its size, no `no-transform`, not yet
//! encoded), and the header changes compressing it makes (`Vary`, `ETag`, framing).

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, TRAILER,
    TRANSFER_ENCODING, VARY,
};
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::Result;

/// The default `content_types`: text and the text-like types of APIs and pages. Images (but
/// SVG), audio, video, fonts and archives are compressed already and are left out.
pub const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/x-ndjson",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "application/wasm",
    "image/svg+xml",
];

/// A `content_types` entry: `type/subtype`, `type/*`, or `type/*+suffix`.
#[derive(Debug)]
pub struct MediaRange {
    kind: String,
    subtype: Subtype,
}

#[derive(Debug)]
enum Subtype {
    Any,
    Suffix(String),
    Exact(String),
}

impl MediaRange {
    /// Parses an entry; the error says why.
    pub fn parse(text: &str) -> Result<MediaRange, String> {
        let text = text.trim().to_ascii_lowercase();
        let valid = |s: &str| !s.is_empty() && !s.contains(['*', ';', ' ', ',']);
        let Some((kind, subtype)) = text.split_once('/') else {
            return Err(format!("`{text}` is not a media type (type/subtype)"));
        };
        let subtype = match subtype {
            "*" => Subtype::Any,
            s if s.starts_with("*+") && valid(&s[2..]) => Subtype::Suffix(s[1..].to_owned()),
            s if valid(s) && !s.contains('/') => Subtype::Exact(s.to_owned()),
            _ => {
                return Err(format!(
                    "`{text}`: the subtype is `name`, `*` or `*+suffix`"
                ))
            }
        };
        if !valid(kind) {
            return Err(format!("`{text}`: the type is a name (no `*`)"));
        }
        Ok(MediaRange {
            kind: kind.to_owned(),
            subtype,
        })
    }

    fn matches(&self, kind: &str, subtype: &str) -> bool {
        kind.eq_ignore_ascii_case(&self.kind)
            && match &self.subtype {
                Subtype::Any => true,
                Subtype::Exact(s) => subtype.eq_ignore_ascii_case(s),
                Subtype::Suffix(suffix) => {
                    subtype.len() > suffix.len()
                        && subtype
                            .get(subtype.len() - suffix.len()..)
                            .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
                }
            }
    }
}

/// Whether the response's `Content-Type` is one of `types` (no `Content-Type`: no).
pub fn type_listed(resp: &ResponseHeader, types: &[MediaRange]) -> bool {
    let Some(value) = resp.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    types.iter().any(|t| t.matches(kind, subtype))
}

/// Whether a comma-separated header list (every field of the name) names `token`, ignoring
/// case and any `;` parameters: `Cache-Control: no-transform`, `TE: trailers`.
pub fn names_token(values: http::header::GetAll<'_, HeaderValue>, token: &[u8]) -> bool {
    values.iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|member| {
            let name = member.split(|b| *b == b';').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(token)
        })
    })
}

/// Whether `Cache-Control: no-transform` forbids changing the response (RFC 9111 §5.2.2.6).
pub fn no_transform(resp: &ResponseHeader) -> bool {
    names_token(resp.headers.get_all(CACHE_CONTROL), b"no-transform")
}

/// Whether the response may not be compressed whatever the client takes: it is encoded
/// already, or `no-transform` forbids it, or it announces trailers (`Trailer`: pingora ends a
/// body with its trailers or with bytes of a filter's, not both, so the compressed stream could
/// not be finished), or its `Content-Length` is under `min_length` (a body without one is
/// streamed: compressed).
pub fn left_alone(resp: &ResponseHeader, min_length: u64) -> bool {
    let headers = &resp.headers;
    if headers.contains_key(CONTENT_ENCODING) || headers.contains_key(TRAILER) || no_transform(resp)
    {
        return true;
    }
    // An unreadable length is pingora's to refuse; here it counts as small.
    headers.get(CONTENT_LENGTH).is_some_and(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_none_or(|n| n < min_length)
    })
}

/// Adds `Vary: Accept-Encoding` unless a `Vary` already names it (or is `*`).
pub fn vary_on_accept_encoding(resp: &mut ResponseHeader) -> Result<()> {
    let named = resp.headers.get_all(VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|name| {
            let name = name.trim_ascii();
            name == b"*" || name.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !named {
        resp.append_header(VARY, HeaderValue::from_static("Accept-Encoding"))?;
    }
    Ok(())
}

/// The headers of a response about to be sent in `coding`: `Content-Encoding` set; its length
/// unknown (chunked on HTTP/1.1, plain DATA frames on HTTP/2, where pingora drops the header);
/// no `Accept-Ranges` (ranges of the encoded body are not offered); a strong `ETag` weakened
/// (`W/"…"`: the bytes differ, the content does not — as nginx does), one that is not a valid
/// entity tag removed.
pub fn mark_encoded(resp: &mut ResponseHeader, coding: &'static str) -> Result<()> {
    resp.insert_header(CONTENT_ENCODING, HeaderValue::from_static(coding))?;
    resp.remove_header(&CONTENT_LENGTH);
    resp.remove_header(&ACCEPT_RANGES);
    resp.insert_header(TRANSFER_ENCODING, HeaderValue::from_static("chunked"))?;
    resp.set_version(http::Version::HTTP_11);
    weaken_etag(resp)
}

/// Makes the response's `ETag` weak (`W/"…"`): the compressed bytes are not the origin's, so a
/// strong validator would claim byte equality it does not have (RFC 9110 §8.8.1). An ETag that
/// is not a quoted string is dropped.
pub fn weaken_etag(resp: &mut ResponseHeader) -> Result<()> {
    if let Some(etag) = resp.headers.get(ETAG) {
        let bytes = etag.as_bytes();
        if bytes.starts_with(b"\"") {
            let weak = HeaderValue::from_bytes(&[b"W/", bytes].concat());
            match weak {
                Ok(weak) => resp.insert_header(ETAG, weak)?,
                Err(_) => drop(resp.remove_header(&ETAG)),
            }
        } else if !bytes.starts_with(b"W/\"") {
            resp.remove_header(&ETAG);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn defaults() -> Vec<MediaRange> {
        DEFAULT_CONTENT_TYPES
            .iter()
            .map(|t| MediaRange::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn types_match_exactly_by_type_or_by_suffix() {
        let types = defaults();
        for yes in [
            "text/html; charset=utf-8",
            "application/json",
            "Application/JSON",
            "application/problem+json",
            "image/svg+xml",
            "text/event-stream",
        ] {
            assert!(
                type_listed(&resp(&[("content-type", yes)]), &types),
                "{yes}"
            );
        }
        for no in [
            "image/png",
            "video/mp4",
            "application/zip",
            "application/octet-stream",
            "application/+json",
            "json",
            "",
        ] {
            assert!(!type_listed(&resp(&[("content-type", no)]), &types), "{no}");
        }
        assert!(!type_listed(&resp(&[]), &types), "no type: not compressed");
        for bad in ["json", "*/*", "text/*x", "a/b/c", "text/", "/json"] {
            assert!(MediaRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoded_no_transform_and_small_bodies_are_left_alone() {
        assert!(left_alone(&resp(&[("content-encoding", "gzip")]), 10));
        assert!(left_alone(
            &resp(&[("cache-control", "public, No-Transform")]),
            10
        ));
        assert!(left_alone(&resp(&[("content-length", "9")]), 10));
        assert!(!left_alone(&resp(&[("content-length", "10")]), 10));
        assert!(!left_alone(&resp(&[]), 10), "streamed: compressed");
        assert!(!left_alone(
            &resp(&[("cache-control", "no-transformer")]),
            10
        ));
    }

    #[test]
    fn token_lists_are_read_across_fields_ignoring_case_and_parameters() {
        let r = resp(&[("te", "gzip;q=0.5"), ("te", " Trailers ")]);
        assert!(names_token(r.headers.get_all("te"), b"trailers"));
        let r = resp(&[("cache-control", "public, no-transformer")]);
        assert!(!no_transform(&r));
        let r = resp(&[("cache-control", "max-age=5,NO-TRANSFORM")]);
        assert!(no_transform(&r));
    }

    #[test]
    fn vary_is_appended_once_and_etags_weakened() {
        let mut r = resp(&[("vary", "Origin")]);
        vary_on_accept_encoding(&mut r).unwrap();
        vary_on_accept_encoding(&mut r).unwrap();
        let vary: Vec<_> = r.headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
        let mut r = resp(&[("vary", "*")]);
        vary_on_accept_encoding(&mut r).unwrap();
        assert_eq!(r.headers.get_all("vary").iter().count(), 1);

        for (etag, after) in [
            ("\"abc\"", Some("W/\"abc\"")),
            ("W/\"abc\"", Some("W/\"abc\"")),
            ("abc", None),
        ] {
            let mut r = resp(&[
                ("etag", etag),
                ("content-length", "5000"),
                ("accept-ranges", "bytes"),
            ]);
            mark_encoded(&mut r, "gzip").unwrap();
            assert_eq!(
                r.headers.get("etag").map(|v| v.to_str().unwrap()),
                after,
                "{etag}"
            );
            assert!(r.headers.get("content-length").is_none());
            assert!(r.headers.get("accept-ranges").is_none());
            assert_eq!(r.headers.get("content-encoding").unwrap(), "gzip");
        }
    }
}
