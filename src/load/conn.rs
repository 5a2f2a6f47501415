//! One client connection slot: connect, write the request, read until the response is complete,
//! and on any failure count the error and drop the socket so the next request reconnects.
//!
//! A slot carries at most one request at a time (no pipelining). It is driven by edge-triggered
//! mio events, so every read loop must either reach `WouldBlock` or know that the socket is
//! empty; see [`Conn::read`] for the one shortcut taken.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::report::{ErrorKind, Tally};
use super::request::Requests;
use super::response::ResponseParser;

/// The read buffer starts at this size. Bodies are skipped, not kept, so it only grows when a
/// response head does not fit.
const INITIAL_BUFFER: usize = 16 * 1024;

/// A response head larger than this is a parse error rather than a reason to keep buffering.
const MAX_BUFFER: usize = super::response::MAX_HEAD_BYTES;

/// The request a slot is working on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InFlight {
    /// Which entry of [`Requests`] is being sent.
    pub(crate) path: usize,
    /// When the request was due; latency counts from here (see [`Tally::complete`]).
    pub(crate) due: Instant,
    /// When the slot started on it (connecting or writing); the timeout counts from here.
    pub(crate) sent: Instant,
    /// How many of the request's bytes are written.
    written: usize,
}

impl InFlight {
    /// A request for `path`, due at `due` and started now, at `sent`.
    pub(crate) fn new(path: usize, due: Instant, sent: Instant) -> InFlight {
        InFlight {
            path,
            due,
            sent,
            written: 0,
        }
    }
}

/// What a slot is free to do after an action or event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Its request is still in flight.
    Busy,
    /// It has no request and can take the next one.
    Idle,
    /// It has no request and its last connect failed: give the server a moment before the next.
    Backoff,
}

/// A client connection slot.
pub(crate) struct Conn {
    /// The slot's token in the thread's `Poll`.
    token: Token,
    /// The server.
    addr: SocketAddr,
    /// `--close`: drop the connection after every response.
    close_each: bool,
    /// `--source-ips`: the address this slot's connections come from.
    source: Option<std::net::IpAddr>,
    /// The socket; `None` between a failure or close and the next request.
    stream: Option<TcpStream>,
    /// The non-blocking connect has completed.
    connected: bool,
    /// The request in flight.
    request: Option<InFlight>,
    /// Finds where the response ends.
    parser: ResponseParser,
    /// Bytes read and not yet consumed are `buf[start..end]`.
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    /// End of the bytes read.
    end: usize,
}

