//! Accepting: the first step of a connection's path through the master.
//!
//! When a listener is readable the master `accept`s (mio's `accept` is `accept4` with
//! `SOCK_NONBLOCK | SOCK_CLOEXEC`: nothing the master accepts can leak into a worker it
//! starts later) and passes each connection to [`super::dispatch`]. Three rules bound it:
//!
//! * **Only what a worker can take.** Before each accept the master checks that some worker
//!   of that listener is online with room under its connection limit. When none is, the
//!   connection stays in the kernel's accept queue (the backlog) rather than in the master,
//!   where accepting it would only hold an fd; a worker reporting closes makes room again.
//! * **Bursts.** At most [`ACCEPT_BURST`] accepts per listener per loop turn, so one busy
//!   listener cannot starve the others, the workers' channels or the signals; a burst that
//!   stops short makes the loop poll again without sleeping.
//! * **Descriptor exhaustion.** On `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM` the connection stays
//!   queued in the kernel; spinning on `accept` would burn a CPU, so accepting pauses for
//!   [`ACCEPT_PAUSE`] and the warning repeats at most every [`WARN_INTERVAL`].
//!
//! The fd limit itself is raised at start to the hard limit ([`connection_limit`]): every
//! connection in flight costs the master one fd and a worker one.

use std::io;
use std::net::{SocketAddr, TcpStream};

use crate::link::Accepted;
use std::time::{Duration, Instant};

use mio::Interest;
use mio::Token;

use super::{due, Master, WorkerState, LISTENER_BASE};
use crate::channel::ListenerId;

/// Accepts per listener per loop turn, so one busy listener cannot starve the rest.
const ACCEPT_BURST: usize = 128;
/// After `EMFILE`/`ENFILE`, how long accepting pauses before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often the fd-exhaustion and all-workers-full warnings may repeat.
const WARN_INTERVAL: Duration = Duration::from_secs(5);

/// The accept pause and the rate limits of its warnings.
#[derive(Debug, Default)]
pub(super) struct AcceptState {
    /// Accepting is paused until then (descriptor exhaustion).
    pub paused_until: Option<Instant>,
    last_fd_warning: Option<Instant>,
    last_full_warning: Option<Instant>,
}

impl AcceptState {
    /// Ends the pause once it is over.
    pub fn unpause(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
        }
    }
}

/// The most connections one worker may hold: `max` (`--max-connections`) if given, and never
/// more than fit under a worker's open-file limit, after raising the soft limit to the hard
/// one (as Go's runtime does: the usual soft default of 1024 is far below what a server
/// needs). Workers inherit the raised limit, so the master can compute theirs.
pub(super) fn connection_limit(max: Option<usize>) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                Ok(()) => log::debug!("open-file limit raised from {soft} to {hard}"),
                Err(e) => log::debug!("cannot raise the open-file limit: {e}"),
            }
        }
    }
    let capacity = crate::worker::connection_capacity();
    max.unwrap_or(usize::MAX).min(capacity) as u64
}

impl Master {
    /// Binds (or finds) listener `index` of `requested` and, if the master accepts under
    /// the policy, watches it.
    pub(super) fn listen(&mut self, requested: SocketAddr, index: u32) -> io::Result<ListenerId> {
        let acceptance = self.config.policy.acceptance();
        let (id, new) = self.listeners.get_or_bind(requested, index, acceptance)?;
        if new {
            let l = self.listeners.get_mut(id);
            let socket = l.socket.as_mut().expect("a new listener is open");
            // Under a worker-accept policy the workers accept; the master must not even
            // watch the socket.
            if !self.config.policy.worker_accepts() {
                self.poll.registry().register(
                    socket,
                    Token(LISTENER_BASE + id as usize),
                    Interest::READABLE,
                )?;
            }
            log::info!("master listening on {}", l.local);
        }
        Ok(id)
    }

    /// Whether a burst stopped short on a listener some worker can take from: then the loop
    /// polls again without sleeping. A listener nobody can take from waits for its next
    /// readiness edge (or for a worker to make room).
    pub(super) fn accept_again_now(&self) -> bool {
        let more = |id| self.listeners.get(id).ready && self.has_taker(id);
        self.accept.paused_until.is_none() && self.listeners.ids().any(more)
    }

    /// Accepts from every ready listener, a burst each; first gives the connections that
    /// waited for a worker another chance.
    pub(super) fn accept_ready(&mut self) {
        if self.accept.paused_until.is_some() {
            return;
        }
        if !self.waiting.is_empty() {
            self.hand_out_waiting();
        }
        for id in self.listeners.ids().collect::<Vec<_>>() {
            if self.listeners.get(id).ready {
                self.accept(id, ACCEPT_BURST);
            }
        }
    }

    /// Accepts up to `max` connections from listener `id` and dispatches them.
    pub(super) fn accept(&mut self, id: ListenerId, max: usize) {
        if self.config.policy.worker_accepts() {
            return;
        }
        for _ in 0..max {
            // Checked for every connection: workers fill up during a burst.
            if !self.has_taker(id) {
                self.warn_all_full(id);
                return;
            }
            let l = self.listeners.get_mut(id);
            let Some(socket) = l.socket.as_ref() else {
                return;
            };
            match socket.accept() {
                Ok((stream, peer)) => {
                    let stream = TcpStream::from(std::os::fd::OwnedFd::from(stream));
                    let conn = Accepted {
                        stream,
                        listener: id,
                        peer: Some(peer),
                    };
                    if self.peeks_first() {
                        self.peek_then_dispatch(conn);
                    } else {
                        self.dispatch(conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.ready = false;
                    return;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        let now = Instant::now();
                        self.accept.paused_until = Some(now + ACCEPT_PAUSE);
                        if due(&mut self.accept.last_fd_warning, now, WARN_INTERVAL) {
                            log::warn!("master: accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                        }
                        return;
                    }
                    // The client gave up between the kernel's accept and ours, or a transient
                    // network error: not the listener's fault, carry on.
                    _ => continue,
                },
            }
        }
    }

    /// Whether any worker could take a connection from listener `id` now.
    pub(super) fn has_taker(&self, id: ListenerId) -> bool {
        let l = self.listeners.get(id);
        l.subscribers.iter().any(|&k| self.takes_connections(k))
    }

    /// Whether worker `key` is online with room for another connection.
    pub(super) fn takes_connections(&self, key: usize) -> bool {
        self.workers
            .get(key)
            .is_some_and(|w| w.takes_connections(self.max_connections))
    }

    /// Every worker of a listener is full (or none is online): says so once per interval
    /// when it is because of the connection limit.
    fn warn_all_full(&mut self, id: ListenerId) {
        let subscribers = &self.listeners.get(id).subscribers;
        let online = subscribers.iter().any(|&k| {
            self.workers
                .get(k)
                .is_some_and(|w| w.state == WorkerState::Online)
        });
        let now = Instant::now();
        if online && due(&mut self.accept.last_full_warning, now, WARN_INTERVAL) {
            log::warn!(
                "master: every worker is at its limit of {} connections or not keeping up; \
                 new connections wait in the backlog",
                self.max_connections
            );
        }
    }
}
