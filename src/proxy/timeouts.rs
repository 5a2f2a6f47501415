//! The time limits of a client connection and its exchange, applied on the worker's tick:
//! which one a connection is under depends on where it is in its life.
//!
//! | Where                                   | Limit                                  | Then            |
//! |-----------------------------------------|----------------------------------------|-----------------|
//! | PROXY protocol header arriving          | `--proxy-protocol-timeout` from arrival | close, counted |
//! | lingering close                         | `Timeouts::linger`                     | close           |
//! | output waiting, client not reading      | `Timeouts::write`                      | close           |
//! | tunnel carrying nothing                 | `--tunnel-timeout`                     | close both      |
//! | waiting for the response head           | `--upstream-timeout` from the attempt  | 504 (a failure) |
//! | response body stalled                   | `--upstream-timeout` without a byte    | reset           |
//! | request head arriving                   | `Timeouts::request`                    | 408             |
//! | connected, nothing sent yet             | `Timeouts::request` (draining: grace)  | 408 (draining: close) |
//! | idle between keep-alive requests        | `Timeouts::keep_alive` (draining: grace) | close         |
//!
//! The client-side limits come from [`Config::timeouts`](super::Config::timeouts),
//! the same [`Timeouts`](crate::http::Timeouts) value `herd serve` applies, with the same
//! drain rules: once the worker drains, a connection that has sent nothing yet, or sits idle
//! after a response, gets `drain_grace` to send a request (answered with
//! `Connection: close`) before it is closed.

use super::client::Phase;
use super::exchange::ResponseState;
use super::failure::Failure;
use super::service::ProxyService;
use crate::worker::Context;

impl ProxyService {
    /// Applies the time limit client `ck` is under at `cx.now`.
    pub(super) fn expire(&mut self, cx: &mut Context<'_>, ck: usize) {
        let now = cx.now;
        let upstream_timeout = self.config.upstream_timeout;
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
            Phase::ProxyHeader
                if now.duration_since(client.opened) > self.config.proxy_protocol_timeout =>
            {
                let _ = self.refuse_proxy_header(cx, ck, "no whole PROXY protocol header in time");
            }
            Phase::Open => match &client.exchange {
                Some(ex) => {
                    let waiting = matches!(ex.response, ResponseState::Head);
                    if waiting && now.duration_since(ex.started) > upstream_timeout {
                        let failure = Failure::timeout(format!(
                            "no response within {}s",
                            upstream_timeout.as_secs_f64()
                        ));
                        if self.fail(cx, ck, failure).is_ok() {
                            self.drive(cx, ck);
                        }
                    } else if !waiting && now.duration_since(ex.last_progress) > upstream_timeout {
                        let target = ex.target();
                        log::warn!(
                            "proxy error: response stalled for {}s (target {target}: {}), client {}",
                            upstream_timeout.as_secs_f64(),
                            self.config.targets[target],
                            client.peer
                        );
                        self.close_client(cx, ck, true);
                    }
                }
                None => self.expire_between_requests(cx, ck),
            },
            _ => {}
        }
    }

    /// The limits of a client connection with no exchange: a head arriving too slowly, a
    /// connection that sends nothing, an idle keep-alive connection (`herd serve`'s rules).
    fn expire_between_requests(&mut self, cx: &mut Context<'_>, ck: usize) {
        let now = cx.now;
        let t = self.config.timeouts;
        let client = &self.clients[ck];
        if let Some(started) = client.head_started {
            if now.duration_since(started) > t.request {
                self.answer(cx, ck, 408, "408 Request Timeout", true);
                self.drive(cx, ck);
            }
            return;
        }
        if !client.input.is_empty() {
            return;
        }
        let draining = self.drain_started.is_some();
        if client.requests == 0 {
            // Nothing received yet: the request timeout applies from the connection's
            // arrival; while draining, only a short grace, from the arrival or the start of
            // the drain, whichever is later (a connection that arrived long before the drain
            // may have its request on the wire as the drain begins).
            let (limit, since) = match self.drain_started {
                Some(started) => (t.drain_grace, client.opened.max(started)),
                None => (t.request, client.opened),
            };
            if now.duration_since(since) > limit {
                if draining {
                    self.close_client(cx, ck, false);
                } else {
                    self.answer(cx, ck, 408, "408 Request Timeout", false);
                    self.drive(cx, ck);
                }
            }
            return;
        }
        let expired = match self.drain_started {
            Some(started) => {
                let idle_since = client.last_progress.max(started);
                now.duration_since(idle_since) >= t.drain_grace
            }
            None => now.duration_since(client.last_progress) >= t.keep_alive,
        };
        if expired {
            self.close_client(cx, ck, false);
        }
    }
}
