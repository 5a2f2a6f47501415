//! Passive health checks: a target that fails repeatedly is marked down for a back-off
//! interval and skipped; once the interval is over it gets requests again, and the first one
//! that succeeds puts it back for good. Nothing probes targets on its own: the traffic is the
//! probe (nginx's `max_fails`/`fail_timeout`, without active checks).
//!
//! Being marked down is never on its own the reason a request fails: when every target is
//! down, the one whose back-off ends first is tried anyway (as nginx does with one server),
//! so one target that sent two bad responses does not take the whole site down for its
//! back-off.

use std::time::{Duration, Instant};

/// Consecutive failures that mark a target down.
const FAILS_TO_MARK_DOWN: u32 = 2;
/// The first back-off; each failure of a target that is already down doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One target's health, as one worker sees it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Failures since the last success.
    failures: u32,
    /// Skipped until then.
    down_until: Option<Instant>,
    /// The current back-off; zero while healthy.
    backoff: Duration,
}

/// What a recorded failure changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still considered up.
    Up,
    /// Marked down for this long.
    Down(Duration),
}

impl Health {
    /// Whether the target may get a request now.
    pub fn usable(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|until| now >= until)
    }

    /// When the target's back-off ends, if it is marked down (or was, and has not answered
    /// since).
    pub fn down_until(&self) -> Option<Instant> {
        self.down_until
    }

    /// Records a failure (refused, reset, garbage, timeout).
    pub fn failed(&mut self, now: Instant) -> Verdict {
        self.failures += 1;
        if self.failures < FAILS_TO_MARK_DOWN {
            return Verdict::Up;
        }
        self.backoff = if self.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (self.backoff * 2).min(MAX_BACKOFF)
        };
        self.down_until = Some(now + self.backoff);
        Verdict::Down(self.backoff)
    }

    /// Records a success (a response head arrived); true if the target was down.
    pub fn succeeded(&mut self) -> bool {
        let was_down = self.down_until.is_some();
        *self = Health::default();
        was_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_down_backs_off_and_recovers() {
        let now = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.failed(now), Verdict::Up);
        assert!(h.usable(now));
        assert_eq!(h.failed(now), Verdict::Down(FIRST_BACKOFF));
        assert!(!h.usable(now));
        assert!(h.usable(now + FIRST_BACKOFF));
        assert_eq!(h.failed(now), Verdict::Down(FIRST_BACKOFF * 2));
        assert!(h.succeeded());
        assert!(h.usable(now));
        assert!(!h.succeeded());
    }
}
