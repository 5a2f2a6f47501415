//! Connections to the targets, and each worker's pool of idle keep-alive ones.
//!
//! An [`Upstream`] is created by a non-blocking `connect` and registered with the worker's
//! poll at once, for read and write, edge-triggered, for its whole life. The connect completes
//! (or fails: refused, reset) with the first event. After a response that leaves it reusable
//! it goes back to its target's [`Pool`], still registered: if the target closes it while it
//! sits idle (its own keep-alive timeout), the readable event finds the end of stream and the
//! proxy closes it, so a pooled connection is almost never stale when reused.

use std::io;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::buffer::Buffer;

/// How long an idle pooled connection is kept. Below the 5 s keep-alive timeout of Node's
/// http server and of `herd serve`, so the proxy closes first and a request never races a
/// target's close of the connection it was given.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per target per worker; more are closed when released.
const POOL_MAX_IDLE: usize = 256;

/// One connection to a target.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub stream: TcpStream,
    /// Index of the target.
    pub target: usize,
    /// The connect has completed.
    pub connected: bool,
    /// The connect failed or the socket reported an error (set from events).
    pub error: Option<io::Error>,
    /// An edge-triggered readable event has not been fully consumed.
    pub can_read: bool,
    /// The last event said the target closed its side: read on to EOF after a short read.
    pub hup: bool,
    /// The target closed its side.
    pub eof: bool,
    /// Response bytes read and not yet forwarded.
    pub input: Buffer,
    /// The client connection it serves; `None` while idle.
    pub client: Option<usize>,
    /// While idle with `--send-proxy`: the client connection it is parked with (its PROXY
    /// header names that client); `None` while in the [`Pool`] or in use.
    pub parked_by: Option<usize>,
    /// The PROXY protocol header still to be written before any request byte
    /// (`--send-proxy`, on a new connection).
    pub proxy_header: Buffer,
    /// When it went back to the pool.
    pub idle_since: Instant,
    /// Requests it carried so far (0: a fresh connection).
    pub requests: u64,
}

impl Upstream {
    /// Starts a non-blocking connect.
    pub fn connect(
        target: usize,
        addr: std::net::SocketAddr,
        now: Instant,
    ) -> io::Result<Upstream> {
        let stream = TcpStream::connect(addr)?;
        // Request heads are small writes that must leave at once.
        let _ = stream.set_nodelay(true);
        Ok(Upstream {
            stream,
            target,
            connected: false,
            error: None,
            can_read: false,
            hup: false,
            eof: false,
            input: Buffer::default(),
            client: None,
            parked_by: None,
            proxy_header: Buffer::default(),
            idle_since: now,
            requests: 0,
        })
    }

    /// After an event on a connection still connecting: has the connect completed or failed?
    pub fn check_connect(&mut self) {
        if self.connected || self.error.is_some() {
            return;
        }
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => self.error = Some(e),
            Ok(None) => match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => self.error = Some(e),
            },
        }
    }
}

/// Idle connections per target, most recently used last (reused first: it is the least
/// likely to have been closed by its target).
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Vec<Vec<usize>>,
}

impl Pool {
    pub fn new(targets: usize) -> Pool {
        Pool {
            idle: vec![Vec::new(); targets],
        }
    }

    /// An idle connection to `target`, if any.
    pub fn take(&mut self, target: usize) -> Option<usize> {
        self.idle[target].pop()
    }

    /// Keeps `key` for reuse; false if the pool of `target` is full (close it instead).
    pub fn put(&mut self, target: usize, key: usize) -> bool {
        let idle = &mut self.idle[target];
        if idle.len() >= POOL_MAX_IDLE {
            return false;
        }
        idle.push(key);
        true
    }

    /// Forgets `key` (it was closed while idle).
    pub fn remove(&mut self, target: usize, key: usize) {
        self.idle[target].retain(|&k| k != key);
    }

    /// Every idle connection.
    pub fn all(&self) -> impl Iterator<Item = usize> + '_ {
        self.idle.iter().flatten().copied()
    }
}
