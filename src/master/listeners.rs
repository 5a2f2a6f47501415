//! The master's listening sockets, keyed as Node keys them, and the grant a listen request
//! gets.
//!
//! From Node's cluster documentation: "when a worker calls `server.listen()` it sends the
//! master a message asking it to create the server socket, listen, and share it; if the master
//! already has a listening socket for that address it skips creating one." This table is that
//! rule. The key is the address as requested *and an index*: a worker's n-th `listen` on the
//! same address has index n (Node's `child.js` counts them per address), so every worker's
//! first `listen(127.0.0.1:0)` shares one socket on one ephemeral port, and a second
//! `listen(127.0.0.1:0)` in each worker shares a second socket on another port. Each
//! listener keeps the workers that asked for it, in the order they asked, which is the
//! rotation order of round-robin.
//!
//! Addresses arrive here numeric: a worker resolves a name itself before it asks, so the
//! master's single thread never blocks in `getaddrinfo` while every worker waits for it
//! ([`resolve`] is for the addresses given before the loop starts).
//!
//! Sockets inherited at start (systemd socket activation, or herd's binary upgrade) wait in
//! a pool until an address asks for them: a listener is taken from the pool when the
//! address it was requested as (passed by a herd upgrade) or the address it is bound to
//! equals the requested address; only otherwise is a new socket bound.
//!
//! Under `reuseport` the master's socket for an address is only a reservation, bound and not
//! listening (see [`crate::reuseport`]); each worker gets a listening socket of its own. A
//! herd upgrade passes the reservation on, and the new master takes it from the pool the same
//! way, keeping the port. A listening inherited socket (systemd's) cannot serve as a
//! reservation, and a reservation cannot serve the other policies: each policy takes only
//! its own kind from the pool (and under `reuseport` binding fails while a socket from
//! systemd holds the port without `SO_REUSEPORT`).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use mio::net::TcpListener;

use super::systemd::Inherited;
use crate::channel::ListenerId;
use crate::link::Accepted;
use crate::link::Grant;
use crate::policy::{Acceptance, AckGate, Picker};

/// How many connections the kernel queues for the master to accept (Node and nginx use 511;
/// larger here, since the master leaves connections there on purpose while every worker is
/// full). The kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;

/// One listening socket and the workers it feeds.
pub(crate) struct Listener {
    /// The address workers asked for (with `index`, the table's key).
    pub requested: SocketAddr,
    /// Which of a worker's listens on `requested` this is (0 for the first).
    pub index: u32,
    /// The address actually bound.
    pub local: SocketAddr,
    /// `None` once closed (graceful stop): the id stays reserved.
    pub socket: Option<TcpListener>,
    /// Worker keys (the master's slab keys) subscribed to this listener, in join order.
    pub subscribers: Vec<usize>,
    /// The policy's decision state over `subscribers` (rotation, random numbers).
    pub picker: Picker,
    /// The `node` policy's free workers and waiting connections.
    pub gate: AckGate<Accepted>,
    /// An accept burst stopped before `WouldBlock`: accept again without waiting for epoll.
    pub ready: bool,
}

/// Every listener the master has, indexed by [`ListenerId`].
#[derive(Default)]
pub(crate) struct Listeners {
    list: Vec<Listener>,
    /// Inherited sockets no address has asked for yet.
    inherited: Vec<Inherited>,
}

/// Parses `host:port` (a literal IP, or a name such as `localhost`) into one socket address.
/// It may block in `getaddrinfo`: only for addresses given before the master's loop runs.
pub fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("bad address '{addr}': {e}")))?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address '{addr}'")))
}

