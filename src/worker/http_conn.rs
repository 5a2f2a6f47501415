//! [`Conn`]: one client connection of the worker's HTTP/1.1 server — its socket, its
//! [`Session`], its buffers and where it is in its life (open, closing, lingering), with the
//! timeout rules that apply to each phase. [`super::http_service`] owns the set of them and
//! their registration with epoll; the module documentation there explains the socket rules
//! (try first, edge-triggered, bounded buffers, lingering close) this file carries out.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::TcpStream;

use super::service::Context;
use crate::http::{Handler, Limits, Next, Session, Timeouts};

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
pub(super) enum Status {
    Alive,
    Close,
    /// No valid PROXY protocol header: close without a word, and count it.
    Refused(String),
}

/// One client connection.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    session: Session,
    /// Bytes read but not yet consumed by the session (a partial or pipelined request).
    input: Vec<u8>,
    /// Serialized responses not yet written; `out[written..]` is pending.
    out: Vec<u8>,
    written: usize,
    phase: Phase,
    /// An edge-triggered readable event has not been fully consumed yet.
    can_read: bool,
    /// Registered with the worker's `Poll` (only a connection that had to wait is).
    pub(super) registered: bool,
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

impl Conn {
    /// A connection fresh from the master, not yet registered; `proxy_header` if it must
    /// start with a PROXY protocol header.
    pub(super) fn new(
        stream: TcpStream,
        limits: &Limits,
        now: Instant,
        proxy_header: bool,
    ) -> Conn {
        let mut session = Session::new(limits.clone());
        // The client, for `Request::peer_addr` (a PROXY protocol header may name another).
        session.set_peer_socket(stream.as_raw_fd());
        Conn {
            stream,
            session,
            input: Vec::new(),
            out: Vec::new(),
            written: 0,
            phase: Phase::Open,
            can_read: true,
            registered: false,
            opened: now,
            request_started: None,
            last_progress: now,
            reported: 0,
            awaiting_proxy_header: proxy_header,
        }
    }

    /// Epoll reported an edge: there is something to read (or an EOF or error to learn).
    pub(super) fn mark_readable(&mut self) {
        self.can_read = true;
    }

    /// When the connection arrived.
    pub(super) fn opened(&self) -> Instant {
        self.opened
    }

    /// Whether it must still send its PROXY protocol header.
    pub(super) fn awaiting_proxy_header(&self) -> bool {
        self.awaiting_proxy_header
    }

    /// Requests answered since the last call (for the worker's report to the master).
    pub(super) fn take_answered(&mut self) -> u64 {
        let answered = self.session.requests() - self.reported;
        self.reported += answered;
        answered
    }

    /// The response in progress, or the next one, says `Connection: close`.
    pub(super) fn close_after_current(&mut self) {
        self.session.close_after_current();
    }

    /// The request took too long: queue a `408` and close once it is flushed.
    pub(super) fn time_out(&mut self, date: &[u8], now: Instant) {
        self.session.timeout(&mut self.out, date);
        self.phase = Phase::Closing;
        self.can_read = false;
        self.last_progress = now;
    }

    /// Reads, answers and writes until the socket would block; what to do with it next.
    pub(super) fn drive(
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
    pub(super) fn expired(
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
