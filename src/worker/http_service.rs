//! The HTTP/1.1 server a worker runs for `herd serve`: drives one [`Session`] per connection
//! over a non-blocking socket, with timeouts, backpressure and a careful close.
//!
//! [`HttpConnections`] is that socket side for any handler, given per call; the worker's
//! [`HttpService`] is it with a handler of its own, and the master's admin endpoint uses it
//! with a view of the master (so the admin gets the same timeouts, backpressure and
//! lingering close, and there is one HTTP server in herd, not two).
//!
//! The protocol itself (parsing, framing, keep-alive rules, error statuses) lives in the
//! sans-IO [`crate::http`] module; this file owns only the socket side of it:
//!
//! * **Try first, register later.** A connection fresh from the master is read at once: the
//!   request has usually arrived already, so a `Connection: close` request is answered and
//!   closed without ever touching epoll. Only a connection that must wait is registered.
//! * **Edge-triggered epoll.** A socket is registered once for read *and* write and never
//!   re-registered. A short read means the receive queue was empty at that moment; epoll
//!   reports the next arrival as a new edge, so the loop skips the extra `read` → `EAGAIN`.
//! * **Bounded buffers.** At most `Limits::max_out_bytes` of responses wait for a slow reader;
//!   past that the connection stops reading (TCP flow control pushes back on the client).
//! * **Timeouts** ([`Timeouts`]; the defaults here): 10 s to send a whole request (else
//!   `408`, the slowloris defence), 5 s idle between keep-alive requests (Node's default),
//!   10 s without write progress (slow reader).
//! * **PROXY protocol** (`--proxy-protocol`, behind an L4 balancer): a connection must start
//!   with a v1 or v2 header ([`crate::proxy_protocol`]), read before any HTTP and within a
//!   short deadline; its client address becomes the requests' [`Request::peer_addr`]. A
//!   connection without a valid one is closed without an answer, and counted.
//! * **Lingering close.** After an error response with request bytes still unread, closing
//!   outright would make the kernel answer those bytes with RST, which can destroy the
//!   response in flight. So the write side is shut down and input is discarded until EOF or 2 s.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::service::{Context, Service};
use crate::http::{Handler, Limits, Next, Session, Timeouts};

/// The most one `read` takes from a socket.
const READ_CHUNK: usize = 16 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests and writing responses.
    Open,
    /// The session is done: flush what is in `out`, then close (or linger).
    Closing,
    /// Write side shut; discarding input until EOF or the deadline.
    Lingering,
}

/// What `drive` decided about a connection.
#[derive(Debug, PartialEq, Eq)]
enum Status {
    Alive,
    Close,
    /// No valid PROXY protocol header: close without a word, and count it.
    Refused(String),
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    session: Session,
    /// Bytes read but not yet consumed by the session (a partial or pipelined request).
    input: Vec<u8>,
    /// Serialized responses not yet written; `out[written..]` is pending.
    out: Vec<u8>,
    written: usize,
    phase: Phase,
    /// An edge-triggered readable event has not been fully consumed yet.
    can_read: bool,
    registered: bool,
    /// When the connection arrived (for the drain grace of a connection that sent nothing).
    opened: Instant,
    /// When the request now being received started; `None` between requests.
    request_started: Option<Instant>,
    /// Last time a read or write made progress.
    last_progress: Instant,
    /// Requests already reported to the master.
    reported: u64,
    /// It must still send its PROXY protocol header (`--proxy-protocol`).
    awaiting_proxy_header: bool,
}

/// HTTP/1.1 connections over non-blocking sockets, each driven by its own [`Session`]; the
/// handler that answers their requests is given with each call.
pub struct HttpConnections {
    limits: Limits,
    timeouts: Timeouts,
    conns: Slab<Conn>,
    /// One read buffer for every connection: a read lands here and only the bytes read are
    /// copied to the connection's own `input`, so an idle connection holds no read buffer
    /// and no buffer is zeroed per read.
    scratch: Box<[u8]>,
    draining: bool,
    /// When the drain began (the idle keep-alive grace counts from it).
    drain_started: Option<Instant>,
    /// `--proxy-protocol`: how long a connection has to send its header.
    proxy_protocol: Option<std::time::Duration>,
    /// Connections closed for lack of a valid PROXY protocol header, in all.
    refused_proxy_headers: u64,
}

