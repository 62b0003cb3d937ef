//! Durations as the conf file writes them: `250ms`, `5s`, `0.25s`, `1m`, `1h`.

use super::errors::Errors;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A day is far beyond any sane timeout or refresh rate.
const LONGEST: Duration = Duration::from_secs(86_400);

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// A number without a unit, such as `5`.
    #[error("`{0}` has no unit: write e.g. `{0}s` or `{0}ms`")]
    NoUnit(String),
    /// No number before the unit, or more than one decimal point.
    #[error("`{0}` is not a duration: expected a number then ms, s, m or h")]
    NotADuration(String),
    /// A unit other than `ms`, `s`, `m`, `h`.
    #[error("`{text}` has an unknown unit `{unit}`: use ms, s, m or h")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// What follows the number.
        unit: String,
    },
    /// A number and a known unit that humantime still cannot read; `reason` says why.
    #[error("`{text}`: {reason}")]
    Unreadable {
        /// The text as written.
        text: String,
        /// humantime's reason.
        reason: humantime::DurationError,
    },
    /// Longer than a day.
    #[error("`{0}` is out of range (0 to 24h)")]
    OutOfRange(String),
}

/// Parses a number and one of the units `ms`, `s`, `m`, `h`; humantime reads it. Its other
/// forms are refused: a bare `5` could mean seconds or milliseconds, and `5sec` or `1h 30m`
/// would be a second way to write what the conf writes one way.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::NoUnit(text.to_owned()))?;
    let (number, unit) = text.split_at(split);
    // humantime wants a digit on both sides of a decimal point.
    let number = match number.trim_end_matches('.') {
        n if n.starts_with('.') => format!("0{n}"),
        n => n.to_owned(),
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(DurationError::NotADuration(text.to_owned()));
    }
    if !["ms", "s", "m", "h"].contains(&unit) {
        return Err(DurationError::UnknownUnit {
            text: text.to_owned(),
            unit: unit.to_owned(),
        });
    }
    let duration = humantime::parse_duration(&format!("{number}{unit}")).map_err(|reason| {
        DurationError::Unreadable {
            text: text.to_owned(),
            reason,
        }
    })?;
    if duration > LONGEST {
        return Err(DurationError::OutOfRange(text.to_owned()));
    }
    Ok(duration)
}

/// Formats a duration the way the conf file writes it, for messages and `/clusters`.
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A duration that must not be zero (a timeout, an interval), `default` when the conf has none.
/// Zero is reported at `path`; the section that asked is refused then, so the default returned
/// in its place is never used.
pub(crate) fn positive_or(
    value: Option<ConfDuration>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Duration {
    positive(value, path, errors).unwrap_or(default)
}

/// A duration that must not be zero, when the conf gives one.
pub(crate) fn positive(
    value: Option<ConfDuration>,
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let ConfDuration(d) = value?;
    if d.is_zero() {
        errors.push(path, "must be greater than zero");
        return None;
    }
    Some(d)
}

/// A duration as the conf writes it: a string such as `5s`. A bare number is read too, so that
/// the error says it lacks a unit instead of that it is not a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl DurationVisitor {
    fn text<E: de::Error>(text: &str) -> Result<ConfDuration, E> {
        parse(text).map(ConfDuration).map_err(E::custom)
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = ConfDuration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as `250ms` or `5s`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ConfDuration, E> {
        Self::text(text)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<ConfDuration, E> {
        Self::text(&n.to_string())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<ConfDuration, E> {
        Self::text(&n.to_string())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<ConfDuration, E> {
        Self::text(&n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse(" 1s "), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["5", "", "s", "5sec", "-1s", "1.2.3s", "5 s", "25h", "ms5"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse("5").unwrap_err().to_string().contains("no unit"));
    }

    #[test]
    fn reads_a_decimal_point_on_either_side_as_before_humantime() {
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5.s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("24h"), Ok(LONGEST));
    }

    #[test]
    fn displays_round_trip() {
        for text in ["250ms", "5s", "1500ms"] {
            assert_eq!(display(parse(text).unwrap()), text);
        }
    }
}
