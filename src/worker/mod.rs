//! The worker process: herd's own kind of worker, a forked child serving connections.
//!
//! A worker owns one mio `Poll`, created *after* the fork, its end of the channel to the
//! master, and every connection the master hands it. Its life, file by file:
//!
//! 1. `bootstrap`: drop what belongs to the master (signal handlers, the master's fds,
//!    root), ask the kernel to kill it if the master dies, say `Online`;
//! 2. this file: the user's setup closure runs with a [`Worker`]: [`Worker::listen`] asks
//!    the master to share a listening address (Node's `server.listen()` in a worker),
//!    [`Worker::on_message`] installs the message callback, [`Worker::send`] and
//!    [`Mailbox::send`] talk back;
//! 3. `event_loop`: handoffs arrive on the channel, are acknowledged, and each connection
//!    goes to the [`Service`] of its listener ([`HttpService`] for `herd serve`, the proxy
//!    for `herd proxy`); readiness events go to the service whose token they carry
//!    (`tokens`). `Drain` (or SIGTERM) closes idle connections and exits once the last is
//!    gone; the channel closing (the master died) exits at once.
//!
//! Under a worker-accept policy the listen reply carries a listening socket, and the worker
//! accepts from it itself (`acceptor`).

mod acceptor;
mod bootstrap;
mod event_loop;
mod http_conn;
mod http_service;
mod privileges;
mod service;
mod tokens;

pub(crate) use bootstrap::{run_child, ChildStart};
pub use http_service::{HttpConnections, HttpService};
pub use privileges::{Credentials, EXIT_CONFIG};
pub use service::{Context, Counters, Service};

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::channel::{Channel, ListenerId, Received, ToMaster, ToWorker, MAX_MESSAGE};
use crate::http::{Handler, Limits, Timeouts};
use crate::policy::Acceptance;
use acceptor::Acceptor;

/// A worker's id: 1 for the first worker forked, growing with every fork, never reused
/// (Node's `cluster.worker.id`).
pub type WorkerId = u32;

static WORKER_ID: AtomicU32 = AtomicU32::new(0);

/// The id of the worker this process is, or 0 in the master (or outside a cluster).
pub fn worker_id() -> WorkerId {
    WORKER_ID.load(Ordering::Relaxed)
}

/// A message callback: gets a [`Mailbox`] to reply through, and the payload.
type MessageCallback = Box<dyn FnMut(&mut Mailbox<'_>, &[u8])>;

/// What a forked worker runs after the fork (the `worker` closure of [`crate::Cluster`]).
pub(crate) type Setup = Box<dyn FnMut(&mut Worker) -> io::Result<()>>;

/// The worker as its setup closure and message callback see it.
pub struct Worker {
    id: WorkerId,
    channel: Channel,
    /// One service per `listen` call; a connection from listener `l` goes to
    /// `services[by_listener[l]]`.
    services: Vec<Box<dyn Service>>,
    by_listener: HashMap<ListenerId, usize>,
    /// Listening sockets this worker accepts from itself (worker-accept policies).
    acceptors: Vec<Acceptor>,
    on_message: Option<MessageCallback>,
    next_req: u32,
    /// Listens so far per address: a worker's n-th listen on an address has index n (the
    /// master keys listeners by address and index, as Node does).
    listens: HashMap<SocketAddr, u32>,
    /// Packets (with their fds) that arrived while `listen` waited for its reply.
    early: Vec<(ToWorker, Vec<OwnedFd>)>,
    /// Highest handoff sequence number received; acknowledged with the next report.
    received_seq: u64,
    acked_seq: u64,
    /// A handoff asked to be acknowledged before its connections are served.
    ack_now: bool,
    /// The master steers by open counts: report closes before sleeping in every loop turn.
    eager_reports: bool,
    /// The fds its services may hold (connections, and what they open for them) before it
    /// stops reading handoffs (they wait in its channel, where the master can still recover
    /// them): its fd limit less a reserve.
    max_open: usize,
    counters: Counters,
    /// The master sent `Drain`; the loop acts on it.
    drain_requested: bool,
    draining: bool,
    /// `--worker-timeout`: send a heartbeat at least this often while there is work.
    heartbeat: Option<Duration>,
}

/// Sends messages to the master from inside a message callback.
#[derive(Debug)]
pub struct Mailbox<'a> {
    channel: &'a mut Channel,
    id: WorkerId,
}

impl Mailbox<'_> {
    /// This worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// Sends `msg` to the master (`process.send` in Node). At most 64 KiB.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        send_message(self.channel, msg)
    }
}

/// A handoff arrived without (all) its fds: the process is out of descriptors and the
/// kernel closed the connections it could not install. [`Worker::run`] stops reading
/// handoffs well before its limit, so this means something else in the process took the fds.
fn lost_to_truncation(id: WorkerId, packet: &[u8]) {
    if let Ok(ToWorker::Handoff { listeners, .. }) = ToWorker::decode(packet) {
        log::error!(
            "worker {id}: out of file descriptors; up to {} connection(s) lost",
            listeners.len()
        );
    }
}

