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

use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::http_conn::{Conn, Status};
use super::service::{Context, Service};
use crate::http::{Handler, Limits, Timeouts};

/// The most one `read` takes from a socket.
const READ_CHUNK: usize = 16 * 1024;

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
        let conn = Conn::new(stream, &self.limits, cx.now, self.proxy_protocol.is_some());
        let key = self.conns.insert(conn);
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
            conn.mark_readable();
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
                Some(d) if c.awaiting_proxy_header() => {
                    (now.duration_since(c.opened()) > d).then_some((key, false))
                }
                _ => (c.expired(now, drain_started, &timeouts)).map(|answer| (key, answer)),
            })
            .collect();
        for (key, answer) in expired {
            let conn = &mut self.conns[key];
            if answer {
                // Slowloris or a stalled body: answer 408 and close once it is flushed.
                conn.time_out(cx.date.get(), now);
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
            conn.close_after_current();
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
        let answered = conn.take_answered();
        if answered > 0 {
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