impl Listeners {
    /// Listener `index` of `requested`, binding it on first use (as `acceptance` needs it).
    /// Returns its id and whether it is new.
    pub fn get_or_bind(
        &mut self,
        requested: SocketAddr,
        index: u32,
        acceptance: Acceptance,
    ) -> io::Result<(ListenerId, bool)> {
        let key = |l: &Listener| l.requested == requested && l.index == index;
        if let Some(id) = self.list.iter().position(key) {
            if self.list[id].socket.is_some() {
                return Ok((id as ListenerId, false));
            }
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the master is shutting down",
            ));
        }
        if self.list.len() > u16::MAX as usize {
            return Err(io::Error::other("too many listeners"));
        }
        let inherited = self.take_inherited(requested, index, acceptance != Acceptance::ReusePort);
        let socket = match inherited {
            Some(inherited) => {
                log::info!(
                    "using inherited fd {} ({}) for {requested}",
                    inherited.fd,
                    inherited.local
                );
                TcpListener::from_std(inherited.socket)
            }
            None => match acceptance {
                // Bound, not listening: see `crate::reuseport` (no backlog to size).
                Acceptance::ReusePort => {
                    crate::reuseport::bind_reuseport(requested, false).map(TcpListener::from_std)
                }
                // mio binds non-blocking and close-on-exec with SO_REUSEADDR, but with std's
                // backlog of 128. The backlog is where connections wait while every worker is
                // full or the master is out of descriptors; past it, clients' SYNs are dropped
                // and they retry after 1, 3, 7… s. Listening again on a listening socket only
                // resizes its backlog (the kernel caps it at net.core.somaxconn). An inherited
                // socket keeps the backlog its creator chose (a unit file's `Backlog=`).
                _ => TcpListener::bind(requested).and_then(|s| {
                    nix::sys::socket::listen(&s, nix::sys::socket::Backlog::new(BACKLOG)?)?;
                    Ok(s)
                }),
            }
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {requested}: {e}")))?,
        };
        // Inherited sockets too: the option is per socket, and a unit file's socket (or an
        // older herd's) may lack it.
        crate::sys::defer_accept(&socket);
        let local = socket.local_addr()?;
        self.list.push(Listener {
            requested,
            index,
            local,
            socket: Some(socket),
            subscribers: Vec::new(),
            picker: Picker::default(),
            gate: AckGate::default(),
            ready: false,
        });
        Ok(((self.list.len() - 1) as ListenerId, true))
    }

    /// Keeps inherited sockets for the addresses that will ask for them.
    pub fn set_inherited(&mut self, inherited: Vec<Inherited>) {
        self.inherited = inherited;
    }

    /// The inherited sockets no address has asked for.
    pub fn unclaimed(&self) -> impl Iterator<Item = &Inherited> {
        self.inherited.iter()
    }

    /// The inherited socket for listener `index` of `requested` that is `listening` (or a
    /// reservation): the one passed on as that listener by a herd upgrade, else the first
    /// one bound to `requested` (systemd's, which knows no index).
    fn take_inherited(
        &mut self,
        requested: SocketAddr,
        index: u32,
        listening: bool,
    ) -> Option<Inherited> {
        let kind = |s: &&Inherited| s.listening == listening;
        let i = (self.inherited.iter())
            .position(|s| kind(&s) && s.requested == Some((requested, index)))
            .or_else(|| (self.inherited.iter()).position(|s| kind(&s) && s.local == requested))?;
        Some(self.inherited.remove(i))
    }

    /// `(fd, requested address, index)` of every open listener, in id order (what a binary
    /// upgrade passes on).
    pub fn open(&self) -> Vec<(BorrowedFd<'_>, SocketAddr, u32)> {
        self.list
            .iter()
            .filter_map(|l| {
                let socket = l.socket.as_ref()?;
                Some((socket.as_fd(), l.requested, l.index))
            })
            .collect()
    }

    /// The listener with this id.
    pub fn get(&self, id: ListenerId) -> &Listener {
        &self.list[id as usize]
    }

    /// The listener with this id, mutably.
    pub fn get_mut(&mut self, id: ListenerId) -> &mut Listener {
        &mut self.list[id as usize]
    }

    /// Ids of every listener.
    pub fn ids(&self) -> impl Iterator<Item = ListenerId> {
        0..self.list.len() as ListenerId
    }

    /// Removes a worker from every subscriber list (and from `node`'s free list).
    pub fn unsubscribe(&mut self, worker: usize) {
        for l in &mut self.list {
            l.subscribers.retain(|&w| w != worker);
            l.gate.remove(worker);
        }
    }

    /// What a worker that asked for listener `id` gets under `accept`: the listener, and
    /// the socket it accepts from itself: none when the master accepts, a second descriptor
    /// of the shared socket (`shared`, `shared-exclusive`), or a new `SO_REUSEPORT` socket of
    /// the worker's own (`reuseport`).
    pub fn grant(&self, id: ListenerId, accept: Acceptance) -> io::Result<Grant> {
        let socket = self.worker_socket(id, accept)?;
        Ok(Grant {
            listener: id,
            local: self.get(id).local,
            accept,
            socket,
        })
    }

    /// Removes worker `key` from listener `id` (it closed its server there).
    pub fn unsubscribe_from(&mut self, id: ListenerId, worker: usize) {
        let l = self.get_mut(id);
        l.subscribers.retain(|&w| w != worker);
        l.gate.remove(worker);
    }

    /// Adds worker `key` to listener `id`'s subscribers (once); returns its address.
    pub fn subscribe(&mut self, id: ListenerId, key: usize) -> SocketAddr {
        let l = self.get_mut(id);
        if !l.subscribers.contains(&key) {
            l.subscribers.push(key);
        }
        l.local
    }

    fn worker_socket(&self, id: ListenerId, accept: Acceptance) -> io::Result<Option<OwnedFd>> {
        let l = self.get(id);
        let Some(socket) = l.socket.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the master is shutting down",
            ));
        };
        match accept {
            Acceptance::Master => Ok(None),
            Acceptance::Shared | Acceptance::SharedExclusive => {
                socket.as_fd().try_clone_to_owned().map(Some)
            }
            Acceptance::ReusePort => {
                let own = crate::reuseport::bind_reuseport(l.local, true).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.local))
                })?;
                // As for the master's listeners: every policy gets the same accept behaviour.
                crate::sys::defer_accept(&own);
                Ok(Some(own.into()))
            }
        }
    }

    /// Connections waiting in the master for `node`'s gate to open.
    pub fn gated(&self) -> usize {
        self.list.iter().map(|l| l.gate.queued()).sum()
    }

    /// The open sockets' fds, for a forked child to close.
    pub fn fds(&self) -> Vec<RawFd> {
        self.list
            .iter()
            .filter_map(|l| l.socket.as_ref().map(|s| s.as_raw_fd()))
            .chain(self.inherited.iter().map(|s| s.socket.as_raw_fd()))
            .collect()
    }
}
