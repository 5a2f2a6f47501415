//! A target failed an exchange: [`Failure`] says how, and [`ProxyService::fail`] decides
//! what follows: the failure is logged and counted against the target (passive health),
//! then the request is retried once on another target when that is safe, or the client gets
//! `502`/`504`, or, if part of the response already went out, its connection is reset.
//!
//! A retry is safe when the target cannot have acted on the request: nothing reached it (the
//! connect failed), nothing was written yet, or a pooled connection that the target had
//! closed failed an idempotent request (RFC 9110 §9.2.2). It is possible only while the
//! whole request is still in `to_upstream`.

use super::exchange::ResponseState;
use super::health::Verdict;
use super::service::{Gone, ProxyService};
use crate::worker::Context;

/// What went wrong with a target, for the log line and the retry decision.
#[derive(Debug)]
pub(super) struct Failure {
    pub cause: String,
    /// Nothing reached the target (connect refused or failed): always safe to retry.
    pub refused: bool,
    /// The response-head timeout: answered 504.
    pub timeout: bool,
}

impl Failure {
    /// An I/O error on a connection that reached the target.
    pub fn io(what: &str, e: &std::io::Error) -> Failure {
        Failure {
            cause: format!("{what}: {e}"),
            refused: false,
            timeout: false,
        }
    }

    /// A connect that failed, at once or later: nothing reached the target.
    pub fn refused(what: &str, e: &std::io::Error) -> Failure {
        Failure {
            refused: true,
            ..Failure::io(what, e)
        }
    }

    /// The target broke HTTP (an invalid head, a truncated body).
    pub fn protocol(cause: String) -> Failure {
        Failure {
            cause,
            refused: false,
            timeout: false,
        }
    }

    /// No response head within the upstream timeout.
    pub fn timeout(cause: String) -> Failure {
        Failure {
            cause,
            refused: false,
            timeout: true,
        }
    }
}

impl ProxyService {
    /// A target failed client `ck`'s exchange: log it, count it against the target, then
    /// retry on the next target, answer 502/504, or close the client connection.
    ///
    /// The exchange always names the target that failed: a retry moves it to the next one
    /// before connecting ([`Exchange::retarget`](super::exchange::Exchange::retarget)), so a
    /// connect that fails at once comes back here as that target's failure.
    pub(super) fn fail(
        &mut self,
        cx: &mut Context<'_>,
        ck: usize,
        failure: Failure,
    ) -> Result<(), Gone> {
        let now = cx.now;
        let mut failure = failure;
        loop {
            let ex = self.exchange(ck);
            let target = ex.target();
            let t = &self.config.targets[target];
            let client = self.clients[ck].peer;
            log::warn!(
                "proxy error: {} (target {target}: {t}), client {client}",
                failure.cause
            );
            if let Verdict::Down(backoff) = self.health[target].failed(now) {
                log::warn!(
                    "proxy: target {target} ({t}) marked down for {}s",
                    backoff.as_secs_f64()
                );
            }
            let ex = self.exchange(ck);
            if let Some(uk) = ex.upstream.take() {
                self.upstreams.remove(uk);
            }
            let ex = self.exchange(ck);
            let not_in_response = matches!(ex.response, ResponseState::Head) && !ex.answered;
            // Another target may take it when nothing of it reached this one, or when it is
            // idempotent (RFC 9110 §9.2.2: sending it twice does no harm) and no byte of the
            // response came back: the connection failed under it (a pooled one the target
            // had closed, or a target killed mid-request), as nginx's `proxy_next_upstream
            // error` does.
            let retry = ex.attempts < 2
                && not_in_response
                && !failure.timeout
                && (failure.refused || !ex.wrote_upstream || ex.idempotent);
            let affinity = ex.affinity;
            if retry && self.clients[ck].to_upstream.rewind() {
                if let Some(next) = self.pick(now, Some(target), affinity) {
                    let client = &mut self.clients[ck];
                    let ex = client.exchange.as_mut().expect("an exchange");
                    ex.retarget(next, &mut self.in_flight);
                    if let Some(range) = ex.host.take() {
                        // The head named the failed target as Host: name the next one.
                        let authority = self.config.targets[next].authority.as_bytes();
                        client.to_upstream.splice(range.clone(), authority);
                        ex.host = Some(range.start..range.start + authority.len());
                    }
                    match self.attach(cx, ck) {
                        Ok(()) => return Ok(()),
                        Err(f) => {
                            failure = f;
                            continue;
                        }
                    }
                }
            }
            let ended = self.end_exchange(ck).expect("an exchange");
            if ended.answered {
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
            let linger = !ended.request_done || !self.clients[ck].input.is_empty();
            self.answer(cx, ck, status, message, linger);
            return Ok(());
        }
    }
}
