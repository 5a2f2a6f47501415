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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// The shortest period between ticks; requests due within one period may go out together.
const MIN_PERIOD: Duration = Duration::from_micros(50);

/// A periodic timer registered in a `Poll`. Dropping it closes the fd, which also removes it
/// from the `Poll`.
pub(crate) struct Ticker {
    /// The timerfd.
    fd: OwnedFd,
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
        // SAFETY: timerfd_create takes no pointers; the fd it returns is owned from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let spec = libc::itimerspec {
            it_interval: timespec(period),
            // A zero it_value would disarm the timer instead of firing at once.
            it_value: timespec(first.max(Duration::from_nanos(1))),
        };
        // SAFETY: `fd` is a timerfd, `spec` a valid itimerspec that outlives the call, and a
        // null old-value pointer is allowed.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Ticker { fd })
    }

    /// Takes note of a tick. This read is not optional: the kernel re-arms a periodic timerfd
    /// only when its expiry count is read, so a ticker that is never read ticks once.
    pub(crate) fn acknowledge(&self) {
        let mut expirations = [0u8; 8];
        // SAFETY: the buffer is valid for 8 bytes, the size of a timerfd's expiry count. A
        // WouldBlock (no expiry since the last read) leaves nothing to do.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            )
        };
    }
}

/// A `Duration` as a `timespec`.
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}
