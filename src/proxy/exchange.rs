//! [`Exchange`]: one request being forwarded and its response, from the parsed head to the
//! last body byte, and [`InFlight`], the per-target count of exchanges the balancer reads.
//!
//! An exchange names the target it is forwarded to, and that target's in-flight count
//! includes it, for the whole of its life: [`Exchange::start`] counts it in,
//! [`Exchange::retarget`] moves it (a retry), [`Exchange::end`] counts it out. The target is
//! private to this file, so no other code can change one without the other: a retry whose
//! connect fails at once is then blamed on the target it was moved to, and no count is
//! decremented twice.

use std::ops::Range;
use std::time::Instant;

use super::body::BodyFramer;
use super::headers::connection_has;
use crate::http::{BodyKind, ChunkedDecoder, Head};

/// Exchanges in progress per target, from this worker (the load that least-connections and
/// power-of-two-choices compare). Changed only by [`Exchange`]'s life cycle.
#[derive(Debug)]
pub(crate) struct InFlight(Vec<u32>);

impl InFlight {
    /// No exchange in flight to any of `targets`.
    pub fn new(targets: usize) -> InFlight {
        InFlight(vec![0; targets])
    }

    /// The count per target, indexed by target.
    pub fn counts(&self) -> &[u32] {
        &self.0
    }
}

/// The response of an exchange, as far as it has come.
#[derive(Debug)]
pub(crate) enum ResponseState {
    /// Waiting for the (final) response head.
    Head,
    /// Forwarding the body.
    Body(BodyFramer),
}

/// One request being forwarded and its response.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The target it is forwarded to; counted in [`InFlight`] while the exchange lives.
    target: usize,
    /// The upstream connection (key in the service's upstream slab).
    pub upstream: Option<usize>,
    /// Targets tried so far (1, or 2 after a retry).
    pub attempts: u8,
    /// The rest of the request body.
    pub request: BodyFramer,
    pub response: ResponseState,
    /// The request was `HEAD` (its response has no body).
    pub is_head: bool,
    /// The method may be sent twice (RFC 9110 §9.2.2): a request on a pooled connection
    /// that the target closed before answering is retried only then.
    pub idempotent: bool,
    /// The client's HTTP minor version.
    pub client_version: u8,
    /// The client connection stays open after this exchange.
    pub keep_alive: bool,
    /// The request asked for `Connection: Upgrade`.
    pub upgrade: bool,
    /// The upstream connection may be reused after the response (its keep-alive).
    pub upstream_keep_alive: bool,
    /// The upstream connection came from the pool.
    pub reused: bool,
    /// Some byte of the request was written to the current upstream.
    pub wrote_upstream: bool,
    /// The response head went to the client: a failure now can only close the connection.
    pub answered: bool,
    /// When the current attempt started (the response-head timeout counts from here).
    pub started: Instant,
    /// Last time response bytes arrived.
    pub last_progress: Instant,
    /// Where the request head in `to_upstream` names the target as its `Host`
    /// (`--change-origin`, or an HTTP/1.0 request without one): a retry on another target
    /// rewrites it there.
    pub host: Option<Range<usize>>,
    /// The key a sticky balance hashed for this request: a retry goes to its second-best
    /// target, where its later requests go while the first is marked down.
    pub affinity: Option<u64>,
}

impl Exchange {
    /// The exchange of request `head`, forwarded to `target` (counted in `in_flight`).
    pub fn start(
        head: &Head<'_, '_>,
        target: usize,
        in_flight: &mut InFlight,
        now: Instant,
    ) -> Exchange {
        in_flight.0[target] += 1;
        let request = match head.body {
            BodyKind::None => BodyFramer::Done,
            BodyKind::Length(n) => BodyFramer::Length(n),
            BodyKind::Chunked => BodyFramer::Chunked {
                decoder: ChunkedDecoder::new(),
                decode: false,
            },
        };
        Exchange {
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
            keep_alive: head.keep_alive,
            // HTTP/1.0 has no Upgrade (RFC 9110 §7.8: a server ignores it in 1.0 requests).
            upgrade: head.version == 1 && connection_has(head.headers, "upgrade"),
            upstream_keep_alive: false,
            reused: false,
            wrote_upstream: false,
            answered: false,
            started: now,
            last_progress: now,
            host: None,
            affinity: None,
        }
    }

    /// The target the exchange is forwarded to.
    pub fn target(&self) -> usize {
        self.target
    }

    /// A retry: the exchange, and its place in the in-flight counts, move to `next`.
    pub fn retarget(&mut self, next: usize, in_flight: &mut InFlight) {
        in_flight.0[self.target] -= 1;
        in_flight.0[next] += 1;
        self.target = next;
        self.attempts += 1;
    }

    /// The exchange is over (answered, failed or abandoned): it leaves the in-flight counts.
    /// Taking `self` makes ending it twice impossible; what the caller still needs to know
    /// comes back as [`Ended`].
    pub fn end(self, in_flight: &mut InFlight) -> Ended {
        in_flight.0[self.target] -= 1;
        Ended {
            target: self.target,
            upstream: self.upstream,
            answered: self.answered,
            request_done: self.request.is_done(),
            keep_alive: self.keep_alive,
            upstream_keep_alive: self.upstream_keep_alive,
        }
    }
}

/// What is left of an [`Exchange`] once it ended: what decides the fate of its two
/// connections.
#[derive(Debug)]
pub(crate) struct Ended {
    /// The target it was last forwarded to.
    pub target: usize,
    /// The upstream connection it held, to pool or close.
    pub upstream: Option<usize>,
    /// Part of the response went to the client.
    pub answered: bool,
    /// The whole request was read from the client.
    pub request_done: bool,
    /// The client connection may carry another request.
    pub keep_alive: bool,
    /// The upstream connection may carry another request.
    pub upstream_keep_alive: bool,
}
