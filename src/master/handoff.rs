//! Handoff: the master's side of one worker's channel, where accepted fds cross to the worker.
//!
//! ```text
//! accept ─► dispatch ─► unsent ─sendmsg(SCM_RIGHTS, ≤16 fds)─► worker's receive queue ─► worker
//!                                                                      │
//!                              worker died before reading them ◄───────┘
//!                              (recover: the master reads the queue itself)
//! ```
//!
//! **Nothing accepted is lost.** Once `sendmsg` returns, the fds live in the packet, queued
//! on the worker's end of the socketpair; the master closes its own copies at once. Node
//! instead keeps each handle until the worker acknowledges it. herd gets the same guarantee
//! differently: the master keeps a descriptor of the *worker's end* of the socketpair
//! ([`Link::peer`]). When a worker dies, the kernel would normally destroy its end of the
//! socket and with it every packet (and connection) it had not read yet; because the master
//! still holds that end, the queue survives, and [`Link::recover`] reads the unread handoffs
//! back and dispatches their connections to other workers.
//!
//! Why not keep each fd until an acknowledgement, as Node does: a worker usually answers and
//! closes a short connection before the master has processed the acknowledgement, and then
//! the master's close is the *last* reference, so the master pays the TCP teardown of every
//! connection on its single thread. Measured with `Connection: close` load, closing at send
//! time was worth ~10% more requests/s (see BENCHMARKS.md).

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use crate::channel::{Channel, ListenerId, Received, ToWorker, MAX_FDS_PER_HANDOFF};

/// An accepted connection on its way to a worker.
#[derive(Debug)]
pub struct Accepted {
    /// The master's copy of the connection (non-blocking, close-on-exec).
    pub stream: TcpStream,
    /// Which listener accepted it.
    pub listener: ListenerId,
}

/// The master's ends of one worker's channel.
pub struct Link {
    /// The master's end: the master sends on it and reads the worker's messages from it.
    pub channel: Channel,
    /// The worker's end, kept open so that a dead worker's unread handoffs can be recovered.
    peer: Channel,
    /// Dispatched to this worker, not yet sent (batched at the end of a loop turn, or held
    /// while the worker's queue is full).
    unsent: VecDeque<Accepted>,
    next_seq: u64,
    /// The highest handoff the worker has acknowledged (only when acks are asked for).
    acked_seq: u64,
    /// Ask the worker to acknowledge each handoff (the `node` policy gates on it).
    want_acks: bool,
    /// Ask the worker for frequent counter reports (the load-aware policies).
    eager_reports: bool,
    /// The most fds per packet (1 ..= [`MAX_FDS_PER_HANDOFF`]).
    batch: usize,
    /// User messages not yet sent.
    messages: VecDeque<Vec<u8>>,
    /// `Drain` is to be sent once everything dispatched before it has been sent.
    drain_requested: bool,
    drain_sent: bool,
    /// The worker's queue was full at the last send: the worker is not keeping up (or has
    /// stopped reading, at its fd limit), so dispatch passes it by until a flush succeeds.
    pub blocked: bool,
    /// Connections handed to (or accepted by) this worker and not yet reported closed.
    pub open: u64,
    /// Connections sent to this worker, or that it reported accepting itself, in all.
    pub connections: u64,
    /// Requests this worker has reported answering, in all.
    pub requests: u64,
}

impl Link {
    /// A link over the pair `(channel, peer)`, sending up to `batch` fds per packet.
    pub fn new(channel: Channel, peer: Channel, batch: usize) -> Link {
        Link {
            channel,
            peer,
            unsent: VecDeque::new(),
            next_seq: 1,
            acked_seq: 0,
            want_acks: false,
            eager_reports: false,
            batch: batch.clamp(1, MAX_FDS_PER_HANDOFF),
            messages: VecDeque::new(),
            drain_requested: false,
            drain_sent: false,
            blocked: false,
            open: 0,
            connections: 0,
            requests: 0,
        }
    }

    /// Both ends' fds, for a forked child to close.
    pub fn fds(&self) -> [RawFd; 2] {
        [self.channel.raw_fd(), self.peer.raw_fd()]
    }

    /// Dispatches one connection to this worker (sent by the next [`Link::flush`]).
    pub fn queue(&mut self, conn: Accepted) {
        self.open += 1;
        self.unsent.push_back(conn);
    }

