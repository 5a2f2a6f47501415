//! [`ChunkedDecoder`]: incremental decoding of the chunked transfer coding (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! The decoder consumes whatever part of the body has arrived, appends the chunk data to a
//! caller's buffer, and remembers where it stopped, so a body may arrive split anywhere over
//! any number of reads. Chunk extensions are skipped; trailer fields are checked for syntax and
//! discarded (nothing in herd consumes them).

use super::syntax::{is_field_value, is_token};
use super::{HttpError, Limits};

/// Longest chunk-size line accepted, extensions and CRLF included. Legitimate extensions are
/// short; the bound keeps a client from making the session buffer an endless line.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Where the decoder is within the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, with this many bytes left.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: expecting trailer fields or the final empty line.
    Trailers,
    /// The body is complete.
    Done,
}

/// What one call to [`ChunkedDecoder::decode`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// How many bytes of the input were consumed; the caller must not pass them again.
    pub consumed: usize,
    /// Whether the body is complete. Input after `consumed` belongs to the next message.
    pub done: bool,
}

/// An incremental decoder for one chunked body. Reuse it across messages with
/// [`ChunkedDecoder::reset`].
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Decoded bytes so far, checked against `max_body_bytes` before each chunk is accepted.
    body_len: u64,
    /// Bytes of trailer section so far, bounded by `max_header_bytes`.
    trailer_len: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            body_len: 0,
            trailer_len: 0,
        }
    }

    /// Prepares the decoder for the next body.
    pub fn reset(&mut self) {
        *self = ChunkedDecoder::new();
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, appending chunk data to `out`.
    ///
    /// `input` must start where the previous call's [`Progress::consumed`] ended. A body larger
    /// than `limits.max_body_bytes` fails with [`HttpError::BodyTooLarge`] as soon as a chunk
    /// announces it, before its data arrives; trailers beyond `limits.max_header_bytes` fail
    /// with [`HttpError::HeadersTooLarge`]; any syntax error with [`HttpError::InvalidChunk`].
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<Progress, HttpError> {
        self.run(input, Some(out), limits)
    }

    /// Like [`ChunkedDecoder::decode`], but only finds where the body ends, copying nothing:
    /// the reverse proxy forwards chunked bodies as they are and needs only their extent.
    pub fn frame(&mut self, input: &[u8], limits: &Limits) -> Result<Progress, HttpError> {
        self.run(input, None, limits)
    }

    /// The decoder proper: chunk data goes to `out` if there is one.
    fn run(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
        limits: &Limits,
    ) -> Result<Progress, HttpError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            let progress = Progress {
                consumed: pos,
                done: self.state == State::Done,
            };
            match self.state {
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((line_len, size))) => {
                        check_size_line(&rest[..line_len])?;
                        pos += line_len;
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            self.body_len = self
                                .body_len
                                .checked_add(size)
                                .filter(|&len| len <= limits.max_body_bytes as u64)
                                .ok_or(HttpError::BodyTooLarge)?;
                            State::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() >= MAX_CHUNK_LINE => {
                        return Err(HttpError::InvalidChunk)
                    }
                    Ok(httparse::Status::Partial) => return Ok(progress),
                    Err(httparse::InvalidChunkSize) => return Err(HttpError::InvalidChunk),
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(progress);
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if let Some(out) = out.as_mut() {
                        out.extend_from_slice(&rest[..take]);
                    }
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok(progress),
                    _ => return Err(HttpError::InvalidChunk),
                },
                State::Trailers => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        if self.trailer_len + rest.len() > limits.max_header_bytes {
                            return Err(HttpError::HeadersTooLarge);
                        }
                        return Ok(progress);
                    };
                    self.trailer_len += lf + 1;
                    if self.trailer_len > limits.max_header_bytes {
                        return Err(HttpError::HeadersTooLarge);
                    }
                    let line = rest[..lf]
                        .strip_suffix(b"\r")
                        .ok_or(HttpError::InvalidChunk)?;
                    pos += lf + 1;
                    if line.is_empty() {
                        self.state = State::Done;
                    } else if !is_field_line(line) {
                        return Err(HttpError::InvalidChunk);
                    }
                }
                State::Done => return Ok(progress),
            }
        }
    }
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder::new()
    }
}

