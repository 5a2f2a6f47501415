//! Handoff: the last step of a connection's path through the master, where accepted fds
//! cross to the worker; and herd's own [`Link`], the master's side of a forked worker's
//! seqpacket channel ([`SeqpacketLink`]).
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
//! ([`SeqpacketLink::peer`]). When a worker dies, the kernel would normally destroy its end of the
//! socket and with it every packet (and connection) it had not read yet; because the master
//! still holds that end, the queue survives, and [`Link::recover`] reads the unread handoffs
//! back and dispatches their connections to other workers.
//!
//! Why not keep each fd until an acknowledgement, as Node does: a worker usually answers and
//! closes a short connection before the master has processed the acknowledgement, and then
//! the master's close is the *last* reference, so the master pays the TCP teardown of every
//! connection on its single thread. Measured with `Connection: close` load, closing at send
//! time was worth ~10% more requests/s (see BENCHMARKS.md).

//!
//! At the end of every loop turn [`Master::flush`] sends what each dirty link queued. Write
//! interest is registered only while a worker's queue is full: registered permanently, the
//! channel would wake the master each time the worker reads a packet (the kernel signals
//! write space on every read of a unix socket).

use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Master, WorkerState, WORKER_BASE};
use crate::channel::{Channel, Received, ToMaster, ToWorker, MAX_FDS_PER_HANDOFF, MAX_MESSAGE};
use crate::link::{Accepted, FromWorker, Grant, Link, LinkOptions};

/// The master's ends of one forked worker's channel.
pub(crate) struct SeqpacketLink {
    /// The master's end: the master sends on it and reads the worker's messages from it.
    channel: Channel,
    /// The worker's end, kept open so that a dead worker's unread handoffs can be recovered.
    peer: Channel,
    options: LinkOptions,
    /// Dispatched to this worker, not yet sent (batched at the end of a loop turn, or held
    /// while the worker's queue is full).
    unsent: VecDeque<Accepted>,
    next_seq: u64,
    /// The highest handoff the worker has acknowledged (only when acks are asked for).
    acked_seq: u64,
    /// User messages not yet sent.
    messages: VecDeque<Vec<u8>>,
    /// `Drain` is to be sent once everything dispatched before it has been sent.
    drain_requested: bool,
    drain_sent: bool,
    /// The worker's queue was full at the last send.
    blocked: bool,
    /// A listening socket went with a listen reply: the worker accepts for itself.
    accepts_itself: bool,
    /// Receive buffer (the largest packet is a 64 KiB user message).
    recv_buf: Vec<u8>,
}

impl SeqpacketLink {
    /// A link over the pair `(channel, peer)`.
    pub fn new(channel: Channel, peer: Channel, options: LinkOptions) -> SeqpacketLink {
        SeqpacketLink {
            channel,
            peer,
            options: LinkOptions {
                batch: options.batch.clamp(1, MAX_FDS_PER_HANDOFF),
                ..options
            },
            unsent: VecDeque::new(),
            next_seq: 1,
            acked_seq: 0,
            messages: VecDeque::new(),
            drain_requested: false,
            drain_sent: false,
            blocked: false,
            accepts_itself: false,
            recv_buf: Vec::new(),
        }
    }

    /// Sends one packet of up to `batch` connections; the packet holds its own references
    /// once `sendmsg` returns, so the master's copies are closed at once.
    fn send_handoff(&mut self) -> io::Result<()> {
        let n = self.unsent.len().min(self.options.batch);
        let mut fds: [RawFd; MAX_FDS_PER_HANDOFF] = [-1; MAX_FDS_PER_HANDOFF];
        let mut listeners = Vec::with_capacity(n);
        for (i, c) in self.unsent.iter().take(n).enumerate() {
            fds[i] = c.stream.as_raw_fd();
            listeners.push(c.listener);
        }
        let msg = ToWorker::Handoff {
            seq: self.next_seq,
            ack: self.options.want_acks,
            eager: self.options.eager_reports,
            listeners,
        };
        self.channel.send_with_fds(|b| msg.encode(b), &fds[..n])?;
        self.next_seq += 1;
        self.unsent.drain(..n);
        Ok(())
    }
}

