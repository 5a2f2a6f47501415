//! Launching: how the master starts one worker process and gets the [`Link`] to it.
//!
//! A [`Launch`] is what kind of worker the cluster runs.
//!
//! A panic in a forked child outside a request handler (the setup closure, a `Service`)
//! must not unwind into the copy of the master's stack frames the child inherited, running
//! the master's destructors there: [`fork_worker`] catches it and leaves with `_exit`. [`ForkLaunch`] is herd's own: the
//! master `fork()`s, and the child runs the user's setup closure and the worker event loop
//! ([`crate::worker`]), talking to the master over a seqpacket socketpair created just
//! before the fork. Another kind (a program started with `exec`, speaking its own protocol)
//! implements the same trait and returns its own link; the supervisor does not tell them
//! apart.

use std::convert::Infallible;
use std::io;
use std::os::fd::RawFd;

use nix::unistd::Pid;

use super::handoff::SeqpacketLink;
use crate::channel::{Channel, ToWorker};
use crate::link::{Launch, LaunchContext, Launched};
use crate::worker::{self, Setup};

/// herd's own workers: a forked child running the user's setup closure, then its loop.
pub(crate) struct ForkLaunch {
    setup: Setup,
}

impl ForkLaunch {
    /// Workers that run `setup` after the fork.
    pub fn new(setup: Setup) -> ForkLaunch {
        ForkLaunch { setup }
    }
}

impl Launch for ForkLaunch {
    fn launch(&mut self, cx: LaunchContext<'_>) -> io::Result<Launched> {
        let (mut master_end, worker_end) = Channel::pair()?;
        if let Some(timeout) = cx.link.worker_timeout {
            // The first packet the worker reads, whatever its setup does first.
            let interval_ms = super::watchdog::heartbeat_interval(timeout).as_millis();
            let interval_ms = interval_ms.clamp(1, u32::MAX as u128) as u32;
            master_end.send_to_worker(&ToWorker::Heartbeat { interval_ms })?;
        }
        // The child gets a dup of its end; the original stays with the master (see
        // `handoff`: it is how a dead worker's unread connections are recovered).
        let child_end = worker_end.try_clone()?;
        let mut close: Vec<RawFd> = cx.master_fds.to_vec();
        close.extend([master_end.raw_fd(), worker_end.raw_fd()]);
        let master_pid = nix::unistd::getpid();
        let setup = &mut self.setup;
        let id = cx.id;
        let credentials = cx.credentials;
        // INVARIANT: the master is single-threaded here (fork_worker checks it). The child
        // closes the master's fds, builds its own Poll and never returns.
        let pid = fork_worker(move || {
            worker::run_child(worker::ChildStart {
                id,
                channel: child_end,
                master_pid,
                close: &close,
                setup: &mut **setup,
                credentials,
            })
        })?;
        // `child_end` moved into the closure and was dropped (closed) here in the parent.
        Ok(Launched {
            pid,
            link: Box::new(SeqpacketLink::new(master_end, worker_end, cx.link)),
            outputs: Vec::new(),
            group: false,
            listens: true,
        })
    }
}

/// The exit code of a forked child that panicked outside a request handler (Rust's own
/// code for a panicking `main`).
pub const EXIT_PANIC: i32 = 101;

/// Forks a child that runs `child` and never returns; returns the child's pid in the parent.
///
/// Refuses unless the process is single-threaded: `fork()` copies only the calling thread,
/// so a lock held by any other thread (the allocator's, a logger's) would stay locked
/// forever in the child.
pub(crate) fn fork_worker(child: impl FnOnce() -> Infallible) -> io::Result<Pid> {
    let threads = crate::sys::thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork: the master has {threads} threads (herd's master must stay \
             single-threaded; start no threads before Cluster::run)"
        )));
    }
    match crate::sys::fork_single_threaded()? {
        None => {
            // The child. `child` leaves through `process::exit`; a panic that escapes it
            // stops here instead of unwinding into the master's frames.
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
            if panicked.is_err() {
                log::error!("worker process {} panicked; exiting", std::process::id());
            }
            crate::sys::exit_now(EXIT_PANIC)
        }
        Some(child) => Ok(child),
    }
}
