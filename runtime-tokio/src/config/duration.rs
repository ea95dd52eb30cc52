//! Go duration syntax (`time.ParseDuration`): `2s`, `500ms`, `1m30s`, `1.5h`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is not a sequence of numbers each followed by a unit.
    #[error("must be a duration with a unit, such as 30s, 500ms or 1m30s")]
    Invalid,
    /// A number has no unit (bare `120`).
    #[error("must have a unit (ns, us, ms, s, m or h), such as 30s")]
    MissingUnit,
    /// A number has a unit this syntax does not know.
    #[error("has unknown unit {0:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    /// The duration does not fit in 64-bit nanoseconds.
    #[error("is out of range")]
    OutOfRange,
    /// The duration is negative.
    #[error("must not be negative")]
    Negative,
}

/// Parses a non-negative duration in Go syntax: one or more decimal numbers, each with an
/// optional fraction and a unit among `ns`, `us` (or `µs`), `ms`, `s`, `m` and `h`.
///
/// A sign is accepted as Go does, but a negative result is refused. The bare string `0` is
/// accepted, as Go accepts it; any other number needs a unit.
///
/// # Errors
/// [`DurationError`] saying why the text is not a non-negative duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) | None => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        let (fraction, after_fraction) = match after_whole.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after_whole),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(DurationError::Invalid);
        }
        let unit_length = after_fraction
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_fraction.len());
        let (unit, after_unit) = after_fraction.split_at(unit_length);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit);
        }
        let unit_nanos = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit(unit.into()))?;
        total = total
            .checked_add(number_nanos(whole, fraction, unit_nanos)?)
            .ok_or(DurationError::OutOfRange)?;
        if total > MAX_NANOS {
            return Err(DurationError::OutOfRange);
        }
        rest = after_unit;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative);
    }
    let seconds = u64::try_from(total / NANOS_PER_SECOND).map_err(|_| DurationError::OutOfRange)?;
    let nanos = u32::try_from(total % NANOS_PER_SECOND).map_err(|_| DurationError::OutOfRange)?;
    Ok(Duration::new(seconds, nanos))
}

/// Formats a duration the way Go's `Duration.String` does (`1m30s`, `500ms`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    let nanos = duration.as_nanos();
    if nanos < NANOS_PER_SECOND {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let hours = nanos / (3_600 * NANOS_PER_SECOND);
    let minutes = nanos / (60 * NANOS_PER_SECOND) % 60;
    let seconds = nanos % (60 * NANOS_PER_SECOND);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    text.push_str(&format!("{}s", decimal(seconds, NANOS_PER_SECOND)));
    text
}

/// `value / scale` as a decimal without trailing zeros.
fn decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Splits leading ASCII digits off `text`.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Nanoseconds of `whole.fraction` units, truncated toward zero to the nanosecond.
///
/// The fraction is exact however many digits it has: reading the digits from the last one,
/// `floor(unit * 0.d1d2…) = floor((unit * d1 + floor(unit * 0.d2…)) / 10)`, so the running value
/// stays below `unit` and nothing can overflow. (Go multiplies in floating point and may differ in
/// the last nanosecond for fractions longer than a float holds; exact truncation is the rule here.)
fn number_nanos(whole: &str, fraction: &str, unit_nanos: u128) -> Result<u128, DurationError> {
    let mut value: u128 = 0;
    for digit in whole.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit - b'0')))
            .filter(|v| *v <= MAX_NANOS)
            .ok_or(DurationError::OutOfRange)?;
    }
    let whole_nanos = value
        .checked_mul(unit_nanos)
        .ok_or(DurationError::OutOfRange)?;
    let fraction_nanos = fraction.bytes().rev().fold(0, |tail, digit| {
        (u128::from(digit - b'0') * unit_nanos + tail) / 10
    });
    whole_nanos
        .checked_add(fraction_nanos)
        .ok_or(DurationError::OutOfRange)
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// Go durations are signed 64-bit nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_duration_strings_parse_to_their_value() {
        let cases = [
            ("2s", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3_600)),
            ("1.5h", Duration::from_secs(5_400)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("+3m", Duration::from_secs(180)),
            ("-0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_refused_with_a_reason() {
        assert_eq!(parse_duration("120"), Err(DurationError::MissingUnit));
        assert_eq!(parse_duration(""), Err(DurationError::Invalid));
        assert_eq!(parse_duration("s"), Err(DurationError::Invalid));
        assert_eq!(parse_duration(".s"), Err(DurationError::Invalid));
        assert_eq!(parse_duration(" 2s"), Err(DurationError::Invalid));
        assert_eq!(
            parse_duration("2 s"),
            Err(DurationError::UnknownUnit(" s".into()))
        );
        assert_eq!(
            parse_duration("2d"),
            Err(DurationError::UnknownUnit("d".into()))
        );
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("9999999999h"),
            Err(DurationError::OutOfRange)
        );
    }

    #[test]
    fn long_fractions_are_exact_and_never_overflow() {
        // Fuzz finding (issue 15): 56 fraction digits in hours overflowed the old arithmetic.
        // 0.8111…1888…h is a hair above 73/90 h = 2920 s, so it truncates to exactly 2920 s.
        let finding = format!(".8{}{}h", "1".repeat(46), "8".repeat(9));
        assert_eq!(
            parse_duration(&finding).unwrap(),
            Duration::from_secs(2_920)
        );
        // A hair below a whole nanosecond stays below it, however long the fraction.
        let just_below = format!("1.{}h", "9".repeat(200));
        assert_eq!(
            parse_duration(&just_below).unwrap(),
            Duration::from_nanos(7_199_999_999_999)
        );
        assert_eq!(
            parse_duration("0.333333333333333333333333333333333s").unwrap(),
            Duration::from_nanos(333_333_333)
        );
        for text in [finding, just_below] {
            let parsed = parse_duration(&text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)).unwrap(), parsed);
        }
    }

    #[test]
    fn durations_format_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1.5s");
    }
}
