//! [`NodeLink`]: the master's side of one Node.js worker's channel, the second kind of
//! [`Link`] (herd's own seqpacket link is the first).
//!
//! ```text
//! dispatch ─► unsent ─► NewConn line + the connection's fd ─► worker ─► NODE_HANDLE_ACK
//!                       (pipelined by the Outbox)                 └──► {ack, accepted}
//!             in_flight: the master keeps its copy ◄──────────────────────┘
//!             until the worker says accepted (then closes it) or not (then re-dispatches)
//! ```
//!
//! Where herd's own link closes its copy of a connection the moment the packet holds one
//! (see `master::handoff`), this one keeps it until the worker's `accepted` reply: a Node
//! worker may answer `accepted: false` (its server is closing, or at its `maxConnections`),
//! and then the connection must go to another worker, as Node's own primary does it.
//!
//! What goes out is written by an [`Outbox`]: lines in order, one fd per `sendmsg`, and
//! handle lines pipelined without waiting a round trip for each acknowledgement (see
//! `node::outbox` for the rule that makes that safe).
//!
//! Addresses: a worker asks for what its `listen()` names; `address: null` (all interfaces)
//! is `[::]`, dual-stack as Node binds it; `--map-port FROM=TO` binds port TO for a worker's
//! port FROM, and the reply still says FROM (a Node worker checks that it got the port it
//! asked for). Pipes, `listen({fd})` and UDP cannot go through herd's master: they get an
//! errno, and the worker's server emits `'error'`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::outbox::{FrameFd, Outbox};
use super::{AddressType, FromWorker as Node, Inbox, RawJson, ServerQuery, ToWorker};
use crate::channel::ListenerId;
use crate::link::{Accepted, FromWorker, Grant, Link};
use crate::policy::Acceptance;

/// How long a worker that gave a connection back is passed by: long enough that one
/// worker at its `maxConnections` does not ping-pong a connection with the master (Node's
/// own primary does, hundreds of times a second), short enough to be unnoticeable.
const REJECTED_PAUSE: Duration = Duration::from_millis(20);
/// Bytes read from the channel per call at most (one call per readiness event).
const READ_CHUNK: usize = 64 * 1024;
/// The largest user message herd sends a Node worker.
pub const MAX_MESSAGE: usize = super::MAX_LINE - 1;

/// `data` of the first worker to ask for each key, echoed to every later one (a TLS
/// server's ticket keys must be the same in every worker). Shared by a cluster's links.
pub type ServerData = Rc<RefCell<HashMap<String, RawJson>>>;

/// A port a worker's `listen()` names, and the port herd binds for it.
pub type PortMap = Vec<(u16, u16)>;

/// A listen request the master has not answered yet.
#[derive(Debug)]
struct Query {
    query: ServerQuery,
    /// The port the worker asked for, when herd binds another one for it.
    asked_port: u16,
}

/// The master's side of one Node.js worker. See the module documentation.
#[derive(Debug)]
pub struct NodeLink {
    sock: UnixStream,
    inbox: Inbox,
    out: Outbox,
    /// Dispatched, not yet written as `newconn`.
    unsent: VecDeque<Accepted>,
    /// Written as `newconn` number N, waiting for `{ack: N, accepted}`.
    in_flight: BTreeMap<u64, Accepted>,
    queries: HashMap<u64, Query>,
    /// Each listener this worker was granted, by key (for `newconn` and `close`).
    keys: HashMap<ListenerId, String>,
    data: ServerData,
    port_map: Rc<PortMap>,
    drain_requested: bool,
    /// The worker gave a connection back: passed by until then.
    rejected_until: Option<Instant>,
    buf: Vec<u8>,
}

impl NodeLink {
    /// The link over `sock`, the master's end of the worker's channel.
    pub fn new(sock: UnixStream, data: ServerData, port_map: Rc<PortMap>) -> io::Result<NodeLink> {
        sock.set_nonblocking(true)?;
        Ok(NodeLink {
            sock,
            inbox: Inbox::new(),
            out: Outbox::new(),
            unsent: VecDeque::new(),
            in_flight: BTreeMap::new(),
            queries: HashMap::new(),
            keys: HashMap::new(),
            data,
            port_map,
            drain_requested: false,
            rejected_until: None,
            buf: Vec::new(),
        })
    }

    /// The address herd binds for `query`, or the errno to answer it with.
    fn address_of(&self, query: &ServerQuery) -> Result<(SocketAddr, u16), i32> {
        let ip: IpAddr = match (&query.address_type, &query.address) {
            (AddressType::Tcp4 | AddressType::Tcp6, None) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            (AddressType::Tcp4 | AddressType::Tcp6, Some(a)) => {
                a.parse().map_err(|_| -libc::EINVAL)?
            }
            // A pipe, a listen on one of the worker's fds, UDP: not through herd's master.
            _ => return Err(-libc::ENOTSUP),
        };
        let asked = match query.port {
            Some(p) if (0..=65535).contains(&p) => p as u16,
            _ => return Err(-libc::EINVAL),
        };
        let bound = (self.port_map.iter())
            .find(|(from, _)| *from == asked)
            .map_or(asked, |&(_, to)| to);
        Ok((SocketAddr::new(ip, bound), asked))
    }