fn send_message(channel: &mut Channel, msg: &[u8]) -> io::Result<()> {
    if msg.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes is over the {MAX_MESSAGE}-byte limit",
                msg.len()
            ),
        ));
    }
    send_blocking(channel, &ToMaster::Message(msg.to_vec()))
}

/// Sends to the master, waiting for room if its queue is full. The master never blocks on
/// a worker, so waiting here cannot deadlock.
fn send_blocking(channel: &mut Channel, msg: &ToMaster) -> io::Result<()> {
    loop {
        match channel.send_to_master(msg) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                channel.wait(true, Duration::from_secs(1))?;
            }
            r => return r,
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("services", &self.services.len())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Worker {
    fn new(id: WorkerId, channel: Channel) -> Worker {
        Worker {
            id,
            channel,
            services: Vec::new(),
            by_listener: HashMap::new(),
            acceptors: Vec::new(),
            on_message: None,
            next_req: 1,
            listens: HashMap::new(),
            early: Vec::new(),
            received_seq: 0,
            acked_seq: 0,
            ack_now: false,
            eager_reports: false,
            max_open: connection_capacity(),
            counters: Counters::default(),
            drain_requested: false,
            draining: false,
            heartbeat: None,
        }
    }

    /// This worker's id (1, 2, 3… in fork order; a respawned worker gets a new one).
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// Serves HTTP/1.1 on `addr` with `handler`, with the default [`Limits`].
    ///
    /// As in Node, the worker does not bind: it asks the master, which binds `addr` on the
    /// first request for it and shares it with every worker that asks. Returns the bound
    /// address (the real port when `addr` asked for port 0); a bind error comes back here.
    /// A second `listen` on the same address is a second listener (a second port, for port
    /// 0), shared with every worker's second `listen` there, as in Node.
    pub fn listen(
        &mut self,
        addr: &str,
        handler: impl Handler + 'static,
    ) -> io::Result<SocketAddr> {
        self.serve(
            addr,
            HttpService::new(handler, Limits::default(), Timeouts::default()),
        )
    }

    /// Runs any [`Service`] (the reverse proxy, say) for the connections of `addr`.
    pub fn serve(&mut self, addr: &str, service: impl Service) -> io::Result<SocketAddr> {
        // Names are resolved here, in the worker, which may block: the master only takes
        // numeric addresses, so that no worker's lookup can stall its accept loop.
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("listen {addr}: {e}")))?
            .next()
            .ok_or_else(|| io::Error::other(format!("listen {addr}: no address")))?;
        let index = self.listens.entry(resolved).or_insert(0);
        let req = self.next_req;
        self.next_req += 1;
        let msg = ToMaster::Listen {
            req,
            index: *index,
            addr: resolved.to_string(),
        };
        *index += 1;
        send_blocking(&mut self.channel, &msg)?;
        // Wait for the reply; anything else that arrives meanwhile is kept for the loop.
        let mut buf = vec![0u8; MAX_MESSAGE + 64];
        let reply = loop {
            match self.channel.recv(&mut buf)? {
                Received::Packet(n, fds) => match ToWorker::decode(&buf[..n])? {
                    ToWorker::ListenOk {
                        req: r,
                        listener,
                        accept,
                        addr,
                    } if r == req => break Ok((listener, accept, addr, fds)),
                    ToWorker::ListenErr { req: r, error } if r == req => break Err(error),
                    other => self.early.push((other, fds)),
                },
                Received::Truncated(n) => lost_to_truncation(self.id, &buf[..n]),
                Received::WouldBlock => {
                    self.channel.wait(false, Duration::from_secs(1))?;
                }
                Received::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the master is gone",
                    ))
                }
            }
        };
        match reply {
            Ok((listener, accept, bound, fds)) => {
                let svc = self.services.len();
                if accept != Acceptance::Master {
                    let Some(fd) = fds.into_iter().next() else {
                        return Err(io::Error::other(format!(
                            "listen {addr}: the master's reply lacks the listening socket"
                        )));
                    };
                    let token = tokens::acceptor_token(self.acceptors.len());
                    let exclusive = accept == Acceptance::SharedExclusive;
                    self.acceptors
                        .push(Acceptor::new(fd, svc, token, exclusive));
                }
                self.by_listener.insert(listener, svc);
                self.services.push(Box::new(service));
                bound.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad address {bound}"))
                })
            }
            Err(error) => Err(io::Error::other(format!("listen {addr}: {error}"))),
        }
    }

    /// Installs the callback for messages from the master (`process.on('message')`).
    pub fn on_message(&mut self, f: impl FnMut(&mut Mailbox<'_>, &[u8]) + 'static) {
        self.on_message = Some(Box::new(f));
    }

    /// Sends `msg` to the master (`process.send`). At most 64 KiB.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        send_message(&mut self.channel, msg)
    }
}

/// How many connections fit under this process's open-file limit, keeping a reserve for
/// the worker's own fds (stdio, poll, channel, a handler's files; a proxy's upstream sockets
/// count against the budget itself, see [`Service::fds_held`]).
pub(crate) fn connection_capacity() -> usize {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    // Half for connections when the limit is tiny, else all but a fixed reserve of 64.
    soft.saturating_sub(64).max(soft / 2)
}
