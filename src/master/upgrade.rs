//! Binary upgrade (SIGUSR2): replace the master itself, and with it the code, without
//! closing the listening sockets or dropping a connection (nginx's USR2, which Node's
//! cluster cannot do).
//!
//! ```text
//! old master                                  new master (child of the old one)
//! SIGUSR2 ─ fork ─ child: listeners → fds 3.., ready pipe → fd 3+n, exec the binary on disk
//!   keeps serving                             adopts fds 3.. (socket activation protocol),
//!                                             forks its workers, which start taking
//!                                             connections from the shared accept queue
//!   ◄──────── "READY <pid>" on the pipe ───── once every worker listens; writes the pid file
//! MAINPID=<new> to systemd, graceful stop:
//! accepts what is queued, closes its copies
//! of the listeners, drains its workers, exits
//! ```
//!
//! * **The binary**: the path `current_exe()` named when this master started (after a
//!   package upgrade `/proc/self/exe` points at the deleted old file; the path holds the
//!   new one), run with the same arguments. `$HERD_UPGRADE_BIN`, read at the signal, names
//!   another program instead: tests use it to upgrade to a binary that fails.
//! * **The sockets** cross as in systemd socket activation (`$LISTEN_FDS`, `$LISTEN_PID`:
//!   the child is started with [`crate::exec::Program`], which places the fds and writes
//!   the child's own pid between fork and `exec`), plus
//!   [`systemd::REQUESTED_ENV`] naming the address each was requested as, so that
//!   `--listen 127.0.0.1:0` finds the socket bound to the ephemeral port. Both masters
//!   accept from the same kernel queue while they overlap; nothing is re-bound, so no
//!   connection meets a closed port.
//! * **Readiness** comes back on a pipe (fd number in [`READY_ENV`]): one line once every
//!   new worker listens. A pipe rather than a signal: it names who is ready, and its
//!   end-of-file says the new master is gone even before SIGCHLD does.
//! * **Failure**: the binary cannot be run at all (not found, not executable: known before
//!   `Program::spawn` returns), the new master exits, or it is not ready within
//!   [`UPGRADE_TIMEOUT`] (it is then sent SIGTERM, and SIGKILL a shutdown timeout later):
//!   the old master logs why and keeps serving as if nothing happened.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::Interest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{systemd, Master, Phase, READY_PIPE};
use crate::event::ExitStatus;
use crate::exec::{ChildFds, Program};

/// The environment variable naming the fd on which a new master reports readiness.
pub const READY_ENV: &str = "HERD_UPGRADE_READY_FD";
/// The first worker id a new master uses: the old master's next one, so that ids stay
/// unique across an upgrade (logs and `/worker` answers never show two workers 1).
pub const FIRST_ID_ENV: &str = "HERD_FIRST_WORKER_ID";
/// Overrides the program a binary upgrade runs (default: this program's path on disk).
pub const BIN_ENV: &str = "HERD_UPGRADE_BIN";
/// How long a new master has to report ready.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `/status` shows of the upgrade.
#[derive(Debug, Clone, Default)]
pub struct UpgradeStatus {
    /// `idle`, `starting` (a new master is coming up), `handed-over` (this master is
    /// draining for a new one) or `abandoning` (a failed new master is being stopped).
    pub state: &'static str,
    /// The new master's pid while there is one.
    pub new_pid: Option<i32>,
    /// The last upgrade's outcome.
    pub last: Option<String>,
}

#[derive(Debug)]
enum State {
    Idle,
    Starting {
        pid: Pid,
        pipe: File,
        got: Vec<u8>,
        deadline: Instant,
    },
    HandedOver {
        pid: Pid,
    },
    Abandoning {
        pid: Pid,
        kill_at: Instant,
    },
}

/// Both sides of the upgrade: the old master's child in flight, and (in a new master) the
/// pipe to report readiness on.
#[derive(Debug)]
pub(super) struct Upgrade {
    state: State,
    /// Set in a new master: where to say "ready".
    report_to: Option<File>,
    new_master: bool,
    /// The first worker id to use (from the old master), if this is a new master.
    pub(super) first_id: Option<crate::worker::WorkerId>,
    /// The program and arguments this master was started with.
    exe: io::Result<PathBuf>,
    args: Vec<OsString>,
    last: Option<String>,
}