    /// Acts on one message; what the master must know goes to `out`.
    fn on_message(
        &mut self,
        msg: Node,
        fd: Option<OwnedFd>,
        out: &mut Vec<FromWorker>,
    ) -> io::Result<()> {
        match msg {
            Node::User(raw) => out.push(FromWorker::Message(raw.as_str().as_bytes().to_vec())),
            Node::Online => out.push(FromWorker::Online),
            Node::QueryServer { seq, query } => match self.address_of(&query) {
                Ok((addr, asked_port)) => {
                    let index = query.index;
                    self.queries.insert(seq, Query { query, asked_port });
                    out.push(FromWorker::Listen {
                        req: seq,
                        addr,
                        index,
                    });
                }
                Err(errno) => {
                    let key = query.key();
                    log::warn!(
                        "node worker: listen on {key}: not supported through herd's master \
                         (a pipe, an fd or UDP); answered errno {errno}"
                    );
                    let reply = ToWorker::ServerReply {
                        ack: seq,
                        errno: Some(errno),
                        key: &key,
                        data: &query.data,
                        sockname: None,
                    };
                    self.out.push(&reply, FrameFd::None);
                }
            },
            Node::Listening(_) => {}
            Node::Accepted { ack, accepted } => {
                let Some(conn) = self.in_flight.remove(&ack) else {
                    return Err(invalid(format!(
                        "accepted reply for newconn {ack}, never sent"
                    )));
                };
                if accepted {
                    drop(conn); // the worker has its own copy now
                    out.push(FromWorker::Taken);
                } else {
                    self.rejected_until = Some(Instant::now() + REJECTED_PAUSE);
                    out.push(FromWorker::Rejected(conn));
                }
            }
            Node::Close { key } => {
                if let Some((&listener, _)) = self.keys.iter().find(|(_, k)| **k == key) {
                    self.keys.remove(&listener);
                    out.push(FromWorker::Unlisten { listener });
                    // Connections for that server not yet written go to other workers.
                    let (gone, keep) = std::mem::take(&mut self.unsent)
                        .into_iter()
                        .partition(|c| c.listener == listener);
                    self.unsent = keep;
                    out.extend(gone.into_iter().map(FromWorker::Rejected));
                }
            }
            Node::ExitedAfterDisconnect { seq } => {
                self.out.push(
                    &ToWorker::ExitedAfterDisconnectAck { ack: seq },
                    FrameFd::None,
                );
                out.push(FromWorker::Leaving);
            }
            Node::HandleAck => {
                if !self.out.on_handle_ack() {
                    return Err(invalid("NODE_HANDLE_ACK for no handle".into()));
                }
            }
            Node::HandleNack => {
                if !self.out.on_handle_nack() {
                    return Err(invalid("NODE_HANDLE_NACK for no handle".into()));
                }
            }
            Node::Handle { handle_type, .. } => {
                // herd takes no handles from workers: close it, but acknowledge it, or the
                // worker holds back everything it sends after it.
                log::warn!("node worker sent a {handle_type} handle; closed");
                drop(fd);
                self.out.push(&ToWorker::HandleAck, FrameFd::None);
            }
            Node::SocketNotifyClose { key } => {
                self.out
                    .push(&ToWorker::SocketAllClosed { key: &key }, FrameFd::None);
            }
            Node::SocketGetCount { key } => {
                self.out.push(
                    &ToWorker::SocketCount {
                        key: &key,
                        count: 0,
                    },
                    FrameFd::None,
                );
            }
        }
        Ok(())
    }
}

