//! [`NodeLink`]: the master's side of one Node.js worker's channel, the second kind of
//! [`Link`] (herd's own seqpacket link is the first).
//!
//! ```text
//! dispatch ─► unsent ─► NewConn line + the connection's fd ─► worker ─► NODE_HANDLE_ACK
//!                       (one handle in flight, Node's rule)       └──► {ack, accepted}
//!             in_flight: the master keeps its copy ◄──────────────────────┘
//!             until the worker says accepted (then closes it) or not (then re-dispatches)
//! ```
//!
//! Where herd's own link closes its copy of a connection the moment the packet holds one
//! (see `master::handoff`), this one keeps it until the worker's `accepted` reply: a Node
//! worker may answer `accepted: false` (its server is closing, or at its `maxConnections`),
//! and then the connection must go to another worker, as Node's own primary does it.
//!
//! **Handles in flight, safely.** A Node worker has one slot for a received fd and gives it
//! to the next handle message it parses: when one of its reads ends inside a handle line
//! and the next read brings a second handle, the first connection gets the second's fd.
//! Node's own primary avoids that by sending nothing after a handle until the worker's
//! `NODE_HANDLE_ACK` (its read callback sends one at once), which costs a round trip per
//! connection. herd pipelines instead, under a rule that keeps a read from ending inside a
//! handle line while another handle follows it: a handle line (one small `sendmsg`, never
//! split: a unix stream socket takes it whole or not at all) may be written while others
//! are unacknowledged only if the bytes written since the worker provably read (the end of
//! the last acknowledged handle) stay within [`PIPELINE_BYTES`], half of the 64 KiB a Node
//! worker reads at once. The first handle after an acknowledgement always goes: one handle
//! in flight is safe however its line is split. Lines are written strictly in order, each
//! fd on the `sendmsg` carrying its line's first byte and on no other.
//!
//! Addresses: a worker asks for what its `listen()` names; `address: null` (all interfaces)
//! is `[::]`, dual-stack as Node binds it; `--map-port FROM=TO` binds port TO for a worker's
//! port FROM, and the reply still says FROM (a Node worker checks that it got the port it
//! asked for). Pipes, `listen({fd})` and UDP cannot go through herd's master: they get an
//! errno, and the worker's server emits `'error'`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sendfd::SendWithFd;

use super::{AddressType, FromWorker as Node, Inbox, RawJson, Sequencer, ServerQuery, ToWorker};
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
/// Bytes that may be in the worker's channel, unread as far as herd knows, when a handle
/// line is pipelined behind other unacknowledged ones: half of the 64 KiB Node reads at
/// once, so that no read can end inside one of those handle lines.
const PIPELINE_BYTES: u64 = 32 * 1024;
/// Handles unacknowledged at once, at most.
const MAX_HANDLES_IN_FLIGHT: usize = 16;

/// `data` of the first worker to ask for each key, echoed to every later one (a TLS
/// server's ticket keys must be the same in every worker). Shared by a cluster's links.
pub type ServerData = Rc<RefCell<HashMap<String, RawJson>>>;

/// A port a worker's `listen()` names, and the port herd binds for it.
pub type PortMap = Vec<(u16, u16)>;

/// One line to write, with the fd its first byte carries.
#[derive(Debug)]
struct Frame {
    bytes: Vec<u8>,
    written: usize,
    fd: FrameFd,
}

#[derive(Debug)]
enum FrameFd {
    None,
    /// A connection in `in_flight` (the master keeps it there): its raw fd.
    Borrowed(RawFd),
    /// A listening socket granted to the worker (closed once sent).
    Owned(OwnedFd),
}

impl Frame {
    fn carries_fd(&self) -> bool {
        !matches!(self.fd, FrameFd::None)
    }
}