/// `Ok(false)` for a full queue, else the result as is.
fn would_block(r: io::Result<()>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

impl Link for SeqpacketLink {
    fn fd(&self) -> Option<RawFd> {
        Some(self.channel.raw_fd())
    }

    fn fds(&self) -> Vec<RawFd> {
        vec![self.channel.raw_fd(), self.peer.raw_fd()]
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
        self.messages.push_back(msg.to_vec());
        Ok(())
    }

    fn queue_drain(&mut self) {
        self.drain_requested = true;
    }

    fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
            || !self.messages.is_empty()
            || (self.drain_requested && !self.drain_sent)
    }

    fn flush(&mut self) -> io::Result<bool> {
        while !self.unsent.is_empty() {
            if !would_block(self.send_handoff())? {
                self.blocked = true;
                return Ok(false);
            }
        }
        self.blocked = false;
        while let Some(msg) = self.messages.front() {
            let msg = ToWorker::Message(msg.clone());
            if !would_block(self.channel.send_to_worker(&msg))? {
                return Ok(false);
            }
            self.messages.pop_front();
        }
        if self.drain_requested && !self.drain_sent {
            if !would_block(self.channel.send_to_worker(&ToWorker::Drain))? {
                return Ok(false);
            }
            self.drain_sent = true;
        }
        Ok(true)
    }

    fn receive(&mut self, out: &mut Vec<FromWorker>) -> io::Result<bool> {
        if self.recv_buf.is_empty() {
            self.recv_buf = vec![0; MAX_MESSAGE + 64];
        }
        loop {
            let n = match self.channel.recv(&mut self.recv_buf)? {
                // Workers send no fds; any that came are closed by dropping them here.
                Received::Packet(n, _) | Received::Truncated(n) => n,
                Received::WouldBlock => return Ok(true),
                Received::Closed => return Ok(false),
            };
            out.push(match ToMaster::decode(&self.recv_buf[..n])? {
                ToMaster::Online => FromWorker::Online,
                ToMaster::Listen { req, addr, index } => {
                    let addr = addr.parse().map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("listen request for '{addr}', not a numeric address"),
                        )
                    })?;
                    FromWorker::Listen {
                        req: req as u64,
                        addr,
                        index,
                    }
                }
                ToMaster::Ack {
                    seq,
                    closed,
                    requests,
                    accepted,
                } => {
                    self.acked_seq = self.acked_seq.max(seq);
                    FromWorker::Report {
                        closed,
                        requests,
                        accepted,
                    }
                }
                ToMaster::Message(payload) => FromWorker::Message(payload),
                ToMaster::Heartbeat => FromWorker::Heartbeat,
            });
        }
    }

    fn reply_listen(&mut self, req: u64, grant: Result<Grant, io::Error>) -> io::Result<()> {
        let req = req as u32;
        match grant {
            Ok(grant) => {
                let reply = ToWorker::ListenOk {
                    req,
                    listener: grant.listener,
                    accept: grant.accept,
                    addr: grant.local.to_string(),
                };
                let fds: Vec<RawFd> = grant.socket.iter().map(|s| s.as_raw_fd()).collect();
                self.accepts_itself |= !fds.is_empty();
                // `grant` (and with it the master's copy of the socket) is dropped once the
                // packet holds its own reference.
                self.channel.send_with_fds(|b| reply.encode(b), &fds)
            }
            Err(error) => self.channel.send_to_worker(&ToWorker::ListenErr {
                req,
                error: error.to_string(),
            }),
        }
    }

    fn recover(&mut self) -> Vec<Accepted> {
        let mut back: Vec<Accepted> = self.unsent.drain(..).collect();
        let mut buf = vec![0u8; 1024];
        loop {
            match self.peer.recv(&mut buf) {
                Ok(Received::Packet(n, fds)) => {
                    if let Ok(ToWorker::Handoff { listeners, .. }) = ToWorker::decode(&buf[..n]) {
                        back.extend(listeners.into_iter().zip(fds).map(|(listener, fd)| {
                            // The peer, for `ip-hash` to send it where its others went.
                            let stream = TcpStream::from(fd);
                            Accepted {
                                peer: stream.peer_addr().ok(),
                                stream,
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
        back
    }

    fn queued(&self) -> usize {
        self.unsent.len()
    }

    fn unacked(&self) -> u64 {
        self.next_seq - 1 - self.acked_seq + self.unsent.len() as u64
    }

    fn blocked(&self) -> bool {
        self.blocked
    }

    fn watched_when_idle(&self) -> bool {
        // Then its loop turns at least every heartbeat interval, idle or not.
        self.accepts_itself && self.options.worker_timeout.is_some()
    }
}

impl Master {
    /// Sends what every dirty link has queued.
    pub(super) fn flush(&mut self) {
        while let Some(key) = self.dirty.pop() {
            let Some(w) = self.workers.get_mut(key) else {
                continue;
            };
            if w.state == WorkerState::Disconnected || !w.link.has_unsent() {
                continue;
            }
            let was_blocked = w.link.blocked();
            match w.link.flush() {
                Ok(all_sent) => {
                    if all_sent == w.write_armed {
                        w.write_armed = !all_sent;
                        let interest = if all_sent {
                            Interest::READABLE
                        } else {
                            Interest::READABLE | Interest::WRITABLE
                        };
                        if let Some(fd) = w.link.fd() {
                            if let Err(e) = self.poll.registry().reregister(
                                &mut SourceFd(&fd),
                                Token(WORKER_BASE + key),
                                interest,
                            ) {
                                log::error!("worker {}: reregister: {e}", w.id);
                            }
                        }
                    }
                    if was_blocked && !w.link.blocked() {
                        // Room again: the worker may take what waited for it.
                        self.room_freed();
                    }
                }
                Err(e) => {
                    log::debug!("worker {}: channel: {e}", w.id);
                    self.disconnect(key);
                }
            }
        }
    }
}
