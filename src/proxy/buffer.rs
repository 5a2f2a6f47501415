//! [`Buffer`]: the bounded byte queue between a socket the proxy reads and the one it writes.
//!
//! Every direction of a proxied exchange goes through one: bytes are read into its tail and
//! written from its head. The proxy never lets one grow past a small bound (it stops reading
//! the source while the queue is full, and TCP flow control then slows the sender), which is
//! what keeps a 1 GB body from costing more than a few tens of KiB per connection.
//!
//! Written bytes are not discarded until their room is needed, so a request that fits in the
//! buffer can be sent again to another target after a failed attempt ([`Buffer::rewind`]).

use std::io::{self, Read, Write};
use std::ops::Range;

/// Capacity a buffer keeps between exchanges; a rare large head should not pin memory for the
/// rest of a long keep-alive connection.
const RETAINED: usize = 64 * 1024;

/// A byte queue: `data[start..end]` is pending. `data` is initialised storage, grown (and
/// zeroed) only when it must grow, so reads land in place without zeroing per read.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes dropped from the front since the last [`Buffer::clear`]: once any are, the
    /// buffer no longer holds the whole message and cannot be rewound.
    dropped: usize,
}

impl Buffer {
    /// The pending bytes.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks the first `n` pending bytes as done with.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
    }

    /// Appends `bytes`.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.data[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Keeps only the first `len` pending bytes: takes back what was appended after them.
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(len <= self.len());
        self.end = self.start + len;
    }

    /// Appends what `fill` appends to a `Vec` (for formatted text and decoded chunks).
    pub fn extend_with(&mut self, scratch: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
        scratch.clear();
        fill(scratch);
        self.extend(scratch);
    }

    /// One `read` of at most `max` bytes into the tail. `Ok(0)` is end of stream.
    pub fn read_from(&mut self, source: &mut impl Read, max: usize) -> io::Result<usize> {
        self.reserve(max);
        let n = source.read(&mut self.data[self.end..self.end + max])?;
        self.end += n;
        Ok(n)
    }

    /// One `write` of the pending bytes; returns how many left.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let n = sink.write(&self.data[self.start..self.end])?;
        self.start += n;
        Ok(n)
    }

    /// Makes every byte appended since the last [`Buffer::clear`] pending again, if none was
    /// dropped: the message can be replayed to another target. False if it cannot.
    pub fn rewind(&mut self) -> bool {
        if self.dropped > 0 {
            return false;
        }
        self.start = 0;
        true
    }

    /// Replaces bytes `range` of the message (offsets from its first byte, as appended since
    /// the last [`Buffer::clear`]) with `with`; what follows moves. Only on a buffer just
    /// rewound ([`Buffer::rewind`] returned true), which holds the whole message.
    pub fn splice(&mut self, range: Range<usize>, with: &[u8]) {
        debug_assert!(self.dropped == 0 && self.start == 0 && range.end <= self.end);
        self.data.truncate(self.end);
        self.data.splice(range, with.iter().copied());
        self.end = self.data.len();
    }

    /// Empties the buffer for the next message, releasing capacity beyond [`RETAINED`].
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.dropped = 0;
        if self.data.len() > RETAINED {
            self.data.truncate(RETAINED);
            self.data.shrink_to(RETAINED);
        }
    }

    /// Makes room for `n` more bytes at the tail: reuses the space of consumed bytes first,
    /// grows only if that is not enough.
    fn reserve(&mut self, n: usize) {
        if self.data.len() - self.end >= n {
            return;
        }
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.dropped += self.start;
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < n {
            self.data.resize(self.end + n, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_and_rewind() {
        let mut b = Buffer::default();
        b.extend(b"hello ");
        b.extend(b"world");
        let mut out = Vec::new();
        b.write_to(&mut out).unwrap();
        assert_eq!(out, b"hello world");
        assert!(b.is_empty());
        assert!(b.rewind());
        assert_eq!(b.pending(), b"hello world");
        // Room needed beyond the storage: consumed bytes are dropped, no more rewinding.
        b.consume(6);
        let big = vec![7u8; 1000];
        b.extend(&big);
        assert_eq!(&b.pending()[..5], b"world");
        assert!(!b.rewind());
        b.truncate(3);
        assert_eq!(b.pending(), b"wor");
        b.clear();
        assert!(b.rewind() && b.is_empty());
    }

    #[test]
    fn reads_in_place() {
        let mut b = Buffer::default();
        let mut src: &[u8] = b"abcdef";
        assert_eq!(b.read_from(&mut src, 4).unwrap(), 4);
        assert_eq!(b.read_from(&mut src, 4).unwrap(), 2);
        assert_eq!(b.read_from(&mut src, 4).unwrap(), 0);
        assert_eq!(b.pending(), b"abcdef");
    }
}
