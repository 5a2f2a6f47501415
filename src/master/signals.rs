//! Signals, delivered to the master's mio loop through a self-pipe.
//!
//! A signal handler may only do async-signal-safe things, so the handlers (signal-hook's)
//! only set a flag per signal and write one byte to a pipe whose read end is registered with
//! the master's `Poll`. The loop wakes, reads the pipe empty and takes the flags. Signals of
//! one kind coalesce (two SIGCHLDs may set the flag once), which is why reaping loops on
//! `waitpid(WNOHANG)` instead of counting signals. The master creates this before any fork;
//! each worker resets the dispositions and closes both pipe ends (see `worker::run_child`).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::Signal;
use signal_hook::low_level::pipe;

/// The signals the master acts on.
pub const HANDLED: [Signal; 7] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
];

/// The self-pipe and one flag per handled signal.
pub(super) struct Signals {
    read: UnixStream,
    write: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for sig in HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig as i32, flag.clone())?;
            pipe::register_raw(sig as i32, write.as_raw_fd())?;
            flags.push((sig, flag));
        }
        Ok(Signals { read, write, flags })
    }

    /// The fd to register with the poll (readable when a signal arrived).
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Both pipe ends, for a forked child to close.
    pub fn fds(&self) -> Vec<RawFd> {
        vec![self.read.as_raw_fd(), self.write.as_raw_fd()]
    }

    /// Empties the pipe and returns the signals that arrived since the last call.
    pub fn take(&mut self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        while matches!(self.read.read(&mut buf), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, f)| f.swap(false, Ordering::SeqCst))
            .map(|(s, _)| *s)
            .collect()
    }
}

impl super::Master {
    /// What each signal makes the master do (the table in the README's "Signals").
    pub(super) fn on_signals(&mut self) {
        use super::Phase;
        for sig in self.signals.take() {
            match sig {
                Signal::SIGCHLD => self.reap(),
                Signal::SIGTERM | Signal::SIGINT => {
                    if self.phase == Phase::Running {
                        log::info!("master: {sig} received, stopping gracefully");
                        self.stop();
                    } else if sig == Signal::SIGINT {
                        log::warn!("master: second SIGINT, stopping now");
                        self.kill_all();
                    }
                }
                Signal::SIGQUIT => {
                    log::warn!("master: SIGQUIT, stopping now");
                    self.stop();
                    self.kill_all();
                }
                Signal::SIGHUP => self.request_reload("SIGHUP"),
                Signal::SIGUSR1 => self.reopen_output(),
                Signal::SIGUSR2 => self.start_upgrade(),
                other => log::info!("master: {other} ignored"),
            }
        }
    }
}
