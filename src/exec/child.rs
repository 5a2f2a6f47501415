//! The child's side of [`super::spawn`]: what runs between `fork` and `exec`, and how it
//! tells the parent that it could not get to `exec`.
//!
//! Everything here runs in a process that is a copy of the master at the instant of the
//! fork. Only async-signal-safe system calls are allowed (`fcntl`, `dup2`, `setpgid`,
//! `setgroups`/`setgid`/`setuid`, `prctl`, `rt_sigaction`, `sigprocmask`, `execve`,
//! `write`, `_exit`): no allocation, no lock, no formatting. [`Prepared`] holds every
//! byte the child needs, built by the parent before the fork.
//!
//! **The report**: a close-on-exec pipe. A successful `execve` closes the child's end, so
//! the parent reads end-of-file; a failure writes 8 bytes (the [`Step`] and the errno)
//! before `_exit(127)`.

use std::ffi::CString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

/// The step of the child's preparation that failed, as the child reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
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
    pub(super) const ALL: [Step; 8] = [
        Step::Dup,
        Step::ProcessGroup,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::IdsUnchanged,
        Step::RootRegained,
        Step::Exec,
    ];

    pub(super) fn describe(self) -> &'static str {
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

/// Signal numbers the kernel knows (`_NSIG`), and the size of its signal set in bytes.
const KERNEL_SIGNALS: libc::c_int = 64;
const KERNEL_SIGSET_BYTES: usize = 8;

/// Everything the child needs, built before the fork so that the child only reads it.
pub(super) struct Prepared {
    pub(super) path: CString,
    /// The C strings `argv` points into; kept alive until `exec`.
    pub(super) _argv: Vec<CString>,
    pub(super) argv: Vec<*const libc::c_char>,
    /// `NAME=value\0` buffers `envp` points into (pid variables end in a slot of NULs);
    /// kept alive until `exec`.
    pub(super) _env: Vec<Vec<u8>>,
    pub(super) envp: Vec<*const libc::c_char>,
    /// Where each pid variable's digits go, inside `env`.
    pub(super) pid_slots: Vec<*mut u8>,
    /// `sources[i]` goes to `targets[i]`, through `high[i]` (filled in by the child).
    pub(super) sources: Vec<RawFd>,
    pub(super) targets: Vec<RawFd>,
    pub(super) high: Vec<RawFd>,
    /// Above every target: where fds wait before they are placed.
    pub(super) above: RawFd,
    pub(super) ids: Option<Ids>,
    pub(super) parent: libc::pid_t,
}

/// [`Credentials`](crate::worker::Credentials) as the raw values the child's system calls take.
pub(super) struct Ids {
    pub(super) groups: Vec<libc::gid_t>,
    pub(super) gid: libc::gid_t,
    pub(super) uid: libc::uid_t,
}

pub(super) fn zeroed_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bit array; all zeros is a valid (empty) set.
    unsafe { std::mem::zeroed() }
}

/// Reads the child's report: `None` at end-of-file (the exec succeeded), else the step that
/// failed and its errno (8 bytes: two native-endian `u32`s).
pub(super) fn read_report(pipe: OwnedFd) -> io::Result<Option<(Step, i32)>> {
    use std::io::Read;
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
    let step = u32::from_ne_bytes(buf[..4].try_into().unwrap());
    let errno = i32::from_ne_bytes(buf[4..].try_into().unwrap());
    match Step::ALL.into_iter().find(|s| *s as u32 == step) {
        Some(step) if got == 8 => Ok(Some((step, errno))),
        _ => Err(io::Error::other("the child sent a garbled exec report")),
    }
}

/// In the child: reports `step` and the errno of the call that failed, and exits.
fn fail(report: RawFd, step: Step) -> ! {
    fail_with(report, step, nix::errno::Errno::last_raw())
}

/// In the child: reports `step` and `errno` on the error pipe, and exits.
fn fail_with(report: RawFd, step: Step, errno: i32) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is on this stack. A short
    // write of 8 bytes to an empty pipe cannot happen (writes up to PIPE_BUF are atomic).
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child between fork and exec. Only async-signal-safe system calls on memory the
/// parent prepared: no allocation, no locks, no Rust runtime.
pub(super) fn run_child(p: &mut Prepared, report: RawFd) -> ! {
    // SAFETY (for every libc call below): each is an async-signal-safe system call on fds
    // and memory this process owns; none allocates or takes a lock, so it is sound in the
    // child of a fork whatever the other threads of the parent were doing. The master's
    // objects for the fds overwritten by dup2 are never used again: this process leaves
    // through execve or _exit.
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
        for i in 0..p.sources.len() {
            p.high[i] = libc::fcntl(p.sources[i], libc::F_DUPFD_CLOEXEC, p.above);
            if p.high[i] < 0 {
                fail(report, Step::Dup);
            }
        }
        for i in 0..p.targets.len() {
            if libc::dup2(p.high[i], p.targets[i]) < 0 {
                fail(report, Step::Dup);
            }
        }
        if libc::setpgid(0, 0) < 0 {
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
        // After the credentials change, which clears it. If the master died before this
        // line, nobody will ever reap or stop this process: go now.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != p.parent {
            libc::_exit(0);
        }
        let pid = libc::getpid();
        for &slot in &p.pid_slots {
            write_decimal(slot, pid);
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
        let empty = zeroed_sigset();
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        fail(report, Step::Exec)
    }
}

/// Writes `n` (> 0) in decimal at `slot`, then a NUL. The slot holds
/// [`super::environment::PID_DIGITS`] + 1 bytes, enough for any `pid_t`.
///
/// # Safety
/// `slot` must point to that many writable bytes.
unsafe fn write_decimal(slot: *mut u8, n: libc::pid_t) {
    let mut digits = [0u8; super::environment::PID_DIGITS];
    let mut len = 0;
    let mut n = n.unsigned_abs();
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: i ≤ len ≤ PID_DIGITS, inside the slot (the caller's promise).
        unsafe { *slot.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: as above; len ≤ PID_DIGITS leaves room for the NUL.
    unsafe { *slot.add(len) = 0 };
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
            let mut slot = [0xffu8; super::super::environment::PID_DIGITS + 1];
            // SAFETY: the slot has PID_DIGITS + 1 bytes.
            unsafe { write_decimal(slot.as_mut_ptr(), pid) };
            let end = slot.iter().position(|&b| b == 0).unwrap();
            assert_eq!(&slot[..end], text.as_bytes());
        }
    }

    #[test]
    fn every_step_survives_the_report_round_trip() {
        for step in Step::ALL {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            msg[4..].copy_from_slice(&libc::ENOENT.to_ne_bytes());
            nix::unistd::write(&w, &msg).unwrap();
            drop(w);
            assert_eq!(read_report(r).unwrap(), Some((step, libc::ENOENT)));
        }
    }
}