impl Conn {
    /// An unconnected slot; it connects when given its first request.
    pub(crate) fn new(
        token: Token,
        addr: SocketAddr,
        close_each: bool,
        source: Option<std::net::IpAddr>,
    ) -> Conn {
        Conn {
            token,
            addr,
            close_each,
            source,
            stream: None,
            connected: false,
            request: None,
            parser: ResponseParser::new(),
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// The request in flight, if any.
    pub(crate) fn in_flight(&self) -> Option<&InFlight> {
        self.request.as_ref()
    }

    /// Starts `request` on this idle slot: writes it on the open connection, or connects first
    /// (the write follows when the connect completes).
    pub(crate) fn start(
        &mut self,
        request: InFlight,
        requests: &Requests,
        registry: &Registry,
        tally: &mut Tally,
    ) -> Step {
        debug_assert!(self.request.is_none());
        self.request = Some(request);
        if self.stream.is_some() {
            return self.write(requests, tally);
        }
        tally.connections_opened += 1;
        match self.connect(registry) {
            Ok(stream) => {
                self.stream = Some(stream);
                self.connected = false;
                Step::Busy
            }
            Err(_) => self.fail(ErrorKind::Connect, tally),
        }
    }

    /// Opens a non-blocking connection registered for both directions: writable reports that
    /// the connect completed, readable brings the response.
    fn connect(&self, registry: &Registry) -> io::Result<TcpStream> {
        let mut stream = super::source::connect_from(self.addr, self.source)?;
        // Requests are single small writes; Nagle would only hold them back.
        stream.set_nodelay(true)?;
        registry.register(
            &mut stream,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    /// Handles a readiness event for this slot's socket.
    pub(crate) fn on_event(
        &mut self,
        event: &Event,
        requests: &Requests,
        tally: &mut Tally,
    ) -> Step {
        if self.stream.is_none() {
            return self.step();
        }
        let hangup = event.is_read_closed() || event.is_error();
        if !self.connected {
            match self.connect_result(hangup) {
                Ok(true) => self.connected = true,
                Ok(false) => return Step::Busy,
                Err(()) => return self.fail(ErrorKind::Connect, tally),
            }
        }
        if self
            .request
            .is_some_and(|r| r.written < requests.bytes(r.path).len())
        {
            let step = self.write(requests, tally);
            if step != Step::Busy {
                return step;
            }
        }
        if event.is_readable() || hangup {
            return self.read(hangup, tally);
        }
        self.step()
    }

    /// Has the pending connect completed? `Ok(false)` means not yet, `Err` that it failed.
    fn connect_result(&self, hangup: bool) -> Result<bool, ()> {
        let stream = self.stream.as_ref().ok_or(())?;
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return Err(()),
        }
        // mio's recipe: a connect has completed when the socket has a peer.
        match stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected && !hangup => Ok(false),
            Err(_) => Err(()),
        }
    }

    /// Writes what remains of the request.
    fn write(&mut self, requests: &Requests, tally: &mut Tally) -> Step {
        let (Some(stream), Some(request)) = (self.stream.as_mut(), self.request.as_mut()) else {
            return self.step();
        };
        let bytes = requests.bytes(request.path);
        while request.written < bytes.len() {
            match stream.write(&bytes[request.written..]) {
                Ok(0) => return self.fail(ErrorKind::Write, tally),
                Ok(n) => request.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(ErrorKind::Write, tally),
            }
        }
        Step::Busy
    }

    /// Reads and parses until the socket is empty.
    ///
    /// Edge-triggered readiness is only reported again for data that arrives *after* it was
    /// reported, so a read loop normally ends with a `WouldBlock`. The shortcut: a read that
    /// returns less than the space offered has emptied the socket's receive queue, so the loop
    /// stops there and saves a syscall per response (tokio does the same). That is unsafe only
    /// when the peer has also closed: the FIN's wakeup came with this very event, and no other
    /// will come, so with `hangup` (EPOLLRDHUP or an error) the loop reads on to end of file.
    fn read(&mut self, hangup: bool, tally: &mut Tally) -> Step {
        loop {
            if !self.make_room() {
                return self.fail(ErrorKind::Parse, tally);
            }
            let Some(stream) = self.stream.as_mut() else {
                return self.step();
            };
            let space = self.buf.len() - self.end;
            match stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return self.on_eof(tally),
                Ok(n) => {
                    tally.bytes_read += n as u64;
                    self.end += n;
                    if let Some(step) = self.parse_buffered(tally) {
                        return step;
                    }
                    if n < space && !hangup {
                        return self.step();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.step(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(ErrorKind::Read, tally),
            }
        }
    }

    /// Makes space at the end of the buffer: moves unconsumed bytes to the front, or grows the
    /// buffer for a long head. `false` when the head is too long to keep.
    fn make_room(&mut self) -> bool {
        if self.end < self.buf.len() {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        if self.buf.len() >= MAX_BUFFER {
            return false;
        }
        let size = (self.buf.len() * 2).max(INITIAL_BUFFER);
        self.buf.resize(size, 0);
        true
    }

    /// Parses the buffered bytes. Returns `Some` when the connection was closed on the way (an
    /// error, or a response after which it may not be reused), else `None` to read on.
    fn parse_buffered(&mut self, tally: &mut Tally) -> Option<Step> {
        while self.start < self.end {
            let Some(request) = self.request else {
                // With one request at a time, bytes after its response answer nothing we sent.
                return Some(self.fail(ErrorKind::Parse, tally));
            };
            match self.parser.parse(&self.buf[self.start..self.end]) {
                Err(_) => return Some(self.fail(ErrorKind::Parse, tally)),
                Ok((used, response)) => {
                    self.start += used;
                    let Some(response) = response else { break };
                    tally.complete(response.status, request.due, request.path);
                    self.request = None;
                    if response.close || self.close_each {
                        self.disconnect();
                        return Some(Step::Idle);
                    }
                }
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        None
    }

    /// The server closed its side. That completes a body delimited by the close; with any other
    /// response unfinished the request failed; with none in flight the idle connection is
    /// simply gone.
    fn on_eof(&mut self, tally: &mut Tally) -> Step {
        if let Some(request) = self.request.take() {
            match self.parser.finish() {
                Some(response) => tally.complete(response.status, request.due, request.path),
                None => tally.error(ErrorKind::Closed),
            }
        }
        self.disconnect();
        Step::Idle
    }

    /// Counts `kind`, gives up the request and drops the connection.
    pub(crate) fn fail(&mut self, kind: ErrorKind, tally: &mut Tally) -> Step {
        tally.error(kind);
        self.request = None;
        self.disconnect();
        if kind == ErrorKind::Connect {
            Step::Backoff
        } else {
            Step::Idle
        }
    }

    /// Drops the socket (closing it removes it from the `Poll`) and any partial response.
    fn disconnect(&mut self) {
        self.stream = None;
        self.connected = false;
        self.parser.reset();
        self.start = 0;
        self.end = 0;
    }

    /// Busy while a request is in flight, otherwise idle.
    fn step(&self) -> Step {
        if self.request.is_some() {
            Step::Busy
        } else {
            Step::Idle
        }
    }
}
