//! The client side: one [`Client`] per connection the master handed over, its buffers, and
//! where it is in its life ([`Phase`]).
//!
//! A client connection carries one [`Exchange`] (a request and its response) at a time. Pipelined requests wait in its input
//! buffer until the exchange before them is complete, which answers them in order without
//! holding more than one response at a time. Each exchange borrows one upstream connection,
//! from the pool or freshly connected, and gives it back (or closes it) at its end.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;

use super::buffer::Buffer;
use super::exchange::Exchange;

/// The most one `read` takes from a socket, and the bound on each buffer's pending bytes
/// before the proxy stops reading whatever fills it.
pub(crate) const CHUNK: usize = 32 * 1024;

/// An address for a socket that cannot say its own (it failed already; nothing will be
/// forwarded for it).
const UNSPECIFIED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Where a client connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the PROXY protocol header (`--proxy-protocol`): nothing is read as HTTP
    /// before it.
    ProxyHeader,
    /// Reading requests and forwarding exchanges.
    Open,
    /// `101 Switching Protocols` went out: bytes are copied both ways until a side closes.
    Tunnel,
    /// Done: flush the output, then close; `linger` if the client may still be sending
    /// (closing with unread input makes the kernel reset the connection, which can destroy
    /// the response in flight).
    Closing { linger: bool },
    /// Write side shut; discarding input until EOF or the linger timeout.
    Lingering,
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Client {
    pub stream: TcpStream,
    /// The client's address, for `X-Forwarded-For`, logs and `--send-proxy`: the socket's
    /// peer, or the source its PROXY protocol header names.
    pub peer: SocketAddr,
    /// The address the client connected to, once known: the destination its PROXY protocol
    /// header names, or the socket's own, looked up only when a `--send-proxy` header needs
    /// it (a system call the common path does without). See [`Client::local`].
    local: Option<SocketAddr>,
    pub registered: bool,
    /// An edge-triggered readable event has not been fully consumed.
    pub can_read: bool,
    /// The last event said the peer closed its side: keep reading until EOF even after a
    /// short read (no further edge will come).
    pub hup: bool,
    /// The client closed its side.
    pub eof: bool,
    /// Request bytes read and not yet forwarded (a partial or pipelined request).
    pub input: Buffer,
    /// Response bytes not yet written to the client.
    pub output: Buffer,
    /// The current request, rewritten for the target, not yet written to it. Kept whole
    /// while it fits, so a failed attempt can be replayed to another target.
    pub to_upstream: Buffer,
    pub exchange: Option<Exchange>,
    /// With `--send-proxy`: the idle upstream connection the last exchange used, kept for
    /// this client's next request. Its PROXY header names this client, so it is never
    /// pooled for another (see [`proxy_header`](super::proxy_header)).
    pub parked: Option<usize>,
    pub phase: Phase,
    /// When the connection arrived.
    pub opened: Instant,
    /// When the request head now arriving started; `None` between requests.
    pub head_started: Option<Instant>,
    /// Last time a read or write on the client made progress.
    pub last_progress: Instant,
    /// Exchanges completed.
    pub requests: u64,
}

impl Client {
    /// A connection the master handed over; `proxy_header` if it must start with a PROXY
    /// protocol header.
    pub fn new(stream: TcpStream, now: Instant, proxy_header: bool) -> Client {
        let peer = stream.peer_addr().unwrap_or(UNSPECIFIED);
        Client {
            stream,
            peer,
            local: None,
            registered: false,
            can_read: true,
            hup: false,
            eof: false,
            input: Buffer::default(),
            output: Buffer::default(),
            to_upstream: Buffer::default(),
            exchange: None,
            parked: None,
            phase: if proxy_header {
                Phase::ProxyHeader
            } else {
                Phase::Open
            },
            opened: now,
            head_started: None,
            last_progress: now,
            requests: 0,
        }
    }

    /// The address the client connected to (see the field).
    pub fn local(&mut self) -> SocketAddr {
        let stream = &self.stream;
        *self
            .local
            .get_or_insert_with(|| stream.local_addr().unwrap_or(UNSPECIFIED))
    }

    /// What a valid PROXY protocol header said about the connection.
    pub fn relayed_for(&mut self, source: SocketAddr, destination: SocketAddr) {
        self.peer = source;
        self.local = Some(destination);
    }

    /// Reads once into `input` if it has room. `Ok(true)` if something happened (bytes or EOF).
    pub fn read(&mut self, now: Instant) -> io::Result<bool> {
        if !self.can_read || self.eof || self.input.len() >= CHUNK {
            return Ok(false);
        }
        match self.input.read_from(&mut self.stream, CHUNK) {
            Ok(0) => {
                self.eof = true;
                self.can_read = false;
                Ok(true)
            }
            Ok(n) => {
                // A short read emptied the socket: the next arrival is a new edge.
                self.can_read = n == CHUNK || self.hup;
                self.last_progress = now;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.can_read = false;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Writes `output` once if it has bytes. `Ok(true)` on progress.
    pub fn write(&mut self, now: Instant) -> io::Result<bool> {
        if self.output.is_empty() {
            return Ok(false);
        }
        match self.output.write_to(&mut self.stream) {
            Ok(n) => {
                self.last_progress = now;
                if self.output.is_empty() {
                    self.output.clear();
                }
                Ok(n > 0)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// While lingering: discards input; true once the client closed (or failed).
    pub fn linger(&mut self) -> bool {
        let mut sink = [0u8; 4096];
        loop {
            match io::Read::read(&mut self.stream, &mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }
}
