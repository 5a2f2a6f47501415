//! Where one HTTP/1.1 response ends (sans-IO). The load generator does not keep bodies, it only
//! has to know when a response is complete so the next request can go out: the status line and
//! headers are parsed with `httparse`, then the body is skipped by `Content-Length`, by chunked
//! framing (`httparse::parse_chunk_size`), or up to the end of the connection.
//!
//! The parser is fed whatever bytes the connection holds and says how many it used, so several
//! responses in one read, a head split across reads, or a chunk size cut in half are all the
//! same case: call again with the bytes that were left plus the ones that came next.

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
pub(crate) struct ParseError(pub(crate) &'static str);

/// How many headers a response may carry.
const MAX_HEADERS: usize = 64;

/// Where the parser is within the current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete status line and headers.
    Head,
    /// Skipping a `Content-Length` body; the count is what remains.
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Skipping chunk data; the count is what remains of this chunk.
    ChunkData(u64),
    /// Waiting for the CRLF that ends a chunk's data.
    ChunkEnd,
    /// After the last (zero-size) chunk: skipping trailer lines up to the empty line.
    Trailers,
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
                State::Length(remaining) | State::ChunkData(remaining) => {
                    let take = remaining.min(rest.len() as u64);
                    used += take as usize;
                    let remaining = remaining - take;
                    self.state = match (self.state, remaining) {
                        (State::Length(_), 0) => return Ok((used, Some(self.finish_response()))),
                        (State::Length(_), r) => State::Length(r),
                        (_, 0) => State::ChunkEnd,
                        (_, r) => State::ChunkData(r),
                    };
                    if remaining > 0 {
                        return Ok((used, None));
                    }
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        used += n;
                        self.state = State::Trailers;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        used += n;
                        self.state = State::ChunkData(size);
                    }
                    Ok(httparse::Status::Partial) => return Ok((used, None)),
                    Err(_) => return Err(ParseError("bad chunk size")),
                },
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok((used, None));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ParseError("chunk data not followed by CRLF"));
                    }
                    used += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        return Ok((used, None));
                    };
                    used += lf + 1;
                    // The empty line ("\r\n") ends the trailers and the response.
                    if lf == 0 || (lf == 1 && rest[0] == b'\r') {
                        return Ok((used, Some(self.finish_response())));
                    }
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
    /// length of the head, with the state set for the body that follows it.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let n = match head.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ParseError("bad status line or headers")),
        };
        let status = head.code.unwrap_or_default();
        if status == 101 {
            return Err(ParseError(
                "101 Switching Protocols is not HTTP/1.1 any more",
            ));
        }
        if (100..200).contains(&status) {
            // An interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some(n));
        }
        // HTTP/1.0 closes after each response unless it asks to keep the connection.
        let mut close = head.version == Some(0);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for header in head.headers.iter() {
            let value = std::str::from_utf8(header.value).unwrap_or_default();
            if header.name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .trim()
                    .parse()
                    .map_err(|_| ParseError("bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError("conflicting Content-Length headers"));
                }
                length = Some(n);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked is what frames the body only when it is the last coding applied.
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") && head.version == Some(0) {
                        close = false;
                    }
                }
            }
        }
        self.head = Response { status, close };
        // The framing rules of RFC 9112 section 6.3, in order, for responses to GET.
        self.state = if status == 204 || status == 304 {
            State::Length(0)
        } else if chunked {
            State::ChunkSize
        } else if let Some(length) = length {
            State::Length(length)
        } else {
            self.head.close = true;
            State::UntilClose
        };
        Ok(Some(n))
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
