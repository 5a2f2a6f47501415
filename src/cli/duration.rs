//! The one parser for every duration flag of every subcommand (`--shutdown-timeout`,
//! `--restart-window`, `--upstream-timeout`, `--tunnel-timeout`, `herd load -d`/`--timeout`,
//! `herd bench -d`): plain seconds (`"10"`, `"2.5"`) or a number with a unit (`"500ms"`,
//! `"10s"`, `"1m"`).
//!
//! Each flag names its own lower bound ([`at_least`], [`positive`]); every flag shares the
//! upper bound [`MAX`]. A value out of bounds, negative, NaN, infinite or empty is a clap
//! validation error: one line, exit status 2, before anything starts.

use std::time::Duration;

/// The longest duration any flag accepts: one year, the library's own bound
/// ([`MAX_TIMEOUT`](crate::config::MAX_TIMEOUT)), which clamps what it is given.
///
/// No herd timeout or window means anything beyond that. The command line refuses rather than
/// clamps: `--shutdown-timeout 1e20` is a typo or a test of the limits, and a bound this far
/// below the limits of the arithmetic done with these values (`Duration::from_secs_f64` panics
/// past 2⁶⁴ s, `Instant + Duration` overflows past 2⁶³ s) means no flag can get near them.
pub const MAX: Duration = crate::config::MAX_TIMEOUT;

/// A parser for a duration of at least `min` (and at most [`MAX`]), for clap's `value_parser`.
pub fn at_least(
    min: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| parse(text, min, false)
}

/// A parser for a duration above zero (and at most [`MAX`]), for clap's `value_parser`.
pub fn positive() -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    |text| parse(text, Duration::ZERO, true)
}

/// Parses `text` as a duration of at least `min`, and above it too if `exclusive`.
fn parse(text: &str, min: Duration, exclusive: bool) -> Result<Duration, String> {
    let bound = if exclusive { "above" } else { "from" };
    let bound = format!("{bound} {}", seconds(min));
    let bad = || {
        format!(
            "expected seconds (\"2.5\") or a number with a unit (\"500ms\", \"10s\", \"1m\"), \
             {bound} up to a year"
        )
    };
    let t = text.trim();
    let (number, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    // try_from_secs_f64 refuses NaN, negative and too large values (no panic); MAX refuses
    // the large values it lets through.
    let duration = Duration::try_from_secs_f64(value * unit_secs).map_err(|_| bad())?;
    let too_small = if exclusive {
        duration <= min
    } else {
        duration < min
    };
    if too_small || duration > MAX {
        return Err(bad());
    }
    Ok(duration)
}

/// A bound as the error message writes it: `0`, `0.001s`.
fn seconds(d: Duration) -> String {
    if d.is_zero() {
        "0".to_string()
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_seconds_and_units() {
        let ms = Duration::from_millis;
        let cases = [
            ("10", ms(10_000)),
            ("2.5", ms(2500)),
            (" 3 ", ms(3000)),
            ("10s", ms(10_000)),
            ("500ms", ms(500)),
            ("0.5s", ms(500)),
            ("1m", ms(60_000)),
            ("1e3", ms(1_000_000)),
            ("31536000", MAX),
            ("525600m", MAX),
        ];
        for (text, expected) in cases {
            assert_eq!(positive()(text), Ok(expected), "{text:?}");
            assert_eq!(at_least(Duration::ZERO)(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_no_flag_means() {
        for text in [
            "", " ", "s", "ms", "abc", "5h", "1.2.3", "-1", "-0.5s", "NaN", "nan", "inf", "-inf",
            "infinity", "1e19", "1e20", "1e400", "31536001", "525601m",
        ] {
            assert!(positive()(text).is_err(), "{text:?} should be refused");
            assert!(
                at_least(Duration::ZERO)(text).is_err(),
                "{text:?} should be refused"
            );
        }
    }

    #[test]
    fn each_flag_keeps_its_minimum() {
        // Zero: a valid graceful-stop timeout (kill at once), not a valid load duration.
        assert_eq!(at_least(Duration::ZERO)("0"), Ok(Duration::ZERO));
        assert_eq!(at_least(Duration::ZERO)("-0"), Ok(Duration::ZERO));
        assert!(positive()("0").is_err());
        assert!(positive()("0ms").is_err());
        // Below a nanosecond rounds to zero, which is not above zero.
        assert!(positive()("1e-10").is_err());
        let ms = at_least(Duration::from_millis(1));
        assert_eq!(ms("0.001"), Ok(Duration::from_millis(1)));
        assert_eq!(ms("1ms"), Ok(Duration::from_millis(1)));
        assert!(ms("0.0009").is_err());
        let message = ms("0").unwrap_err();
        assert!(message.contains("from 0.001s up to a year"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
