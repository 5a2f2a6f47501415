//! Peeking at a PROXY protocol header in the master, so that `--policy ip-hash` hashes the
//! client a balancer in front names, not the balancer.
//!
//! Behind an L4 balancer every connection comes from the balancer's few addresses; the
//! real client is in the PROXY protocol header the connection starts with. The worker
//! reads and checks that header (`worker::http_conn`), but the master picks the worker
//! before any worker sees a byte. So, under `ip-hash` with `--proxy-protocol`, the master
//! looks first:
//!
//! ```text
//! accept ─► peek (MSG_PEEK: the bytes stay in the socket for the worker)
//!             ├─ a whole header ─────────► dispatch, hashing the header's source address
//!             ├─ not a header, EOF, LOCAL ► dispatch as accepted (the worker refuses it)
//!             └─ not all there yet ──────► wait: registered for readable, edge-triggered
//!                                          (each arrival is a new edge), peek again;
//!                                          past the wait, dispatch as accepted
//! ```
//!
//! The master never consumes or judges the header: the worker still reads it, enforces its
//! own deadline, refuses and counts bad ones, exactly as without `ip-hash`. Peeking costs
//! one `recv` per connection (the header has nearly always arrived with the connection: a
//! balancer writes it first thing), plus an epoll registration for the rare one that has not.
//! At most [`MAX_WAITING`] connections wait at once; more are dispatched as accepted.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::Master;
use crate::link::Accepted;
use crate::proxy_protocol::{self, V2_MAX_PAYLOAD};

/// Connections waiting for the rest of their header, at most.
const MAX_WAITING: usize = 4096;
/// The longest header: v2's 16-byte preamble and its largest payload (v1's is shorter).
const HEADER_MAX: usize = 16 + V2_MAX_PAYLOAD;

/// What a peek found.
#[derive(Debug, PartialEq, Eq)]
enum Peeked {
    /// A whole header; the client it names, if it names one (v2 `LOCAL` does not).
    Header(Option<SocketAddr>),
    /// Not a header, or the connection ended: the worker will say so.
    NoHeader,
    /// A header may still be arriving.
    Incomplete,
}

/// One connection waiting for its header.
#[derive(Debug)]
struct Waiting {
    conn: Accepted,
    until: Instant,
}

/// The connections the master is peeking at (see the module documentation).
#[derive(Debug)]
pub(super) struct Peeks {
    /// How long a connection may take to send its header.
    wait: Duration,
    /// Their tokens are `base + key`.
    base: usize,
    waiting: Slab<Waiting>,
}

impl Peeks {
    /// Peeking with tokens from `base` up, each connection waiting at most `wait`.
    pub fn new(wait: Duration, base: usize) -> Peeks {
        Peeks {
            wait,
            base,
            waiting: Slab::new(),
        }
    }

    /// The earliest wait that ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|(_, w)| w.until).min()
    }

    /// Takes connection `key` out (deregistered), if it is still waiting.
    fn take(&mut self, registry: &Registry, key: usize) -> Option<Accepted> {
        let w = self.waiting.try_remove(key)?;
        // The master keeps its copy open after the handoff (a Node link holds it until
        // `accepted`): it must leave the master's epoll before then.
        let fd = w.conn.stream.as_raw_fd();
        let _ = registry.deregister(&mut SourceFd(&fd));
        Some(w.conn)
    }
}

/// Looks at the front of `stream` without consuming it.
fn peek(stream: &std::net::TcpStream) -> Peeked {
    let mut buf = [0u8; HEADER_MAX];
    let n = match stream.peek(&mut buf) {
        Ok(0) => return Peeked::NoHeader,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Peeked::Incomplete,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Peeked::Incomplete,
        Err(_) => return Peeked::NoHeader,
    };
    match proxy_protocol::parse(&buf[..n]) {
        Ok(Some((header, _))) => Peeked::Header(header.addresses.map(|a| a.source)),
        Ok(None) if n < HEADER_MAX => Peeked::Incomplete,
        Ok(None) | Err(_) => Peeked::NoHeader,
    }
}

impl Master {
    /// Whether accepted connections are peeked at before dispatch.
    pub(super) fn peeks_first(&self) -> bool {
        self.peeks.is_some()
    }

