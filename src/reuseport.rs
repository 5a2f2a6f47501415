//! `SO_REUSEPORT` sockets for the `reuseport` policy.
//!
//! Under `reuseport` every worker accepts from a listening socket of its own, all bound to
//! the same address with `SO_REUSEPORT`; the kernel hashes each incoming connection (by its
//! 4-tuple) onto one of the sockets in the group. Two kinds of socket take part:
//!
//! * the master's **reservation**: bound with `SO_REUSEPORT`, never `listen()`ed. It keeps
//!   the port (and resolves port 0 once for all workers) while workers come and go, but a
//!   TCP socket joins the kernel's lookup only when it listens, so no connection is ever
//!   queued on it — it must not be, since the master does not accept under this policy;
//! * one **listening socket per worker**, bound and put in `listen()` by the master when the
//!   worker asks to listen, and passed to it with its listen reply. Binding in the master
//!   rather than the worker means the socket is in the group before the master reports the
//!   worker listening (no refused connections in between), and the worker needs no right to
//!   bind the port (a port below 1024, say).
//!
//! The price of the policy, as documented for nginx's `reuseport`: each socket has its own
//! accept queue, so connections queued on a worker that dies are reset with it, and a busy
//! worker's queue is not drained by its idle neighbours.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

/// The accept backlog of every listening socket herd makes (mio's default too).
const BACKLOG: i32 = 1024;

/// A non-blocking, close-on-exec TCP socket bound to `addr` with `SO_REUSEPORT`; listening
/// (with `SO_REUSEADDR`) if `listening`, else only holding the port.
pub fn bind_reuseport(addr: SocketAddr, listening: bool) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // Not on the reservation: two sockets that both have SO_REUSEADDR may share a port while
    // neither listens, so any other program's plain bind (std and mio set SO_REUSEADDR)
    // could take the port while no worker listens.
    setsockopt(&fd, sockopt::ReuseAddr, &listening)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    if listening {
        listen(&fd, Backlog::new(BACKLOG)?)?;
    }
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn a_reservation_holds_the_port_without_taking_connections() {
        let reservation = bind_reuseport("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = reservation.local_addr().unwrap();
        // Nobody listens yet: the kernel refuses rather than queueing on the reservation.
        assert!(TcpStream::connect(addr).is_err());
        // A plain bind cannot take the port; a reuseport listener joins it.
        assert!(std::net::TcpListener::bind(addr).is_err());
        let worker = bind_reuseport(addr, true).unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        worker.set_nonblocking(false).unwrap();
        assert!(worker.accept().is_ok());
    }
}
