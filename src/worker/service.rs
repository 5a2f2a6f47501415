//! What a worker does with the connections of one listener: the [`Service`] trait.
//!
//! The worker's event loop owns one mio `Poll` and routes every readiness event to the service
//! that registered the token. A service is the HTTP server ([`super::HttpService`]) for
//! `herd serve`, or the reverse proxy for `herd proxy`; each owns its connections and any
//! sockets of its own (a proxy's upstream connections), and registers them with tokens made
//! by [`Context::token`], so several services share one loop without knowing of each other.

use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Registry, Token};

use super::tokens;
use crate::http::DateCache;

/// Counters a worker reports to the master, batched into its acknowledgements.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Connections closed since the last report.
    pub closed: u32,
    /// Requests answered since the last report.
    pub requests: u32,
    /// Connections the worker accepted itself since the last report (worker-accept).
    pub accepted: u32,
}

impl Counters {
    /// Whether there is anything to report.
    pub fn is_empty(&self) -> bool {
        self.closed == 0 && self.requests == 0 && self.accepted == 0
    }
}

/// The part of the worker a service sees while it handles an event.
pub struct Context<'a> {
    /// Register and deregister sockets here, with tokens from [`Context::token`].
    pub registry: &'a Registry,
    /// The time the loop woke up (one clock read per loop turn).
    pub now: Instant,
    /// True once the master asked this worker to drain.
    pub draining: bool,
    pub(crate) service: usize,
    pub(crate) counters: &'a mut Counters,
    pub(crate) date: &'a mut DateCache,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("now", &self.now)
            .field("draining", &self.draining)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Context<'_> {
    /// The token for this service's `local` id (a slab key, say). `local` must be < 2^40.
    /// (The token rules are in `worker::tokens`.)
    pub fn token(&self, local: usize) -> Token {
        tokens::token(self.service, local)
    }

    /// The service-local id carried by `token`.
    pub fn local(token: Token) -> usize {
        tokens::local(token)
    }

    /// The current `Date` header value (IMF-fixdate), reformatted once a second.
    pub fn date(&mut self) -> &[u8] {
        self.date.get()
    }

    /// Counts `n` answered requests for the master's metrics and least-connections policy.
    pub fn answered(&mut self, n: u64) {
        self.counters.requests = self.counters.requests.saturating_add(n as u32);
    }

    /// Counts one closed connection (one the master handed over).
    pub fn closed(&mut self) {
        self.counters.closed += 1;
    }
}

/// What a worker runs for one listener's connections.
///
/// All methods run on the worker's single thread; none may block.
pub trait Service: 'static {
    /// The master handed over a connection for this service. Non-blocking, close-on-exec,
    /// not yet registered with the poll: the service decides when to register it.
    fn accept(&mut self, cx: &mut Context<'_>, stream: TcpStream);

    /// A token this service registered is ready.
    fn ready(&mut self, cx: &mut Context<'_>, token: Token, event: &Event);

    /// Called about four times a second while the service has connections: apply timeouts.
    fn tick(&mut self, cx: &mut Context<'_>);

    /// The worker is draining: close idle connections now and close the rest at the end of
    /// their current request. Called once, then `tick` keeps being called.
    fn drain(&mut self, cx: &mut Context<'_>);

    /// Connections still open (the worker exits a drain when every service reports 0).
    fn open_connections(&self) -> usize;

    /// File descriptors the service holds: its connections, and any sockets it opened
    /// itself (a proxy's upstream connections). The worker stops reading handoffs while
    /// these fill its fd budget, so that a connection it takes can still open what it needs.
    fn fds_held(&self) -> usize {
        self.open_connections()
    }

    /// The most descriptors one connection of this service may come to hold (its own, and
    /// what it opens for it): the worker takes a handoff only if that many fit per
    /// connection.
    fn fds_per_connection(&self) -> usize {
        1
    }
}
