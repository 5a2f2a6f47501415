//! The open-loop clock: a periodic `timerfd` in the thread's `Poll` that wakes the loop when
//! requests fall due.
//!
//! `epoll_wait` takes its timeout in whole milliseconds, and mio rounds up, so a loop that slept
//! "until the next request is due" would send it up to 1 ms late, and an open-loop run at
//! 20 000 requests/s would report half a millisecond of latency that is the generator's own.
//! A timerfd expires to the microsecond. It is periodic, armed once, so the loop spends no
//! syscall per request on it; at high rates one tick stands for several requests, so that
//! the kernel is not interrupted more often than every [`MIN_PERIOD`].

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// The shortest period between ticks; requests due within one period may go out together.
const MIN_PERIOD: Duration = Duration::from_micros(50);

/// A periodic timer registered in a `Poll`. Dropping it closes the fd, which also removes it
/// from the `Poll`.
pub(crate) struct Ticker {
    /// The timerfd (monotonic clock, non-blocking, close-on-exec).
    timer: TimerFd,
}

impl Ticker {
    /// Ticks `first` from now and then every multiple of `interval` that is at least
    /// [`MIN_PERIOD`], reported as readable events for `token`.
    ///
    /// Armed relative to the moment of this call, which is after the caller computed `first`,
    /// every tick comes at or just after a request's due time, never before it.
    pub(crate) fn start(
        registry: &Registry,
        token: Token,
        first: Duration,
        interval: Duration,
    ) -> io::Result<Ticker> {
        let per_tick = MIN_PERIOD
            .as_nanos()
            .div_ceil(interval.as_nanos().max(1))
            .max(1);
        let period = interval * u32::try_from(per_tick).unwrap_or(u32::MAX);
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        timer.set(
            // A zero first expiry would disarm the timer instead of firing at once.
            Expiration::IntervalDelayed(
                timespec(first.max(Duration::from_nanos(1))),
                timespec(period),
            ),
            TimerSetTimeFlags::empty(),
        )?;
        let fd = timer.as_fd().as_raw_fd();
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        Ok(Ticker { timer })
    }

    /// Takes note of a tick. This read is not optional: the kernel re-arms a periodic timerfd
    /// only when its expiry count is read, so a ticker that is never read ticks once.
    pub(crate) fn acknowledge(&self) {
        // Reads the 8-byte expiry count. `WouldBlock` (no expiry since the last read) leaves
        // nothing to do.
        let _ = self.timer.wait();
    }
}

/// A `Duration` as a `timespec`, saturating where `time_t` ends (nix's conversion wraps).
fn timespec(d: Duration) -> TimeSpec {
    TimeSpec::from_duration(d.min(Duration::from_secs(libc::time_t::MAX as u64)))
}
