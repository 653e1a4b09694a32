//! Durations as people write them: `500ms`, `30s`, `5m`, `1h30m`, `2d`.
//!
//! [`parse_duration`] reads them for flags and for the relay's `since` parameter; [`format_duration`]
//! writes them back the same way for messages. Nothing here knows about requests or flags.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration; write it like 30s, 5m, 1h30m or 2d")]
    Empty,
    /// A number has no unit after it.
    #[error("missing unit after {number} in {text:?}; write it like 30s, 5m, 1h30m or 2d")]
    MissingUnit {
        /// The whole text.
        text: String,
        /// The number without a unit.
        number: String,
    },
    /// A unit is not one of ms, s, m, h, d, or has no number before it.
    #[error("unknown unit {unit:?} in {text:?}; use ms, s, m, h or d after a number, as in 1h30m")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// The value does not fit.
    #[error("duration {text:?} is too long")]
    Overflow {
        /// The whole text.
        text: String,
    },
}

/// Reads a duration made of one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`
/// (`1h30m`, `90s`, `2d`). Parts add up; a unit may repeat.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }

    let mut total_ms: u64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, after) = rest.split_at(digits);
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, next) = after.split_at(unit_len);

        if number.is_empty() {
            let shown = if unit.is_empty() {
                after.chars().take(1).collect()
            } else {
                unit.into()
            };
            return Err(DurationError::UnknownUnit {
                text: text.into(),
                unit: shown,
            });
        }
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                text: text.into(),
                number: number.into(),
            });
        }
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    text: text.into(),
                    unit: unit.into(),
                });
            }
        };
        let overflow = || DurationError::Overflow { text: text.into() };
        let value: u64 = number.parse().map_err(|_| overflow())?;
        let part = value.checked_mul(unit_ms).ok_or_else(overflow)?;
        total_ms = total_ms.checked_add(part).ok_or_else(overflow)?;
        rest = next;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Writes a duration in the largest units that divide it exactly, such as `1h30m` or `500ms`.
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_and_combined_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1m1s "), Ok(Duration::from_secs(61)));
    }

    #[test]
    fn rejects_numbers_without_units() {
        assert_eq!(
            parse_duration("300"),
            Err(DurationError::MissingUnit {
                text: "300".into(),
                number: "300".into()
            })
        );
    }

    #[test]
    fn rejects_unknown_units_and_stray_characters() {
        assert!(matches!(
            parse_duration("5w"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("h"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("-5m"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(parse_duration("5m ").is_ok());
        assert!(matches!(
            parse_duration("5 m"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
    }

    #[test]
    fn rejects_values_that_overflow() {
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("999999999999999d"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn formats_in_the_largest_exact_units() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
