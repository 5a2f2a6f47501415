//! [`Session`]: the per-connection HTTP/1.1 state machine, sans IO.
//!
//! The worker owns the socket and two buffers per connection: `input`, where it appends what
//! it reads, and `out`, which it flushes. After each read it calls [`Session::process`], which
//! answers every complete request at the front of `input` — in order, pipelined or not — by
//! appending responses to `out`. The session never blocks, never does IO and keeps no
//! reference into the buffers between calls; all it remembers is where it is:
//!
//! ```text
//!     request without a body:
//!     answered, stays in Head
//!          ┌─────┐
//!          │     ▼
//!       ┌──┴───────┐  head announces a body   ┌──────────┐
//!       │   Head   ├─────────────────────────►│   Body   │
//!       │          │◄─────────────────────────┤          │
//!       └────┬─────┘  body complete: answered └────┬─────┘
//!            │                                     │
//!            │ Connection: close, error or timeout │
//!            └─────────────► Closed ◄──────────────┘
//! ```
//!
//! While a body arrives, its request head stays at the front of `input` (it is re-parsed when
//! the body is complete, rather than copied somewhere), so a `Request` can always borrow it.

use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};

use httparse::Header;

use super::chunked::ChunkedDecoder;
use super::head::{parse_head, BodyKind, Head};
use super::response::{reason_phrase, RETAINED_CAPACITY};
use super::{Handler, HttpError, Limits, Request, Response};

/// Header slots on the stack for each parse; enough for the default `max_headers` of 100.
/// Larger limits fall back to a heap allocation per parse.
const STACK_HEADER_SLOTS: usize = 128;

/// The interim response that invites a client to send the body it announced with
/// `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the worker does with the connection after [`Session::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Flush `out`, then keep reading.
    Continue,
    /// Flush `out`, then close the connection (lingering if [`Session::has_unread`]).
    Close,
}

/// Where the session is in the request stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head at the front of `input`.
    Head,
    /// The head occupies `input[..head_len]` and its body is arriving.
    Body {
        head_len: usize,
        kind: BodyKind,
        /// For chunked bodies, where undecoded input starts; bytes between `head_len` and
        /// `raw` were decoded in this call and are dropped before returning.
        raw: usize,
        /// `100 Continue` is still owed to the client.
        expect_continue: bool,
    },
    /// The last response said `Connection: close`; nothing more is read.
    Closed,
}

/// Result of one step of the state machine.
enum Step {
    /// This many bytes at the front of the remaining input are done with (0 when only the
    /// state changed).
    Advance(usize),
    /// Nothing more can be done until more input arrives or the state is Closed.
    Wait,
}

/// One connection's HTTP/1.1 server state (RFC 9112). See the module documentation.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    state: State,
    /// Reused for every response on the connection.
    response: Response,
    /// Decoded chunked body of the current request, reused likewise.
    body: Vec<u8>,
    decoder: ChunkedDecoder,
    requests: u64,
    /// Graceful drain requested: the next response closes the connection.
    drain: bool,
    /// Part of a request head is buffered.
    partial_head: bool,
    /// The client's address, for [`Request::peer_addr`].
    peer: super::request::Peer,
    unread: bool,
}

impl Session {
    /// A session for a new connection.
    pub fn new(limits: Limits) -> Session {
        Session {
            limits,
            state: State::Head,
            response: Response::new(),
            body: Vec::new(),
            decoder: ChunkedDecoder::new(),
            requests: 0,
            drain: false,
            partial_head: false,
            unread: false,
            peer: super::request::Peer::Unknown,
        }
    }

    /// The client's address, given to every request's [`Request::peer_addr`].
    pub fn set_peer(&mut self, peer: Option<std::net::SocketAddr>) {
        self.peer = peer.map_or(super::request::Peer::Unknown, super::request::Peer::Known);
    }

    /// The client is the peer of the socket `fd`, which stays open while the session is in
    /// use: asked only when a handler wants it.
    pub fn set_peer_socket(&mut self, fd: std::os::fd::RawFd) {
        self.peer = super::request::Peer::Socket(fd);
    }

