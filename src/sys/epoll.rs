//! Level-triggered and `EPOLLEXCLUSIVE` registration on a mio poll's epoll instance.
//!
//! mio always registers edge-triggered and has no flag for `EPOLLEXCLUSIVE` (which can only
//! be given when an fd is added). A worker accepting from a shared listening socket wants
//! both (see `worker::acceptor`), so it adds the socket to its poll's epoll fd directly. mio
//! hands events out by the `u64` data word, which is the token set here, so these events
//! reach the worker's loop like any other.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use mio::Token;

/// Adds `fd` to the epoll instance `epoll`, level-triggered for reading, reporting `token`;
/// with `exclusive`, `EPOLLEXCLUSIVE` (Linux 4.5: one incoming connection wakes one of the
/// epoll instances waiting on a shared socket instead of all of them).
pub(crate) fn epoll_add_level(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    token: Token,
    exclusive: bool,
) -> io::Result<()> {
    let mut flags = libc::EPOLLIN as u32;
    if exclusive {
        flags |= libc::EPOLLEXCLUSIVE as u32;
    }
    let mut event = libc::epoll_event {
        events: flags,
        u64: token.0 as u64,
    };
    // SAFETY: both fds are open for the duration of the call (borrowed); the kernel copies
    // `event` before returning.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes `fd` from the epoll instance `epoll`.
pub(crate) fn epoll_del(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) {
    // SAFETY: as in `epoll_add_level`; DEL ignores the event argument (may be null since
    // Linux 2.6.9).
    unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut(),
        )
    };
}