impl std::fmt::Debug for HttpConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnections")
            .field("open", &self.conns.len())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl HttpConnections {
    /// No connections yet; requests within `limits`, connections within `timeouts`.
    pub fn new(limits: Limits, timeouts: Timeouts) -> HttpConnections {
        HttpConnections {
            limits,
            timeouts,
            conns: Slab::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            draining: false,
            drain_started: None,
            proxy_protocol: None,
            refused_proxy_headers: 0,
        }
    }

    /// Every connection must start with a PROXY protocol header, within `deadline`.
    pub fn with_proxy_protocol(mut self, deadline: std::time::Duration) -> HttpConnections {
        self.proxy_protocol = Some(deadline);
        self
    }

    /// Takes a new connection (non-blocking, not yet registered) and serves what it sent.
    pub fn accept(&mut self, cx: &mut Context<'_>, stream: TcpStream, handler: &dyn Handler) {
        let mut session = Session::new(self.limits.clone());
        // The client, for `Request::peer_addr` (a PROXY protocol header may name another).
        session.set_peer_socket(std::os::fd::AsRawFd::as_raw_fd(&stream));
        let key = self.conns.insert(Conn {
            stream,
            session,
            input: Vec::new(),
            out: Vec::new(),
            written: 0,
            phase: Phase::Open,
            can_read: true,
            registered: false,
            opened: cx.now,
            request_started: None,
            last_progress: cx.now,
            reported: 0,
            awaiting_proxy_header: self.proxy_protocol.is_some(),
        });
        self.drive(cx, key, handler);
    }

    /// A connection's token is ready.
    pub fn ready(
        &mut self,
        cx: &mut Context<'_>,
        token: Token,
        event: &Event,
        handler: &dyn Handler,
    ) {
        let key = Context::local(token);
        let Some(conn) = self.conns.get_mut(key) else {
            return; // closed earlier in this same batch of events
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            conn.can_read = true;
        }
        self.drive(cx, key, handler);
    }

    /// Applies the timeouts (call a few times a second while there are connections).
    pub fn tick(&mut self, cx: &mut Context<'_>, handler: &dyn Handler) {
        let now = cx.now;
        let drain_started = self.drain_started;
        let timeouts = self.timeouts;
        let header_deadline = self.proxy_protocol;
        let expired: Vec<(usize, bool)> = self
            .conns
            .iter()
            .filter_map(|(key, c)| match header_deadline {
                Some(d) if c.awaiting_proxy_header => {
                    (now.duration_since(c.opened) > d).then_some((key, false))
                }
                _ => (c.expired(now, drain_started, &timeouts)).map(|answer| (key, answer)),
            })
            .collect();
        for (key, answer) in expired {
            let conn = &mut self.conns[key];
            if answer {
                // Slowloris or a stalled body: answer 408 and close once it is flushed.
                let date = cx.date.get();
                conn.session.timeout(&mut conn.out, date);
                conn.phase = Phase::Closing;
                conn.can_read = false;
                conn.last_progress = now;
                self.drive(cx, key, handler);
            } else {
                self.close(cx, key);
            }
        }
    }

    /// Every connection closes at its next request boundary: the response in progress, or
    /// the next one, says `Connection: close`. Idle ones get [`Timeouts::drain_grace`].
    pub fn drain(&mut self, cx: &mut Context<'_>) {
        self.draining = true;
        self.drain_started = Some(cx.now);
        for (_, conn) in self.conns.iter_mut() {
            conn.session.close_after_current();
        }
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Every connection's fd (for a forked child to close).
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.conns
            .iter()
            .map(|(_, c)| c.stream.as_raw_fd())
            .collect()
    }

    /// Runs the connection until it must wait for the socket, and closes it if it is done.
    fn drive(&mut self, cx: &mut Context<'_>, key: usize, handler: &dyn Handler) {
        let conn = &mut self.conns[key];
        let status = conn.drive(
            cx,
            &mut self.scratch,
            handler,
            &self.limits,
            &self.timeouts,
            self.draining,
        );
        let answered = conn.session.requests() - conn.reported;
        if answered > 0 {
            conn.reported += answered;
            cx.answered(answered);
        }
        match status {
            Status::Refused(why) => {
                self.refused_proxy_headers += 1;
                log::warn!(
                    "closed a connection from {} without a valid PROXY protocol header: \
                     {why} ({} refused so far)",
                    (conn.stream.peer_addr()).map_or("?".to_string(), |a| a.to_string()),
                    self.refused_proxy_headers
                );
                self.close(cx, key);
            }
            Status::Close => self.close(cx, key),
            Status::Alive if !conn.registered => {
                let token = cx.token(key);
                match cx.registry.register(
                    &mut conn.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => conn.registered = true,
                    Err(e) => {
                        log::warn!("cannot register a connection: {e}");
                        self.close(cx, key);
                    }
                }
            }
            Status::Alive => {}
        }
    }

    fn close(&mut self, cx: &mut Context<'_>, key: usize) {
        // Closing the fd removes it from epoll: no deregister syscall needed.
        drop(self.conns.remove(key));
        cx.closed();
    }
}

