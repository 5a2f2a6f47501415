//! [`DateCache`]: the `Date` header value, formatted at most once per second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE_LEN: usize = 29;

/// Last second httpdate can format (9999-12-31T23:59:59Z); it panics beyond it.
const MAX_SECS: u64 = 253_402_300_799;

/// The current time as an IMF-fixdate (RFC 9110 §5.6.7), the only format a server may send in
/// `Date`.
///
/// Every response carries the date, but it only changes once a second, so the formatted bytes
/// are cached and reformatted only when the clock has moved to another second. One cache per
/// worker is enough; pass [`DateCache::get`] to [`Session::process`](super::Session::process).
#[derive(Clone, Debug)]
pub struct DateCache {
    second: u64,
    buf: [u8; IMF_FIXDATE_LEN],
}

impl DateCache {
    /// A cache holding the current date.
    pub fn new() -> DateCache {
        let mut cache = DateCache {
            second: 0,
            buf: [0; IMF_FIXDATE_LEN],
        };
        cache.set(now_secs());
        cache
    }

    /// The IMF-fixdate for the current second.
    pub fn get(&mut self) -> &[u8] {
        let now = now_secs();
        if now != self.second {
            self.set(now);
        }
        &self.buf
    }

    /// Formats `secs` since the Unix epoch into the cache.
    fn set(&mut self, secs: u64) {
        use std::io::Write;
        self.second = secs;
        // A clock set outside what the format can express is clamped rather than allowed to
        // make httpdate panic.
        let time = UNIX_EPOCH + Duration::from_secs(secs.min(MAX_SECS));
        let mut dst: &mut [u8] = &mut self.buf;
        // Cannot fail: the formatted date is always exactly IMF_FIXDATE_LEN bytes.
        let _ = write!(dst, "{}", httpdate::HttpDate::from(time));
    }
}

impl Default for DateCache {
    fn default() -> DateCache {
        DateCache::new()
    }
}

/// Whole seconds since the Unix epoch; a clock set before 1970 reads as the epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_imf_fixdate() {
        let mut cache = DateCache::new();
        cache.set(784_111_777);
        assert_eq!(&cache.buf, b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.set(u64::MAX);
        assert_eq!(&cache.buf, b"Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(cache.get().len(), IMF_FIXDATE_LEN);
        assert!(cache.get().ends_with(b" GMT"));
    }
}
