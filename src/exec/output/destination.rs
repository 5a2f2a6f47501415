//! [`Destination`]: one place lines are written to (herd's stdout, its stderr, or the log
//! file), fed from a queue of whole lines and written without ever blocking.
//!
//! How each kind of fd is kept from blocking, and why the flag is not simply set on the
//! inherited fd, is in the [`super::sink`] documentation. Here: the queue is bytes plus
//! each line's remaining length, so that a write can take whole lines (at most `PIPE_BUF`
//! of them for a pipe, which the kernel then keeps together) and a partly written line is
//! finished before anything else.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::sink::Origin;

/// The largest write the kernel keeps whole in a pipe.
const PIPE_BUF: usize = libc::PIPE_BUF;
/// The largest write to a file or a socket: enough to flush a burst in a few calls.
const BATCH: usize = 64 * 1024;

/// How a destination is written without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A regular file: writes never wait for a reader.
    File,
    /// A pipe or terminal reopened with `O_NONBLOCK`.
    NonBlocking,
    /// A pipe or terminal whose reopening failed: `poll`, then at most `PIPE_BUF`.
    Polled,
    /// A socket: `send` with `MSG_DONTWAIT`.
    Socket,
}

/// One fd lines are written to, and its queue.
pub(super) struct Destination {
    fd: OwnedFd,
    kind: Kind,
    bytes: VecDeque<u8>,
    /// Each queued line's bytes still to write (the front one maybe partly written already),
    /// and its origin (to count it if it is lost).
    lines: VecDeque<(usize, Origin)>,
    /// Set when a write failed; nothing is written (or queued) after that.
    broken: bool,
}

impl Destination {
    /// herd's own stdout or stderr, made writable without blocking (see the module docs).
    pub(super) fn stdio(fd: RawFd) -> io::Result<Destination> {
        // SAFETY: fstat(2) fills a stat struct we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } < 0 {
            // Closed: lines have nowhere to go; /dev/null takes them without complaint.
            return Destination::file(Path::new("/dev/null"));
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFIFO | libc::S_IFCHR => {
                let path = format!("/proc/self/fd/{fd}\0");
                let flags = libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
                // SAFETY: open(2) with a NUL-terminated path; a new fd only we own.
                let own = unsafe { libc::open(path.as_ptr().cast(), flags) };
                if own >= 0 {
                    // SAFETY: `own` was just opened and is owned by nothing else.
                    return Ok(Destination::new(
                        unsafe { OwnedFd::from_raw_fd(own) },
                        Kind::NonBlocking,
                    ));
                }
                Kind::Polled
            }
            _ => Kind::File,
        };
        // SAFETY: F_DUPFD_CLOEXEC makes a new fd that only the OwnedFd owns.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        Ok(Destination::new(unsafe { OwnedFd::from_raw_fd(dup) }, kind))
    }

    pub(super) fn file(path: &Path) -> io::Result<Destination> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Destination::new(file.into(), Kind::File))
    }

    fn new(fd: OwnedFd, kind: Kind) -> Destination {
        Destination {
            fd,
            kind,
            bytes: VecDeque::new(),
            lines: VecDeque::new(),
            broken: false,
        }
    }

    /// Queues one formatted line, unless the destination is broken or the queue would
    /// grow past `limit` bytes; false if the line was dropped.
    pub(super) fn enqueue(&mut self, line: &[u8], origin: Origin, limit: usize) -> bool {
        if self.broken || self.bytes.len() + line.len() > limit {
            return false;
        }
        self.bytes.extend(line);
        self.lines.push_back((line.len(), origin));
        true
    }

    /// Bytes wait in the queue.
    pub(super) fn pending(&self) -> bool {
        !self.lines.is_empty()
    }

    /// Whether epoll can watch it for room (not a regular file).
    pub(super) fn pollable(&self) -> bool {
        self.kind != Kind::File
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Writes to `fresh`'s fd from now on (a reopened log file), keeping this queue.
    pub(super) fn replace_fd(&mut self, fresh: Destination) {
        self.fd = fresh.fd;
        self.kind = fresh.kind;
        self.broken = false;
    }

    /// Writes from the front of the queue until the destination would block. On a write
    /// error the destination is broken: the queue is emptied and its lines' origins
    /// returned, to be counted as dropped.
    pub(super) fn flush(&mut self) -> Result<(), Vec<Origin>> {
        while !self.lines.is_empty() {
            let max = if self.kind == Kind::File || self.kind == Kind::Socket {
                BATCH
            } else {
                PIPE_BUF
            };
            // Whole lines up to `max` bytes; at least the front line (or `max` of it).
            let mut len = 0;
            for &(line, _) in &self.lines {
                if len > 0 && len + line > max {
                    break;
                }
                len += line;
            }
            if self.kind == Kind::Polled {
                len = len.min(PIPE_BUF);
            }
            match self.write_front(len) {
                Ok(0) => return Ok(()), // took nothing: try again on the next flush
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.broken = true;
                    self.bytes.clear();
                    return Err(self.lines.drain(..).map(|(_, origin)| origin).collect());
                }
            }
        }
        Ok(())
    }

    /// One write of the first `len` queued bytes; the number written.
    fn write_front(&mut self, len: usize) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        if self.kind == Kind::Polled {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: poll(2) on one pollfd we own, without waiting.
            if unsafe { libc::poll(&mut pfd, 1, 0) } == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let (a, b) = self.bytes.as_slices();
        let a = &a[..len.min(a.len())];
        let b = &b[..len - a.len()];
        let iov = [a, b].map(|s| libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        });
        let count = if b.is_empty() { 1 } else { 2 };
        // SAFETY: the iovecs point into the queue, which is not touched until the call
        // returns; the kernel only reads them.
        let n = unsafe {
            if self.kind == Kind::Socket {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = count;
                libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            } else {
                libc::writev(fd, iov.as_ptr(), count as libc::c_int)
            }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// `n` bytes left the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.bytes.drain(..n);
        while n > 0 {
            let front = &mut self.lines[0].0;
            if *front <= n {
                n -= *front;
                self.lines.pop_front();
            } else {
                *front -= n;
                n = 0;
            }
        }
    }
}
