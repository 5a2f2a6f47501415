//! A `NOTIFY_SOCKET` per worker: the `sd_notify` protocol, with herd in systemd's place.
//!
//! A socket-activated program says it is ready by sending the datagram `READY=1` to the
//! Unix socket named in `$NOTIFY_SOCKET` (libsystemd's `sd_notify`, Python's `sdnotify`,
//! Go's `daemon.SdNotify`, gunicorn, Puma). herd gives each worker a socket of its own, so
//! that *who* is ready needs no guessing, and reads it from the master's poll.
//!
//! * **The address**: the abstract namespace, `@herd/<master pid>/<worker id>/<nonce>`.
//!   An abstract name disappears with the socket's last fd, so it cannot outlive the
//!   master even after a SIGKILL (a path would stay on disk), and it needs no directory
//!   the worker can reach or permissions to set: a worker running as `--user nobody` can
//!   send to it as easily as one running as herd's user. The master's pid keeps two
//!   masters apart (an old and a new one during a binary upgrade); the random nonce keeps
//!   apart two masters with the same pid in different pid namespaces sharing one network
//!   namespace (containers on the host network), where abstract names are shared. The
//!   socket is close-on-exec (no worker inherits it), non-blocking, and `SO_PASSCRED`.
//! * **Who may speak**: any process can send to an abstract address, so every datagram's
//!   sender is checked with the credentials the kernel attaches (`SCM_CREDENTIALS`, which
//!   a sender cannot forge without privileges): it is accepted from the worker itself or
//!   from a process in the worker's process group, which is the worker's own (see
//!   [`super::spawn`]) and holds its descendants unless they made groups of their own. So
//!   `sh -c 'app'` works when `app` notifies, and another worker, or any other process,
//!   is ignored. A sender that has exited by the time the datagram is read cannot be
//!   checked and is ignored: notifiers that exit at once (`systemd-notify`) follow the
//!   message with `BARRIER=1` and an fd, and wait for the receiver to close that fd; herd
//!   closes every fd a datagram carries as soon as it is received, which answers the
//!   barrier, after the message before it was checked.
//! * **What is understood** ([`parse`]): newline-separated `KEY=VALUE` assignments, several
//!   per datagram, as systemd reads them: `READY=1`, `RELOADING=1`, `STOPPING=1`,
//!   `WATCHDOG=1`, `WATCHDOG=trigger`, `STATUS=…`, `MAINPID=`, `ERRNO=`,
//!   `EXTEND_TIMEOUT_USEC=`. Anything else is ignored: unknown keys, other values, lines
//!   without `=`, and whole datagrams that are truncated (over [`MAX_DATAGRAM`] bytes) or
//!   hold a NUL byte.
//!
//! The kernel queues only a few datagrams per socket (`net.unix.max_dgram_qlen`, 10 by
//! default) and `sd_notify` does not wait for room, so the master must read promptly:
//! register [`NotifySocket::fd`] for `READABLE` and call [`NotifySocket::on_readable`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::Pid;

use crate::worker::WorkerId;

/// The longest notification read whole (systemd's limit too); longer ones are ignored.
pub const MAX_DATAGRAM: usize = 4096;
/// Datagrams read per [`NotifySocket::on_readable`] call at most.
pub const READ_BUDGET: usize = 64;

/// One assignment of the protocol that herd understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `READY=1`: start-up (or a reload) is complete.
    Ready,
    /// `RELOADING=1`: reloading its configuration; `READY=1` follows.
    Reloading,
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `WATCHDOG=1`: the keep-alive ping.
    Watchdog,
    /// `WATCHDOG=trigger`: the program asks to be treated as hung.
    WatchdogTrigger,
    /// `STATUS=…`: a free-form status line (for `/status`).
    Status(String),
    /// `MAINPID=`: the program's main process is now this pid.
    MainPid(u32),
    /// `ERRNO=`: the program failed with this errno.
    Errno(i32),
    /// `EXTEND_TIMEOUT_USEC=`: asks for this much more time for start-up or shutdown.
    ExtendTimeout(Duration),
}

/// What one [`NotifySocket::on_readable`] call received.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// The accepted notices, in the order they were sent.
    pub notices: Vec<Notice>,
    /// Datagrams ignored: from another process, truncated, or without credentials.
    pub ignored: usize,
    /// [`READ_BUDGET`] was reached: call again without waiting for an event.
    pub more: bool,
}

/// Parses one datagram into the notices herd understands; see the module documentation.
pub fn parse(datagram: &[u8]) -> Vec<Notice> {
    if datagram.contains(&0) {
        return Vec::new();
    }
    let mut notices = Vec::new();
    for line in datagram.split(|&b| b == b'\n') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        let number = || std::str::from_utf8(value).ok()?.parse::<u64>().ok();
        let notice = match (key, value) {
            (b"READY", b"1") => Notice::Ready,
            (b"RELOADING", b"1") => Notice::Reloading,
            (b"STOPPING", b"1") => Notice::Stopping,
            (b"WATCHDOG", b"1") => Notice::Watchdog,
            (b"WATCHDOG", b"trigger") => Notice::WatchdogTrigger,
            (b"STATUS", _) => match std::str::from_utf8(value) {
                Ok(status) => Notice::Status(status.to_string()),
                Err(_) => continue,
            },
            (b"MAINPID", _) => match number() {
                Some(pid @ 1..=0x7fff_ffff) => Notice::MainPid(pid as u32),
                _ => continue,
            },
            (b"ERRNO", _) => match number() {
                Some(errno @ 0..=0x7fff_ffff) => Notice::Errno(errno as i32),
                _ => continue,
            },
            (b"EXTEND_TIMEOUT_USEC", _) => match number() {
                Some(usec) => Notice::ExtendTimeout(Duration::from_micros(usec)),
                None => continue,
            },
            _ => continue,
        };
        notices.push(notice);
    }
    notices
}

