//! [`ProxyService`]: the reverse proxy as a worker [`Service`]: it owns the worker's client
//! connections, its upstream connections and pools, and moves every exchange forward when
//! one of their sockets is ready.
//!
//! One function, [`ProxyService::drive`], advances a client connection and the upstream
//! connection its exchange holds, in passes ([`ProxyService::pass`]), until neither socket
//! can make progress:
//!
//! ```text
//!   client ──read──▶ input ──head rewrite / body framing──▶ to_upstream ──write──▶ target
//!   client ◀─write── output ◀──head rewrite / body framing── upstream.input ◀──read── target
//! ```
//!
//! A pass writes what the client is owed, reads what it sent, then hands over to the part of
//! the proxy that owns the connection's state: between exchanges, the request side parses
//! the next head and starts an exchange ([`request`](super::request)); during one, the
//! request side sends the request and the response side ([`response`](super::response))
//! brings the answer back; after `101`, the [`tunnel`](super::tunnel) copies bytes. A target
//! that fails is handled by [`failure`](super::failure); time limits by
//! [`timeouts`](super::timeouts).
//!
//! Every buffer is bounded ([`CHUNK`](super::client::CHUNK)): a full buffer stops the read that fills it, and the
//! socket's edge-triggered readiness is remembered (`can_read`) until there is room again.

use std::rc::Rc;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::balance::Balancer;
use super::client::{Client, Phase};
use super::exchange::{Ended, Exchange, InFlight};
use super::headers;
use super::health::Health;
use super::upstream::{Pool, Upstream, POOL_IDLE_TIMEOUT};
use super::Config;
use crate::worker::{Context, Service};

/// The tag bit of an upstream connection's local token id; client ids have it clear.
pub(super) const UPSTREAM_TAG: usize = 1 << 39;

/// The `herd proxy` service of one worker. See the module documentation.
#[derive(Debug)]
pub struct ProxyService {
    pub(super) config: Rc<Config>,
    pub(super) clients: Slab<Client>,
    pub(super) upstreams: Slab<Upstream>,
    pub(super) pool: Pool,
    pub(super) balancer: Balancer,
    pub(super) health: Vec<Health>,
    /// Exchanges in flight per target, from this worker (for least-connections and p2c).
    pub(super) in_flight: InFlight,
    /// Reused for formatting heads and decoding chunks.
    pub(super) scratch: Vec<u8>,
    /// When the worker began to drain: from then on every exchange closes its client
    /// connection, and idle ones close after `Timeouts::drain_grace`.
    pub(super) drain_started: Option<Instant>,
    /// Client connections closed for want of a valid PROXY protocol header (counted in the
    /// log line each one gets).
    pub(super) refused_proxy_headers: u64,
}

/// The client connection was closed during the call: its slab key is no longer valid.
pub(super) struct Gone;

/// How far the request side got in a pass.
pub(super) enum Sent {
    /// The exchange has a connected upstream: the response side may run. The flag says
    /// whether anything progressed.
    Connected(bool),
    /// Not yet (still connecting), or a failure moved the exchange on (a retry, an error
    /// answer): the next pass looks again.
    Waiting(bool),
}

