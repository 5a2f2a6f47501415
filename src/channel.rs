//! The wire between the master and one worker.
//!
//! Each worker gets one `SOCK_SEQPACKET` Unix socketpair, created by the master just before
//! `fork()`. Seqpacket keeps message boundaries (one `send` is one `recv`, never split or
//! merged) and keeps them in order, so the framing rule is simply: **one packet is one
//! message**, its first byte the tag, fixed-width little-endian fields after it. The fds of a
//! [`ToWorker::Handoff`] travel in the same packet as `SCM_RIGHTS` ancillary data, so a
//! connection and its description can never be separated.
//!
//! ```text
//! master → worker                               worker → master
//! 1 Handoff  seq:u64 flags:u8 n:u8 listener:u16×n 1 Online
//!            + n fds (SCM_RIGHTS)                2 Listen   req:u32 index:u32 addr:utf8
//! 2 ListenOk req:u32 listener:u16 accept:u8     3 Ack      seq:u64 closed:u32 requests:u32
//!            addr [+ 1 listening fd]                        accepted:u32
//! 3 ListenErr req:u32 error:utf8                 4 Message  payload
//! 4 Message  payload                            5 Heartbeat
//! 5 Drain
//! 6 Heartbeat interval_ms:u32
//! ```
//!
//! `Ack` does two jobs. It carries the worker's counters (connections closed, requests
//! answered), batched: one packet per 50 ms at most, never one per request. When a handoff
//! asks for it (flag bit 0, the `node` policy), it acknowledges that handoff at once, before
//! the worker serves the connection, as Node's workers acknowledge `newconn`. Flag bit 1
//! (the load-aware policies) asks for closes to be reported in every loop turn that closed
//! connections, before the worker sleeps again: one packet per batch of events, still not
//! one per connection.
//! Under a worker-accept policy it also counts the connections the worker accepted itself.
//!
//! `ListenOk` says who accepts ([`Acceptance`]); when the worker does, the listening socket
//! it accepts from travels with the reply.
//!
//! `Heartbeat` (`--worker-timeout`): the master's first packet to a worker, before the
//! fork, asks it to send a `Heartbeat` at least every `interval_ms` while its loop turns
//! with work to do (a quarter of the timeout: a few packets per timeout period, none while
//! it sleeps idle). Any packet from the worker counts as a sign of life; this one carries
//! nothing else.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use sendfd::SendWithFd;

use crate::policy::Acceptance;

/// The most fds one handoff carries. Batching amortises the master's `sendmsg` and the
/// worker's `recvmsg` + acknowledgement over several connections; 16 keeps the packet small.
pub const MAX_FDS_PER_HANDOFF: usize = 16;

/// The largest user message ([`ToWorker::Message`], [`ToMaster::Message`]) in bytes.
/// A seqpacket message must fit the socket's send buffer whole; 64 KiB always does.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Index of a listening socket in the master's table, as the worker knows it.
pub type ListenerId = u16;

/// A message from the master to a worker.
#[derive(Debug, PartialEq, Eq)]
pub enum ToWorker {
    /// Connections to serve: `listeners[i]` is the listener the i-th attached fd came from.
    Handoff {
        /// Handoff sequence number, acknowledged by [`ToMaster::Ack`].
        seq: u64,
        /// Acknowledge this handoff at once (else counters ride on the periodic report).
        ack: bool,
        /// Report closed connections in every loop turn that closed some (before sleeping),
        /// not only every 50 ms: the load-aware policies steer by the open count.
        eager: bool,
        /// One listener id per attached fd, in order.
        listeners: Vec<ListenerId>,
    },
    /// The listen request `req` succeeded: connections for `addr` come tagged `listener`.
    ListenOk {
        /// The request id from [`ToMaster::Listen`].
        req: u32,
        /// The listener's id in later handoffs.
        listener: ListenerId,
        /// Who accepts; unless the master, the listening socket is attached.
        accept: Acceptance,
        /// The bound address (the real port when port 0 was asked for).
        addr: String,
    },
    /// The listen request `req` failed (bad address, address in use, …).
    ListenErr {
        /// The request id from [`ToMaster::Listen`].
        req: u32,
        /// The bind error, as text.
        error: String,
    },
    /// A user message (`Control::send` / `broadcast`).
    Message(Vec<u8>),
    /// Stop taking connections, finish in-flight requests, close idle ones, then exit.
    Drain,
    /// Send [`ToMaster::Heartbeat`] at least this often while there is work (the master's
    /// watchdog, `--worker-timeout`).
    Heartbeat {
        /// The longest gap between two signs of life, in milliseconds.
        interval_ms: u32,
    },
}