/// A handle line the worker has not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    end: u64,
    bytes: Vec<u8>,
    /// The connection's fd (in `in_flight`), or -1 for a listening socket (gone once sent).
    fd: RawFd,
}

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
    seq: Sequencer,
    /// Lines to write, in order.
    out: VecDeque<Frame>,
    /// Dispatched, not yet written as `newconn`.
    unsent: VecDeque<Accepted>,
    /// Written as `newconn` number N, waiting for `{ack: N, accepted}`.
    in_flight: BTreeMap<u64, Accepted>,
    /// Handle lines written and not yet acknowledged, oldest first: each with the stream
    /// offset of its end, and (to send again after a `NODE_HANDLE_NACK`) its bytes and fd.
    unacked_handles: VecDeque<Unacked>,
    /// Bytes written to the channel, in all.
    written: u64,
    /// The stream offset the worker has provably read up to (the end of the last
    /// acknowledged handle line).
    read_up_to: u64,
    /// A handle line went out in two writes (the socket was full): until every handle is
    /// acknowledged, no other is pipelined behind it.
    split_handle: bool,
    queries: HashMap<u64, Query>,
    /// Each listener this worker was granted, by key (for `newconn` and `close`).
    keys: HashMap<ListenerId, String>,
    data: ServerData,
    port_map: Rc<PortMap>,
    drain_requested: bool,
    /// The socket was full at the last write.
    write_blocked: bool,
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
            seq: Sequencer::new(),
            out: VecDeque::new(),
            unsent: VecDeque::new(),
            in_flight: BTreeMap::new(),
            unacked_handles: VecDeque::new(),
            written: 0,
            read_up_to: 0,
            split_handle: false,
            queries: HashMap::new(),
            keys: HashMap::new(),
            data,
            port_map,
            drain_requested: false,
            write_blocked: false,
            rejected_until: None,
            buf: Vec::new(),
        })
    }

    fn push(&mut self, msg: &ToWorker<'_>, fd: FrameFd) -> Option<u64> {
        let mut bytes = Vec::new();
        let seq = self.seq.encode(msg, &mut bytes);
        if !bytes.is_empty() {
            self.out.push_back(Frame {
                bytes,
                written: 0,
                fd,
            });
        }
        seq
    }

    /// Writes frames in order until the socket is full (`Ok(false)`), a handle waits for its
    /// ack, or nothing is left (`Ok(true)`).
    fn write_frames(&mut self) -> io::Result<bool> {
        while let Some(front) = self.out.front_mut() {
            if front.written == 0 && front.carries_fd() && !self.unacked_handles.is_empty() {
                let unread = self.written - self.read_up_to + front.bytes.len() as u64;
                if unread > PIPELINE_BYTES
                    || self.unacked_handles.len() >= MAX_HANDLES_IN_FLIGHT
                    || self.split_handle
                {
                    return Ok(true); // the next acknowledgement lets it go
                }
            }
            let rest = &front.bytes[front.written..];
            let sent = if front.written == 0 {
                match &front.fd {
                    FrameFd::None => self.sock.write(rest),
                    FrameFd::Borrowed(fd) => self.sock.send_with_fd(rest, &[*fd]),
                    FrameFd::Owned(fd) => self.sock.send_with_fd(rest, &[fd.as_raw_fd()]),
                }
            } else {
                self.sock.write(rest)
            };
            match sent {
                Ok(n) => {
                    self.written += n as u64;
                    if front.written == 0 && front.carries_fd() {
                        let fd = match front.fd {
                            FrameFd::Borrowed(fd) => fd,
                            _ => -1,
                        };
                        let end = self.written + (front.bytes.len() - n) as u64;
                        self.split_handle |= n < front.bytes.len();
                        let bytes = front.bytes.clone();
                        self.unacked_handles.push_back(Unacked { end, bytes, fd });
                    }
                    front.written += n;
                    if front.written == front.bytes.len() {
                        self.out.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.write_blocked = false;
        Ok(true)
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
                    self.push(&reply, FrameFd::None);
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
                self.push(
                    &ToWorker::ExitedAfterDisconnectAck { ack: seq },
                    FrameFd::None,
                );
                out.push(FromWorker::Leaving);
            }
            Node::HandleAck => {
                let Some(acked) = self.unacked_handles.pop_front() else {
                    return Err(invalid("NODE_HANDLE_ACK for no handle".into()));
                };
                self.read_up_to = self.read_up_to.max(acked.end);
                self.split_handle &= !self.unacked_handles.is_empty();
            }
            Node::HandleNack => {
                // The fd did not arrive; Node's own sender sends the line again with it.
                let Some(lost) = self.unacked_handles.pop_front() else {
                    return Err(invalid("NODE_HANDLE_NACK for no handle".into()));
                };
                self.read_up_to = self.read_up_to.max(lost.end);
                if lost.fd >= 0 {
                    self.out.push_front(Frame {
                        bytes: lost.bytes,
                        written: 0,
                        fd: FrameFd::Borrowed(lost.fd),
                    });
                }
            }
            Node::Handle { handle_type, .. } => {
                // herd takes no handles from workers: close it, but acknowledge it, or the
                // worker holds back everything it sends after it.
                log::warn!("node worker sent a {handle_type} handle; closed");
                drop(fd);
                self.push(&ToWorker::HandleAck, FrameFd::None);
            }
            Node::SocketNotifyClose { key } => {
                self.push(&ToWorker::SocketAllClosed { key: &key }, FrameFd::None);
            }
            Node::SocketGetCount { key } => {
                self.push(
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
        self.push(&ToWorker::User(&raw), FrameFd::None);
        Ok(())
    }

    fn queue_drain(&mut self) {
        self.drain_requested = true;
    }

    fn has_unsent(&self) -> bool {
        !self.out.is_empty()
            || !self.unsent.is_empty()
            || (self.drain_requested && !self.seq.ended())
    }

    fn flush(&mut self) -> io::Result<bool> {
        loop {
            if !self.write_frames()? {
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
                let seq = self.push(&ToWorker::NewConn { key: &key }, FrameFd::Borrowed(fd));
                self.in_flight
                    .insert(seq.expect("newconn is numbered"), conn);
                continue;
            }
            if self.drain_requested && !self.seq.ended() {
                self.push(&ToWorker::Disconnect, FrameFd::None);
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
                        self.push(&reply, FrameFd::None);
                    }
                    (_, Some(socket)) => {
                        let reply = ToWorker::SharedServer {
                            ack: req,
                            key: &key,
                            data: &data,
                        };
                        self.push(&reply, FrameFd::Owned(socket));
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
                self.push(&reply, FrameFd::None);
            }
        }
        // Written with the end-of-turn flush (the master marks this link dirty).
        Ok(())
    }

    fn recover(&mut self) -> Vec<Accepted> {
        let mut back: Vec<Accepted> = self.unsent.drain(..).collect();
        back.extend(std::mem::take(&mut self.in_flight).into_values());
        self.out.clear();
        self.unacked_handles.clear();
        back
    }

    fn queued(&self) -> usize {
        self.unsent.len()
    }

    fn unacked(&self) -> u64 {
        (self.unsent.len() + self.in_flight.len()) as u64
    }

    fn blocked(&self) -> bool {
        self.write_blocked || self.rejected_until.is_some()
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