impl ProxyService {
    /// A proxy for `config`'s targets. Each worker makes its own.
    pub fn new(config: Config) -> ProxyService {
        let n = config.targets.len();
        let seed = u64::from(std::process::id()) ^ config.targets.len() as u64;
        ProxyService {
            balancer: Balancer::new(
                config.balance.clone(),
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            config: Rc::new(config),
            clients: Slab::new(),
            upstreams: Slab::new(),
            pool: Pool::new(n),
            health: (0..n).map(|_| Health::default()).collect(),
            in_flight: InFlight::new(n),
            scratch: Vec::new(),
            drain_started: None,
            refused_proxy_headers: 0,
        }
    }

    /// Advances client `ck` and its exchange until no socket can make progress.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>, ck: usize) {
        loop {
            match self.pass(cx, ck) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(Gone) => return,
            }
        }
        let client = &mut self.clients[ck];
        if !client.registered {
            let token = cx.token(ck);
            match cx.registry.register(
                &mut client.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => client.registered = true,
                Err(e) => {
                    log::warn!("cannot register a connection: {e}");
                    self.close_client(cx, ck, false);
                }
            }
        }
    }

    /// One pass over everything client `ck` can do; `Ok(true)` if anything progressed.
    fn pass(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        let now = cx.now;
        let client = &mut self.clients[ck];
        if client.phase == Phase::Lingering {
            if client.linger() {
                self.close_client(cx, ck, false);
                return Err(Gone);
            }
            return Ok(false);
        }
        let mut progressed = match client.write(now) {
            Ok(p) => p,
            Err(_) => return self.abort(cx, ck),
        };
        if let Phase::Closing { linger } = client.phase {
            if !client.output.is_empty() {
                return Ok(progressed);
            }
            return self.finish(cx, ck, linger);
        }
        progressed |= match client.read(now) {
            Ok(p) => p,
            Err(_) => return self.abort(cx, ck),
        };
        if client.phase == Phase::ProxyHeader {
            return Ok(self.read_proxy_header(cx, ck)? || progressed);
        }
        if client.phase == Phase::Tunnel {
            return Ok(self.tunnel(cx, ck)? || progressed);
        }
        if client.exchange.is_none() {
            return Ok(self.next_request(cx, ck)? || progressed);
        }
        match self.send_request(cx, ck)? {
            Sent::Connected(sent) => Ok(self.receive_response(cx, ck)? || sent || progressed),
            Sent::Waiting(sent) => Ok(sent || progressed),
        }
    }

    /// The proxy answers client `ck` itself (an error: 400, 408, 502, 504) and closes the
    /// connection once the answer is out; `linger` if the client may still be sending.
    pub(super) fn answer(
        &mut self,
        cx: &mut Context<'_>,
        ck: usize,
        status: u16,
        message: &str,
        linger: bool,
    ) {
        let date = cx.date();
        let client = &mut self.clients[ck];
        client.output.extend_with(&mut self.scratch, |out| {
            headers::write_error(out, status, message, date)
        });
        client.phase = Phase::Closing { linger };
    }

    /// Client `ck`'s exchange; only called where one is in progress.
    pub(super) fn exchange(&mut self, ck: usize) -> &mut Exchange {
        self.clients[ck].exchange.as_mut().expect("an exchange")
    }

    /// Ends client `ck`'s exchange, if it has one: it leaves the in-flight counts.
    pub(super) fn end_exchange(&mut self, ck: usize) -> Option<Ended> {
        let ex = self.clients[ck].exchange.take()?;
        Some(ex.end(&mut self.in_flight))
    }

    /// Output flushed after the last exchange: close, or linger if the client may still send.
    fn finish(&mut self, cx: &mut Context<'_>, ck: usize, linger: bool) -> Result<bool, Gone> {
        let client = &mut self.clients[ck];
        if linger && !client.eof && client.stream.shutdown(std::net::Shutdown::Write).is_ok() {
            client.phase = Phase::Lingering;
            client.last_progress = cx.now;
            return Ok(true);
        }
        self.close_client(cx, ck, false);
        Err(Gone)
    }

    /// Closes client `ck` and any upstream its exchange holds, because one of them failed.
    pub(super) fn abort(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        self.close_client(cx, ck, false);
        Err(Gone)
    }

    /// Closes client `ck`; `reset` sends RST instead of FIN, so that a client reading a body
    /// delimited by the close cannot take a truncated body for a complete one.
    pub(super) fn close_client(&mut self, cx: &mut Context<'_>, ck: usize, reset: bool) {
        if let Some(end) = self.end_exchange(ck) {
            if let Some(uk) = end.upstream {
                // Half an exchange on it: never reusable.
                self.upstreams.remove(uk);
            }
        }
        let client = self.clients.remove(ck);
        if let Some(uk) = client.parked {
            self.upstreams.remove(uk);
        }
        if reset {
            let _ = nix::sys::socket::setsockopt(
                &client.stream,
                nix::sys::socket::sockopt::Linger,
                &libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
        }
        // Closing the fds removes them from epoll.
        cx.closed();
    }

    /// An event on an idle upstream connection, pooled or parked with its client: the
    /// target closed it, or sent bytes nobody asked for. Either way it is closed.
    fn idle_upstream_event(&mut self, uk: usize) {
        let up = &mut self.upstreams[uk];
        let mut sink = [0u8; 512];
        match std::io::Read::read(&mut up.stream, &mut sink) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => {
                match up.parked_by {
                    Some(ck) => self.clients[ck].parked = None,
                    None => self.pool.remove(up.target, uk),
                }
                self.upstreams.remove(uk);
            }
        }
    }
}

