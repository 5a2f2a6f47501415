//! The seam between the master and one worker process, whatever kind of worker it is.
//!
//! Accept, dispatch, the policies, reload and the admin endpoint see a worker only through
//! [`Link`]: they queue connections, user messages and a drain on it, flush it at the end
//! of the loop turn, hear what the worker said as [`FromWorker`] messages, and take back
//! what it never took when it dies. The wire behind a link is its own business:
//!
//! * herd's forked workers: a `SOCK_SEQPACKET` socketpair, one binary message per packet,
//!   up to 16 fds per handoff (`master::handoff::SeqpacketLink`, [`crate::channel`]);
//! * an exec'd Node.js program: newline-delimited JSON over a `SOCK_STREAM` socketpair, one
//!   fd per `sendmsg` ([`crate::node`]'s link).
//!
//! A [`Launch`] starts the process and returns its link. This module sits below the master,
//! `node` and `exec`, which all import it and none of each other's internals: a new kind
//! of worker is a new [`Launch`] and [`Link`], and touches neither accept, dispatch nor the
//! policies.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};

use std::net::TcpStream;

use crate::channel::ListenerId;
use crate::policy::Acceptance;

mod launch;

pub(crate) use launch::{Launch, LaunchContext, Launched, LinkOptions};

/// An accepted connection on its way to a worker.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The master's copy of the connection (non-blocking, close-on-exec).
    pub stream: TcpStream,
    /// Which listener accepted it.
    pub listener: ListenerId,
    /// The client's address, as `accept` gave it (`--policy ip-hash` hashes its IP); `None`
    /// when unknown (the socket's peer is gone).
    pub peer: Option<SocketAddr>,
}

/// What a worker told the master, in the master's terms.
#[derive(Debug)]
pub(crate) enum FromWorker {
    /// The worker process is up.
    Online,
    /// Please share listener `index` of `addr` with me (Node's `server.listen()` in a
    /// worker). Answered with [`Link::reply_listen`], quoting `req`.
    Listen {
        /// The link's own name for the request.
        req: u64,
        /// The address asked for (numeric: names are resolved by the worker).
        addr: SocketAddr,
        /// The how-many-th listen of this worker on `addr` (0 for the first).
        index: u32,
    },
    /// Counters since the previous report; also means the link's [`Link::unacked`] may
    /// have dropped (the `node` policy frees a worker once everything it was sent is
    /// acknowledged).
    Report {
        /// Connections closed.
        closed: u32,
        /// Requests answered.
        requests: u32,
        /// Connections the worker accepted itself (worker-accept policies).
        accepted: u32,
    },
    /// The worker confirmed it took a connection it was handed (a Node worker's
    /// `accepted: true`); it is no longer in flight.
    Taken,
    /// The worker gave a connection back without serving it (a Node server that is
    /// closing or at its `maxConnections`): dispatch it to another worker.
    Rejected(Accepted),
    /// The worker stopped listening on `listener` (a Node `server.close()`): it gets no
    /// more of its connections.
    Unlisten {
        /// The listener.
        listener: ListenerId,
    },
    /// The worker is leaving on its own (Node's `cluster.worker.disconnect()`): it gets
    /// nothing new; its exit is respawned like any other.
    Leaving,
    /// The worker now serves these listeners, which it was given at its start (a
    /// socket-activated program, once it said `READY=1`).
    Listening {
        /// The listeners, in the order of its fds.
        listeners: Vec<ListenerId>,
    },
    /// A user message (`process.send`, `Worker::send`), as the worker's bytes.
    Message(Vec<u8>),
    /// A sign of life and nothing else (herd's workers' heartbeat, a socket-activated
    /// program's `WATCHDOG=1`): every message counts for the watchdog, this one only does.
    Heartbeat,
    /// The worker asks to be treated as hung (a socket-activated program's
    /// `WATCHDOG=trigger`): under `--worker-timeout` it is killed at once.
    Hung,
}

