//! Supervision: forking workers, reaping them, and pacing respawns.
//!
//! * **fork** happens only here, and only while the master is single-threaded: `fork()`
//!   copies just the calling thread, so a lock held by any other thread (the allocator's, a
//!   logger's) would stay locked forever in the child. [`fork_worker`] checks the thread count
//!   from `/proc/self/status` before every fork and refuses when it is not 1.
//! * **reap**: SIGCHLD only says "one or more children changed state", so [`reap`] loops
//!   `waitpid(-1, WNOHANG)` until nothing is left to collect.
//! * **respawn back-off** ([`Slot`]): a worker that dies right after starting is restarted
//!   after 100 ms, then 200 ms, 400 ms… up to 15 s; a worker that stayed up 30 s resets the
//!   delay. A crash loop costs one fork per 15 s, never a fork storm.

use std::convert::Infallible;
use std::io;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::cluster::ExitStatus;

/// The first respawn delay after a quick death.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest respawn delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// A worker up this long counts as healthy: its death resets the back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One of the `--workers` places a worker runs in; a respawned worker takes its dead
/// predecessor's slot (with a new id).
#[derive(Debug, Default)]
pub struct Slot {
    /// The master's key of the worker in this slot, if one is running.
    pub worker: Option<usize>,
    /// When to fork this slot's next worker.
    pub respawn_at: Option<Instant>,
    /// The delay the next quick death will wait.
    next_delay: Duration,
}

impl Slot {
    /// The slot's worker exited after `uptime`; schedules the next fork and returns its delay.
    pub fn schedule_respawn(&mut self, now: Instant, uptime: Duration) -> Duration {
        if uptime >= STABLE_AFTER {
            self.next_delay = Duration::ZERO;
        }
        let delay = self.next_delay;
        self.next_delay = if delay.is_zero() {
            BACKOFF_START
        } else {
            (delay * 2).min(BACKOFF_MAX)
        };
        self.worker = None;
        self.respawn_at = Some(now + delay);
        delay
    }
}

/// The number of threads in this process.
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// Forks a child that runs `child` and never returns; returns the child's pid in the parent.
#[allow(unreachable_code)] // `child()` diverges: the match after it is the proof
pub fn fork_worker(child: impl FnOnce() -> Infallible) -> io::Result<Pid> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork: the master has {threads} threads (herd's master must stay \
             single-threaded; start no threads before Cluster::run)"
        )));
    }
    // SAFETY: the process is single-threaded (checked just above), so the child gets a
    // consistent copy of every lock and allocator state. The child runs only the worker and
    // leaves through `process::exit`, never returning into the master's code.
    match unsafe { fork() }? {
        ForkResult::Child => match child() {},
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Collects every child that has exited, without blocking.
pub fn reap() -> Vec<(Pid, ExitStatus)> {
    let mut gone = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => gone.push((pid, ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                gone.push((pid, ExitStatus::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return gone,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("waitpid: {e}");
                return gone;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let now = Instant::now();
        let mut slot = Slot::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..10)
            .map(|_| slot.schedule_respawn(now, quick).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000]
        );
        assert_eq!(slot.schedule_respawn(now, quick), BACKOFF_MAX);
        assert_eq!(slot.schedule_respawn(now, STABLE_AFTER), Duration::ZERO);
        assert_eq!(slot.schedule_respawn(now, quick), BACKOFF_START);
    }
}