/// One worker's notification socket.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    /// The value for the worker's `$NOTIFY_SOCKET`: `@` then the abstract name.
    address: String,
    /// The worker's pid, which is also its process group: the senders accepted.
    worker: Option<Pid>,
}

impl NotifySocket {
    /// Binds worker `id`'s socket. Give the worker [`NotifySocket::address`] as
    /// `NOTIFY_SOCKET`, then [`NotifySocket::set_worker`] once it is spawned.
    pub fn bind(id: WorkerId) -> io::Result<NotifySocket> {
        let pid = std::process::id();
        let mut nonce = RandomState::new().build_hasher();
        nonce.write_u32(id);
        let name = format!("herd/{pid}/{id}/{:08x}", nonce.finish() as u32);
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name)?)
            .map_err(|e| io::Error::new(e.kind(), format!("notify socket @{name}: {e}")))?;
        socket.set_nonblocking(true)?;
        setsockopt(&socket, sockopt::PassCred, &true)?;
        Ok(NotifySocket {
            socket,
            address: format!("@{name}"),
            worker: None,
        })
    }

    /// The value for the worker's `NOTIFY_SOCKET` (`@herd/…`: a leading `@` is the
    /// abstract namespace, as in systemd's own `NOTIFY_SOCKET`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The worker is spawned: accept datagrams from `pid` and its process group.
    /// Datagrams that were already queued are checked when they are read, against this.
    pub fn set_worker(&mut self, pid: Pid) {
        self.worker = Some(pid);
    }

    /// The fd to register with the master's poll for `READABLE`.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Reads the queued datagrams (up to [`READ_BUDGET`]) and returns the notices of the
    /// ones the worker sent.
    pub fn on_readable(&mut self) -> io::Result<Notifications> {
        let mut out = Notifications::default();
        let mut buf = [0u8; MAX_DATAGRAM];
        for _ in 0..READ_BUDGET {
            match self.receive(&mut buf) {
                Ok(Some(Datagram { len, sender })) => match sender {
                    Some(pid) if self.accepts(pid) => out.notices.extend(parse(&buf[..len])),
                    _ => out.ignored += 1,
                },
                Ok(None) => out.ignored += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.more = true;
        Ok(out)
    }

    /// One datagram into `buf`; `None` if it was truncated. Every fd it carried is closed
    /// (which answers a sender's `BARRIER=1`).
    ///
    /// Through [`crate::sys::recv_with_fds`], as the channel reads: the credentials come
    /// as a control message, and the fds the kernel installed must be found and closed
    /// even when the control buffer was too small for all of them.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        let got = crate::sys::recv_with_fds(self.socket.as_fd(), buf)?;
        drop(got.fds);
        if got.data_truncated || got.len > MAX_DATAGRAM {
            return Ok(None);
        }
        Ok(Some(Datagram {
            len: got.len,
            sender: got.sender,
        }))
    }

    /// Whether `sender` is the worker or in its process group (checked now: a sender that
    /// is gone cannot be placed, and is refused).
    fn accepts(&self, sender: Pid) -> bool {
        let Some(worker) = self.worker else {
            return false;
        };
        sender == worker || nix::unistd::getpgid(Some(sender)) == Ok(worker)
    }
}

/// A received datagram's length, and its sender's pid per the kernel.
struct Datagram {
    len: usize,
    sender: Option<Pid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_assignments_per_datagram_and_ignores_the_rest() {
        let got = parse(
            b"READY=1\nSTATUS=Serving 3 clients = fine\nWATCHDOG=1\n\nnonsense\n\
              MAINPID=4242\nERRNO=2\nEXTEND_TIMEOUT_USEC=1500000\nX_CUSTOM=1\n",
        );
        assert_eq!(
            got,
            [
                Notice::Ready,
                Notice::Status("Serving 3 clients = fine".into()),
                Notice::Watchdog,
                Notice::MainPid(4242),
                Notice::Errno(2),
                Notice::ExtendTimeout(Duration::from_millis(1500)),
            ]
        );
        assert_eq!(
            parse(b"RELOADING=1\nMONOTONIC_USEC=123\nSTOPPING=1\nWATCHDOG=trigger"),
            [Notice::Reloading, Notice::Stopping, Notice::WatchdogTrigger]
        );
        assert_eq!(parse(b"STATUS="), [Notice::Status(String::new())]);
    }

    #[test]
    fn bad_values_and_bad_datagrams_are_ignored() {
        for garbage in [
            &b"READY=0"[..],
            b"READY=yes",
            b"READY",
            b"ready=1",
            b" READY=1",
            b"MAINPID=0",
            b"MAINPID=-5",
            b"MAINPID=99999999999",
            b"MAINPID=12a",
            b"ERRNO=-1",
            b"STATUS=\xff\xfe",
            b"READY=1\0",
            b"",
            b"\n\n\n",
        ] {
            assert_eq!(parse(garbage), [], "{garbage:?}");
        }
    }

    #[test]
    fn two_sockets_never_share_an_address() {
        let a = NotifySocket::bind(1).unwrap();
        let b = NotifySocket::bind(1).unwrap();
        assert_ne!(a.address(), b.address());
        let prefix = format!("@herd/{}/1/", std::process::id());
        assert!(a.address().starts_with(&prefix), "{}", a.address());
    }
}