/// A successful listen request: the listener, and the socket the worker accepts from
/// itself under a worker-accept policy (the link sends it and then closes the master's
/// copy).
#[derive(Debug)]
pub(crate) struct Grant {
    /// The listener's id (herd's workers tag handoffs with it).
    pub listener: ListenerId,
    /// The bound address (the real port when port 0 was asked for).
    pub local: SocketAddr,
    /// Who accepts.
    pub accept: Acceptance,
    /// The listening socket for the worker, unless the master accepts.
    pub socket: Option<OwnedFd>,
}

/// The master's side of one worker's channel. See the module documentation.
pub(crate) trait Link {
    /// The fd the master polls for the worker's messages (and for room to write); `None`
    /// for a worker the master only watches by its deadlines (an instance probed for
    /// readiness).
    fn fd(&self) -> Option<RawFd>;

    /// Every fd the link holds, for a forked child to close.
    fn fds(&self) -> Vec<RawFd>;

    /// Queues one connection for the next [`Link::flush`].
    fn queue(&mut self, conn: Accepted);

    /// Queues a user message, or says why it cannot be sent (too large, or not something
    /// this kind of worker can receive).
    fn queue_message(&mut self, msg: &[u8]) -> Result<(), String>;

    /// Asks the worker to drain once everything queued before has been sent.
    fn queue_drain(&mut self);

    /// Whether something waits to be sent.
    fn has_unsent(&self) -> bool;

    /// Sends what is queued. `Ok(false)`: the worker's queue is full, wait for the fd to be
    /// writable. `Err`: the worker is gone.
    fn flush(&mut self) -> io::Result<bool>;

    /// Reads everything the worker sent, appending it to `out`. `Ok(false)`: the channel is
    /// closed. `Err` with [`io::ErrorKind::InvalidData`]: the worker broke the protocol.
    fn receive(&mut self, out: &mut Vec<FromWorker>) -> io::Result<bool>;

    /// Answers listen request `req` (with the bind error, if it failed: a Node worker gets
    /// its errno).
    fn reply_listen(&mut self, req: u64, grant: Result<Grant, io::Error>) -> io::Result<()>;

    /// The worker is dead: every connection it was given and did not take, and every one
    /// not yet sent.
    fn recover(&mut self) -> Vec<Accepted>;

    /// Connections queued and not yet sent.
    fn queued(&self) -> usize;

    /// Connections sent (or queued) that the worker has not acknowledged yet: the `node`
    /// policy gives a worker its next connection only at 0.
    fn unacked(&self) -> u64;

    /// The worker's queue was full at the last flush (or it just gave a connection back):
    /// dispatch passes it by until a flush succeeds (or [`Link::next_deadline`] passes).
    fn blocked(&self) -> bool;

    /// When the link next needs the master's loop to look at it without an event (a
    /// worker that gave a connection back is tried again then).
    fn next_deadline(&self) -> Option<std::time::Instant> {
        None
    }

    /// [`Link::next_deadline`] has passed: the link may take connections again, or has
    /// something to say (appended to `out`).
    fn on_deadline(&mut self, _now: std::time::Instant, _out: &mut Vec<FromWorker>) {}

    /// Whether the watchdog (`--worker-timeout`) expects to hear from this worker even when
    /// the master has handed it nothing: it accepts connections itself from a socket it was
    /// given, so only it knows whether it has work (herd's own worker under a worker-accept
    /// policy, which then beats on every turn; a socket-activated program once it is ready,
    /// under systemd's watchdog protocol). Otherwise it owes a sign of life only while it
    /// holds connections the master counts.
    fn watched_when_idle(&self) -> bool {
        false
    }

    /// Whether the worker reports the requests it answers (`--max-requests` counts them);
    /// if not, the connections handed to it are counted instead (a Node worker).
    fn counts_requests(&self) -> bool {
        true
    }
}
