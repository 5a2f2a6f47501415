//! Where one HTTP/1.1 response ends (sans-IO). The load generator does not keep bodies, it only
//! has to know when a response is complete so the next request can go out. The protocol is the
//! [`http`](crate::http) module's, as the reverse proxy uses it: the head is parsed and its
//! framing decided by [`parse_response_head`], a chunked body is followed by
//! [`ChunkedDecoder::frame`] (which copies nothing); what is left here is counting down a
//! `Content-Length`, skipping interim `1xx` responses, and reading until the close.
//!
//! The parser is fed whatever bytes the connection holds and says how many it used, so several
//! responses in one read, a head split across reads, or a chunk size cut in half are all the
//! same case: call again with the bytes that were left plus the ones that came next.

use crate::http::{parse_response_head, ChunkedDecoder, HttpError, Limits, ResponseBody};

/// A complete response, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The server will not take another request on this connection: it said
    /// `Connection: close`, spoke HTTP/1.0 without keep-alive, or delimited the body by closing.
    pub(crate) close: bool,
}

/// The response is not HTTP/1.1 as the parser understands it; the connection cannot be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The head or the chunked framing is malformed, or too large.
    Malformed(HttpError),
    /// `101 Switching Protocols`: what follows is not HTTP/1.1 any more.
    SwitchedProtocols,
}

/// How many headers a response may carry.
const MAX_HEADERS: usize = 64;

/// The largest response head (and chunked trailer section) accepted: as much as the connection's
/// read buffer may grow to hold.
pub(crate) const MAX_HEAD_BYTES: usize = 1024 * 1024;

/// Where the parser is within the current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete status line and headers.
    Head,
    /// Skipping a `Content-Length` body; the count is what remains.
    Length(u64),
    /// Following a chunked body with the decoder.
    Chunked,
    /// A body without a length: everything up to the end of the connection.
    UntilClose,
}

/// Finds the end of each response in a byte stream.
#[derive(Debug)]
pub(crate) struct ResponseParser {
    /// Where we are within the current response.
    state: State,
    /// The current response's status and connection fate, known once its head is parsed.
    head: Response,
    /// Where a chunked body is, while in [`State::Chunked`].
    chunked: ChunkedDecoder,
    /// Head and trailer bounds; bodies are skipped, so their size is not limited.
    limits: Limits,
}

impl ResponseParser {
    /// A parser waiting for the first byte of a response.
    pub(crate) fn new() -> ResponseParser {
        ResponseParser {
            state: State::Head,
            head: Response {
                status: 0,
                close: false,
            },
            chunked: ChunkedDecoder::new(),
            limits: Limits {
                max_header_bytes: MAX_HEAD_BYTES,
                max_headers: MAX_HEADERS,
                max_body_bytes: usize::MAX,
                ..Limits::default()
            },
        }
    }

    /// Forgets any partial response (the connection it belonged to is gone).
    pub(crate) fn reset(&mut self) {
        self.state = State::Head;
    }

    /// Consumes a prefix of `buf`. Returns how many bytes were used and, if a response ended
    /// within them, that response; the bytes after it (the start of another response) are
    /// left unused. Returns `(used, None)` when more bytes are needed: the unused tail, if any,
    /// is an incomplete head or chunk-size line that must be offered again with what follows.
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<(usize, Option<Response>), ParseError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Head => match self.parse_head(rest)? {
                    None => return Ok((used, None)),
                    Some(n) => used += n,
                },
                State::Length(remaining) => {
                    let take = remaining.min(rest.len() as u64);
                    used += take as usize;
                    if take < remaining {
                        self.state = State::Length(remaining - take);
                        return Ok((used, None));
                    }
                    return Ok((used, Some(self.finish_response())));
                }
                State::Chunked => {
                    let progress = self
                        .chunked
                        .frame(rest, &self.limits)
                        .map_err(ParseError::Malformed)?;
                    used += progress.consumed;
                    if !progress.done {
                        return Ok((used, None));
                    }
                    return Ok((used, Some(self.finish_response())));
                }
                State::UntilClose => return Ok((buf.len(), None)),
            }
        }
    }

    /// The connection reached end of file. Returns the response that this completes (a body
    /// delimited by the close), or `None` if a response was cut short or none had begun.
    pub(crate) fn finish(&mut self) -> Option<Response> {
        match self.state {
            State::UntilClose => Some(self.finish_response()),
            _ => {
                self.state = State::Head;
                None
            }
        }
    }

    /// Parses a status line and headers from the start of `buf`: `None` if incomplete, else the
    /// length of the head, with the state set for the body that follows it (still
    /// [`State::Head`] after an interim response: the real one follows).
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = parse_response_head(buf, &self.limits, &mut storage, false)
            .map_err(ParseError::Malformed)?;
        let Some((head, len)) = parsed else {
            return Ok(None);
        };
        if head.status == 101 {
            return Err(ParseError::SwitchedProtocols);
        }
        if (100..200).contains(&head.status) {
            // An interim response (100 Continue, 103 Early Hints).
            return Ok(Some(len));
        }
        self.head = Response {
            status: head.status,
            close: !head.keep_alive,
        };
        self.state = match head.body {
            ResponseBody::None => State::Length(0),
            ResponseBody::Length(n) => State::Length(n),
            ResponseBody::Chunked => {
                self.chunked.reset();
                State::Chunked
            }
            ResponseBody::UntilClose => State::UntilClose,
        };
        Ok(Some(len))
    }

    /// Ends the current response and gets ready for the next.
    fn finish_response(&mut self) -> Response {
        self.state = State::Head;
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes, as reads would deliver them, keeping unused
    /// bytes for the next call like the connection's buffer does; returns the responses and
    /// what happened at end of file.
    fn feed(stream: &[u8], step: usize) -> (Vec<Response>, Option<Response>) {
        let mut parser = ResponseParser::new();
        let mut pending = Vec::new();
        let mut done = Vec::new();
        for piece in stream.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (used, response) = parser.parse(&pending).unwrap();
                pending.drain(..used);
                match response {
                    Some(r) => done.push(r),
                    None => break,
                }
            }
        }
        (done, parser.finish())
    }

    const KEEP: Response = Response {
        status: 200,
        close: false,
    };

    #[test]
    fn several_responses_in_one_read_and_in_every_split() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno";
        let expected = vec![
            KEEP,
            Response {
                status: 404,
                close: false,
            },
            KEEP,
            Response {
                status: 204,
                close: false,
            },
            Response {
                status: 503,
                close: true,
            },
        ];
        for step in 1..=stream.len() {
            assert_eq!(feed(stream, step), (expected.clone(), None), "step {step}");
        }
    }

    #[test]
    fn body_delimited_by_close_ends_at_eof() {
        let stream = b"HTTP/1.1 200 OK\r\n\r\nall of this until the end";
        let closed = Response {
            status: 200,
            close: true,
        };
        for step in 1..=stream.len() {
            assert_eq!(feed(stream, step), (vec![], Some(closed)));
        }
    }

    #[test]
    fn http10_closes_unless_kept_alive() {
        let (done, _) = feed(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            1000,
        );
        assert_eq!(
            done.iter().map(|r| r.close).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn cut_short_is_not_a_response() {
        let (done, eof) = feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", 1000);
        assert!(done.is_empty() && eof.is_none());
        let (done, eof) = feed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            3,
        );
        assert!(done.is_empty() && eof.is_none());
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b"HTTP/1.1 abc OK\r\n\r\n"[..],
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let mut parser = ResponseParser::new();
            assert!(
                parser.parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
