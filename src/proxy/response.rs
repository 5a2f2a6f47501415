//! The response side of an exchange: bytes read from the target, the response head parsed
//! and rewritten for the client (interim `1xx` heads passed on or dropped, `101` turning the
//! connection into a tunnel), the body framed back as it streams, and the end of the
//! exchange: the upstream connection back to the pool or closed, the client connection on
//! to its next request or closed.

use super::body::BodyFramer;
use super::client::{Phase, CHUNK};
use super::exchange::ResponseState;
use super::failure::Failure;
use super::headers::{self, ClientFraming};
use super::service::{Gone, ProxyService};
use crate::http::{parse_response_head, ChunkedDecoder, ResponseBody};
use crate::worker::Context;

impl ProxyService {
    /// Moves the response of client `ck`'s exchange on; its upstream is connected.
    pub(super) fn receive_response(
        &mut self,
        cx: &mut Context<'_>,
        ck: usize,
    ) -> Result<bool, Gone> {
        let limits = &self.config.limits;
        let client = &mut self.clients[ck];
        let ex = client.exchange.as_mut().expect("an exchange");
        let uk = ex.upstream.expect("a connected upstream");
        let up = &mut self.upstreams[uk];
        let mut progressed = false;
        // Where the response head went in the client's output, if it went there in this call.
        let mut head_at = None;

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
                        ClientFraming::NoBody,
                        ex.client_version,
                        true,
                        true,
                    )
                });
                up.input.consume(len);
                ex.answered = true;
                client.phase = Phase::Tunnel;
                cx.answered(1);
                let target = ex.target();
                self.target_answered(target);
                return Ok(true);
            }
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    let failure = Failure::protocol("101 to a request without Upgrade".into());
                    return self.fail(cx, ck, failure).map(|()| true);
                }
                // Interim responses (100 Continue, 103 Early Hints) go on to HTTP/1.1
                // clients, rewritten like any head; an HTTP/1.0 client knows none of them
                // (RFC 9110 §15.2): dropped. The final response follows.
                if ex.client_version == 1 {
                    client.output.extend_with(&mut self.scratch, |out| {
                        headers::write_interim_head(out, &head)
                    });
                }
                up.input.consume(len);
                return Ok(true);
            }
            let (framing, framer, keep_alive) = match head.body {
                ResponseBody::None => (ClientFraming::NoBody, BodyFramer::Done, true),
                ResponseBody::Length(n) => (ClientFraming::Length(n), BodyFramer::Length(n), true),
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
            ex.keep_alive &= keep_alive && self.drain_started.is_none();
            ex.upstream_keep_alive = head.keep_alive;
            head_at = Some(client.output.len());
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
            progressed = true;
        }
        Ok(self.forward_body(cx, ck, head_at)? || progressed)
    }

    /// The response body of client `ck`'s exchange, from the upstream's input to the client's
    /// output as far as the framing allows; completes the exchange at its end.
    ///
    /// `head_at` is set when the head was queued in this same call, at that offset of the
    /// client's output: nothing of the response has reached the client yet, so a body that
    /// breaks its framing at once takes the head back, and the client gets a clean 502
    /// instead of a truncated response. Only then does the target count as having answered.
    fn forward_body(
        &mut self,
        cx: &mut Context<'_>,
        ck: usize,
        head_at: Option<usize>,
    ) -> Result<bool, Gone> {
        let limits = &self.config.limits;
        let client = &mut self.clients[ck];
        let ex = client.exchange.as_mut().expect("an exchange");
        let up = &mut self.upstreams[ex.upstream.expect("an upstream")];
        let ResponseState::Body(framer) = &mut ex.response else {
            unreachable!("the head comes first");
        };
        let mut progressed = false;
        let mut broken = None;
        if client.output.len() < CHUNK && !up.input.is_empty() {
            if let Err(e) =
                framer.pump(&mut up.input, &mut client.output, &mut self.scratch, limits)
            {
                broken = Some(format!("invalid response body: {e}"));
            }
            progressed = true;
        }
        if broken.is_none()
            && !framer.is_done()
            && up.eof
            && up.input.is_empty()
            && !framer.finish_at_eof()
        {
            broken = Some("connection closed mid-response".into());
        }
        if let Some(cause) = broken {
            if let Some(at) = head_at {
                client.output.truncate(at);
                ex.answered = false;
                ex.response = ResponseState::Head;
            }
            return self.fail(cx, ck, Failure::protocol(cause)).map(|()| true);
        }
        if head_at.is_some() {
            let target = ex.target();
            self.target_answered(target);
        }
        let client = &mut self.clients[ck];
        let ex = client.exchange.as_mut().expect("an exchange");
        let ResponseState::Body(framer) = &ex.response else {
            unreachable!("the head comes first");
        };
        if framer.is_done() {
            if !ex.request.is_done() {
                // Answered before the whole request arrived (an early 413, say): the rest
                // of the request is never read, so neither connection can be reused.
                ex.upstream_keep_alive = false;
                ex.keep_alive = false;
                self.complete(cx, ck);
                self.clients[ck].phase = Phase::Closing { linger: true };
                return Ok(true);
            }
            self.complete(cx, ck);
            return Ok(true);
        }
        Ok(progressed)
    }

    /// The exchange of client `ck` is over: the upstream goes back to the pool (or is
    /// closed), and the client connection moves on to its next request or closes.
    fn complete(&mut self, cx: &mut Context<'_>, ck: usize) {
        let ended = self.end_exchange(ck).expect("an exchange");
        let client = &mut self.clients[ck];
        client.requests += 1;
        client.to_upstream.clear();
        if !ended.keep_alive {
            let linger = !client.input.is_empty();
            client.phase = Phase::Closing { linger };
        }
        cx.answered(1);
        if let Some(uk) = ended.upstream {
            let up = &mut self.upstreams[uk];
            up.client = None;
            up.requests += 1;
            up.idle_since = cx.now;
            let reusable = ended.upstream_keep_alive
                && up.input.is_empty()
                && !up.eof
                && self.drain_started.is_none();
            let kept = match self.config.send_proxy {
                // Its PROXY header names this client: only this client may use it again.
                Some(_) if reusable && ended.keep_alive => {
                    up.parked_by = Some(ck);
                    self.clients[ck].parked = Some(uk);
                    true
                }
                Some(_) => false,
                None => reusable && self.pool.put(ended.target, uk),
            };
            if !kept {
                self.upstreams.remove(uk);
            }
        }
    }

    /// A response head came from `target`: passive health marks it up again (and says so if
    /// it was down).
    fn target_answered(&mut self, target: usize) {
        if self.health[target].succeeded() {
            log::info!(
                "proxy: target {target} ({}) is back up",
                self.config.targets[target]
            );
        }
    }
}