/// A message from a worker to the master.
#[derive(Debug, PartialEq, Eq)]
pub enum ToMaster {
    /// The worker process is up and its event loop is about to start.
    Online,
    /// Please listen on `addr` and share it with me (Node's `server.listen()` in a worker).
    Listen {
        /// Echoed in the reply.
        req: u32,
        /// This worker's how-many-th listen on `addr` (0 for the first): with `addr`, the
        /// master's key for the listener, as Node keys them.
        index: u32,
        /// The address, numeric (the worker resolves names itself), e.g. `127.0.0.1:3000`.
        addr: String,
    },
    /// The worker's counters since the previous `Ack` (connections closed, requests
    /// answered), and the highest handoff it has received.
    Ack {
        /// The highest handoff sequence number received (0: none yet).
        seq: u64,
        /// Connections closed since the last report.
        closed: u32,
        /// Requests answered since the last report.
        requests: u32,
        /// Connections the worker accepted itself since the last report (worker-accept).
        accepted: u32,
    },
    /// A user message (`Worker::send`).
    Message(Vec<u8>),
    /// The worker's loop is turning (asked for by [`ToWorker::Heartbeat`]).
    Heartbeat,
}

/// Why a packet could not be decoded: a bug or a mismatched binary, never normal flow.
#[derive(Debug)]
pub struct DecodeError(&'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad channel packet: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for io::Error {
    fn from(e: DecodeError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Reads the fixed-width fields of one packet, front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn rest(&mut self) -> &'a [u8] {
        mem::take(&mut self.0)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.rest().to_vec()).map_err(|_| DecodeError("not utf-8"))
    }
}

impl ToWorker {
    /// Appends the packet to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            ToWorker::Handoff {
                seq,
                ack,
                eager,
                listeners,
            } => {
                buf.push(1);
                buf.extend_from_slice(&seq.to_le_bytes());
                buf.push(*ack as u8 | (*eager as u8) << 1);
                buf.push(listeners.len() as u8);
                for l in listeners {
                    buf.extend_from_slice(&l.to_le_bytes());
                }
            }
            ToWorker::ListenOk {
                req,
                listener,
                accept,
                addr,
            } => {
                buf.push(2);
                buf.extend_from_slice(&req.to_le_bytes());
                buf.extend_from_slice(&listener.to_le_bytes());
                buf.push(accept.code());
                buf.extend_from_slice(addr.as_bytes());
            }
            ToWorker::ListenErr { req, error } => {
                buf.push(3);
                buf.extend_from_slice(&req.to_le_bytes());
                buf.extend_from_slice(error.as_bytes());
            }
            ToWorker::Message(payload) => {
                buf.push(4);
                buf.extend_from_slice(payload);
            }
            ToWorker::Drain => buf.push(5),
            ToWorker::Heartbeat { interval_ms } => {
                buf.push(6);
                buf.extend_from_slice(&interval_ms.to_le_bytes());
            }
        }
    }

    /// Decodes one packet.
    pub fn decode(packet: &[u8]) -> Result<ToWorker, DecodeError> {
        let mut r = Reader(packet);
        Ok(match r.u8()? {
            1 => {
                let seq = r.u64()?;
                let flags = r.u8()?;
                let (ack, eager) = (flags & 1 != 0, flags & 2 != 0);
                let n = r.u8()? as usize;
                let listeners = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
                ToWorker::Handoff {
                    seq,
                    ack,
                    eager,
                    listeners,
                }
            }
            2 => ToWorker::ListenOk {
                req: r.u32()?,
                listener: r.u16()?,
                accept: Acceptance::from_code(r.u8()?).ok_or(DecodeError("unknown acceptance"))?,
                addr: r.string()?,
            },
            3 => ToWorker::ListenErr {
                req: r.u32()?,
                error: r.string()?,
            },
            4 => ToWorker::Message(r.rest().to_vec()),
            5 => ToWorker::Drain,
            6 => ToWorker::Heartbeat {
                interval_ms: r.u32()?,
            },
            _ => return Err(DecodeError("unknown tag")),
        })
    }
}

impl ToMaster {
    /// Appends the packet to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            ToMaster::Online => buf.push(1),
            ToMaster::Listen { req, index, addr } => {
                buf.push(2);
                buf.extend_from_slice(&req.to_le_bytes());
                buf.extend_from_slice(&index.to_le_bytes());
                buf.extend_from_slice(addr.as_bytes());
            }
            ToMaster::Ack {
                seq,
                closed,
                requests,
                accepted,
            } => {
                buf.push(3);
                buf.extend_from_slice(&seq.to_le_bytes());
                buf.extend_from_slice(&closed.to_le_bytes());
                buf.extend_from_slice(&requests.to_le_bytes());
                buf.extend_from_slice(&accepted.to_le_bytes());
            }
            ToMaster::Message(payload) => {
                buf.push(4);
                buf.extend_from_slice(payload);
            }
            ToMaster::Heartbeat => buf.push(5),
        }
    }

    /// Decodes one packet.
    pub fn decode(packet: &[u8]) -> Result<ToMaster, DecodeError> {
        let mut r = Reader(packet);
        Ok(match r.u8()? {
            1 => ToMaster::Online,
            2 => ToMaster::Listen {
                req: r.u32()?,
                index: r.u32()?,
                addr: r.string()?,
            },
            3 => ToMaster::Ack {
                seq: r.u64()?,
                closed: r.u32()?,
                requests: r.u32()?,
                accepted: r.u32()?,
            },
            4 => ToMaster::Message(r.rest().to_vec()),
            5 => ToMaster::Heartbeat,
            _ => return Err(DecodeError("unknown tag")),
        })
    }
}

