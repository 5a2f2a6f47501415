//! File-descriptor plumbing that std and nix leave to `unsafe`: flags on an fd known only
//! by its number, taking ownership of a numbered fd passed by a parent, and closing a
//! parent's fds in a forked child.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// Sets or clears `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: impl AsFd, on: bool) -> io::Result<()> {
    let fd = fd.as_fd();
    let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    let flags = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags - FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Sets `FD_CLOEXEC` on fd number `fd`, whoever owns it: for fds this process inherited
/// without the flag and holds no object for (see `exec::mark_inherited_fds_cloexec`).
/// `EBADF` if no such fd is open.
pub(crate) fn set_cloexec_by_number(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD read and change only the descriptor's close-on-exec flag,
    // never the open file behind it, so whoever owns the fd finds it as it was (and a
    // number that is not open fails with EBADF). No memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & libc::FD_CLOEXEC == 0
            && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes ownership of `fd`, which a parent process passed to this one by number (systemd's
/// socket activation, a herd binary upgrade's ready pipe). Fails if no such fd is open:
/// wrapping a number that is not open, or that something else already owns, would close it
/// twice.
///
/// Callers must take each passed fd once, before anything else in the process could have
/// opened or wrapped that number (at start, before any listener or poll exists).
pub(crate) fn adopt_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::other(format!("fd {fd} is a standard stream")));
    }
    // SAFETY: F_GETFD only reads the flags of whatever `fd` names (EBADF if nothing).
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked just above), it was passed to this process for it
    // alone, and the caller takes it once at start, before anything else wraps it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// In a freshly forked child: closes `fds`, which belong to the parent (its listeners, its
/// poll, other workers' channels).
///
/// The caller is a forked child that will never touch those fds again and never drops the
/// parent's objects that own them (it leaves through `exit`, not by returning).
pub(crate) fn close_inherited_from_parent(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: these fds are the parent's; this process never uses them again and no
        // Rust object in it will touch them (the parent's state is never dropped here: the
        // child leaves through `process::exit`). Closing an fd number is async-signal-safe.
        unsafe { libc::close(fd) };
    }
}
