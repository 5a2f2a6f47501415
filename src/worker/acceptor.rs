//! Worker-accept: a worker accepting connections itself, for the `shared`,
//! `shared-exclusive` and `reuseport` policies.
//!
//! The listening socket arrives with the master's listen reply (`SCM_RIGHTS`): a second
//! descriptor of the master's own socket (`shared*`: one accept queue for every worker) or a
//! `SO_REUSEPORT` socket of this worker's own ([`crate::reuseport`]: one queue per worker).
//! Each accepted connection goes to the listener's [`Service`] exactly as a handed-over one
//! would, and is counted for the master ([`Counters::accepted`]).
//!
//! The socket is registered **level-triggered**, straight through `epoll_ctl` on the worker
//! poll's epoll fd ([`crate::sys::epoll_add_level`]), because mio always registers
//! edge-triggered and has no flag for `EPOLLEXCLUSIVE`:
//!
//! * level-triggered, a worker may stop after a burst of accepts (to serve what it took)
//!   and the next `epoll_wait` reports the socket again while connections are queued; with
//!   edge-triggered notification it would have to empty the queue every time;
//! * `EPOLLEXCLUSIVE` (Linux 4.5, `shared-exclusive`) makes one incoming connection wake one
//!   (or a few) of the epoll instances waiting on the shared socket instead of all of them,
//!   as nginx does with `accept_mutex off`. It can only be given when the fd is added.
//!
//! mio hands events out by the `u64` data word, which is the token set here, so these events
//! reach the worker's loop like any other. Deregistering is a plain `EPOLL_CTL_DEL`.
//!
//! The worker stops accepting (deregisters) when it holds as many connections as its fd
//! limit allows, or after `EMFILE`, and resumes once it has room; while it is not
//! listening the connections wait in the kernel's queue for the other workers.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::Token;

use super::service::{Context, Counters, Service};

/// The most connections accepted per readiness event, so that a flood of connections
/// cannot starve the connections already held.
const ACCEPT_BURST: usize = 64;
/// After `EMFILE`/`ENFILE`, how long accepting pauses.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// One listening socket a worker accepts from, feeding one service.
pub(crate) struct Acceptor {
    listener: Option<TcpListener>,
    /// The index of the service its connections go to.
    pub service: usize,
    token: Token,
    exclusive: bool,
    registered: bool,
    /// Accepting paused (out of descriptors) until then.
    paused_until: Option<Instant>,
}

impl Acceptor {
    /// An acceptor for the listening socket `fd`, feeding service `service`, reporting its
    /// readiness as `token`; `exclusive` asks for `EPOLLEXCLUSIVE`.
    pub fn new(fd: OwnedFd, service: usize, token: Token, exclusive: bool) -> Acceptor {
        let listener = std::net::TcpListener::from(fd);
        Acceptor {
            listener: Some(TcpListener::from_std(listener)),
            service,
            token,
            exclusive,
            registered: false,
            paused_until: None,
        }
    }

    /// Starts watching the socket on the epoll instance `epoll`.
    pub fn register(&mut self, epoll: BorrowedFd<'_>) -> io::Result<()> {
        let Some(listener) = self.listener.as_ref() else {
            return Ok(());
        };
        if self.registered {
            return Ok(());
        }
        crate::sys::epoll_add_level(epoll, listener.as_fd(), self.token, self.exclusive)?;
        self.registered = true;
        Ok(())
    }

    fn deregister(&mut self, epoll: BorrowedFd<'_>) {
        if let (true, Some(listener)) = (self.registered, self.listener.as_ref()) {
            crate::sys::epoll_del(epoll, listener.as_fd());
        }
        self.registered = false;
    }

    /// Whether the socket is paused and should be looked at again soon.
    pub fn paused(&self) -> bool {
        self.listener.is_some() && !self.registered
    }

    /// Accepts up to a burst (at most `room` connections) and hands each to `service`.
    /// With no room, stops watching the socket until [`Acceptor::resume`] sees room again.
    pub fn accept(&mut self, cx: &mut Context<'_>, service: &mut dyn Service, room: usize) {
        if room == 0 {
            self.deregister(cx.registry.as_fd());
            return;
        }
        self.accept_up_to(cx, service, room.min(ACCEPT_BURST));
    }

    /// A paused acceptor watches its socket again once the pause is over and there is room.
    pub fn resume(&mut self, epoll: BorrowedFd<'_>, now: Instant, room: usize) {
        if !self.paused() || room == 0 || self.paused_until.is_some_and(|t| now < t) {
            return;
        }
        self.paused_until = None;
        if let Err(e) = self.register(epoll) {
            log::warn!("worker: cannot watch its listening socket: {e}");
        }
    }

    /// The worker drains: accept what is already queued (the kernel accepted it on our
    /// behalf), then stop watching and close this worker's descriptor of the socket.
    pub fn close(&mut self, cx: &mut Context<'_>, service: &mut dyn Service, room: usize) {
        self.accept_up_to(cx, service, room);
        self.deregister(cx.registry.as_fd());
        self.listener = None;
    }

    fn accept_up_to(&mut self, cx: &mut Context<'_>, service: &mut dyn Service, max: usize) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        let mut taken = 0;
        while taken < max {
            match listener.accept() {
                Ok((stream, _peer)) => {
                    taken += 1;
                    count_accepted(cx.counters);
                    service.accept(cx, stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        // Level-triggered, the socket would wake us in a loop: stop watching
                        // for a moment; the other workers (or this one later) take the queue.
                        log::warn!("worker: accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                        self.paused_until = Some(cx.now + ACCEPT_PAUSE);
                        self.deregister(cx.registry.as_fd());
                        return;
                    }
                    // The client gave up before we accepted, or another transient error.
                    _ => continue,
                },
            }
        }
    }
}

fn count_accepted(counters: &mut Counters) {
    counters.accepted = counters.accepted.saturating_add(1);
}
