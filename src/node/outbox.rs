//! [`Outbox`]: the write side of one Node.js worker's channel — lines in order, each fd on
//! the `sendmsg` that carries its line's first byte, handles pipelined safely.
//!
//! ```text
//! push(msg, fd) ─► out: [line][handle line + fd][line] ─► write(sock) ─► the channel
//!                                 │ written: its end offset
//!                                 ▼
//!                  unacked: [end, bytes, fd] … ◄── NODE_HANDLE_ACK (read_up_to = end)
//!                                              ◄── NODE_HANDLE_NACK (the line again, first)
//! ```
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

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use sendfd::SendWithFd;

use super::{Sequencer, ToWorker};

/// Bytes that may be in the worker's channel, unread as far as herd knows, when a handle
/// line is pipelined behind other unacknowledged ones: half of the 64 KiB Node reads at
/// once, so that no read can end inside one of those handle lines.
const PIPELINE_BYTES: u64 = 32 * 1024;
/// Handles unacknowledged at once, at most.
const MAX_HANDLES_IN_FLIGHT: usize = 16;

/// The fd a line carries.
#[derive(Debug)]
pub(super) enum FrameFd {
    None,
    /// A connection the link keeps until the worker accepts it: its raw fd.
    Borrowed(RawFd),
    /// A listening socket granted to the worker (closed once sent).
    Owned(OwnedFd),
}

/// One line to write, with the fd its first byte carries.
#[derive(Debug)]
struct Frame {
    bytes: Vec<u8>,
    written: usize,
    fd: FrameFd,
}

impl Frame {
    fn carries_fd(&self) -> bool {
        !matches!(self.fd, FrameFd::None)
    }
}

/// A handle line the worker has not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    /// The stream offset of the line's end.
    end: u64,
    /// To send again after a `NODE_HANDLE_NACK`.
    bytes: Vec<u8>,
    /// The connection's fd (kept by the link), or -1 for a listening socket (gone once sent).
    fd: RawFd,
}

/// What is waiting to be written to one worker. See the module documentation.
#[derive(Debug)]
pub(super) struct Outbox {
    seq: Sequencer,
    /// Lines to write, in order.
    out: VecDeque<Frame>,
    /// Handle lines written and not yet acknowledged, oldest first.
    unacked: VecDeque<Unacked>,
    /// Bytes written to the channel, in all.
    written: u64,
    /// The stream offset the worker has provably read up to (the end of the last
    /// acknowledged handle line).
    read_up_to: u64,
    /// A handle line went out in two writes (the socket was full): until every handle is
    /// acknowledged, no other is pipelined behind it.
    split_handle: bool,
    /// The socket was full at the last write.
    blocked: bool,
}

impl Outbox {
    pub(super) fn new() -> Outbox {
        Outbox {
            seq: Sequencer::new(),
            out: VecDeque::new(),
            unacked: VecDeque::new(),
            written: 0,
            read_up_to: 0,
            split_handle: false,
            blocked: false,
        }
    }

    /// Encodes `msg` as the next line, its first byte carrying `fd`; its sequence number
    /// if it has one.
    pub(super) fn push(&mut self, msg: &ToWorker<'_>, fd: FrameFd) -> Option<u64> {
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

    /// Whether lines are waiting (written in part, or held for an acknowledgement).
    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Whether the worker was told to disconnect (nothing is numbered after that).
    pub(super) fn ended(&self) -> bool {
        self.seq.ended()
    }

    /// Whether the socket was full at the last write.
    pub(super) fn blocked(&self) -> bool {
        self.blocked
    }

    /// Writes lines in order until the socket is full (`Ok(false)`), a handle waits for an
    /// acknowledgement, or nothing is left (`Ok(true)`).
    pub(super) fn write(&mut self, sock: &mut UnixStream) -> io::Result<bool> {
        while let Some(front) = self.out.front_mut() {
            if front.written == 0 && front.carries_fd() && !self.unacked.is_empty() {
                let unread = self.written - self.read_up_to + front.bytes.len() as u64;
                if unread > PIPELINE_BYTES
                    || self.unacked.len() >= MAX_HANDLES_IN_FLIGHT
                    || self.split_handle
                {
                    return Ok(true); // the next acknowledgement lets it go
                }
            }
            let rest = &front.bytes[front.written..];
            let sent = if front.written == 0 {
                match &front.fd {
                    FrameFd::None => sock.write(rest),
                    FrameFd::Borrowed(fd) => sock.send_with_fd(rest, &[*fd]),
                    FrameFd::Owned(fd) => sock.send_with_fd(rest, &[fd.as_raw_fd()]),
                }
            } else {
                sock.write(rest)
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
                        self.unacked.push_back(Unacked { end, bytes, fd });
                    }
                    front.written += n;
                    if front.written == front.bytes.len() {
                        self.out.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.blocked = false;
        Ok(true)
    }

    /// The worker's `NODE_HANDLE_ACK`: it has read up to the end of the oldest handle line.
    /// `false` when no handle was unacknowledged (the worker broke the protocol).
    pub(super) fn on_handle_ack(&mut self) -> bool {
        let Some(acked) = self.unacked.pop_front() else {
            return false;
        };
        self.read_up_to = self.read_up_to.max(acked.end);
        self.split_handle &= !self.unacked.is_empty();
        true
    }

    /// The worker's `NODE_HANDLE_NACK`: the fd did not arrive, so the line goes again, first
    /// (Node's own sender does the same). `false` when no handle was unacknowledged.
    pub(super) fn on_handle_nack(&mut self) -> bool {
        let Some(lost) = self.unacked.pop_front() else {
            return false;
        };
        self.read_up_to = self.read_up_to.max(lost.end);
        if lost.fd >= 0 {
            self.out.push_front(Frame {
                bytes: lost.bytes,
                written: 0,
                fd: FrameFd::Borrowed(lost.fd),
            });
        }
        true
    }

    /// Forgets everything (the worker is gone; the link hands its connections back).
    pub(super) fn clear(&mut self) {
        self.out.clear();
        self.unacked.clear();
    }
}
