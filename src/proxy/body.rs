//! [`BodyFramer`]: finds where a streamed body ends while its bytes pass through.
//!
//! The proxy never holds a whole body. It moves whatever part has arrived from the buffer it
//! was read into to the buffer it is written from, and the framer says how much of that belongs
//! to the body and when the body is complete: by counting down a `Content-Length`, by following
//! the chunked coding (forwarded as is, or decoded for an HTTP/1.0 client), or until the sender
//! closes. Bytes after the end belong to the next message and are left where they are.

use super::buffer::Buffer;
use crate::http::{ChunkedDecoder, HttpError, Limits};

/// Where a body ends.
#[derive(Debug, Clone)]
pub(crate) enum BodyFramer {
    /// Complete (or there was none).
    Done,
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked; `decode` strips the coding instead of forwarding it.
    Chunked {
        decoder: ChunkedDecoder,
        decode: bool,
    },
    /// Until the sender closes; [`BodyFramer::finish_at_eof`] completes it.
    UntilClose,
}

impl BodyFramer {
    pub fn is_done(&self) -> bool {
        matches!(self, BodyFramer::Done)
    }

    /// Moves the body bytes at the front of `src` to `dst`; true once the body is complete.
    /// `scratch` is the decode buffer for [`BodyFramer::Chunked`] with `decode`.
    pub fn pump(
        &mut self,
        src: &mut Buffer,
        dst: &mut Buffer,
        scratch: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<bool, HttpError> {
        match self {
            BodyFramer::Done => {}
            BodyFramer::Length(left) => {
                let take = src.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                dst.extend(&src.pending()[..take]);
                src.consume(take);
                *left -= take as u64;
                if *left == 0 {
                    *self = BodyFramer::Done;
                }
            }
            BodyFramer::Chunked { decoder, decode } => {
                let progress = if *decode {
                    let mut result = Err(HttpError::InvalidChunk);
                    dst.extend_with(scratch, |out| {
                        result = decoder.decode(src.pending(), out, limits);
                    });
                    result?
                } else {
                    let progress = decoder.frame(src.pending(), limits)?;
                    dst.extend(&src.pending()[..progress.consumed]);
                    progress
                };
                src.consume(progress.consumed);
                if progress.done {
                    *self = BodyFramer::Done;
                }
            }
            BodyFramer::UntilClose => {
                dst.extend(src.pending());
                src.consume(src.len());
            }
        }
        Ok(self.is_done())
    }

    /// The sender closed: a read-until-close body is complete; any other is truncated
    /// (returns false).
    pub fn finish_at_eof(&mut self) -> bool {
        match self {
            BodyFramer::Done => true,
            BodyFramer::UntilClose => {
                *self = BodyFramer::Done;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump_all(framer: &mut BodyFramer, pieces: &[&[u8]]) -> (Vec<u8>, bool, Vec<u8>) {
        let (mut src, mut dst, mut scratch) = (Buffer::default(), Buffer::default(), Vec::new());
        let mut done = false;
        for piece in pieces {
            src.extend(piece);
            done = framer
                .pump(&mut src, &mut dst, &mut scratch, &Limits::default())
                .unwrap();
        }
        (dst.pending().to_vec(), done, src.pending().to_vec())
    }

    #[test]
    fn length_stops_at_the_end() {
        let (out, done, rest) = pump_all(&mut BodyFramer::Length(5), &[b"hel", b"loGET"]);
        assert_eq!(
            (out.as_slice(), done, rest.as_slice()),
            (&b"hello"[..], true, &b"GET"[..])
        );
    }

    #[test]
    fn chunked_forwarded_or_decoded() {
        let body: &[&[u8]] = &[b"3\r\nabc\r", b"\n0\r\n\r\nNEXT"];
        let mut f = BodyFramer::Chunked {
            decoder: ChunkedDecoder::new(),
            decode: false,
        };
        let (out, done, rest) = pump_all(&mut f, body);
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        assert!(done);
        assert_eq!(rest, b"NEXT");
        let mut f = BodyFramer::Chunked {
            decoder: ChunkedDecoder::new(),
            decode: true,
        };
        let (out, done, _) = pump_all(&mut f, body);
        assert_eq!((out.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn until_close() {
        let mut f = BodyFramer::UntilClose;
        let (out, done, _) = pump_all(&mut f, &[b"ab", b"cd"]);
        assert_eq!((out.as_slice(), done), (&b"abcd"[..], false));
        assert!(f.finish_at_eof());
        assert!(!BodyFramer::Length(1).finish_at_eof());
    }
}