    /// Parses and answers every complete request at the front of `input`, appending each
    /// response to `out` in order, and removes the consumed bytes from the front of `input`.
    ///
    /// Returns [`Next::Close`] when the connection must close once `out` is flushed: the
    /// client or handler asked for it, HTTP/1.0 without keep-alive, an error was answered, or
    /// a drain was requested. Once it has returned `Close` it always does, without reading.
    ///
    /// Stops early, returning [`Next::Continue`], while `out` holds more than
    /// [`Limits::max_out_bytes`]; the worker calls again after flushing, even without new
    /// input. `date` is the `Date` header value, normally from a
    /// [`DateCache`](super::DateCache).
    pub fn process(
        &mut self,
        input: &mut Vec<u8>,
        out: &mut Vec<u8>,
        handler: &dyn Handler,
        date: &[u8],
    ) -> Next {
        // Bytes at the front of `input` that belong to answered requests. They are removed
        // once, at the end, rather than after every pipelined request.
        let mut pos = 0;
        // Terminates: every step consumes input, waits, or (Advance(0)) moves from Head to
        // Body, from where the next step consumes or waits.
        let next = loop {
            let step = match self.state {
                State::Closed => break Next::Close,
                _ if out.len() > self.limits.max_out_bytes => break Next::Continue,
                State::Head => self.read_head(&input[pos..], out, handler, date),
                State::Body { .. } => self.read_body(input, pos, out, handler, date),
            };
            match step {
                Step::Advance(n) => pos += n,
                Step::Wait if self.state == State::Closed => break Next::Close,
                Step::Wait => break Next::Continue,
            }
        };
        input.drain(..pos);
        self.partial_head = self.state == State::Head && !input.is_empty();
        if self.state == State::Closed && !input.is_empty() {
            self.unread = true;
        }
        next
    }

    /// Whether a request is under way: part of a head is buffered, or a body is still
    /// arriving. The worker applies its request timeout only then, and the idle keep-alive
    /// timeout otherwise.
    pub fn in_request(&self) -> bool {
        match self.state {
            State::Head => self.partial_head,
            State::Body { .. } => true,
            State::Closed => false,
        }
    }

    /// The request timeout fired: appends `408 Request Timeout` (with `Connection: close`) to
    /// `out`. The worker then flushes and closes. Does nothing once the session is closed.
    pub fn timeout(&mut self, out: &mut Vec<u8>, date: &[u8]) {
        if self.state != State::Closed {
            self.fail(HttpError::Timeout, out, date);
        }
    }

    /// Graceful drain: the next response carries `Connection: close`, and
    /// [`Session::process`] returns [`Next::Close`] after it. An idle connection (no
    /// [`in_request`](Session::in_request)) can simply be closed by the worker.
    pub fn close_after_current(&mut self) {
        self.drain = true;
    }

    /// Whether the client sent bytes the session never read: the rest of a refused request, or
    /// pipelined requests after a close. Closing a socket with unread input makes the kernel
    /// send a reset that can destroy the response still in flight, so the worker should then
    /// shut down its write side and drain the socket for a moment before closing
    /// (a lingering close).
    pub fn has_unread(&self) -> bool {
        self.unread
    }

