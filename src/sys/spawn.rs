//! `fork` + `execve` for [`crate::exec::Program::spawn`]: what runs in the child between
//! the two calls, and the report it sends back when it cannot get to `execve`.
//!
//! The child is a copy of the parent at the instant of the fork, with one thread; a lock
//! that another thread of the parent held (the allocator's, a logger's) stays held in it
//! forever. So the child makes only async-signal-safe system calls (`fcntl`, `dup2`,
//! `setpgid`, `setgroups`/`setgid`/`setuid`, `prctl`, `rt_sigaction`, `sigprocmask`,
//! `execve`, `write`, `_exit`) on memory the parent prepared: no allocation, no lock, no
//! formatting, nothing that can panic. [`ExecSpec`] is what the parent decided (plain
//! owned data, built by `exec::spawn`); [`fork_exec`] turns it into the C arrays `execve`
//! takes before it forks.
//!
//! **The report**: a close-on-exec pipe. A successful `execve` closes the child's end, so
//! the parent reads end-of-file; a failure writes 8 bytes (the [`Step`] and the errno)
//! before `_exit(127)`, and the parent reaps the child before it returns the failure.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

/// Decimal digits of the largest `pid_t` (2147483647): the width of the slot the parent
/// leaves in a variable whose value is the child's pid.
pub(crate) const PID_DIGITS: usize = 10;

/// Signal numbers the kernel knows (`_NSIG`), and the size of its signal set in bytes.
const KERNEL_SIGNALS: libc::c_int = 64;
const KERNEL_SIGSET_BYTES: usize = 8;

/// What the child is to become, decided by the parent.
#[derive(Debug)]
pub(crate) struct ExecSpec<'a> {
    /// The file to run (already looked up on `$PATH`).
    pub path: CString,
    /// `argv`, from `argv[0]`.
    pub argv: Vec<CString>,
    /// `NAME=value\0` buffers for `envp`.
    pub env: Vec<Vec<u8>>,
    /// Variables whose value is the child's pid: the index of the buffer in `env`, and the
    /// offset after its `NAME=` where a slot of [`PID_DIGITS`] + 1 NUL bytes starts.
    pub pid_slots: Vec<(usize, usize)>,
    /// Each fd and the number it gets in the child, without close-on-exec (the numbers
    /// distinct and not negative: checked by the caller).
    pub fds: Vec<(BorrowedFd<'a>, RawFd)>,
    /// The ids to switch to, if any.
    pub ids: Option<Ids>,
    /// A worker: its own process group, and killed when the parent dies. Without it the
    /// child stays in the parent's group and outlives it (a binary upgrade's new master).
    pub worker: bool,
}

/// [`Credentials`](crate::worker::Credentials) as the raw values the child's system calls take.
#[derive(Debug)]
pub(crate) struct Ids {
    pub groups: Vec<libc::gid_t>,
    pub gid: libc::gid_t,
    pub uid: libc::uid_t,
}

/// The step of the child's preparation that failed, as the child reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Dup = 1,
    ProcessGroup,
    SetGroups,
    SetGid,
    SetUid,
    IdsUnchanged,
    RootRegained,
    Exec,
}

impl Step {
    const ALL: [Step; 8] = [
        Step::Dup,
        Step::ProcessGroup,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::IdsUnchanged,
        Step::RootRegained,
        Step::Exec,
    ];

    /// The step in an error message.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Step::Dup => "placing its fds",
            Step::ProcessGroup => "setpgid",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setgid",
            Step::SetUid => "setuid",
            Step::IdsUnchanged => "the user ids did not change",
            Step::RootRegained => "root could be regained",
            Step::Exec => "exec",
        }
    }
}

/// Why [`fork_exec`] did not start the program.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// The parent's own calls failed (the report pipe, the fork, reading the report), or
    /// the report was garbled (the child was then killed and reaped).
    Os(io::Error),
    /// The child failed at `Step` with this errno before it could `execve`; it has been
    /// reaped.
    Child(Step, i32),
}

impl From<io::Error> for SpawnError {
    fn from(e: io::Error) -> SpawnError {
        SpawnError::Os(e)
    }
}

impl From<Errno> for SpawnError {
    fn from(e: Errno) -> SpawnError {
        SpawnError::Os(e.into())
    }
}

/// Everything the child reads, as the raw pointers and numbers its system calls take.
/// Built before the fork; the owned buffers (`_argv`, `env`) keep the pointers valid until
/// `execve`.
struct ExecImage<'a> {
    path: CString,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _env: Vec<Vec<u8>>,
    envp: Vec<*const libc::c_char>,
    /// Where each pid variable's digits go, inside `_env`.
    pid_slots: Vec<*mut u8>,
    /// `sources[i]` goes to `targets[i]`, through `high[i]` (filled in by the child).
    sources: Vec<BorrowedFd<'a>>,
    targets: Vec<RawFd>,
    high: Vec<RawFd>,
    /// Above every target and above stderr: where fds wait before they are placed.
    above: RawFd,
    ids: Option<Ids>,
    /// For a worker: the parent's pid, checked after `PR_SET_PDEATHSIG`.
    worker_of: Option<libc::pid_t>,
    /// The mask the program starts with.
    empty_mask: SigSet,
}

