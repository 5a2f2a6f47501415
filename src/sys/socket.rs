//! Socket calls mio and nix do not offer in the form herd needs.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

/// The most fds [`recv_with_fds`] takes from one message.
pub(crate) const MAX_FDS: usize = 16;

/// Room for the control messages one read can bring: the sender's credentials (on a socket
/// with `SO_PASSCRED`) and up to [`MAX_FDS`] fds.
// SAFETY: CMSG_SPACE is arithmetic on its argument (header size plus the length, aligned);
// it reads no memory.
const CMSG_BYTES: usize = unsafe {
    libc::CMSG_SPACE(mem::size_of::<libc::ucred>() as u32)
        + libc::CMSG_SPACE((MAX_FDS * mem::size_of::<RawFd>()) as u32)
} as usize;

/// What one [`recv_with_fds`] read.
#[derive(Debug)]
pub(crate) struct RecvResult {
    /// Bytes read into the buffer (0 on a stream socket: end of stream).
    pub len: usize,
    /// The fds that came with them (owned: dropping them closes them).
    pub fds: Vec<OwnedFd>,
    /// The sending process, as the kernel attests it (`SCM_CREDENTIALS`: only on a socket
    /// with `SO_PASSCRED`, and a sender cannot forge it without privileges). `None` without
    /// credentials, or if the sender is not visible from this pid namespace.
    pub sender: Option<Pid>,
    /// The control message was cut short (`MSG_CTRUNC`, usually `EMFILE`): the kernel
    /// dropped the fds that did not fit, and with them the connections they carried.
    pub fds_truncated: bool,
    /// A datagram or seqpacket message was longer than the buffer (`MSG_TRUNC`): the rest
    /// of it is lost.
    pub data_truncated: bool,
}

/// `recvmsg(2)` by hand rather than sendfd's or nix's: received fds must be close-on-exec
/// from birth (`MSG_CMSG_CLOEXEC`, so a later `exec` cannot leak client connections), and a
/// truncated control message must still yield the fds that *were* installed so that they
/// are closed rather than leaked (nix's iterator refuses a truncated buffer). Used for the
/// master–worker channel and for a worker's `sd_notify` datagrams.
///
/// Never blocks (`MSG_DONTWAIT`: an fd's `O_NONBLOCK` is shared with every other holder of
/// the socket, so it is not a reliable way to be non-blocking). `EINTR` is retried; nothing
/// to read is `Err(WouldBlock)`.
pub(crate) fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<RecvResult> {
    // u64 elements keep the control buffer aligned for `cmsghdr`.
    let mut cmsg = [0u64; CMSG_BYTES.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid "no name, no iov, no control" header; the
    // pointers set below stay valid for the duration of the recvmsg call.
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cmsg.as_mut_ptr().cast();
    hdr.msg_controllen = mem::size_of_val(&cmsg) as _;
    let len = loop {
        // SAFETY: `hdr` points at live buffers of the stated lengths, `sock` is open.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut hdr,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    let mut sender = None;
    // SAFETY: the kernel filled `hdr.msg_control` with well-formed cmsghdrs up to
    // `msg_controllen` (fewer than it had if MSG_CTRUNC, but never a partial header);
    // CMSG_FIRSTHDR/NXTHDR/DATA only walk inside that buffer, and `read_unaligned` reads
    // only inside a cmsg's data, checked against its length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..bytes / mem::size_of::<RawFd>() {
                        let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        // The kernel just installed this fd in our table; we are its only
                        // owner.
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                    if bytes >= mem::size_of::<libc::ucred>() =>
                {
                    let creds = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                    sender = (creds.pid > 0).then(|| Pid::from_raw(creds.pid));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    Ok(RecvResult {
        len,
        fds,
        sender,
        fds_truncated: hdr.msg_flags & libc::MSG_CTRUNC != 0,
        data_truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// Waits up to `timeout` until `fd` is readable (`write`: writable); whether it is. A signal
/// counts as "not yet".
pub(crate) fn wait_for(fd: impl AsFd, write: bool, timeout: Duration) -> io::Result<bool> {
    let events = if write {
        PollFlags::POLLOUT
    } else {
        PollFlags::POLLIN
    };
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, ms) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Asks the kernel to complete `accept` only once the client has sent data (HTTP clients
/// always speak first). The master then never wakes for, and a worker never reads too early
/// from, a connection whose request has not arrived: the worker's first `read` finds it.
/// A client that connects and stays silent is still accepted, after about a second.
pub(crate) fn defer_accept(socket: &impl AsRawFd) {
    let secs: libc::c_int = 1;
    // SAFETY: setsockopt on a valid socket with a pointer to a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::debug!("TCP_DEFER_ACCEPT: {}", io::Error::last_os_error());
    }
}
