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
//! any number of reads. Chunk extensions are checked and skipped; trailer fields are checked for
//! syntax and discarded (nothing in herd consumes them). Both are bounded over the whole body,
//! not only per line: a body of a million one-byte chunks each carrying 4 KiB of extensions
//! would otherwise cost the recipient 4 GB of parsing for 1 MB of data.

use super::syntax::{is_field_value, is_token, is_token_byte};
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
    /// Bytes of chunk extensions so far, over every chunk, bounded by `max_header_bytes`.
    extension_len: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            body_len: 0,
            trailer_len: 0,
            extension_len: 0,
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
    /// with [`HttpError::HeadersTooLarge`]; chunk extensions beyond `limits.max_header_bytes`
    /// in all, and any syntax error, with [`HttpError::InvalidChunk`].
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
                        self.extension_len += check_size_line(&rest[..line_len])?;
                        if self.extension_len > limits.max_header_bytes {
                            return Err(HttpError::InvalidChunk);
                        }
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

/// Checks a complete chunk-size line (CRLF included) against the grammar, because the
/// proxy forwards chunk lines as they came and every backend must read them the same way:
///
/// ```text
/// chunk-size [ chunk-ext ] CRLF
/// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// ```
///
/// httparse lets through lines that parsers disagree on: no digit at all (which it reads as
/// size 0, the end of the body), whitespace after the size with no extension, CR or LF
/// inside an extension, extensions that are not tokens or quoted strings.
///
/// Returns the length of the extensions (what follows the size, CRLF excluded).
fn check_size_line(line: &[u8]) -> Result<usize, HttpError> {
    let inner = line
        .strip_suffix(b"\r\n")
        .filter(|_| line.len() <= MAX_CHUNK_LINE)
        .ok_or(HttpError::InvalidChunk)?;
    let digits = inner.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::InvalidChunk);
    }
    let mut rest = &inner[digits..];
    while !rest.is_empty() {
        rest = skip_bws(rest)
            .strip_prefix(b";")
            .ok_or(HttpError::InvalidChunk)?;
        rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return Err(HttpError::InvalidChunk);
        }
        rest = &rest[name..];
        if let Some(value) = skip_bws(rest).strip_prefix(b"=") {
            let value = skip_bws(value);
            let len = match value.first() {
                Some(b'"') => quoted_string_len(value).ok_or(HttpError::InvalidChunk)?,
                _ => token_len(value),
            };
            if len == 0 {
                return Err(HttpError::InvalidChunk);
            }
            rest = &value[len..];
        }
    }
    Ok(inner.len() - digits)
}

/// `s` without the optional whitespace at its start (BWS: spaces and tabs).
fn skip_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// The length of the token at the start of `s` (0 if there is none).
fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_token_byte(b)).count()
}

/// The length of the quoted string at the start of `s` (RFC 9110 §5.6.4), quotes included;
/// `None` if it is not closed or holds a control character.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let is_text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(i + 1),
            b'\\' if s.get(i + 1).is_some_and(|&q| is_text(q)) => i += 2,
            _ if is_text(b) && b != b'\\' => i += 1,
            _ => return None,
        }
    }
    None
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
            (b"00000000000000001\r\n", HttpError::InvalidChunk),
            (b"1\n", HttpError::InvalidChunk),
            (b"1 \r\n", HttpError::InvalidChunk),
            (b"1;\r\n", HttpError::InvalidChunk),
            (b"1;a=\r\n", HttpError::InvalidChunk),
            (b"1;a=b c\r\n", HttpError::InvalidChunk),
            (b"1;a=\"b\r\n", HttpError::InvalidChunk),
            (b"1;a=\"\x01\"\r\n", HttpError::InvalidChunk),
            (b"1;(\r\n", HttpError::InvalidChunk),
            (b"1;a\rb\r\n", HttpError::InvalidChunk),
            (b"1\r\nx\r\n0\r\nX : y\r\n\r\n", HttpError::InvalidChunk),
            (b"1\r\nx\r\n0\r\nX: a\0b\r\n\r\n", HttpError::InvalidChunk),
            (b"1\r\nx\r\n0\r\nX: y\n\r\n", HttpError::InvalidChunk),
        ];
        for (input, error) in cases {
            let result = decode_in_pieces(&[input]);
            assert_eq!(result, Err(*error), "{}", String::from_utf8_lossy(input));
        }
        // Extensions the grammar allows pass: BWS around `;` and `=`, quoted strings with
        // escapes.
        let fine = b"1 ; a = b;c;d=\"x\\\"; y\"\r\nx\r\n0\r\n\r\n";
        assert_eq!(decode_in_pieces(&[fine]), Ok((b"x".to_vec(), fine.len())));
        let long_ext = [b"1;".as_slice(), &[b'e'; MAX_CHUNK_LINE]].concat();
        assert_eq!(decode_in_pieces(&[&long_ext]), Err(HttpError::InvalidChunk));
        // Extensions short on each line but without bound over the body.
        let ext = format!("1;{}\r\nx\r\n", "e".repeat(1000));
        let limit = Limits::default().max_header_bytes;
        let within = ext.repeat(limit / 1001) + "0\r\n\r\n";
        assert!(decode_in_pieces(&[within.as_bytes()]).is_ok());
        let beyond = ext.repeat(limit / 1001 + 1);
        assert_eq!(
            decode_in_pieces(&[beyond.as_bytes()]),
            Err(HttpError::InvalidChunk)
        );
        let mut huge_trailer = b"0\r\nX: ".to_vec();
        huge_trailer.resize(Limits::default().max_header_bytes + 4, b'a');
        assert_eq!(
            decode_in_pieces(&[&huge_trailer]),
            Err(HttpError::HeadersTooLarge)
        );
    }
}