impl Upgrade {
    /// Records how this process was started, and whether an old master waits for it.
    pub(super) fn from_env() -> io::Result<Upgrade> {
        let report_to = match std::env::var(READY_ENV) {
            Err(_) => None,
            Ok(fd) => {
                std::env::remove_var(READY_ENV);
                let fd: RawFd = fd
                    .parse()
                    .ok()
                    .filter(|&fd| fd > 2)
                    .ok_or_else(|| io::Error::other(format!("{READY_ENV}={fd}: not an fd")))?;
                // The old master passed this fd for us alone (see `exec_new_master`).
                let file = File::from(crate::sys::adopt_inherited(fd)?);
                crate::sys::set_cloexec(&file, true)?;
                Some(file)
            }
        };
        let first_id = std::env::var(FIRST_ID_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        std::env::remove_var(FIRST_ID_ENV);
        Ok(Upgrade {
            first_id,
            state: State::Idle,
            new_master: report_to.is_some(),
            report_to,
            exe: std::env::current_exe(),
            args: std::env::args_os().skip(1).collect(),
            last: None,
        })
    }

    /// This master was started by an upgrade and has an old master to tell.
    pub(super) fn is_new_master(&self) -> bool {
        self.new_master
    }

    /// A new master is coming up.
    pub(super) fn is_pending(&self) -> bool {
        matches!(self.state, State::Starting { .. })
    }

    /// This master handed over to a new one.
    pub(super) fn handed_over(&self) -> bool {
        matches!(self.state, State::HandedOver { .. })
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Starting { deadline, .. } => Some(deadline),
            State::Abandoning { kill_at, .. } => Some(kill_at),
            _ => None,
        }
    }

    pub(super) fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.report_to.iter().map(|f| f.as_raw_fd()).collect();
        if let State::Starting { pipe, .. } = &self.state {
            fds.push(pipe.as_raw_fd());
        }
        fds
    }

    pub(super) fn status(&self) -> UpgradeStatus {
        let (state, pid) = match &self.state {
            State::Idle => ("idle", None),
            State::Starting { pid, .. } => ("starting", Some(*pid)),
            State::HandedOver { pid } => ("handed-over", Some(*pid)),
            State::Abandoning { pid, .. } => ("abandoning", Some(*pid)),
        };
        UpgradeStatus {
            state,
            new_pid: pid.map(|p| p.as_raw()),
            last: self.last.clone(),
        }
    }
}

impl Master {
    /// SIGUSR2: starts the new master.
    pub(super) fn start_upgrade(&mut self) {
        if self.phase != Phase::Running {
            log::info!("upgrade ignored: the master is stopping");
            return;
        }
        if !matches!(self.ops.upgrade.state, State::Idle) {
            log::warn!("upgrade ignored: one is already in progress");
            return;
        }
        if self.ops.reload.status().in_progress {
            log::warn!("upgrade ignored: a reload is in progress");
            return;
        }
        let exe = match std::env::var_os(BIN_ENV) {
            Some(bin) => PathBuf::from(bin),
            None => match &self.ops.upgrade.exe {
                Ok(exe) => exe.clone(),
                Err(e) => {
                    self.upgrade_failed(format!("cannot tell which binary to run: {e}"));
                    return;
                }
            },
        };
        match self.fork_new_master(&exe) {
            Ok((pid, pipe)) => {
                log::info!(
                    "upgrade: started {} as pid {pid}; serving until it is ready",
                    exe.display()
                );
                self.ops.upgrade.state = State::Starting {
                    pid,
                    pipe,
                    got: Vec::new(),
                    deadline: Instant::now() + UPGRADE_TIMEOUT,
                };
            }
            Err(e) => {
                // `Program::spawn` already names the program in its errors.
                let why = e.to_string();
                let named = why.contains(&*exe.to_string_lossy());
                self.upgrade_failed(if named {
                    why
                } else {
                    format!("cannot start {}: {why}", exe.display())
                })
            }
        }
    }

