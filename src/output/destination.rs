//! [`Destination`]: one place lines are written to (herd's stdout, its stderr, or the log
//! file), fed from a queue of whole lines and written without ever blocking.
//!
//! How each kind of fd is kept from blocking, and why the flag is not simply set on the
//! inherited fd, is in the [`super::sink`] documentation. Here: the queue is bytes plus
//! each line's remaining length, so that a write can take whole lines (at most `PIPE_BUF`
//! of them for a pipe, which the kernel then keeps together) and a partly written line is
//! finished before anything else.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{sendmsg, MsgFlags};
use nix::sys::stat::{fstat, SFlag};

use crate::worker::WorkerId;

/// Who wrote a line: for the prefix and for counting drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// herd itself (its log, through [`MasterWriter`](super::MasterWriter)): no prefix.
    Master,
    /// A worker: `[worker 3] ` before each line.
    Worker(WorkerId),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Master => f.write_str("herd's own log"),
            Origin::Worker(id) => write!(f, "worker {id}"),
        }
    }
}

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
    pub(super) fn stdio(fd: BorrowedFd<'_>) -> io::Result<Destination> {
        let Ok(st) = fstat(fd) else {
            // Closed: lines have nowhere to go; /dev/null takes them without complaint.
            return Destination::file(Path::new("/dev/null"));
        };
        let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFSOCK => Kind::Socket,
            SFlag::S_IFIFO | SFlag::S_IFCHR => {
                // A new open file description of the same pipe or terminal, so that
                // O_NONBLOCK is ours alone (std adds O_CLOEXEC).
                let reopened = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                    .open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                if let Ok(own) = reopened {
                    return Ok(Destination::new(own.into(), Kind::NonBlocking));
                }
                Kind::Polled
            }
            _ => Kind::File,
        };
        // F_DUPFD_CLOEXEC: a copy above the standard streams, owned by this destination.
        Ok(Destination::new(fd.try_clone_to_owned()?, kind))
    }

    pub(super) fn file(path: &Path) -> io::Result<Destination> {
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

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
        if self.kind == Kind::Polled
            && matches!(
                crate::sys::wait_for(&self.fd, true, Duration::ZERO),
                Ok(false)
            )
        {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let (a, b) = self.bytes.as_slices();
        let a = &a[..len.min(a.len())];
        let b = &b[..len - a.len()];
        let both = [IoSlice::new(a), IoSlice::new(b)];
        let iov = if b.is_empty() { &both[..1] } else { &both[..] };
        let n = if self.kind == Kind::Socket {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            sendmsg::<()>(self.fd.as_raw_fd(), iov, &[], flags, None)?
        } else {
            nix::sys::uio::writev(self.fd.as_fd(), iov)?
        };
        Ok(n)
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