    /// An accepted connection on a PROXY protocol listener: dispatched with the client its
    /// header names once the header is there.
    pub(super) fn peek_then_dispatch(&mut self, mut conn: Accepted) {
        let peeks = self.peeks.as_mut().expect("peeking is on");
        match peek(&conn.stream) {
            Peeked::Header(source) => {
                conn.peer = source.or(conn.peer);
                self.dispatch(conn);
            }
            Peeked::Incomplete if peeks.waiting.len() < MAX_WAITING => {
                let entry = peeks.waiting.vacant_entry();
                let token = Token(peeks.base + entry.key());
                let fd = conn.stream.as_raw_fd();
                match self
                    .poll
                    .registry()
                    .register(&mut SourceFd(&fd), token, Interest::READABLE)
                {
                    Ok(()) => {
                        entry.insert(Waiting {
                            conn,
                            until: Instant::now() + peeks.wait,
                        });
                    }
                    Err(e) => {
                        log::warn!("master: cannot wait for a PROXY protocol header: {e}");
                        self.dispatch(conn);
                    }
                }
            }
            Peeked::Incomplete | Peeked::NoHeader => self.dispatch(conn),
        }
    }

    /// A waiting connection is readable: peek again.
    pub(super) fn on_peek_ready(&mut self, key: usize) {
        let Some(peeks) = self.peeks.as_mut() else {
            return;
        };
        let Some(w) = peeks.waiting.get(key) else {
            return; // dispatched earlier in this batch of events
        };
        let found = peek(&w.conn.stream);
        if found == Peeked::Incomplete {
            return;
        }
        let Some(mut conn) = peeks.take(self.poll.registry(), key) else {
            return;
        };
        if let Peeked::Header(Some(source)) = found {
            conn.peer = Some(source);
        }
        self.dispatch(conn);
    }

    /// Dispatches, as accepted, the connections whose wait is over.
    pub(super) fn peek_tick(&mut self, now: Instant) {
        let Some(peeks) = self.peeks.as_mut() else {
            return;
        };
        let over: Vec<usize> = (peeks.waiting.iter())
            .filter(|(_, w)| w.until <= now)
            .map(|(k, _)| k)
            .collect();
        let registry = self.poll.registry();
        let conns: Vec<Accepted> = (over.into_iter())
            .filter_map(|k| peeks.take(registry, k))
            .collect();
        for conn in conns {
            self.dispatch(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (c, s)
    }

    /// Waits (generously) until `s` has at least `n` bytes to read.
    fn wait_bytes(s: &TcpStream, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; HEADER_MAX];
        while s.peek(&mut buf).map_or(0, |got| got) < n {
            assert!(Instant::now() < deadline, "the bytes never arrived");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_peek_finds_the_header_and_leaves_every_byte_in_place() {
        let (mut c, s) = pair();
        assert_eq!(peek(&s), Peeked::Incomplete, "nothing sent yet");
        let part = b"PROXY TCP4 192.0.2.1 198.51";
        c.write_all(part).unwrap();
        wait_bytes(&s, part.len());
        assert_eq!(peek(&s), Peeked::Incomplete, "half a header");
        let rest = b".100.7 56324 443\r\nGET / HTTP/1.1\r\n";
        c.write_all(rest).unwrap();
        wait_bytes(&s, part.len() + rest.len());
        let client: SocketAddr = "192.0.2.1:56324".parse().unwrap();
        assert_eq!(peek(&s), Peeked::Header(Some(client)));
        // Nothing was consumed: the worker reads the header itself.
        let mut all = [0u8; 128];
        let n = s.peek(&mut all).unwrap();
        assert_eq!(&all[..n], [&part[..], &rest[..]].concat().as_slice());
    }

    #[test]
    fn not_a_header_or_an_ended_connection_is_dispatched_as_accepted() {
        let (mut c, s) = pair();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        wait_bytes(&s, 8);
        assert_eq!(peek(&s), Peeked::NoHeader);
        let (c, s) = pair();
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while peek(&s) == Peeked::Incomplete {
            assert!(Instant::now() < deadline, "EOF never seen");
            std::thread::yield_now();
        }
        assert_eq!(peek(&s), Peeked::NoHeader);
    }
}