impl<'a> ExecImage<'a> {
    fn new(spec: ExecSpec<'a>) -> ExecImage<'a> {
        let argv_ptrs = spec
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let mut env = spec.env;
        // `as_mut_ptr` does not materialise a reference to the buffer, so these pointers
        // and the slot pointers below may alias; the buffers are never resized again.
        let envp = env
            .iter_mut()
            .map(|buf| buf.as_mut_ptr().cast_const().cast())
            .chain([std::ptr::null()])
            .collect();
        let pid_slots = spec
            .pid_slots
            .iter()
            .map(|&(i, at)| {
                assert!(
                    env.get(i).is_some_and(|b| b.len() > at + PID_DIGITS),
                    "a pid slot outside its variable"
                );
                env[i].as_mut_ptr().wrapping_add(at)
            })
            .collect();
        let (sources, targets): (Vec<_>, Vec<_>) = spec.fds.into_iter().unzip();
        let above = targets.iter().copied().max().unwrap_or(0).max(2) + 1;
        ExecImage {
            path: spec.path,
            _argv: spec.argv,
            argv: argv_ptrs,
            _env: env,
            envp,
            pid_slots,
            high: vec![-1; sources.len()],
            sources,
            targets,
            above,
            ids: spec.ids,
            worker_of: spec.worker.then(|| std::process::id() as libc::pid_t),
            empty_mask: SigSet::empty(),
        }
    }
}

/// Forks a child that becomes `spec` and returns its pid once it has `exec`'d; or, if it
/// could not, which step failed and why (the child reaped).
///
/// Every signal is blocked across the fork, so that no handler of the parent's runs in the
/// child before the child resets them; the parent's mask is restored on every path.
pub(crate) fn fork_exec(spec: ExecSpec<'_>) -> Result<Pid, SpawnError> {
    let mut image = ExecImage::new(spec);
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    // SAFETY: the child runs only `run_child`, which makes async-signal-safe system calls
    // on memory prepared above (it allocates nothing, takes no lock and cannot panic) and
    // leaves through `execve` or `_exit`, never returning into the caller's frames. That is
    // sound after a fork from any thread.
    let forked = match unsafe { fork() } {
        Ok(ForkResult::Child) => run_child(&mut image, report_write.as_raw_fd()),
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(e),
    };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    let pid = forked?;
    drop(report_write); // the child's copy is the only writer now: EOF at its exec
    match read_report(report_read) {
        Ok(None) => Ok(pid),
        Ok(Some((step, errno))) => {
            let _ = waitpid(pid, None);
            Err(SpawnError::Child(step, errno))
        }
        Err(e) => {
            // Cannot tell how the child fared: do not leave it running unsupervised.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Err(SpawnError::Os(e))
        }
    }
}

/// Reads the child's report: `None` at end-of-file (the exec succeeded), else the step that
/// failed and its errno (8 bytes: two native-endian `u32`s).
fn read_report(pipe: OwnedFd) -> io::Result<Option<(Step, i32)>> {
    let mut file = std::fs::File::from(pipe);
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    let (step, errno) = decode_report(buf);
    match Step::ALL.into_iter().find(|s| *s as u32 == step) {
        Some(step) if got == 8 => Ok(Some((step, errno))),
        _ => Err(io::Error::other("the child sent a garbled exec report")),
    }
}

fn encode_report(step: Step, errno: i32) -> [u8; 8] {
    let mut msg = [0u8; 8];
    let (s, e) = msg.split_at_mut(4);
    s.copy_from_slice(&(step as u32).to_ne_bytes());
    e.copy_from_slice(&errno.to_ne_bytes());
    msg
}

fn decode_report(msg: [u8; 8]) -> (u32, i32) {
    let [a, b, c, d, e, f, g, h] = msg;
    (
        u32::from_ne_bytes([a, b, c, d]),
        i32::from_ne_bytes([e, f, g, h]),
    )
}

/// `n` (> 0) in decimal, then NULs to fill a pid slot.
fn decimal(n: libc::pid_t) -> [u8; PID_DIGITS + 1] {
    let mut digits = [0u8; PID_DIGITS];
    let mut len = 0;
    let mut n = n.unsigned_abs();
    // A u32 has at most PID_DIGITS digits, so `len` stays inside `digits`.
    while len < PID_DIGITS {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut out = [0u8; PID_DIGITS + 1];
    for (o, d) in out.iter_mut().zip(digits[..len].iter().rev()) {
        *o = *d;
    }
    out
}

/// In the child: reports `step` and the errno of the call that failed, and exits.
fn fail(report: RawFd, step: Step) -> ! {
    fail_with(report, step, Errno::last_raw())
}

/// In the child: reports `step` and `errno` on the error pipe, and exits.
fn fail_with(report: RawFd, step: Step, errno: i32) -> ! {
    let msg = encode_report(step, errno);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is on this stack. A short
    // write of 8 bytes to an empty pipe cannot happen (writes up to PIPE_BUF are atomic).
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child between fork and exec. Only async-signal-safe system calls on memory the
/// parent prepared: no allocation, no locks, no Rust runtime.
fn run_child(p: &mut ExecImage<'_>, report: RawFd) -> ! {
    // SAFETY (for every libc call below): each is an async-signal-safe system call on fds
    // and memory this process owns; none allocates or takes a lock, so it is sound in the
    // child of a fork whatever the other threads of the parent were doing. The parent's
    // objects for the fds overwritten by dup2 are never used again: this process leaves
    // through execve or _exit. The pid slots lie inside their buffers (checked by
    // `ExecImage::new`), which stay alive and unmoved until execve.
    unsafe {
        // The error pipe first, above every target, so that placing fds cannot clobber it.
        let report = match libc::fcntl(report, libc::F_DUPFD_CLOEXEC, p.above) {
            fd if fd >= 0 => fd,
            _ => fail(report, Step::Dup),
        };
        // Every source above the targets before any dup2, so that a source whose number is
        // another fd's target is copied before it is overwritten. The copies are
        // close-on-exec; dup2 gives each target a copy without the flag. (dup2 onto the
        // same number would leave the flag set: this way source and target always differ.)
        for (high, source) in p.high.iter_mut().zip(&p.sources) {
            *high = libc::fcntl(source.as_raw_fd(), libc::F_DUPFD_CLOEXEC, p.above);
            if *high < 0 {
                fail(report, Step::Dup);
            }
        }
        for (&high, &target) in p.high.iter().zip(&p.targets) {
            if libc::dup2(high, target) < 0 {
                fail(report, Step::Dup);
            }
        }
        // Its own process group: herd signals the group, so a shell wrapper's children
        // stop too.
        if p.worker_of.is_some() && libc::setpgid(0, 0) < 0 {
            fail(report, Step::ProcessGroup);
        }
        if let Some(ids) = &p.ids {
            // Groups and group while still root; the user last.
            if libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) < 0 {
                fail(report, Step::SetGroups);
            }
            if libc::setgid(ids.gid) < 0 {
                fail(report, Step::SetGid);
            }
            if libc::setuid(ids.uid) < 0 {
                fail(report, Step::SetUid);
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            if libc::getresuid(&mut r, &mut e, &mut s) < 0 || [r, e, s] != [ids.uid; 3] {
                fail_with(report, Step::IdsUnchanged, libc::EPERM);
            }
            if ids.uid != 0 && libc::setuid(0) == 0 {
                fail_with(report, Step::RootRegained, libc::EPERM);
            }
        }
        if let Some(parent) = p.worker_of {
            // After the credentials change, which clears it. If the parent died before
            // this line, nobody will ever reap or stop this process: go now.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if libc::getppid() != parent {
                libc::_exit(0);
            }
        }
        let pid = decimal(libc::getpid());
        for &slot in &p.pid_slots {
            std::ptr::copy_nonoverlapping(pid.as_ptr(), slot, pid.len());
        }
        // Handlers do not survive exec, but ignored signals and the mask do: a program
        // started with SIGPIPE ignored (Rust's runtime ignores it) or SIGTERM blocked would
        // behave unlike one started from a shell.
        // The raw system call: glibc's sigaction refuses the two signals it reserves for
        // itself (32, 33), which a parent may still have ignored. All zeros is the kernel's
        // `struct sigaction` for SIG_DFL with no flags and an empty mask, on every
        // architecture (it is at most four words).
        let default = [0u64; 4];
        for sig in 1..=KERNEL_SIGNALS {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    KERNEL_SIGSET_BYTES,
                );
            }
        }
        libc::pthread_sigmask(
            libc::SIG_SETMASK,
            p.empty_mask.as_ref(),
            std::ptr::null_mut(),
        );
        libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        fail(report, Step::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_digits_fill_the_slot_and_end_in_nul() {
        for (pid, text) in [
            (1, "1"),
            (42, "42"),
            (4_194_304, "4194304"),
            (i32::MAX, "2147483647"),
        ] {
            let slot = decimal(pid);
            let end = slot.iter().position(|&b| b == 0).unwrap();
            assert_eq!(&slot[..end], text.as_bytes());
        }
    }

    #[test]
    fn every_step_survives_the_report_round_trip() {
        for step in Step::ALL {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            nix::unistd::write(&w, &encode_report(step, libc::ENOENT)).unwrap();
            drop(w);
            assert_eq!(read_report(r).unwrap(), Some((step, libc::ENOENT)));
        }
    }

    #[test]
    fn a_short_report_is_garbled_not_a_success() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&w, &[1, 0, 0]).unwrap();
        drop(w);
        assert!(read_report(r).is_err());
    }
}