    /// Queues a user message.
    pub fn queue_message(&mut self, msg: Vec<u8>) {
        self.messages.push_back(msg);
    }

    /// Asks the worker to drain once everything queued before has been sent.
    pub fn queue_drain(&mut self) {
        self.drain_requested = true;
    }

    /// Whether something waits to be sent.
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
            || !self.messages.is_empty()
            || (self.drain_requested && !self.drain_sent)
    }

    /// Handoffs sent or queued that the worker has not acknowledged yet (with acks on).
    pub fn unacked(&self) -> u64 {
        self.next_seq - 1 - self.acked_seq + self.unsent.len() as u64
    }

    /// Sends what is queued, up to `batch` fds per packet, and closes the master's copies.
    /// Stops without error when the worker's queue is full (`Ok(false)`: wait for a
    /// writable event). An `Err` means the worker is gone.
    pub fn flush(&mut self) -> io::Result<bool> {
        while !self.unsent.is_empty() {
            let n = self.unsent.len().min(self.batch);
            let seq = self.next_seq;
            let mut fds: [RawFd; MAX_FDS_PER_HANDOFF] = [-1; MAX_FDS_PER_HANDOFF];
            let mut listeners = Vec::with_capacity(n);
            for (i, c) in self.unsent.iter().take(n).enumerate() {
                fds[i] = c.stream.as_raw_fd();
                listeners.push(c.listener);
            }
            let msg = ToWorker::Handoff {
                seq,
                ack: self.want_acks,
                eager: self.eager_reports,
                listeners,
            };
            match self.channel.send_with_fds(|b| msg.encode(b), &fds[..n]) {
                Ok(()) => {
                    self.next_seq += 1;
                    self.connections += n as u64;
                    // The packet holds its own references now: close the master's copies.
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        self.blocked = false;
        while let Some(msg) = self.messages.front() {
            match self.channel.send_to_worker(&ToWorker::Message(msg.clone())) {
                Ok(()) => {
                    self.messages.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if self.drain_requested && !self.drain_sent {
            match self.channel.send_to_worker(&ToWorker::Drain) {
                Ok(()) => self.drain_sent = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether this worker can take another connection: fewer than `limit` open and its
    /// queue not full.
    pub fn has_room(&self, limit: u64) -> bool {
        self.open < limit && !self.blocked
    }

    /// Asks the worker to acknowledge every handoff from now on.
    pub fn set_want_acks(&mut self, on: bool) {
        self.want_acks = on;
    }

    /// Asks the worker to report closed connections in every loop turn that closed some,
    /// before it sleeps again, so that `open` is fresh enough to steer by.
    pub fn set_eager_reports(&mut self, on: bool) {
        self.eager_reports = on;
    }

    /// The worker acknowledged handoffs up to `seq` and reported its counters.
    pub fn on_ack(&mut self, seq: u64, closed: u32, requests: u32, accepted: u32) {
        self.acked_seq = self.acked_seq.max(seq);
        self.connections += accepted as u64;
        self.open = (self.open + accepted as u64).saturating_sub(closed as u64);
        self.requests += requests as u64;
    }

    /// Connections dispatched to this worker and not yet sent.
    pub fn queued(&self) -> usize {
        self.unsent.len()
    }

    /// The worker is dead: take back every connection it never read from its queue, and
    /// every one not yet sent.
    pub fn recover(&mut self) -> Vec<Accepted> {
        let mut back: Vec<Accepted> = self.unsent.drain(..).collect();
        let mut buf = vec![0u8; 1024];
        loop {
            match self.peer.recv(&mut buf) {
                Ok(Received::Packet(n, fds)) => {
                    if let Ok(ToWorker::Handoff { listeners, .. }) = ToWorker::decode(&buf[..n]) {
                        back.extend(listeners.into_iter().zip(fds).map(|(listener, fd)| {
                            Accepted {
                                stream: TcpStream::from(fd),
                                listener,
                            }
                        }));
                    }
                }
                Ok(Received::Truncated(_)) => {
                    log::error!("recovering a dead worker's queue: out of file descriptors");
                }
                Ok(Received::WouldBlock) | Ok(Received::Closed) | Err(_) => break,
            }
        }
        self.open = 0;
        back
    }
}
