//! RFC 3339 timestamps in UTC with microseconds (`2024-05-01T12:34:56.789012Z`), the form
//! herd's own log uses, for `--log-timestamps` on worker lines.
//!
//! Written by hand: the crate's `httpdate` formats only the HTTP date, and the calendar
//! arithmetic is a dozen lines (days since the epoch to a civil date, after Howard
//! Hinnant's `civil_from_days`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a timestamp: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const LEN: usize = 27;

/// Appends `time` to `out` in RFC 3339, UTC, microseconds. Times before 1970 read as the
/// epoch, after 9999 as the end of that year.
pub fn write(out: &mut Vec<u8>, time: SystemTime) {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = match since.as_secs() {
        s if s > MAX_SECS => (MAX_SECS, 999_999),
        s => (s, since.subsec_micros()),
    };
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let fields = [
        (year as u64, 4),
        (month as u64, 2),
        (day as u64, 2),
        (of_day / 3600, 2),
        (of_day / 60 % 60, 2),
        (of_day % 60, 2),
        (micros as u64, 6),
    ];
    for (i, (value, width)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b"--T::."[i - 1]);
        }
        digits(out, value, width);
    }
    out.push(b'Z');
}

/// `value` in decimal, zero-padded to `width` digits.
fn digits(out: &mut Vec<u8>, value: u64, width: u32) {
    let mut div = 10u64.pow(width - 1);
    while div > 0 {
        out.push(b'0' + (value / div % 10) as u8);
        div /= 10;
    }
}

/// (year, month 1–12, day 1–31) of `days` since 1970-01-01, in the proleptic Gregorian
/// calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0–11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, micros: u32) -> String {
        let mut out = Vec::new();
        write(
            &mut out,
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
        );
        assert_eq!(out.len(), LEN);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(784_111_777, 5), "1994-11-06T08:49:37.000005Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000000Z"); // leap day
        assert_eq!(at(1_709_251_199, 999_999), "2024-02-29T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z"); // 2100: no leap
        assert_eq!(at(u64::MAX / 2, 0), "9999-12-31T23:59:59.999999Z");
        let mut before = Vec::new();
        write(&mut before, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before, b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn agrees_with_httpdate_on_every_day_for_a_century() {
        // The IMF-fixdate names the same day: check the calendar against it.
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for day in (0..36_600).step_by(7) {
            let secs = day * 86_400 + 3_723;
            let ours = at(secs, 0);
            let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            // "Thu, 01 Jan 1970 01:02:03 GMT"
            let f: Vec<&str> = http.split(' ').collect();
            let month = months.iter().position(|m| *m == f[2]).unwrap() + 1;
            let want = format!("{}-{month:02}-{}T{}.000000Z", f[3], f[1], f[4]);
            assert_eq!(ours, want);
        }
    }
}
