//! Durations as the conf file writes them: `250ms`, `5s`, `0.25s`, `1m`, `1h`.

use std::time::Duration;

/// Parses a duration with a mandatory unit (`ms`, `s`, `m`, `h`). A bare number is refused
/// because `5` could mean seconds or milliseconds; the error says what to write instead.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. `{text}s` or `{text}ms`"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: expected a number then ms, s, m or h"))?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`: use ms, s, m or h"
            ))
        }
    };
    let seconds = value * seconds_per_unit;
    // A day is far beyond any sane timeout or refresh rate; it also keeps f64 → Duration exact.
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("`{text}` is out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(seconds))
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
        assert!(parse("5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn displays_round_trip() {
        for text in ["250ms", "5s", "1500ms"] {
            assert_eq!(display(parse(text).unwrap()), text);
        }
    }
}
