//! [`ProxyService`]: the reverse proxy as a worker [`Service`]: it owns the worker's client
//! connections, its upstream connections and pools, and moves every exchange forward when
//! one of their sockets is ready.
//!
//! One function, [`ProxyService::drive`], advances a client connection and the upstream
//! connection its exchange holds, in passes, until neither socket can make progress:
//!
//! ```text
//!   client ──read──▶ input ──head rewrite / body framing──▶ to_upstream ──write──▶ target
//!   client ◀─write── output ◀──head rewrite / body framing── upstream.input ◀──read── target
//! ```
//!
//! Every buffer is bounded ([`CHUNK`]): a full buffer stops the read that fills it, and the
//! socket's edge-triggered readiness is remembered (`can_read`) until there is room again.

use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

use super::balance::Balancer;
use super::body::BodyFramer;
use super::client::{Client, Exchange, Phase, ResponseState, CHUNK};
use super::headers::{self, ClientFraming, Forwarded};
use super::health::{Health, Verdict};
use super::upstream::{Pool, Upstream, POOL_IDLE_TIMEOUT};
use super::ProxyConfig;
use crate::http::{parse_head, parse_response_head, BodyKind, ChunkedDecoder, ResponseBody};
use crate::worker::{Context, Service};

/// The tag bit of an upstream connection's local token id; client ids have it clear.
const UPSTREAM_TAG: usize = 1 << 39;

/// What went wrong with a target, for the log line and the retry decision.
#[derive(Debug)]
struct Failure {
    cause: String,
    /// Nothing reached the target (connect refused or failed): always safe to retry.
    refused: bool,
    /// The response-head timeout: answered 504.
    timeout: bool,
}

impl Failure {
    fn io(what: &str, e: &std::io::Error) -> Failure {
        Failure {
            cause: format!("{what}: {e}"),
            refused: false,
            timeout: false,
        }
    }

    fn protocol(cause: String) -> Failure {
        Failure {
            cause,
            refused: false,
            timeout: false,
        }
    }
}

/// Target `target` answered: passive health marks it up again (and says so if it was down).
fn succeeded(health: &mut [Health], config: &ProxyConfig, target: usize) {
    if health[target].succeeded() {
        log::info!(
            "proxy: target {target} ({}) is back up",
            config.targets[target]
        );
    }
}

/// The `herd proxy` service of one worker. See the module documentation.
#[derive(Debug)]
pub struct ProxyService {
    config: Rc<ProxyConfig>,
    clients: Slab<Client>,
    upstreams: Slab<Upstream>,
    pool: Pool,
    balancer: Balancer,
    health: Vec<Health>,
    /// Requests in flight per target, from this worker (for least-connections and p2c).
    in_flight: Vec<u32>,
    /// Reused for formatting heads and decoding chunks.
    scratch: Vec<u8>,
    draining: bool,
}