impl Service for ProxyService {
    fn accept(&mut self, cx: &mut Context<'_>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let proxy_header = self.config.proxy_protocol;
        let ck = self
            .clients
            .insert(Client::new(stream, cx.now, proxy_header));
        debug_assert!(ck < UPSTREAM_TAG);
        self.drive(cx, ck);
    }

    fn ready(&mut self, cx: &mut Context<'_>, token: Token, event: &Event) {
        let local = Context::local(token);
        let ck = if local & UPSTREAM_TAG != 0 {
            let uk = local & !UPSTREAM_TAG;
            let Some(up) = self.upstreams.get_mut(uk) else {
                return; // closed earlier in this batch of events
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                up.can_read = true;
                up.hup |= event.is_read_closed() || event.is_error();
            }
            up.check_connect();
            match up.client {
                Some(ck) => ck,
                None => return self.idle_upstream_event(uk),
            }
        } else {
            let Some(client) = self.clients.get_mut(local) else {
                return;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                client.can_read = true;
                client.hup |= event.is_read_closed() || event.is_error();
            }
            local
        };
        self.drive(cx, ck);
    }

    fn tick(&mut self, cx: &mut Context<'_>) {
        let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
        for ck in keys {
            if self.clients.contains(ck) {
                self.expire(cx, ck);
            }
        }
        let now = cx.now;
        let stale: Vec<usize> = self
            .pool
            .all()
            .filter(|&uk| now.duration_since(self.upstreams[uk].idle_since) > POOL_IDLE_TIMEOUT)
            .collect();
        for uk in stale {
            self.pool.remove(self.upstreams[uk].target, uk);
            self.upstreams.remove(uk);
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) {
        // As `herd serve` drains: no connection is closed here. Each closes at its next
        // request boundary (the response not yet begun says `Connection: close`), and one
        // that sits idle only after `Timeouts::drain_grace` (`expire`): closing an idle
        // keep-alive connection at once would reset a request already on the wire.
        self.drain_started = Some(cx.now);
        for (_, client) in self.clients.iter_mut() {
            if let Some(ex) = client.exchange.as_mut().filter(|ex| !ex.answered) {
                ex.keep_alive = false;
            }
            if let Some(uk) = client.parked.take() {
                self.upstreams.remove(uk);
            }
        }
        let pooled: Vec<usize> = self.pool.all().collect();
        for uk in pooled {
            self.pool.remove(self.upstreams[uk].target, uk);
            self.upstreams.remove(uk);
        }
    }

    fn open_connections(&self) -> usize {
        // Pooled upstream connections keep the worker's loop ticking (their idle timeout)
        // but never hold up a drain: `drain` closes them.
        self.clients.len() + self.pool.all().count().min(1)
    }

    fn fds_held(&self) -> usize {
        // Each client holds, or may open at its next request, one upstream connection:
        // reserve it, plus the idle pooled connections no client holds.
        2 * self.clients.len() + self.pool.all().count()
    }

    fn fds_per_connection(&self) -> usize {
        2
    }
}