    /// Starts `exe` as the new master, with the listeners and the ready pipe in place; an
    /// error if it could not be run at all (not found, not executable: `Program::spawn`
    /// learns that before this returns).
    fn fork_new_master(&mut self, exe: &std::path::Path) -> io::Result<(Pid, File)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let read = File::from(read);
        let listeners = self.listeners.open();
        let (program, fds) = new_master_program(
            exe,
            &self.ops.upgrade.args,
            &listeners,
            write.as_fd(),
            self.next_id,
        );
        let pid = program.spawn(&fds)?;
        drop(fds);
        drop(write); // the child's copy is the only writer now
        nix::fcntl::fcntl(
            &read,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let fd = read.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), READY_PIPE, Interest::READABLE)?;
        Ok((pid, read))
    }

    /// The ready pipe is readable: the new master said ready, or closed it.
    pub(super) fn on_ready_pipe(&mut self) {
        let State::Starting { pid, pipe, got, .. } = &mut self.ops.upgrade.state else {
            return;
        };
        let pid = *pid;
        let mut buf = [0u8; 64];
        let eof = loop {
            match pipe.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        if got.starts_with(b"READY") && got.ends_with(b"\n") {
            let fd = pipe.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            self.ops.upgrade.state = State::HandedOver { pid };
            let msg = format!(
                "upgrade: new master pid {pid} is ready; this master (pid {}) drains and exits",
                std::process::id()
            );
            log::info!("{msg}");
            self.ops.upgrade.last = Some(msg);
            systemd::notify(&format!("MAINPID={pid}"));
            self.stop();
        } else if eof {
            // The new master closed the pipe without a word: it is exiting. SIGCHLD
            // follows and says how; stop polling a pipe that will stay readable.
            let fd = pipe.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    /// A child that is not a worker was reaped. True if it was the new master.
    pub(super) fn upgrade_child_exited(&mut self, child: Pid, status: ExitStatus) -> bool {
        match &self.ops.upgrade.state {
            State::Starting { pid, .. } if *pid == child => {
                self.ops.upgrade.state = State::Idle; // drops (closes) the pipe
                self.upgrade_failed(format!(
                    "new master (pid {child}) exited ({status}) before it was ready"
                ));
                true
            }
            State::Abandoning { pid, .. } if *pid == child => {
                log::info!("upgrade: abandoned new master (pid {child}) exited ({status})");
                self.ops.upgrade.state = State::Idle;
                true
            }
            State::HandedOver { pid } if *pid == child => {
                log::warn!("upgrade: the new master (pid {child}) exited ({status})");
                true
            }
            _ => false,
        }
    }

    /// Timeouts: a new master that is not ready in time is stopped; one that ignores that
    /// is killed.
    pub(super) fn upgrade_tick(&mut self, now: Instant) {
        match self.ops.upgrade.state {
            State::Starting { deadline, .. } if now >= deadline => {
                self.abandon_upgrade(&format!("not ready within {UPGRADE_TIMEOUT:?}"));
            }
            State::Abandoning { pid, kill_at } if now >= kill_at => {
                let _ = kill(pid, Signal::SIGKILL);
                self.ops.upgrade.state = State::Abandoning {
                    pid,
                    kill_at: now + Duration::from_secs(3600),
                };
            }
            _ => {}
        }
    }

    /// Stops a new master that is still starting (SIGTERM: it drains what it took).
    pub(super) fn abandon_upgrade(&mut self, why: &str) {
        let State::Starting { pid, pipe, .. } = &self.ops.upgrade.state else {
            return;
        };
        let pid = *pid;
        let fd = pipe.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        let _ = kill(pid, Signal::SIGTERM);
        self.ops.upgrade.state = State::Abandoning {
            pid,
            kill_at: Master::deadline(Instant::now(), self.config.shutdown_timeout),
        };
        self.upgrade_failed(format!("new master (pid {pid}) {why}; stopping it"));
    }

    fn upgrade_failed(&mut self, why: String) {
        let msg = format!("upgrade failed: {why}; this master keeps serving");
        log::error!("{msg}");
        self.ops.upgrade.last = Some(msg);
    }

    /// In a new master, once every worker listens: tell the old master.
    pub(super) fn report_ready_to_old_master(&mut self) {
        let Some(mut pipe) = self.ops.upgrade.report_to.take() else {
            return;
        };
        let line = format!("READY {}\n", std::process::id());
        match pipe.write_all(line.as_bytes()) {
            Ok(()) => log::info!("upgrade: ready; told the old master"),
            Err(e) => log::error!("upgrade: cannot tell the old master it may go: {e}"),
        }
    }
}

/// The new master: this binary (or `$HERD_UPGRADE_BIN`) with this master's arguments, as
/// this master's successor (it stays in the process group and outlives this master), the
/// listeners at fds 3.. as in socket activation, the ready pipe after them.
fn new_master_program<'a>(
    exe: &std::path::Path,
    args: &[OsString],
    listeners: &[(BorrowedFd<'a>, SocketAddr, u32)],
    ready: BorrowedFd<'a>,
    first_id: crate::worker::WorkerId,
) -> (Program, ChildFds<'a>) {
    let first = systemd::LISTEN_FDS_START;
    let n = listeners.len() as RawFd;
    let fds = (listeners.iter().map(|l| l.0))
        .chain([ready])
        .zip(first..)
        .fold(ChildFds::new(), |fds, (fd, at)| fds.place(fd, at));
    let requested: Vec<String> = listeners
        .iter()
        .map(|&(_, addr, index)| systemd::format_requested(addr, index))
        .collect();
    let program = Program::new(exe.as_os_str())
        .args(args)
        .successor()
        .env("LISTEN_FDS", n.to_string())
        .env_pid("LISTEN_PID")
        .env(systemd::REQUESTED_ENV, requested.join(","))
        .env(READY_ENV, (first + n).to_string())
        .env(FIRST_ID_ENV, first_id.to_string())
        .env_remove("LISTEN_FDNAMES")
        .env_remove(BIN_ENV);
    (program, fds)
}