/// The `herd serve` service: an HTTP/1.1 server running `handler` for every request.
#[derive(Debug)]
pub struct HttpService<H: Handler> {
    handler: H,
    conns: HttpConnections,
}

impl<H: Handler> HttpService<H> {
    /// A server answering every request with `handler`, within `limits` and `timeouts`.
    pub fn new(handler: H, limits: Limits, timeouts: Timeouts) -> Self {
        HttpService {
            handler,
            conns: HttpConnections::new(limits, timeouts),
        }
    }

    /// Every connection must start with a PROXY protocol header (v1 or v2), within
    /// `deadline`: for a server behind an L4 balancer that sends one.
    pub fn with_proxy_protocol(mut self, deadline: std::time::Duration) -> Self {
        self.conns = self.conns.with_proxy_protocol(deadline);
        self
    }
}

impl Conn {
    fn drive(
        &mut self,
        cx: &mut Context<'_>,
        scratch: &mut [u8],
        handler: &dyn Handler,
        limits: &Limits,
        timeouts: &Timeouts,
        draining: bool,
    ) -> Status {
        if self.phase == Phase::Lingering {
            return self.linger(cx.now, timeouts);
        }
        loop {
            let mut progressed = false;

            // Write first: a response already serialized should leave before more is read.
            if self.written < self.out.len() {
                match self.stream.write(&self.out[self.written..]) {
                    Ok(n) => {
                        self.written += n;
                        self.last_progress = cx.now;
                        progressed = n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Status::Close,
                }
            }
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
                if self.phase == Phase::Closing {
                    return self.finish(cx.now, timeouts);
                }
                // The session stops at `max_out_bytes` of pipelined responses; resume it.
                if !self.input.is_empty() {
                    self.process(cx, handler, draining);
                    progressed |= !self.out.is_empty();
                }
            }

            // Stop reading while responses back up, and while `input` holds more than one
            // request can (pipelined requests the session has not answered yet): a client
            // that writes without reading must not make the worker buffer without bound.
            let backed_up = self.out.len() - self.written >= limits.max_out_bytes
                || self.input.len() > limits.max_header_bytes + limits.max_body_bytes;
            if self.can_read && self.phase == Phase::Open && !backed_up {
                match self.stream.read(scratch) {
                    Ok(0) => {
                        self.can_read = false;
                        if self.awaiting_proxy_header {
                            return Status::Refused("closed before a whole header".into());
                        }
                        // EOF. Whatever was complete has been answered; an unfinished request
                        // is abandoned. Flush the responses, then close.
                        self.phase = Phase::Closing;
                        progressed = true;
                    }
                    Ok(n) => {
                        self.input.extend_from_slice(&scratch[..n]);
                        // A short read drained the socket: the next arrival is a new edge.
                        self.can_read = n == scratch.len();
                        self.last_progress = cx.now;
                        if self.awaiting_proxy_header {
                            match self.take_proxy_header() {
                                Ok(true) => {}
                                Ok(false) => continue, // more of the header to come
                                Err(why) => return Status::Refused(why),
                            }
                        }
                        if self.request_started.is_none() {
                            self.request_started = Some(cx.now);
                        }
                        self.process(cx, handler, draining);
                        progressed = true;
                    }
                    Err(e) => match e.kind() {
                        io::ErrorKind::WouldBlock => self.can_read = false,
                        io::ErrorKind::Interrupted => progressed = true,
                        _ => return Status::Close,
                    },
                }
            }
            if !progressed {
                return Status::Alive;
            }
        }
    }