    /// How many requests were passed to the handler and answered (including handler panics
    /// answered with 500, excluding requests refused before reaching the handler).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// In [`State::Head`]: parses the head at the front of `buf`; answers it at once if it has
    /// no body or its whole Content-Length body is already buffered, else moves to
    /// [`State::Body`].
    fn read_head(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        handler: &dyn Handler,
        date: &[u8],
    ) -> Step {
        if buf.is_empty() {
            return Step::Wait;
        }
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
        let mut heap = Vec::new();
        let storage = header_storage(&mut stack, &mut heap, &self.limits);
        let (head, len) = match parse_head(buf, &self.limits, storage) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Step::Wait,
            Err(error) => {
                self.fail(error, out, date);
                return Step::Wait;
            }
        };
        match head.body {
            BodyKind::None => {
                self.respond(&head, &[], out, handler, date);
                Step::Advance(len)
            }
            // The fast path for small bodies that arrived with their head: no re-parse.
            BodyKind::Length(n) if buf.len() - len >= n as usize => {
                let end = len + n as usize;
                self.respond(&head, &buf[len..end], out, handler, date);
                Step::Advance(end)
            }
            kind => {
                if kind == BodyKind::Chunked {
                    self.body.clear();
                    self.decoder.reset();
                }
                self.state = State::Body {
                    head_len: len,
                    kind,
                    raw: len,
                    expect_continue: head.expect_continue,
                };
                Step::Advance(0)
            }
        }
    }

    /// In [`State::Body`], with the head at `input[pos..]`: waits for a Content-Length body
    /// to be buffered, or decodes what has arrived of a chunked one; answers the request once
    /// the body is complete.
    fn read_body(
        &mut self,
        input: &mut Vec<u8>,
        pos: usize,
        out: &mut Vec<u8>,
        handler: &dyn Handler,
        date: &[u8],
    ) -> Step {
        let State::Body {
            head_len,
            kind,
            raw,
            expect_continue,
        } = self.state
        else {
            return Step::Wait;
        };
        let complete = match kind {
            BodyKind::None => Some(head_len),
            // `n` is at most max_body_bytes (checked by parse_head), so it fits in a usize.
            BodyKind::Length(n) => {
                Some(head_len.saturating_add(n as usize)).filter(|&end| end <= input.len() - pos)
            }
            BodyKind::Chunked => {
                match self
                    .decoder
                    .decode(&input[pos + raw..], &mut self.body, &self.limits)
                {
                    Err(error) => {
                        self.fail(error, out, date);
                        return Step::Wait;
                    }
                    Ok(progress) if progress.done => Some(raw + progress.consumed),
                    Ok(progress) => {
                        // The decoded bytes are in `self.body`; drop them from `input` so that
                        // it holds no more than the head and an unfinished chunk.
                        input.drain(pos + head_len..pos + raw + progress.consumed);
                        None
                    }
                }
            }
        };
        let Some(end) = complete else {
            // RFC 9110 §10.1.1: the client may be waiting for our invitation before sending
            // the body. Sent once, and only when the body has not fully arrived.
            if expect_continue {
                out.extend_from_slice(CONTINUE);
            }
            self.state = State::Body {
                head_len,
                kind,
                raw: head_len,
                expect_continue: false,
            };
            return Step::Wait;
        };

        let request = &input[pos..pos + end];
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
        let mut heap = Vec::new();
        let storage = header_storage(&mut stack, &mut heap, &self.limits);
        match parse_head(&request[..head_len], &self.limits, storage) {
            Ok(Some((head, _))) => {
                // Moved out for the handler call, which borrows `self.response` mutably.
                let mut chunked_body = std::mem::take(&mut self.body);
                let body = match kind {
                    BodyKind::Chunked => &chunked_body[..],
                    _ => &request[head_len..],
                };
                self.respond(&head, body, out, handler, date);
                chunked_body.clear();
                chunked_body.shrink_to(RETAINED_CAPACITY);
                self.body = chunked_body;
            }
            // Unreachable: these same bytes parsed before. Refused rather than trusted.
            _ => self.fail(HttpError::BadRequest, out, date),
        }
        Step::Advance(end)
    }

    /// Calls the handler and serializes its response, or a 500 if it panicked.
    fn respond(
        &mut self,
        head: &Head<'_, '_>,
        body: &[u8],
        out: &mut Vec<u8>,
        handler: &dyn Handler,
        date: &[u8],
    ) {
        let request = Request::from_head(head, body, self.peer);
        self.response.clear();
        let response = &mut self.response;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&request, response)));
        let mut close = !head.keep_alive || self.drain;
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-string payload)");
            log::error!(
                "handler panicked on {} {}: {message}; answering 500",
                head.method,
                head.path
            );
            // Whatever the handler wrote before panicking is discarded; the connection is
            // closed since the handler's state may be inconsistent.
            self.set_error(HttpError::HandlerPanicked);
            close = true;
        }
        close |= self.response.wants_close();
        self.response
            .write_to(out, date, head.is_head, head.version, close);
        self.requests += 1;
        self.state = if close { State::Closed } else { State::Head };
    }

    /// Answers `error` with a short plain-text response and closes the connection. Whatever
    /// the client sent of the refused request, and anything after it, is left unread.
    fn fail(&mut self, error: HttpError, out: &mut Vec<u8>, date: &[u8]) {
        log::debug!("refusing request: {error} ({})", error.status());
        self.set_error(error);
        self.response.write_to(out, date, false, 1, true);
        self.state = State::Closed;
        self.unread = true;
    }

    /// Replaces the response with the plain-text report of `error`: its reason phrase.
    fn set_error(&mut self, error: HttpError) {
        let status = error.status();
        self.response.clear();
        self.response.status(status);
        self.response.header("Content-Type", "text/plain");
        self.response.write(reason_phrase(status).as_bytes());
        self.response.write(b"\n");
    }
}

/// Header storage for one parse: the stack array when it is large enough for
/// `limits.max_headers`, else `heap`, sized to the most header lines `max_header_bytes` can
/// hold (a line is at least 3 bytes, `a:` and LF).
fn header_storage<'s, 'b>(
    stack: &'s mut [MaybeUninit<Header<'b>>; STACK_HEADER_SLOTS],
    heap: &'s mut Vec<MaybeUninit<Header<'b>>>,
    limits: &Limits,
) -> &'s mut [MaybeUninit<Header<'b>>] {
    if limits.max_headers <= STACK_HEADER_SLOTS {
        return stack;
    }
    let slots = limits.max_headers.min(limits.max_header_bytes / 3 + 1);
    heap.resize(slots, MaybeUninit::uninit());
    heap
}
