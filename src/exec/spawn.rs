//! Starting a worker program: `fork` + `exec`, by hand.
//!
//! `std::process::Command` cannot do two things an exec'd worker needs: put fds at chosen
//! numbers without closing the rest (it only knows stdin, stdout, stderr), and set
//! `LISTEN_PID` to the child's *own* pid, which only exists after the fork. So
//! [`Program::spawn`] does the fork itself, in three parts:
//!
//! 1. **In the parent, everything that can fail or allocate**: the command is looked up on
//!    `$PATH` (a missing or non-executable command is an error here, before any fork, not a
//!    crash loop of children that exit 127); `argv` and `envp` are built as C arrays, with a
//!    fixed-width slot of NUL bytes for each variable whose value is the child's pid; the
//!    ids to switch to are taken from [`Credentials`]; every signal is blocked for the
//!    fork, so that no handler of the master's runs in the child.
//! 2. **In the child, only async-signal-safe system calls** (no allocation, no locks, no
//!    `std::env`, no formatting): move the error pipe and every fd to place above the
//!    highest target, then `dup2` each onto its target (the copies above keep their
//!    close-on-exec flag and vanish at `exec`; the targets have none); its own process
//!    group (`setpgid(0, 0)`: herd signals the group, so a shell wrapper's children stop
//!    too); groups, group, user; `PR_SET_PDEATHSIG` SIGKILL, then `getppid()` against the
//!    parent's pid; the pid digits written into their slots; every signal disposition back
//!    to the default and the mask emptied; `execve`. (A [`Program::successor`] skips the
//!    process group and the parent's death.) These raw calls live behind herd's syscall
//!    fence, in `sys/spawn.rs`, which builds the C arrays from what this file prepared.
//! 3. **Back in the parent**: the error pipe is close-on-exec, so it reads end-of-file
//!    the moment `exec` succeeds; a child that failed writes which step failed and the
//!    errno before it exits, and [`Program::spawn`] returns that as an `Err` ("cannot run
//!    node: No such file or directory") after reaping the child.
//!
//! No fd is closed by hand: herd opens every fd close-on-exec (sockets, pipes, epoll,
//! received fds), so the child starts with stdin, stdout, stderr and the placed fds, and
//! nothing else. A leak would be a bug where the fd is opened, not something to paper over
//! here; `tests/exec_spawn.rs` checks a child's fds. Fds herd *inherited* without the flag
//! are another matter: [`mark_inherited_fds_cloexec`], once at startup.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::unistd::Pid;

use super::environment::{c_string, resolve, Environment};
use crate::sys::{ExecSpec, Ids, SpawnError, Step};
use crate::worker::Credentials;

/// A program to run as a worker: the command, its arguments, its environment and who it
/// runs as. Reusable: a respawn spawns the same `Program` again (clone it to add a
/// worker's own variables, such as `NODE_UNIQUE_ID`).
#[derive(Debug, Clone)]
pub struct Program {
    /// As the user named it: looked up on `$PATH` unless it holds a `/`, passed as
    /// `argv[0]`, and named in errors.
    command: OsString,
    args: Vec<OsString>,
    env: Environment,
    /// Who the child becomes before `exec` (`--user`), resolved in the master.
    credentials: Option<Credentials>,
    /// Not a worker but the master's successor (see [`Program::successor`]).
    successor: bool,
}

/// The fds a child gets at chosen numbers, borrowed for the duration of the spawn.
///
/// Each is given to the child without close-on-exec at its number (stdout is 1, stderr
/// 2, socket activation's first socket 3, Node's channel 3). The child's stdin, and its
/// stdout and stderr unless placed, are the parent's. The parent keeps its own fds: close
/// them after [`Program::spawn`] if the child should be their only holder (a channel end,
/// a pipe's write end).
#[derive(Debug, Default)]
pub struct ChildFds<'a> {
    placed: Vec<(BorrowedFd<'a>, RawFd)>,
}

