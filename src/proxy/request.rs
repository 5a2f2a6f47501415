//! The request side of an exchange: the next request head is parsed and checked, the
//! balancer picks its target, the exchange gets a connection to it (pooled or new), and the
//! rewritten head and the body go to the target as they arrive.
//!
//! The whole request stays in `to_upstream` while it fits ([`Buffer::rewind`]), so that a
//! failed attempt can be replayed to another target ([`failure`](super::failure)).
//!
//! [`Buffer::rewind`]: super::buffer::Buffer::rewind

use std::mem::MaybeUninit;
use std::time::Instant;

use mio::Interest;

use super::balance::Balancer;
use super::client::CHUNK;
use super::exchange::{Exchange, InFlight};
use super::failure::Failure;
use super::headers::{self, Forwarded};
use super::health::Health;
use super::service::{Gone, ProxyService, Sent, UPSTREAM_TAG};
use super::upstream::{Upstream, POOL_IDLE_TIMEOUT};
use crate::http::{parse_head, BodyKind, HttpError};
use crate::proxy_protocol;
use crate::worker::Context;

impl ProxyService {
    /// Between exchanges: parses the next request head and starts its exchange.
    pub(super) fn next_request(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        let client = &mut self.clients[ck];
        if client.input.is_empty() {
            if client.eof {
                self.close_client(cx, ck, false);
                return Err(Gone);
            }
            return Ok(false);
        }
        let mut storage = [const { MaybeUninit::uninit() }; 100];
        let (head, len) =
            match parse_head(client.input.pending(), &self.config.limits, &mut storage) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    if client.eof {
                        // The client gave up halfway through a head.
                        self.close_client(cx, ck, false);
                        return Err(Gone);
                    }
                    client.head_started.get_or_insert(cx.now);
                    return Ok(false);
                }
                Err(e) => {
                    let message = e.to_string();
                    self.answer(cx, ck, e.status(), &message, true);
                    return Ok(true);
                }
            };
        client.head_started = None;
        // A sticky balance's key: the same one on a retry (see `failure`).
        let affinity = self.balancer.key(&head, client.peer.ip());
        let picked = pick(
            &mut self.balancer,
            &self.health,
            &self.in_flight,
            cx.now,
            None,
            affinity,
        );
        let Some(target) = picked else {
            // Only a proxy configured without targets (through the library) gets here.
            log::warn!("proxy error: no target to forward to");
            let linger = head.body != BodyKind::None;
            client.input.consume(len);
            self.answer(cx, ck, 502, "502 Bad Gateway: no target", linger);
            return Ok(true);
        };
        let mut ex = Exchange::start(&head, target, &mut self.in_flight, cx.now);
        ex.keep_alive &= self.drain_started.is_none();
        ex.affinity = affinity;
        let config = &self.config;
        let fwd = Forwarded {
            client: client.peer.ip(),
            host: config
                .change_origin
                .then_some(config.targets[target].authority.as_str()),
            target_authority: &config.targets[target].authority,
            upgrade: ex.upgrade,
            strip: config.strip_forwarded,
        };
        client.to_upstream.clear();
        client.to_upstream.extend_with(&mut self.scratch, |out| {
            ex.host = headers::write_request_head(out, &head, &fwd);
        });
        client.input.consume(len);
        client.exchange = Some(ex);
        if let Err(failure) = self.attach(cx, ck) {
            return self.fail(cx, ck, failure).map(|()| true);
        }
        Ok(true)
    }

    /// The target for a request with a sticky balance's key `affinity`: the balancer's
    /// pick among targets not marked down, other than `not` (the one that just failed).
    pub(super) fn pick(
        &mut self,
        now: Instant,
        not: Option<usize>,
        affinity: Option<u64>,
    ) -> Option<usize> {
        let (balancer, health) = (&mut self.balancer, &self.health);
        pick(balancer, health, &self.in_flight, now, not, affinity)
    }

    /// Gives client `ck`'s exchange a connection to its target: an idle one (pooled, or
    /// with `--send-proxy` the one parked with this client), or a new one. A connect that
    /// fails at once (no route, no descriptor left) is a [`Failure`] of that target.
    pub(super) fn attach(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<(), Failure> {
        let now = cx.now;
        let target = self.exchange(ck).target();
        let (uk, reused) = loop {
            let idle = match self.config.send_proxy {
                Some(_) => self.clients[ck].parked.take(),
                None => self.pool.take(target),
            };
            match idle {
                Some(uk) => {
                    let up = &mut self.upstreams[uk];
                    up.parked_by = None;
                    let fresh = now.duration_since(up.idle_since) <= POOL_IDLE_TIMEOUT;
                    if up.target == target && !up.eof && up.error.is_none() && fresh {
                        break (uk, true);
                    }
                    self.upstreams.remove(uk);
                }
                None => {
                    let addr = self.config.targets[target].addr;
                    let mut up = Upstream::connect(target, addr, now)
                        .map_err(|e| Failure::refused("connect", &e))?;
                    if let Some(version) = self.config.send_proxy {
                        let client = &mut self.clients[ck];
                        let (peer, local) = (client.peer, client.local());
                        up.proxy_header.extend_with(&mut self.scratch, |out| {
                            proxy_protocol::write(out, version, peer, local)
                        });
                    }
                    let entry = self.upstreams.vacant_entry();
                    let uk = entry.key();
                    let up = entry.insert(up);
                    let token = cx.token(UPSTREAM_TAG | uk);
                    if let Err(e) = cx.registry.register(
                        &mut up.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        self.upstreams.remove(uk);
                        return Err(Failure::io("register", &e));
                    }
                    break (uk, false);
                }
            }
        };
        self.upstreams[uk].client = Some(ck);
        let ex = self.exchange(ck);
        ex.upstream = Some(uk);
        ex.reused = reused;
        ex.wrote_upstream = false;
        ex.started = now;
        ex.last_progress = now;
        Ok(())
    }

    /// Moves the request of client `ck`'s exchange on: body bytes from the client's input to
    /// `to_upstream` (framed as they pass), and `to_upstream` to the target once connected.
    pub(super) fn send_request(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<Sent, Gone> {
        let limits = &self.config.limits;
        let client = &mut self.clients[ck];
        let ex = client.exchange.as_mut().expect("an exchange");
        let mut progressed = false;

        if !ex.request.is_done() && client.to_upstream.len() < CHUNK {
            let before = client.input.len();
            let pumped = ex.request.pump(
                &mut client.input,
                &mut client.to_upstream,
                &mut self.scratch,
                limits,
            );
            if let Err(e) = pumped {
                return self.refuse_body(cx, ck, e).map(|()| Sent::Waiting(true));
            }
            progressed |= client.input.len() != before;
        }
        if !ex.request.is_done() && client.eof && client.input.is_empty() {
            // The client went away mid-request: the upstream connection holds half a request
            // and can never be reused.
            log::debug!("proxy: client closed mid-request");
            return self.abort(cx, ck).map(Sent::Waiting);
        }

        let Some(uk) = ex.upstream else {
            return Ok(Sent::Waiting(progressed));
        };
        let up = &mut self.upstreams[uk];
        if let Some(e) = up.error.take() {
            let failure = if up.connected {
                Failure::io("connection failed", &e)
            } else {
                Failure::refused("connect", &e)
            };
            return self.fail(cx, ck, failure).map(|()| Sent::Waiting(true));
        }
        if !up.connected {
            return Ok(Sent::Waiting(progressed));
        }
        if !up.proxy_header.is_empty() {
            // Before any request byte. A failure here is a retry like any other: nothing of
            // the request reached the target.
            match up.proxy_header.write_to(&mut up.stream) {
                Ok(n) => progressed |= n > 0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => progressed = true,
                Err(e) => {
                    let failure = Failure::io("write", &e);
                    return self.fail(cx, ck, failure).map(|()| Sent::Waiting(true));
                }
            }
            if !up.proxy_header.is_empty() {
                return Ok(Sent::Waiting(progressed));
            }
        }
        if !client.to_upstream.is_empty() {
            match client.to_upstream.write_to(&mut up.stream) {
                Ok(n) => {
                    ex.wrote_upstream |= n > 0;
                    progressed |= n > 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => progressed = true,
                Err(e) => {
                    let failure = Failure::io("write", &e);
                    return self.fail(cx, ck, failure).map(|()| Sent::Waiting(true));
                }
            }
        }
        Ok(Sent::Connected(progressed))
    }
}

impl ProxyService {
    /// The request body of client `ck` broke its framing (a malformed chunk line, trailers
    /// without bound): the client gets the 4xx unless the response has begun, and the
    /// upstream connection, which may hold part of the request, is closed, never pooled.
    fn refuse_body(&mut self, cx: &mut Context<'_>, ck: usize, e: HttpError) -> Result<(), Gone> {
        log::debug!("proxy: invalid request body: {e}");
        let ended = self.end_exchange(ck).expect("an exchange");
        if let Some(uk) = ended.upstream {
            self.upstreams.remove(uk);
        }
        if ended.answered {
            self.close_client(cx, ck, true);
            return Err(Gone);
        }
        self.answer(cx, ck, e.status(), &e.to_string(), true);
        Ok(())
    }
}

/// [`ProxyService::pick`] on the fields it needs, for callers holding other borrows.
///
/// When every candidate is marked down, the one whose back-off ends first: a request is
/// answered 502 because its attempt failed, never only because of the marks.
fn pick(
    balancer: &mut Balancer,
    health: &[Health],
    in_flight: &InFlight,
    now: Instant,
    not: Option<usize>,
    affinity: Option<u64>,
) -> Option<usize> {
    let usable = |t| Some(t) != not && health[t].usable(now);
    balancer
        .pick(in_flight.counts(), usable, affinity)
        .or_else(|| {
            let soonest = (0..health.len())
                .filter(|&t| Some(t) != not)
                .min_by_key(|&t| health[t].down_until())?;
            log::warn!(
            "proxy: every target is marked down; trying target {soonest}, whose back-off ends first"
        );
            Some(soonest)
        })
}
