//! Lines out of a byte stream, and which fd belongs to which line.
//!
//! The channel is a `SOCK_STREAM` socket: a read may end in the middle of a line or hold
//! several, so bytes are buffered until a `\n`. A line may not grow past a limit: a peer that
//! never sends `\n` must not make herd buffer without end.
//!
//! An fd (`SCM_RIGHTS`) comes with one read. Node's sender attaches it to the `sendmsg`
//! that carries the first byte of its `NODE_HANDLE` line, and Linux ends a read right after
//! the data of a `sendmsg` that carried fds, but may *start* it with bytes of earlier,
//! fd-less writes: one read can hold `{"cmd":"NODE_HANDLE_ACK"}\n{…accepted…}\n` and then
//! the `NODE_HANDLE` line the fd belongs to. Node's reader (`channel.onread`) gives the fd to
//! the first `NODE_HANDLE` message it parses from that read or a later one. [`LineReader`]
//! keeps that rule but makes it exact: it remembers the stream range of the read an fd came
//! with, and hands the fd only to a line that *starts* inside that range and asks for it
//! ([`LineReader::take_fd`], called for `NODE_HANDLE` lines). An fd that no line claims is
//! closed once no later line can start in its range.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use super::error::ProtocolError;

/// The default longest line, 4 MiB. Node has no limit of its own; a user message this big is
/// far beyond what the channel is good for (every byte is JSON-encoded and parsed twice),
/// while herd must bound what it buffers per worker.
pub const MAX_LINE: usize = 4 << 20;

/// One complete line, without its `\n`.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Stream offset of the first byte, to find the fd that came with it.
    start: u64,
}

/// An fd that came with the read covering stream offsets `start..end`.
#[derive(Debug)]
struct ChunkFd {
    start: u64,
    end: u64,
    fd: OwnedFd,
}

/// Accumulates reads from a channel and yields complete lines.
#[derive(Debug)]
pub struct LineReader {
    /// Bytes read but not yet returned; `buf[head..]` is pending, `buf[..head]` consumed.
    buf: Vec<u8>,
    head: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// `buf[head..head + scanned]` holds no `\n`: where the search resumes.
    scanned: usize,
    /// Length of the unfinished line at the end of `buf` (bytes after the last `\n`).
    tail: usize,
    /// Fds in arrival order, waiting for the line they belong to.
    fds: VecDeque<ChunkFd>,
    limit: usize,
}

impl Default for LineReader {
    fn default() -> LineReader {
        LineReader::new()
    }
}

impl LineReader {
    /// A reader whose lines may be up to [`MAX_LINE`] bytes.
    pub fn new() -> LineReader {
        LineReader::with_limit(MAX_LINE)
    }

    /// A reader whose lines may be up to `limit` bytes (without the `\n`).
    pub fn with_limit(limit: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            head: 0,
            base: 0,
            scanned: 0,
            tail: 0,
            fds: VecDeque::new(),
            limit,
        }
    }

    /// Adds one read's bytes, with the fd that came with that read, if any.
    ///
    /// Fails when the line being read is already longer than the limit: the peer is broken
    /// and nothing it sends later can be trusted.
    pub fn push(&mut self, chunk: &[u8], fd: Option<OwnedFd>) -> Result<(), ProtocolError> {
        let start = self.base + self.buf.len() as u64;
        let end = start + chunk.len() as u64;
        if let Some(fd) = fd {
            // A line starts in the chunk if the stream is at a line start before it, or
            // after any `\n` in it but the last byte. Otherwise no line can claim the fd.
            let body = &chunk[..chunk.len().saturating_sub(1)];
            if !chunk.is_empty() && (self.tail == 0 || body.contains(&b'\n')) {
                self.fds.push_back(ChunkFd { start, end, fd });
            }
        }
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.base += self.head as u64;
            self.head = 0;
        }
        self.buf.extend_from_slice(chunk);
        self.tail = match chunk.iter().rposition(|&b| b == b'\n') {
            Some(nl) => chunk.len() - nl - 1,
            None => self.tail + chunk.len(),
        };
        if self.tail > self.limit {
            return Err(ProtocolError::LineTooLong { limit: self.limit });
        }
        Ok(())
    }

    /// The next complete line, if one has arrived.
    pub fn next_line(&mut self) -> Result<Option<Line>, ProtocolError> {
        // The next line starts here: fds whose read ended before can belong to no line now.
        let next_start = self.base + self.head as u64;
        while self.fds.front().is_some_and(|f| f.end <= next_start) {
            self.fds.pop_front();
        }
        let pending = &self.buf[self.head..];
        let Some(len) = pending[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = pending.len();
            return Ok(None);
        };
        let len = self.scanned + len;
        if len > self.limit {
            return Err(ProtocolError::LineTooLong { limit: self.limit });
        }
        let line = Line {
            bytes: pending[..len].to_vec(),
            start: self.base + self.head as u64,
        };
        self.head += len + 1;
        self.scanned = 0;
        Ok(Some(line))
    }

    /// The fd that came with the read in which `line` started, if any (and not taken yet).
    /// Call it for the lines that carry an fd (`NODE_HANDLE`), in order.
    pub fn take_fd(&mut self, line: &Line) -> Option<OwnedFd> {
        let i = self
            .fds
            .iter()
            .position(|f| f.start <= line.start && line.start < f.end)?;
        self.fds.remove(i).map(|f| f.fd)
    }

    /// Bytes of the unfinished line at the end: what is lost if the channel closes now.
    pub fn partial(&self) -> usize {
        self.tail
    }
}
