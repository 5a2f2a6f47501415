//! The restart limit (`--max-restarts N --restart-window SECS`, PM2's `max_restarts`): how
//! many unplanned worker deaths the master absorbs before it decides the fault will not go
//! away by itself and stops with an error, so that a service manager (or a person) sees it.
//!
//! Only deaths that lead to a respawn count: a worker retired by a reload, a drain or a
//! stop does not. The back-off of [`super::supervisor::Slot`] still paces the respawns in
//! between; this only bounds how long that goes on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restart times within the sliding window.
#[derive(Debug)]
pub struct RestartLimit {
    max: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartLimit {
    /// At most `max` restarts within any `window`.
    pub fn new(max: u32, window: Duration) -> RestartLimit {
        RestartLimit {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Counts a restart at `now`; true when that makes more than `max` within the window.
    pub fn record(&mut self, now: Instant) -> bool {
        self.forget_before(now);
        self.recent.push_back(now);
        self.recent.len() > self.max as usize
    }

    /// Restarts within the window ending `now`.
    pub fn recent(&self, now: Instant) -> usize {
        self.recent
            .iter()
            .filter(|&&t| now.duration_since(t) < self.window)
            .count()
    }

    /// The limit.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.window)
        {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_past_the_limit_within_the_window_trips_it_and_old_ones_expire() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut limit = RestartLimit::new(2, s(10));
        assert!(!limit.record(t0));
        assert!(!limit.record(t0 + s(1)));
        assert!(
            limit.record(t0 + s(2)),
            "the third within 10 s trips a limit of 2"
        );
        let mut limit = RestartLimit::new(2, s(10));
        assert!(!limit.record(t0));
        assert!(!limit.record(t0 + s(5)));
        // The first has left the window: two within it again.
        assert!(!limit.record(t0 + s(10)));
        assert_eq!(limit.recent(t0 + s(10)), 2);
        let mut none = RestartLimit::new(0, s(10));
        assert!(
            none.record(t0),
            "--max-restarts 0: the first death gives up"
        );
    }
}