/// Checks a complete chunk-size line (CRLF included) for what httparse lets through: a line
/// without any digit, which it reads as size 0 and so as the end of the body, and CR or LF
/// inside an extension. Both are ways to make two parsers disagree on where a body ends.
fn check_size_line(line: &[u8]) -> Result<(), HttpError> {
    let starts_with_digit = line.first().is_some_and(u8::is_ascii_hexdigit);
    let inner = &line[..line.len().saturating_sub(2)];
    if line.len() > MAX_CHUNK_LINE
        || !starts_with_digit
        || inner.iter().any(|&b| b == b'\r' || b == b'\n')
    {
        return Err(HttpError::InvalidChunk);
    }
    Ok(())
}

/// Whether a trailer line (CRLF removed) is `name: value`. Obsolete line folding is refused,
/// as in request heads.
fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => is_token(&line[..colon]) && is_field_value(&line[colon + 1..]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        b"4;name=\"quoted;value\"\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\nNEXT";

    fn decode_in_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize), HttpError> {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut total = 0;
        for piece in pieces {
            pending.extend_from_slice(piece);
            let progress = decoder.decode(&pending, &mut out, &Limits::default())?;
            pending.drain(..progress.consumed);
            total += progress.consumed;
            if progress.done {
                return Ok((out, total));
            }
        }
        Err(HttpError::BadRequest)
    }

    #[test]
    fn decodes_split_anywhere() {
        let expected = b"Wikipedia in\r\n\r\nchunks.".to_vec();
        let body_len = BODY.len() - b"NEXT".len();
        assert_eq!(decode_in_pieces(&[BODY]), Ok((expected.clone(), body_len)));
        for split in 0..=BODY.len() {
            let (a, b) = BODY.split_at(split);
            assert_eq!(decode_in_pieces(&[a, b]), Ok((expected.clone(), body_len)));
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(decode_in_pieces(&bytes), Ok((expected, body_len)));
    }

    #[test]
    fn refuses_malformed_bodies() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"\r\n", HttpError::InvalidChunk),
            (b";ext\r\n\r\n", HttpError::InvalidChunk),
            (b"x\r\n", HttpError::InvalidChunk),
            (b"1;a\nb\r\nx\r\n", HttpError::InvalidChunk),
            (b"1\r\nxy", HttpError::InvalidChunk),
            (b"1\r\nx\n0\r\n\r\n", HttpError::InvalidChunk),
            (b"0\r\nno colon\r\n\r\n", HttpError::InvalidChunk),
            (b"0\r\n folded: x\r\n\r\n", HttpError::InvalidChunk),
            (b"0\r\n\n", HttpError::InvalidChunk),
            (b"fffffffffffffff\r\n", HttpError::BodyTooLarge),
            (b"ffffffffffffffffff\r\n", HttpError::InvalidChunk),
        ];
        for (input, error) in cases {
            let result = decode_in_pieces(&[input]);
            assert_eq!(result, Err(*error), "{}", String::from_utf8_lossy(input));
        }
        let long_ext = [b"1;".as_slice(), &[b'e'; MAX_CHUNK_LINE]].concat();
        assert_eq!(decode_in_pieces(&[&long_ext]), Err(HttpError::InvalidChunk));
        let mut huge_trailer = b"0\r\nX: ".to_vec();
        huge_trailer.resize(Limits::default().max_header_bytes + 4, b'a');
        assert_eq!(
            decode_in_pieces(&[&huge_trailer]),
            Err(HttpError::HeadersTooLarge)
        );
    }
}