/// One end of a master–worker socketpair (non-blocking, close-on-exec).
///
/// The type is a `UnixDatagram` only as a carrier for the fd: `send`/`recv` on a connected
/// seqpacket socket behave exactly as on a connected datagram socket.
#[derive(Debug)]
pub struct Channel {
    sock: UnixDatagram,
    /// Reused encode buffer, so a send does not allocate.
    scratch: Vec<u8>,
}

/// What one [`Channel::recv`] produced.
#[derive(Debug)]
pub enum Received {
    /// A packet and the fds that came with it (owned: dropping them closes them).
    Packet(usize, Vec<OwnedFd>),
    /// The packet's fds did not all fit in this process (`MSG_CTRUNC`, usually `EMFILE`):
    /// the kernel dropped the rest, and the ones that did arrive are closed here. The packet
    /// bytes are intact. Workers avoid this by not reading handoffs near their fd limit.
    Truncated(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The other end is gone.
    Closed,
}

impl Channel {
    /// A connected pair: `(master end, worker end)`.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel::from_owned(a), Channel::from_owned(b)))
    }

    fn from_owned(fd: OwnedFd) -> Channel {
        Channel {
            sock: UnixDatagram::from(fd),
            scratch: Vec::with_capacity(256),
        }
    }

    /// A second descriptor of the same end.
    pub fn try_clone(&self) -> io::Result<Channel> {
        Ok(Channel {
            sock: self.sock.try_clone()?,
            scratch: Vec::with_capacity(256),
        })
    }

    /// Waits up to `timeout` for a packet to read (a worker waiting for its listen reply),
    /// or with `write`, for room to send one.
    ///
    /// The socket itself stays non-blocking: `O_NONBLOCK` belongs to the open file, which the
    /// master shares (it keeps the worker's end, see `master::handoff`), so flipping it here
    /// would flip it for the master too.
    pub fn wait(&self, write: bool, timeout: std::time::Duration) -> io::Result<bool> {
        crate::sys::wait_for(self.sock.as_fd(), write, timeout)
    }

    /// Sends one packet with `fds` attached. `WouldBlock` means the peer's queue is full;
    /// the caller keeps the message and retries on the next writable event.
    pub fn send_with_fds(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>),
        fds: &[RawFd],
    ) -> io::Result<()> {
        self.scratch.clear();
        encode(&mut self.scratch);
        loop {
            let r = if fds.is_empty() {
                self.sock.send(&self.scratch)
            } else {
                self.sock.send_with_fd(&self.scratch, fds)
            };
            match r {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a master → worker message without fds.
    pub fn send_to_worker(&mut self, msg: &ToWorker) -> io::Result<()> {
        self.send_with_fds(|b| msg.encode(b), &[])
    }

    /// Sends a worker → master message.
    pub fn send_to_master(&mut self, msg: &ToMaster) -> io::Result<()> {
        self.send_with_fds(|b| msg.encode(b), &[])
    }

    /// Receives one packet into `buf`, with up to [`MAX_FDS_PER_HANDOFF`] fds, their
    /// descriptors close-on-exec from birth (`sys::recv_with_fds`).
    ///
    /// A packet longer than `buf` (`MSG_TRUNC`) is an `InvalidData` error: its tail is lost,
    /// so it cannot be decoded; every packet herd sends fits the buffers herd receives into.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let got = match crate::sys::recv_with_fds(self.sock.as_fd(), buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Received::Closed),
            Err(e) => return Err(e),
        };
        if got.data_truncated {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a packet longer than the {}-byte buffer was cut short",
                    buf.len()
                ),
            ));
        }
        if got.fds_truncated {
            drop(got.fds);
            return Ok(Received::Truncated(got.len));
        }
        if got.len == 0 && got.fds.is_empty() {
            // A zero-length read on seqpacket is end-of-stream: every message has a tag byte.
            return Ok(Received::Closed);
        }
        Ok(Received::Packet(got.len, got.fds))
    }

    /// The raw fd, for registering with mio and for closing in a forked child.
    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests;