/// The errno a bind error stands for (the master's messages wrap the OS error in words).
fn errno_of(e: &io::Error) -> i32 {
    if let Some(errno) = e.raw_os_error() {
        return errno;
    }
    match e.kind() {
        io::ErrorKind::AddrInUse => libc::EADDRINUSE,
        io::ErrorKind::AddrNotAvailable => libc::EADDRNOTAVAIL,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::NotConnected => libc::ENOTCONN,
        _ => libc::EINVAL,
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Link for NodeLink {
    fn fd(&self) -> Option<RawFd> {
        Some(self.sock.as_raw_fd())
    }

    fn fds(&self) -> Vec<RawFd> {
        vec![self.sock.as_raw_fd()]
    }

    fn queue(&mut self, conn: Accepted) {
        self.unsent.push_back(conn);
    }

    fn queue_message(&mut self, msg: &[u8]) -> Result<(), String> {
        if msg.len() > MAX_MESSAGE {
            return Err(format!(
                "message of {} bytes not sent: over the {MAX_MESSAGE}-byte limit",
                msg.len()
            ));
        }
        // A line a Node worker cannot parse crashes it: only JSON goes out.
        let raw = RawJson::from_bytes(msg)
            .map_err(|e| format!("message not sent to a Node worker: {e}"))?;
        self.out.push(&ToWorker::User(&raw), FrameFd::None);
        Ok(())
    }

    fn queue_drain(&mut self) {
        self.drain_requested = true;
    }

    fn has_unsent(&self) -> bool {
        !self.out.is_empty()
            || !self.unsent.is_empty()
            || (self.drain_requested && !self.out.ended())
    }

    fn flush(&mut self) -> io::Result<bool> {
        loop {
            if !self.out.write(&mut self.sock)? {
                return Ok(false);
            }
            // Lines wait in `out` for an acknowledgement: frame no more connections now.
            if !self.out.is_empty() {
                return Ok(true);
            }
            if let Some(conn) = self.unsent.pop_front() {
                let Some(key) = self.keys.get(&conn.listener).cloned() else {
                    // Never granted to this worker (dispatch only picks subscribers; a
                    // `close` hands back what was queued): a bug, not a client's doing.
                    log::error!("node worker: a connection for a server it does not have");
                    continue;
                };
                let fd = conn.stream.as_raw_fd();
                let seq = self
                    .out
                    .push(&ToWorker::NewConn { key: &key }, FrameFd::Borrowed(fd));
                self.in_flight
                    .insert(seq.expect("newconn is numbered"), conn);
                continue;
            }
            if self.drain_requested && !self.out.ended() {
                self.out.push(&ToWorker::Disconnect, FrameFd::None);
                continue;
            }
            return Ok(true);
        }
    }

    fn receive(&mut self, out: &mut Vec<FromWorker>) -> io::Result<bool> {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_CHUNK];
        }
        // Edge-triggered: read until the socket is empty.
        loop {
            let got = match crate::sys::recv_with_fds(self.sock.as_fd(), &mut self.buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
                Err(e) => return Err(e),
            };
            if got.len == 0 && got.fds.is_empty() {
                return Ok(false);
            }
            // Node sends at most one fd per sendmsg; any more are closed here.
            let fd = got.fds.into_iter().next();
            self.inbox
                .push(&self.buf[..got.len], fd)
                .map_err(|e| invalid(e.to_string()))?;
            while let Some(inbound) = self
                .inbox
                .next_message()
                .map_err(|e| invalid(e.to_string()))?
            {
                self.on_message(inbound.message, inbound.fd, out)?;
            }
        }
    }

    fn reply_listen(&mut self, req: u64, grant: Result<Grant, io::Error>) -> io::Result<()> {
        let Some(Query { query, asked_port }) = self.queries.remove(&req) else {
            return Ok(());
        };
        let key = query.key();
        let data = self
            .data
            .borrow_mut()
            .entry(key.clone())
            .or_insert_with(|| query.data.clone())
            .clone();
        match grant {
            Ok(grant) => {
                self.keys.insert(grant.listener, key.clone());
                match (grant.accept, grant.socket) {
                    (Acceptance::Master, _) => {
                        // The port the worker asked for (it checks), the address bound.
                        let port = if asked_port == 0 {
                            grant.local.port()
                        } else {
                            asked_port
                        };
                        let sockname = SocketAddr::new(grant.local.ip(), port);
                        let reply = ToWorker::ServerReply {
                            ack: req,
                            errno: None,
                            key: &key,
                            data: &data,
                            sockname: Some(sockname),
                        };
                        self.out.push(&reply, FrameFd::None);
                    }
                    (_, Some(socket)) => {
                        let reply = ToWorker::SharedServer {
                            ack: req,
                            key: &key,
                            data: &data,
                        };
                        self.out.push(&reply, FrameFd::Owned(socket));
                    }
                    (_, None) => return Err(invalid("a shared grant without its socket".into())),
                }
            }
            Err(e) => {
                let errno = -errno_of(&e);
                let reply = ToWorker::ServerReply {
                    ack: req,
                    errno: Some(errno),
                    key: &key,
                    data: &data,
                    sockname: None,
                };
                self.out.push(&reply, FrameFd::None);
            }
        }
        // Written with the end-of-turn flush (the master marks this link dirty).
        Ok(())
    }

    fn recover(&mut self) -> Vec<Accepted> {
        let mut back: Vec<Accepted> = self.unsent.drain(..).collect();
        back.extend(std::mem::take(&mut self.in_flight).into_values());
        self.out.clear();
        back
    }

    fn queued(&self) -> usize {
        self.unsent.len()
    }

    fn unacked(&self) -> u64 {
        (self.unsent.len() + self.in_flight.len()) as u64
    }

    fn blocked(&self) -> bool {
        self.out.blocked() || self.rejected_until.is_some()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.rejected_until
    }

    fn counts_requests(&self) -> bool {
        false // a Node worker says which connections it took, not what it answered
    }

    fn on_deadline(&mut self, now: Instant, _out: &mut Vec<FromWorker>) {
        if self.rejected_until.is_some_and(|t| t <= now) {
            self.rejected_until = None;
        }
    }
}
