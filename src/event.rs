//! What the master tells the user's code, and what that code may ask back: the life-cycle
//! [`Event`]s of Node's `cluster.on(...)`, how a worker ended ([`ExitStatus`]), the
//! [`Control`] an event callback gets, and how a cluster ended ([`Shutdown`]).
//!
//! Plain data, below both the public builder ([`crate::Cluster`]) and the master's loop
//! (`master`), which both import it.

use std::fmt;
use std::net::SocketAddr;

use crate::worker::WorkerId;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it (the signal number).
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "code {c}"),
            ExitStatus::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("?");
                write!(f, "signal {s}, {name}")
            }
        }
    }
}

/// A worker life-cycle event, as Node's `cluster.on(...)` reports them.
#[derive(Debug)]
pub enum Event<'a> {
    /// `fork`: a worker process was created.
    Fork {
        /// The new worker's id.
        worker: WorkerId,
        /// Its process id.
        pid: i32,
    },
    /// `online`: the worker is running.
    Online {
        /// The worker.
        worker: WorkerId,
    },
    /// `listening`: the worker now receives connections for `addr`.
    Listening {
        /// The worker.
        worker: WorkerId,
        /// The shared listening address.
        addr: SocketAddr,
    },
    /// `message`: the worker sent a message (`Worker::send`).
    Message {
        /// The sender.
        worker: WorkerId,
        /// The bytes it sent.
        payload: &'a [u8],
    },
    /// `disconnect`: the worker's channel closed (it is exiting or has exited).
    Disconnect {
        /// The worker.
        worker: WorkerId,
    },
    /// `exit`: the worker process is gone (and reaped).
    Exit {
        /// The worker.
        worker: WorkerId,
        /// How it ended.
        status: ExitStatus,
    },
}

/// What an event callback can ask of the master. The requests are carried out as soon as the
/// callback returns.
#[derive(Debug, Default)]
pub struct Control {
    pub(crate) workers: Vec<WorkerId>,
    pub(crate) outgoing: Vec<(Option<WorkerId>, Vec<u8>)>,
    pub(crate) shutdown: bool,
    pub(crate) reload: bool,
}

impl Control {
    /// The workers currently alive, in fork order.
    pub fn workers(&self) -> &[WorkerId] {
        &self.workers
    }

    /// Sends `msg` to one worker (`cluster.workers[id].send`). At most 64 KiB.
    pub fn send(&mut self, worker: WorkerId, msg: impl Into<Vec<u8>>) {
        self.outgoing.push((Some(worker), msg.into()));
    }

    /// Sends `msg` to every live worker.
    pub fn broadcast(&mut self, msg: impl Into<Vec<u8>>) {
        self.outgoing.push((None, msg.into()));
    }

    /// Starts a graceful stop, as SIGTERM would.
    pub fn shutdown(&mut self) {
        self.shutdown = true;
    }

    /// Starts a rolling reload, as SIGHUP would: each worker in turn is replaced by a fresh
    /// one, which takes connections before the old one drains and exits.
    pub fn reload(&mut self) {
        self.reload = true;
    }
}

/// How [`crate::Cluster::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every worker finished its in-flight requests and exited.
    Graceful,
    /// Some workers had to be killed: the shutdown timeout ran out, or a second SIGINT came.
    Forced,
}

/// The event callback: runs in the master for every [`Event`].
pub(crate) type EventCallback = Box<dyn FnMut(&mut Control, &Event<'_>)>;