impl<'a> ChildFds<'a> {
    /// No fds placed: the child gets the parent's stdin, stdout and stderr only.
    pub fn new() -> ChildFds<'a> {
        ChildFds::default()
    }

    /// Gives the child `fd` as fd number `at`.
    pub fn place(mut self, fd: BorrowedFd<'a>, at: RawFd) -> ChildFds<'a> {
        self.placed.push((fd, at));
        self
    }

    /// The child's stdout (the write end of a pipe the master reads, say).
    pub fn stdout(self, fd: BorrowedFd<'a>) -> ChildFds<'a> {
        self.place(fd, libc::STDOUT_FILENO)
    }

    /// The child's stderr.
    pub fn stderr(self, fd: BorrowedFd<'a>) -> ChildFds<'a> {
        self.place(fd, libc::STDERR_FILENO)
    }
}

impl Program {
    /// Runs `command` (a path, or a name looked up on `$PATH`) with no arguments, the
    /// master's environment, as the master's user.
    pub fn new(command: impl Into<OsString>) -> Program {
        Program {
            command: command.into(),
            args: Vec::new(),
            env: Environment::default(),
            credentials: None,
            successor: false,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Program {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Program {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The arguments after the command.
    pub(crate) fn arguments(&self) -> &[OsString] {
        &self.args
    }

    /// Sets `name` to `value` in the child's environment (over the master's).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Program {
        self.env.set(name.into(), value.into());
        self
    }

    /// Removes `name` from the child's environment.
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Program {
        self.env.remove(name.into());
        self
    }

    /// Sets `name` to the child's own pid (`LISTEN_PID`, `WATCHDOG_PID`), written between
    /// fork and exec.
    pub fn env_pid(mut self, name: impl Into<OsString>) -> Program {
        self.env.set_to_pid(name.into());
        self
    }

    /// Runs the program as this user (`--user`); see [`Credentials::resolve`].
    pub fn credentials(mut self, credentials: Credentials) -> Program {
        self.credentials = Some(credentials);
        self
    }

    /// Runs the program as this master's successor rather than its worker (a binary
    /// upgrade's new master): it stays in the master's process group, so that what reaches
    /// the group (a terminal's Ctrl-C) reaches both, and it is not killed when the master
    /// exits, which the old master does once its successor is ready.
    pub fn successor(mut self) -> Program {
        self.successor = true;
        self
    }

    /// The command as given.
    pub fn command(&self) -> &OsStr {
        &self.command
    }

    /// Whether the command can be run: found on `$PATH` (the child's), executable. The
    /// error is the one [`Program::spawn`] would return, without forking.
    pub fn check(&self) -> io::Result<()> {
        resolve(&self.command, self.env.path_override()).map(|_| ())
    }

    /// Starts the program with `fds` in place; returns its pid once it has `exec`'d, which
    /// is also its process group id (signal the group with `killpg`).
    ///
    /// The caller must be single-threaded, and checked: the master's loop is. The child
    /// side would be sound after a fork from any thread (it makes only async-signal-safe
    /// calls), but `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the
    /// process: a worker spawned from a passing thread would be killed with it. Returns an
    /// error without forking if the process has other threads.
    ///
    /// Errors: the command is not found on `$PATH` or is not executable, an argument or
    /// variable holds a NUL byte, two fds are placed at one number, the fork fails, or the
    /// child fails before it runs the program (then the error says which step and why:
    /// `cannot run node: No such file or directory`, an interpreter named by `#!` that is
    /// missing, `setuid: Operation not permitted`). The child is reaped before the error
    /// returns.
    pub fn spawn(&self, fds: &ChildFds<'_>) -> io::Result<Pid> {
        let threads = crate::sys::thread_count()?;
        if threads != 1 {
            return Err(io::Error::other(format!(
                "refusing to spawn {}: the process has {threads} threads (herd's master \
                 forks only while single-threaded)",
                self.command.to_string_lossy()
            )));
        }
        match crate::sys::fork_exec(self.prepare(fds)?) {
            Ok(pid) => Ok(pid),
            Err(SpawnError::Os(e)) => Err(e),
            Err(SpawnError::Child(step, errno)) => Err(self.child_failed(step, errno)),
        }
    }

    /// Everything that can fail or allocate, before the fork.
    fn prepare<'a>(&self, fds: &ChildFds<'a>) -> io::Result<ExecSpec<'a>> {
        let name = self.command.to_string_lossy();
        let path = resolve(&self.command, self.env.path_override())?;
        let argv: Vec<CString> = std::iter::once(&self.command)
            .chain(&self.args)
            .map(|a| c_string(a.as_bytes(), &name))
            .collect::<io::Result<_>>()?;
        let env = self.env.build(&name)?;
        let mut targets: Vec<RawFd> = Vec::with_capacity(fds.placed.len());
        for &(_, at) in &fds.placed {
            if at < 0 || targets.contains(&at) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot run {name}: fd {at} placed twice or negative"),
                ));
            }
            targets.push(at);
        }
        let ids = self.credentials.as_ref().map(|c| Ids {
            groups: c.groups.iter().map(|g| g.as_raw()).collect(),
            gid: c.gid.as_raw(),
            uid: c.uid.as_raw(),
        });
        Ok(ExecSpec {
            path,
            argv,
            env: env.buffers,
            pid_slots: env.pid_slots,
            fds: fds.placed.clone(),
            ids,
            worker: !self.successor,
        })
    }

    fn child_failed(&self, step: Step, errno: i32) -> io::Error {
        let os = io::Error::from_raw_os_error(errno);
        let why = nix::errno::Errno::from_raw(errno).desc();
        let name = self.command.to_string_lossy();
        let msg = match (step, &self.credentials) {
            (Step::Exec, _) => format!("cannot run {name}: {why}"),
            (Step::SetGroups | Step::SetGid | Step::SetUid, Some(c))
            | (Step::IdsUnchanged | Step::RootRegained, Some(c)) => format!(
                "cannot run {name} as user {} (uid {}, gid {}): {}: {why}",
                c.user,
                c.uid,
                c.gid,
                step.describe()
            ),
            _ => format!("cannot run {name}: {}: {why}", step.describe()),
        };
        io::Error::new(os.kind(), msg)
    }
}

/// Marks every fd above stderr that this process holds close-on-exec.
///
/// herd opens its own fds close-on-exec, but whatever started it may have left some open
/// without the flag (a shell's, make's jobserver pipe); [`Program::spawn`] would pass them
/// on to every worker. Call this once at startup, before anything else opens fds. Fds
/// passed on purpose (`LISTEN_FDS`, an upgrade's ready pipe) are adopted by number, so the
/// flag does not hide them from herd; it only keeps them from herd's children.
pub fn mark_inherited_fds_cloexec() -> io::Result<()> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        {
            fds.push(fd);
        }
    }
    for fd in fds.into_iter().filter(|&fd| fd > libc::STDERR_FILENO) {
        // An fd that closed since the listing (the directory's own) is not an error.
        match crate::sys::set_cloexec_by_number(fd) {
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_fds_at_one_number_are_refused_before_any_fork() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let fds = ChildFds::new().place(r.as_fd(), 3).place(w.as_fd(), 3);
        let err = Program::new("true").prepare(&fds).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("fd 3 placed twice"), "{err}");
    }

    use std::os::fd::AsFd;
}