impl ProxyService {
    /// A proxy for `config`'s targets. Each worker makes its own.
    pub fn new(config: ProxyConfig) -> ProxyService {
        let n = config.targets.len();
        let seed = u64::from(std::process::id()) ^ config.targets.len() as u64;
        ProxyService {
            balancer: Balancer::new(config.balance, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            config: Rc::new(config),
            clients: Slab::new(),
            upstreams: Slab::new(),
            pool: Pool::new(n),
            health: (0..n).map(|_| Health::default()).collect(),
            in_flight: vec![0; n],
            scratch: Vec::new(),
            draining: false,
        }
    }

    /// Advances client `ck` and its exchange until no socket can make progress.
    fn drive(&mut self, cx: &mut Context<'_>, ck: usize) {
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
        if client.phase == Phase::Tunnel {
            return Ok(self.tunnel(cx, ck)? || progressed);
        }
        if client.exchange.is_none() {
            return Ok(self.next_request(cx, ck)? || progressed);
        }
        Ok(self.forward(cx, ck)? || progressed)
    }

    /// Between exchanges: parses the next request head and starts its exchange.
    fn next_request(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        let client = &mut self.clients[ck];
        if client.input.is_empty() {
            if client.eof || (self.draining && client.output.is_empty()) {
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
                    let date = cx.date();
                    client.output.extend_with(&mut self.scratch, |out| {
                        headers::write_error(out, e.status(), &e.to_string(), date)
                    });
                    client.phase = Phase::Closing { linger: true };
                    return Ok(true);
                }
            };
        client.head_started = None;
        let now = cx.now;
        let picked = pick(&mut self.balancer, &self.health, &self.in_flight, now, None);
        let Some(target) = picked else {
            let down = format!("all {} targets are down", self.config.targets.len());
            log::warn!("proxy error: {down}");
            let message = format!("502 Bad Gateway: {down}");
            let linger = head.body != BodyKind::None;
            let date = cx.date();
            let client = &mut self.clients[ck];
            client.output.extend_with(&mut self.scratch, |out| {
                headers::write_error(out, 502, &message, date)
            });
            client.input.consume(len);
            client.phase = Phase::Closing { linger };
            return Ok(true);
        };
        let config = &self.config;
        let upgrade = headers::connection_has(head.headers, "upgrade");
        let fwd = Forwarded {
            client: client.peer,
            host: config
                .change_origin
                .then_some(config.targets[target].authority.as_str()),
            target_authority: &config.targets[target].authority,
            upgrade,
        };
        client.to_upstream.clear();
        let mut host = None;
        client.to_upstream.extend_with(&mut self.scratch, |out| {
            host = headers::write_request_head(out, &head, &fwd);
        });
        let request = match head.body {
            BodyKind::None => BodyFramer::Done,
            BodyKind::Length(n) => BodyFramer::Length(n),
            BodyKind::Chunked => BodyFramer::Chunked {
                decoder: ChunkedDecoder::new(),
                decode: false,
            },
        };
        client.exchange = Some(Exchange {
            target,
            upstream: None,
            attempts: 1,
            request,
            response: ResponseState::Head,
            is_head: head.is_head,
            idempotent: matches!(
                head.method,
                "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
            ),
            client_version: head.version,
            keep_alive: head.keep_alive && !self.draining,
            upgrade,
            upstream_keep_alive: false,
            reused: false,
            wrote_upstream: false,
            answered: false,
            started: now,
            last_progress: now,
            host,
        });
        client.input.consume(len);
        self.in_flight[target] += 1;
        if let Err(failure) = self.attach(cx, ck, target) {
            return self.fail(cx, ck, failure).map(|()| true);
        }
        Ok(true)
    }

    /// The target for a request: the balancer's pick among targets not marked down, other
    /// than `not` (the one that just failed).
    fn pick(&mut self, now: Instant, not: Option<usize>) -> Option<usize> {
        pick(&mut self.balancer, &self.health, &self.in_flight, now, not)
    }

    /// Gives client `ck`'s exchange a connection to `target`: an idle pooled one, or a new one.
    fn attach(&mut self, cx: &mut Context<'_>, ck: usize, target: usize) -> Result<(), Failure> {
        let now = cx.now;
        let (uk, reused) = loop {
            match self.pool.take(target) {
                Some(uk) if self.upstreams[uk].eof || self.upstreams[uk].error.is_some() => {
                    self.upstreams.remove(uk);
                }
                Some(uk) => break (uk, true),
                None => {
                    let up = Upstream::connect(target, self.config.targets[target].addr, now)
                        .map_err(|e| Failure {
                            cause: format!("connect: {e}"),
                            refused: true,
                            timeout: false,
                        })?;
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
        let ex = self.clients[ck].exchange.as_mut().expect("an exchange");
        ex.target = target;
        ex.upstream = Some(uk);
        ex.reused = reused;
        ex.wrote_upstream = false;
        ex.started = now;
        ex.last_progress = now;
        Ok(())
    }

    /// Moves the exchange of client `ck` forward in both directions.
    fn forward(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        let limits = &self.config.limits;
        let client = &mut self.clients[ck];
        let ex = client.exchange.as_mut().expect("an exchange");
        let mut progressed = false;

        // Request body: from the client's input to the upstream's queue.
        if !ex.request.is_done() && client.to_upstream.len() < CHUNK {
            let before = client.input.len();
            if ex
                .request
                .pump(
                    &mut client.input,
                    &mut client.to_upstream,
                    &mut self.scratch,
                    limits,
                )
                .is_err()
            {
                log::debug!("proxy: malformed chunked request body");
                return self.abort(cx, ck);
            }
            progressed |= client.input.len() != before;
        }
        if !ex.request.is_done() && client.eof && client.input.is_empty() {
            // The client went away mid-request: the upstream connection holds half a request
            // and can never be reused.
            log::debug!("proxy: client closed mid-request");
            return self.abort(cx, ck);
        }

        let Some(uk) = ex.upstream else {
            return Ok(progressed);
        };
        let up = &mut self.upstreams[uk];
        if let Some(e) = up.error.take() {
            let failure = if up.connected {
                Failure::io("connection failed", &e)
            } else {
                Failure {
                    cause: format!("connect: {e}"),
                    refused: true,
                    timeout: false,
                }
            };
            return self.fail(cx, ck, failure).map(|()| true);
        }
        if !up.connected {
            return Ok(progressed);
        }
        // Request bytes to the target.
        if !client.to_upstream.is_empty() {
            match client.to_upstream.write_to(&mut up.stream) {
                Ok(n) => {
                    ex.wrote_upstream |= n > 0;
                    progressed |= n > 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => progressed = true,
                Err(e) => return self.fail(cx, ck, Failure::io("write", &e)).map(|()| true),
            }
        }
        // Response bytes from the target, while the client keeps up.
        if up.can_read && !up.eof && up.input.len() < CHUNK && client.output.len() < CHUNK {
            match up.input.read_from(&mut up.stream, CHUNK) {
                Ok(0) => {
                    up.eof = true;
                    progressed = true;
                }
                Ok(n) => {
                    up.can_read = n == CHUNK || up.hup;
                    ex.last_progress = cx.now;
                    progressed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => up.can_read = false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => progressed = true,
                Err(e) => return self.fail(cx, ck, Failure::io("read", &e)).map(|()| true),
            }
        }

        // The head, and in the same pass the body bytes that came with it: the client then
        // gets head and body in one write (one segment, one wakeup) rather than two.
        if let ResponseState::Head = ex.response {
            let mut storage = [httparse::EMPTY_HEADER; 100];
            let parsed = parse_response_head(up.input.pending(), limits, &mut storage, ex.is_head);
            let (head, len) = match parsed {
                Ok(Some(parsed)) => parsed,
                Ok(None) if up.eof => {
                    let failure = Failure::protocol(if up.input.is_empty() {
                        "connection closed before a response".to_string()
                    } else {
                        "connection closed mid-response head".to_string()
                    });
                    return self.fail(cx, ck, failure).map(|()| true);
                }
                Ok(None) => return Ok(progressed),
                Err(e) => {
                    let failure = Failure::protocol(format!("invalid response: {e}"));
                    return self.fail(cx, ck, failure).map(|()| true);
                }
            };
            if head.status == 101 && ex.upgrade {
                client.output.extend_with(&mut self.scratch, |out| {
                    headers::write_response_head(
                        out,
                        &head,
                        ClientFraming::AsIs,
                        ex.client_version,
                        true,
                        true,
                    )
                });
                up.input.consume(len);
                ex.answered = true;
                client.phase = Phase::Tunnel;
                cx.answered(1);
                succeeded(&mut self.health, &self.config, ex.target);
                return Ok(true);
            }
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    let failure = Failure::protocol("101 to a request without Upgrade".into());
                    return self.fail(cx, ck, failure).map(|()| true);
                }
                // Interim responses (100 Continue, 103) pass through to HTTP/1.1 clients.
                if ex.client_version == 1 {
                    client.output.extend(&up.input.pending()[..len]);
                }
                up.input.consume(len);
                return Ok(true);
            }
            let (framing, framer, keep_alive) = match head.body {
                ResponseBody::None => (ClientFraming::AsIs, BodyFramer::Done, true),
                ResponseBody::Length(n) => (ClientFraming::AsIs, BodyFramer::Length(n), true),
                ResponseBody::Chunked => {
                    let decode = ex.client_version == 0;
                    let framing = if decode {
                        ClientFraming::UntilClose
                    } else {
                        ClientFraming::Chunked
                    };
                    let decoder = ChunkedDecoder::new();
                    (framing, BodyFramer::Chunked { decoder, decode }, !decode)
                }
                ResponseBody::UntilClose => {
                    (ClientFraming::UntilClose, BodyFramer::UntilClose, false)
                }
            };
            ex.keep_alive &= keep_alive && !self.draining;
            ex.upstream_keep_alive = head.keep_alive;
            client.output.extend_with(&mut self.scratch, |out| {
                headers::write_response_head(
                    out,
                    &head,
                    framing,
                    ex.client_version,
                    ex.keep_alive,
                    false,
                )
            });
            up.input.consume(len);
            ex.answered = true;
            ex.response = ResponseState::Body(framer);
            succeeded(&mut self.health, &self.config, ex.target);
            progressed = true;
        }
        let ResponseState::Body(framer) = &mut ex.response else {
            unreachable!("the head was handled above");
        };
        if client.output.len() < CHUNK && !up.input.is_empty() {
            if let Err(e) =
                framer.pump(&mut up.input, &mut client.output, &mut self.scratch, limits)
            {
                let failure = Failure::protocol(format!("invalid response body: {e}"));
                return self.fail(cx, ck, failure).map(|()| true);
            }
            progressed = true;
        }
        if !framer.is_done() && up.eof && up.input.is_empty() && !framer.finish_at_eof() {
            let failure = Failure::protocol("connection closed mid-response".into());
            return self.fail(cx, ck, failure).map(|()| true);
        }
        if framer.is_done() {
            if ex.request.is_done() {
                self.complete(cx, ck);
                return Ok(true);
            }
            // Answered before the whole request arrived (an early 413, say): the rest
            // of the request is never read, so neither connection can be reused.
            ex.upstream_keep_alive = false;
            ex.keep_alive = false;
            self.complete(cx, ck);
            self.clients[ck].phase = Phase::Closing { linger: true };
            return Ok(true);
        }
        Ok(progressed)
    }

    /// The exchange of client `ck` is over: the upstream goes back to the pool (or is
    /// closed), and the client connection moves on to its next request or closes.
    fn complete(&mut self, cx: &mut Context<'_>, ck: usize) {
        let client = &mut self.clients[ck];
        let ex = client.exchange.take().expect("an exchange");
        self.in_flight[ex.target] -= 1;
        client.requests += 1;
        client.to_upstream.clear();
        if !ex.keep_alive {
            let linger = !client.input.is_empty();
            client.phase = Phase::Closing { linger };
        }
        cx.answered(1);
        if let Some(uk) = ex.upstream {
            let up = &mut self.upstreams[uk];
            up.client = None;
            up.requests += 1;
            up.idle_since = cx.now;
            let reusable = ex.upstream_keep_alive
                && up.input.is_empty()
                && !up.eof
                && !self.draining
                && self.pool.put(ex.target, uk);
            if !reusable {
                self.upstreams.remove(uk);
            }
        }
    }

    /// A target failed client `ck`'s exchange: log it, count it against the target, then
    /// retry on the next target, answer 502/504, or close the client connection.
    fn fail(&mut self, cx: &mut Context<'_>, ck: usize, failure: Failure) -> Result<(), Gone> {
        let now = cx.now;
        let mut failure = failure;
        loop {
            let ex = self.clients[ck].exchange.as_mut().expect("an exchange");
            let target = ex.target;
            let t = &self.config.targets[target];
            log::warn!("proxy error: {} (target {target}: {t})", failure.cause);
            if let Verdict::Down(backoff) = self.health[target].failed(now) {
                log::warn!(
                    "proxy: target {target} ({t}) marked down for {}s",
                    backoff.as_secs_f64()
                );
            }
            if let Some(uk) = ex.upstream.take() {
                self.upstreams.remove(uk);
            }
            let not_in_response = matches!(ex.response, ResponseState::Head) && !ex.answered;
            let retry = ex.attempts < 2
                && not_in_response
                && !failure.timeout
                && (failure.refused || !ex.wrote_upstream || (ex.reused && ex.idempotent));
            if retry && self.clients[ck].to_upstream.rewind() {
                if let Some(next) = self.pick(now, Some(target)) {
                    let client = &mut self.clients[ck];
                    let ex = client.exchange.as_mut().expect("an exchange");
                    if let Some(range) = ex.host.take() {
                        // The head named the failed target as Host: name the next one.
                        let authority = self.config.targets[next].authority.as_bytes();
                        client.to_upstream.splice(range.clone(), authority);
                        ex.host = Some(range.start..range.start + authority.len());
                    }
                    ex.attempts += 1;
                    self.in_flight[target] -= 1;
                    self.in_flight[next] += 1;
                    match self.attach(cx, ck, next) {
                        Ok(()) => return Ok(()),
                        Err(f) => {
                            failure = f;
                            continue;
                        }
                    }
                }
            }
            let ex = self.clients[ck].exchange.take().expect("an exchange");
            self.in_flight[ex.target] -= 1;
            let client = &mut self.clients[ck];
            if ex.answered {
                // Part of the response is out: only closing (with a reset) tells the client
                // it is incomplete.
                self.close_client(cx, ck, true);
                return Err(Gone);
            }
            let (status, message) = if failure.timeout {
                (
                    504,
                    "504 Gateway Timeout: the target did not answer in time",
                )
            } else {
                (502, "502 Bad Gateway: the target failed to answer")
            };
            let date = cx.date();
            client.output.extend_with(&mut self.scratch, |out| {
                headers::write_error(out, status, message, date)
            });
            client.phase = Phase::Closing {
                linger: !ex.request.is_done() || !client.input.is_empty(),
            };
            return Ok(());
        }
    }

    /// A tunnel (after `101 Switching Protocols`): bytes both ways, unchanged, until one side
    /// closes; then what is buffered is flushed to the other side and both are closed.
    fn tunnel(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        let client = &mut self.clients[ck];
        let Some(uk) = client.exchange.as_ref().and_then(|ex| ex.upstream) else {
            self.close_client(cx, ck, false);
            return Err(Gone);
        };
        let up = &mut self.upstreams[uk];
        let mut progressed = false;
        let mut broken = up.error.is_some();
        // Client to target, straight from the client's input buffer.
        if !client.input.is_empty() {
            match client.input.write_to(&mut up.stream) {
                Ok(n) => progressed |= n > 0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => broken = true,
            }
        }
        // Target to client, through the client's output buffer.
        if up.can_read && !up.eof && client.output.len() < CHUNK {
            match up.input.read_from(&mut up.stream, CHUNK) {
                Ok(0) => up.eof = true,
                Ok(n) => up.can_read = n == CHUNK || up.hup,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => up.can_read = false,
                Err(_) => broken = true,
            }
            client.output.extend(up.input.pending());
            up.input.clear();
            progressed = true;
        }
        if broken || up.eof || (client.eof && client.input.is_empty()) {
            // Either side closed: flush to the client what the target sent, and finish.
            if let Some(ex) = client.exchange.take() {
                self.in_flight[ex.target] -= 1;
            }
            self.upstreams.remove(uk);
            client.phase = Phase::Closing { linger: false };
            return Ok(true);
        }
        Ok(progressed)
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
    fn abort(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
        self.close_client(cx, ck, false);
        Err(Gone)
    }

    /// Closes client `ck`; `reset` sends RST instead of FIN, so that a client reading a body
    /// delimited by the close cannot take a truncated body for a complete one.
    fn close_client(&mut self, cx: &mut Context<'_>, ck: usize, reset: bool) {
        let client = self.clients.remove(ck);
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
        if let Some(ex) = client.exchange {
            self.in_flight[ex.target] -= 1;
            if let Some(uk) = ex.upstream {
                // Half an exchange on it: never reusable.
                self.upstreams.remove(uk);
            }
        }
        // Closing the fds removes them from epoll.
        cx.closed();
    }

    /// An event on a pooled (idle) upstream connection: the target closed it, or sent bytes
    /// nobody asked for. Either way it is closed.
    fn idle_upstream_event(&mut self, uk: usize) {
        let up = &mut self.upstreams[uk];
        let mut sink = [0u8; 512];
        match std::io::Read::read(&mut up.stream, &mut sink) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => {
                let target = up.target;
                self.pool.remove(target, uk);
                self.upstreams.remove(uk);
            }
        }
    }

    /// The timeout rules for client `ck` at `now`.
    fn expire(&mut self, cx: &mut Context<'_>, ck: usize) {
        let now = cx.now;
        let timeout = self.config.upstream_timeout;
        let t = self.config.timeouts;
        let client = &self.clients[ck];
        let stalled_write =
            !client.output.is_empty() && now.duration_since(client.last_progress) > t.write;
        match client.phase {
            Phase::Lingering if now.duration_since(client.last_progress) > t.linger => {
                self.close_client(cx, ck, false)
            }
            _ if stalled_write => self.close_client(cx, ck, false),
            Phase::Tunnel
                if now.duration_since(client.last_progress) > self.config.tunnel_timeout =>
            {
                // Every byte either way moves the client's last_progress (a read for one
                // direction, a write for the other).
                log::info!(
                    "proxy: tunnel idle for {}s, closed",
                    self.config.tunnel_timeout.as_secs_f64()
                );
                self.close_client(cx, ck, false)
            }
            Phase::Open => match &client.exchange {
                Some(ex) => {
                    let waiting = matches!(ex.response, ResponseState::Head);
                    if waiting && now.duration_since(ex.started) > timeout {
                        let failure = Failure {
                            cause: format!("no response within {}s", timeout.as_secs_f64()),
                            refused: false,
                            timeout: true,
                        };
                        if self.fail(cx, ck, failure).is_ok() {
                            self.drive(cx, ck);
                        }
                    } else if !waiting && now.duration_since(ex.last_progress) > timeout {
                        let target = ex.target;
                        log::warn!(
                            "proxy error: response stalled for {}s (target {target}: {})",
                            timeout.as_secs_f64(),
                            self.config.targets[target]
                        );
                        self.close_client(cx, ck, true);
                    }
                }
                None => {
                    if let Some(started) = client.head_started {
                        if now.duration_since(started) > t.request {
                            let date = cx.date();
                            let client = &mut self.clients[ck];
                            client.output.extend_with(&mut self.scratch, |out| {
                                headers::write_error(out, 408, "408 Request Timeout", date)
                            });
                            client.phase = Phase::Closing { linger: true };
                            self.drive(cx, ck);
                        }
                    } else if client.input.is_empty() {
                        let (since, limit) = if client.requests == 0 {
                            (client.opened, t.request)
                        } else {
                            (client.last_progress, t.keep_alive)
                        };
                        if now.duration_since(since) > limit {
                            self.close_client(cx, ck, false);
                        }
                    }
                }
            },
            _ => {}
        }
    }
}

/// The client connection was closed during the call.
struct Gone;

/// [`ProxyService::pick`] on the fields it needs, for callers holding other borrows.
fn pick(
    balancer: &mut Balancer,
    health: &[Health],
    in_flight: &[u32],
    now: Instant,
    not: Option<usize>,
) -> Option<usize> {
    balancer.pick(in_flight, |t| Some(t) != not && health[t].usable(now))
}

impl Service for ProxyService {
    fn accept(&mut self, cx: &mut Context<'_>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let ck = self.clients.insert(Client::new(stream, cx.now));
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
        self.draining = true;
        let idle: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.is_idle())
            .map(|(k, _)| k)
            .collect();
        for ck in idle {
            self.close_client(cx, ck, false);
        }
        for (_, client) in self.clients.iter_mut() {
            if let Some(ex) = client.exchange.as_mut() {
                ex.keep_alive = false;
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
