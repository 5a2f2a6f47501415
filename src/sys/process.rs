//! Process calls: `fork` while single-threaded, `_exit`, and a forked worker's signals.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{fork, ForkResult, Pid};

/// The number of threads in this process.
pub(crate) fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// `fork()`. `None` in the child, the child's pid in the parent.
///
/// The caller must have checked that the process is single-threaded (herd's master checks
/// `/proc/self/status` before every fork, see `master::supervisor::fork_worker`).
pub(crate) fn fork_single_threaded() -> io::Result<Option<Pid>> {
    // SAFETY: the caller guarantees a single-threaded process, so the child gets a
    // consistent copy of every lock and allocator state and may run arbitrary code. The
    // child never returns into the caller's frames past its own entry point (it leaves
    // through `exit`/`exit_now`).
    match unsafe { fork() }? {
        ForkResult::Child => Ok(None),
        ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// `_exit(code)`: ends the process at once, without running destructors or `atexit`
/// handlers. For a forked child whose inherited state (the parent's) must not be torn down
/// as if it were its own.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// The write end of the worker's signal self-pipe, for the handler (-1: none).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Set by the SIGTERM handler; taken by the worker's loop.
static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    // Only an atomic store and one write(2): async-signal-safe. A full pipe means a wake-up
    // is already pending, so a failed write loses nothing.
    TERM.store(true, Ordering::SeqCst);
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: writing one byte from a static buffer to an fd this process owns for
        // its whole life (the pipe is never closed while the handler is installed).
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// The worker's signal self-pipe: the SIGTERM handler writes a byte, and the read end is
/// registered with the worker's poll, so a SIGTERM that arrives at any moment (even between
/// the loop's last check and `epoll_wait`) wakes the loop.
#[derive(Debug)]
pub(crate) struct SignalPipe {
    read: File,
    /// Kept open for the handler (it writes through the raw fd in `PIPE_WRITE`).
    _write: File,
}

impl SignalPipe {
    /// The fd to register for reading.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Whether a SIGTERM arrived since the last call; empties the pipe when one did.
    ///
    /// Called every loop turn, so it reads the pipe only when the flag says there is
    /// something in it (the handler sets the flag before it writes): no `read` → `EAGAIN`
    /// per turn. A byte written after the drain stays in the pipe, harmlessly: the next
    /// signal's write is a new edge for epoll, and its turn drains both.
    pub fn take_term(&self) -> bool {
        if !TERM.load(Ordering::SeqCst) {
            return false;
        }
        let mut buf = [0u8; 64];
        while matches!(std::io::Read::read(&mut &self.read, &mut buf), Ok(n) if n > 0) {}
        TERM.swap(false, Ordering::SeqCst)
    }
}

/// In a freshly forked worker: replaces every signal disposition the master installed (its
/// handlers were inherited with its memory). A worker takes its orders from the master:
/// Ctrl-C and a terminal hangup reach the whole process group, and only the master acts on
/// them (it drains the workers); SIGTERM to a worker drains that worker, through the
/// returned self-pipe.
pub(crate) fn install_worker_signals() -> io::Result<SignalPipe> {
    use nix::fcntl::OFlag;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let (read, write) = (File::from(read), File::from(write));
    PIPE_WRITE.store(write.as_raw_fd(), Ordering::SeqCst);
    let term = SigHandler::Handler(on_sigterm);
    for (sig, handler) in [
        (Signal::SIGINT, SigHandler::SigIgn),
        (Signal::SIGHUP, SigHandler::SigIgn),
        (Signal::SIGQUIT, SigHandler::SigIgn),
        (Signal::SIGUSR1, SigHandler::SigIgn),
        (Signal::SIGUSR2, SigHandler::SigIgn),
        (Signal::SIGCHLD, SigHandler::SigDfl),
        (Signal::SIGTERM, term),
    ] {
        let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
        // SAFETY: SIG_IGN/SIG_DFL run no code; `on_sigterm` is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(SignalPipe {
        read,
        _write: write,
    })
}
