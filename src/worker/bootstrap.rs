//! The post-fork bootstrap: what a child does between `fork()` and its event loop.
//!
//! A forked child starts as a copy of the master: its memory (the master's state, the
//! master's signal handlers) and its fds (listeners, every other worker's channel, the
//! master's poll). Before it serves anything it must stop being the master:
//!
//! 1. replace every signal disposition, with SIGTERM routed through a self-pipe into the
//!    worker's own poll ([`crate::sys::install_worker_signals`]);
//! 2. close the master's fds, so that it holds nothing that is not its own (another
//!    worker's channel kept open here would keep that worker's queue alive after it died);
//! 3. drop privileges (`--user`), before anything a client can reach runs, and before
//!    `PR_SET_PDEATHSIG`, which the kernel clears whenever the credentials change;
//! 4. ask the kernel to kill it if the master dies, and check the master did not die
//!    before that request took effect;
//! 5. create its own `Poll` (an epoll instance inherited from the master would be the
//!    master's, with the master's registrations), say `Online`, run the user's setup, run
//!    the loop ([`super::event_loop`]).
//!
//! It leaves through `process::exit`, never by returning into the master's frames (a panic
//! that escapes is caught by `master::supervisor::fork_worker`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;

use mio::unix::SourceFd;
use mio::{Interest, Poll};

use super::{tokens, Credentials, Worker, WorkerId, EXIT_CONFIG};
use crate::channel::{Channel, ToMaster};

/// What the master passes to a freshly forked child.
pub(crate) struct ChildStart<'a> {
    pub id: WorkerId,
    pub channel: Channel,
    /// The master's pid, to detect a master that died before `PR_SET_PDEATHSIG` was set.
    pub master_pid: nix::unistd::Pid,
    /// fds that belong to the master (listeners, other workers' channels, its poll and signal
    /// pipe): the child closes them so it holds nothing that is not its own.
    pub close: &'a [RawFd],
    /// The user's worker setup.
    pub setup: &'a mut dyn FnMut(&mut Worker) -> io::Result<()>,
    /// Who to become before serving (`--user`), if anyone.
    pub credentials: Option<&'a Credentials>,
}

/// Runs a worker in a freshly forked child; never returns.
pub(crate) fn run_child(start: ChildStart<'_>) -> ! {
    super::WORKER_ID.store(start.id, Ordering::Relaxed);
    // The master's signal handlers were inherited with its memory: replace every one, and
    // route SIGTERM through a self-pipe into this worker's own poll.
    let signals = match crate::sys::install_worker_signals() {
        Ok(signals) => signals,
        Err(e) => {
            log::error!("worker {}: cannot set up its signals: {e}", start.id);
            std::process::exit(1);
        }
    };
    // The master's fds: this process never uses them, and the master's objects that own
    // them are never dropped here (the child leaves through `process::exit`).
    crate::sys::close_inherited_from_parent(start.close);
    // Before anything runs that a client can reach; and before PDEATHSIG, which the kernel
    // clears whenever the credentials change.
    if let Some(credentials) = start.credentials {
        if let Err(e) = credentials.apply() {
            log::error!("worker {}: {e}; refusing to serve as root", start.id);
            std::process::exit(EXIT_CONFIG);
        }
    }
    // The backstop for a master that dies without closing the channel cleanly (it always
    // closes, even on SIGKILL, but a worker stuck in a handler would not notice).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid() != start.master_pid {
        std::process::exit(0); // the master died before the line above
    }

    let mut worker = Worker::new(start.id, start.channel);
    // The worker's own epoll instance, created after the fork: one inherited from the
    // master would be the master's instance, with the master's registrations.
    let poll = Poll::new().and_then(|poll| {
        let fd = worker.channel.raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), tokens::CHANNEL, Interest::READABLE)?;
        let fd = signals.fd().as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), tokens::SIGNALS, Interest::READABLE)?;
        Ok(poll)
    });
    let poll = match poll {
        Ok(poll) => poll,
        Err(e) => {
            log::error!("worker {}: cannot create its poll: {e}", start.id);
            std::process::exit(1);
        }
    };
    if let Err(e) = super::send_blocking(&mut worker.channel, &ToMaster::Online) {
        log::error!("worker {}: cannot reach the master: {e}", start.id);
        std::process::exit(1);
    }
    if let Err(e) = (start.setup)(&mut worker) {
        log::error!("worker {}: {e}", start.id);
        std::process::exit(1);
    }
    match worker.run(poll, signals) {
        Ok(()) => std::process::exit(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            log::warn!("worker {}: master gone, exiting", start.id);
            std::process::exit(0)
        }
        Err(e) => {
            log::error!("worker {}: {e}", start.id);
            std::process::exit(1)
        }
    }
}