    /// Parses the PROXY protocol header at the front of `input`: `Ok(true)` once it is
    /// whole (and consumed), `Ok(false)` while it is not, `Err` if it is no valid header.
    fn take_proxy_header(&mut self) -> Result<bool, String> {
        match crate::proxy_protocol::parse(&self.input) {
            Ok(Some((header, len))) => {
                if let Some(a) = header.addresses {
                    self.session.set_peer(Some(a.source));
                }
                self.input.drain(..len);
                self.awaiting_proxy_header = false;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Lets the session answer what `input` holds.
    fn process(&mut self, cx: &mut Context<'_>, handler: &dyn Handler, draining: bool) {
        if self.awaiting_proxy_header {
            return; // what is there is (part of) the header, not HTTP
        }
        // The session measures its output backpressure on `out` as a whole: drop what was
        // already written, or a partly flushed `out` would stop it answering while the
        // read side still counts as having room.
        if self.written > 0 {
            self.out.drain(..self.written);
            self.written = 0;
        }
        if draining {
            self.session.close_after_current();
        }
        let date = cx.date.get();
        if self
            .session
            .process(&mut self.input, &mut self.out, handler, date)
            == Next::Close
        {
            self.phase = Phase::Closing;
        }
        if !self.session.in_request() {
            self.request_started = None;
        }
    }

    /// All output is flushed and the session is done: close now, or linger if the client
    /// may still be sending bytes we never read.
    fn finish(&mut self, now: Instant, timeouts: &Timeouts) -> Status {
        if !self.session.has_unread() && self.input.is_empty() {
            return Status::Close;
        }
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Status::Close;
        }
        self.phase = Phase::Lingering;
        self.last_progress = now;
        self.can_read = true;
        self.linger(now, timeouts)
    }

    fn linger(&mut self, now: Instant, timeouts: &Timeouts) -> Status {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return Status::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Status::Close,
            }
        }
        if now.duration_since(self.last_progress) > timeouts.linger {
            Status::Close
        } else {
            Status::Alive
        }
    }

    /// The timeout rules; `Some(true)` asks for a 408, `Some(false)` for a silent close.
    /// `drain_started` is set while the worker drains.
    fn expired(
        &self,
        now: Instant,
        drain_started: Option<Instant>,
        timeouts: &Timeouts,
    ) -> Option<bool> {
        match self.phase {
            Phase::Lingering => {
                (now.duration_since(self.last_progress) > timeouts.linger).then_some(false)
            }
            _ if self.written < self.out.len() => {
                (now.duration_since(self.last_progress) > timeouts.write).then_some(false)
            }
            Phase::Closing => None,
            Phase::Open => {
                if let Some(started) = self.request_started {
                    return (now.duration_since(started) > timeouts.request).then_some(true);
                }
                if self.session.requests() == 0 {
                    // Nothing received yet: the request timeout applies from the connection's
                    // arrival; while draining, only a short grace, counted from whichever
                    // came later, the arrival or the drain (a connection that arrived long
                    // before the drain may have its request on the wire right now).
                    return match drain_started {
                        Some(started) => {
                            let since = self.opened.max(started);
                            (now.duration_since(since) > timeouts.drain_grace).then_some(false)
                        }
                        None => {
                            (now.duration_since(self.opened) > timeouts.request).then_some(true)
                        }
                    };
                }
                // Between keep-alive requests.
                match drain_started {
                    Some(started) => {
                        let idle_since = self.last_progress.max(started);
                        (now.duration_since(idle_since) >= timeouts.drain_grace).then_some(false)
                    }
                    None => (now.duration_since(self.last_progress) >= timeouts.keep_alive)
                        .then_some(false),
                }
            }
        }
    }
}

impl<H: Handler + 'static> Service for HttpService<H> {
    fn accept(&mut self, cx: &mut Context<'_>, stream: TcpStream) {
        self.conns.accept(cx, stream, &self.handler);
    }

    fn ready(&mut self, cx: &mut Context<'_>, token: Token, event: &Event) {
        self.conns.ready(cx, token, event, &self.handler);
    }

    fn tick(&mut self, cx: &mut Context<'_>) {
        self.conns.tick(cx, &self.handler);
    }

    fn drain(&mut self, cx: &mut Context<'_>) {
        self.conns.drain(cx);
    }

    fn open_connections(&self) -> usize {
        self.conns.len()
    }
}
