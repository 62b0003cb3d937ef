//! Header names and values as routes list them to add or remove, each checked where it is written.

use serde::Deserialize;

/// A valid header name, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(super) struct HeaderName(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid header name")]
pub(super) struct NotAHeaderName(String);

impl TryFrom<String> for HeaderName {
    type Error = NotAHeaderName;

    fn try_from(name: String) -> Result<HeaderName, NotAHeaderName> {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Ok(HeaderName(h.as_str().to_owned())),
            Err(_) => Err(NotAHeaderName(name)),
        }
    }
}

/// A header value that can be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(super) struct HeaderText(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid header value (control characters?)")]
pub(super) struct NotAHeaderValue;

impl TryFrom<String> for HeaderText {
    type Error = NotAHeaderValue;

    fn try_from(value: String) -> Result<HeaderText, NotAHeaderValue> {
        match http::HeaderValue::from_str(&value) {
            Ok(_) => Ok(HeaderText(value)),
            Err(_) => Err(NotAHeaderValue),
        }
    }
}

/// `{ key: x-tenant, value: acme }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderToAdd {
    key: HeaderName,
    value: HeaderText,
}

pub(super) fn to_add(list: Vec<HeaderToAdd>) -> Vec<(String, String)> {
    list.into_iter().map(|h| (h.key.0, h.value.0)).collect()
}

pub(super) fn to_remove(list: Vec<HeaderName>) -> Vec<String> {
    list.into_iter().map(|h| h.0).collect()
}
