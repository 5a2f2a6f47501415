//! Handoff: the master's side of one worker's channel, where accepted fds cross to the worker.
//!
//! A connection the master accepted goes through three places here:
//!
//! ```text
//! dispatch ──► unsent ──sendmsg(SCM_RIGHTS, ≤16 fds)──► in_flight ──Ack{seq}──► closed here
//!                 ▲                                          │
//!                 └──────── worker died / Nack ◄─────────────┘ (taken back, dispatched again)
//! ```
//!
//! The master keeps its own fd of every connection until the worker acknowledges the packet
//! that carried it. Sending dups the fd into the packet; if the worker dies before reading
//! the packet, the kernel closes the dup with the dead socket, and the master's copy is what
//! keeps the client connected until another worker takes it. Closing the master's copy after
//! the ack does nothing to the client: the worker holds the connection by then.

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use crate::channel::{Channel, ListenerId, ToWorker, MAX_FDS_PER_HANDOFF};

/// An accepted connection on its way to a worker.
#[derive(Debug)]
pub struct Accepted {
    /// The master's copy of the connection (non-blocking, close-on-exec).
    pub stream: TcpStream,
    /// Which listener accepted it.
    pub listener: ListenerId,
}

/// The master's end of one worker's channel.
pub struct Link {
    /// The socket to the worker.
    pub channel: Channel,
    /// Dispatched to this worker, not yet sent (batched at the end of a loop turn, or held
    /// while the worker's queue is full).
    unsent: VecDeque<Accepted>,
    /// Sent, not yet acknowledged: `(seq, connections)`, oldest first.
    in_flight: VecDeque<(u64, Vec<Accepted>)>,
    next_seq: u64,
    /// The most fds per packet (1 ..= [`MAX_FDS_PER_HANDOFF`]).
    batch: usize,
    /// User messages not yet sent.
    messages: VecDeque<Vec<u8>>,
    /// `Drain` is to be sent once everything dispatched before it has been sent.
    drain_requested: bool,
    drain_sent: bool,
    /// Connections handed to this worker and not yet reported closed.
    pub open: u64,
    /// Connections this worker has acknowledged, in all.
    pub connections: u64,
    /// Requests this worker has reported answering, in all.
    pub requests: u64,
}

impl Link {
    /// A link over `channel` sending up to `batch` fds per packet.
    pub fn new(channel: Channel, batch: usize) -> Link {
        Link {
            channel,
            unsent: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_seq: 1,
            batch: batch.clamp(1, MAX_FDS_PER_HANDOFF),
            messages: VecDeque::new(),
            drain_requested: false,
            drain_sent: false,
            open: 0,
            connections: 0,
            requests: 0,
        }
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

    /// Connections sent or queued and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unsent.len() + self.in_flight.iter().map(|(_, c)| c.len()).sum::<usize>()
    }

    /// Sends what is queued, up to `batch` fds per packet. Stops without
    /// error when the worker's queue is full (`Ok(false)`: wait for a writable event).
    /// An `Err` means the worker is gone.
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
            let msg = ToWorker::Handoff { seq, listeners };
            match self.channel.send_with_fds(|b| msg.encode(b), &fds[..n]) {
                Ok(()) => {
                    self.next_seq += 1;
                    let batch: Vec<Accepted> = self.unsent.drain(..n).collect();
                    self.in_flight.push_back((seq, batch));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
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

    /// The worker acknowledged every handoff up to `seq`: close the master's copies.
    pub fn on_ack(&mut self, seq: u64, closed: u32, requests: u32) {
        while matches!(self.in_flight.front(), Some((s, _)) if *s <= seq) {
            let (_, batch) = self.in_flight.pop_front().expect("checked non-empty");
            self.connections += batch.len() as u64;
            drop(batch); // closes the master's copies
        }
        self.open = self.open.saturating_sub(closed as u64);
        self.requests += requests as u64;
    }

    /// Handoff `seq` reached the worker without its fds: take its connections back.
    pub fn take_nacked(&mut self, seq: u64) -> Vec<Accepted> {
        let Some(pos) = self.in_flight.iter().position(|(s, _)| *s == seq) else {
            return Vec::new();
        };
        let (_, batch) = self.in_flight.remove(pos).expect("position is in range");
        self.open = self.open.saturating_sub(batch.len() as u64);
        batch
    }

    /// The worker is gone: take back every connection it never acknowledged.
    pub fn take_unacked(&mut self) -> Vec<Accepted> {
        let mut back: Vec<Accepted> = self.in_flight.drain(..).flat_map(|(_, b)| b).collect();
        back.extend(self.unsent.drain(..));
        self.open = 0;
        back
    }
}
