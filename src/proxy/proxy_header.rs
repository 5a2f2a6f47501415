//! The PROXY protocol on both sides of the proxy ([`proxy_protocol`] parses and writes it).
//!
//! **In** (`--proxy-protocol`): behind an L4 balancer, every client connection's peer is
//! the balancer, and the header the balancer writes first is the only place the client's
//! address survives. A connection starts in [`Phase::ProxyHeader`]: what it sends is parsed
//! as a header, never as HTTP, until the header is complete; its source is then the client
//! for `X-Forwarded-For`, the logs and `--send-proxy`. A connection that sends anything
//! else, a header out of bounds, or not all of one within `--proxy-protocol-timeout` is
//! closed without an answer and counted; nothing of it reaches a target. A v2 `LOCAL` (the
//! balancer's health check) keeps the socket's own addresses.
//!
//! **Out** (`--send-proxy v1|v2`): each new upstream connection starts with a header naming
//! the client, written before any request byte ([`Upstream::proxy_header`]). The header
//! belongs to the connection, not to a request, so a connection that carried it can never
//! carry another client's request: the backend would take that client for this one. Such a
//! connection is therefore never pooled: after its exchange it stays parked with the client
//! connection that opened it ([`Client::parked`]), reused by that client's next request to
//! the same target, and closed with the client (or when the next request goes elsewhere,
//! which keeps the worker's budget at two descriptors per client). Keep-alive to the target
//! then lasts as long as the client's own keep-alive; clients that send one request per
//! connection cost one upstream connect each. HAProxy comes to the same: it reuses a server
//! connection only for a request whose PROXY protocol block would be the same (its manual,
//! `http-reuse`), and the block names the client's port, so only that client connection.
//!
//! [`Phase::ProxyHeader`]: super::client::Phase::ProxyHeader
//! [`Upstream::proxy_header`]: super::upstream::Upstream::proxy_header
//! [`Client::parked`]: super::client::Client::parked

use super::client::Phase;
use super::service::{Gone, ProxyService};
use crate::proxy_protocol;
use crate::worker::Context;

impl ProxyService {
    /// Client `ck` has not completed its PROXY protocol header: parses what it sent so far.
    pub(super) fn read_proxy_header(
        &mut self,
        cx: &mut Context<'_>,
        ck: usize,
    ) -> Result<bool, Gone> {
        let client = &mut self.clients[ck];
        match proxy_protocol::parse(client.input.pending()) {
            Ok(Some((header, len))) => {
                if let Some(a) = header.addresses {
                    client.relayed_for(a.source, a.destination);
                }
                client.input.consume(len);
                client.phase = Phase::Open;
                Ok(true)
            }
            Ok(None) if client.eof => {
                self.refuse_proxy_header(cx, ck, "closed before a whole PROXY protocol header")
            }
            Ok(None) => Ok(false),
            Err(e) => self.refuse_proxy_header(cx, ck, &e.to_string()),
        }
    }

    /// Closes client `ck`, which did not start with a valid PROXY protocol header: no
    /// answer (it is not known to speak HTTP), a log line with the count so far.
    pub(super) fn refuse_proxy_header(
        &mut self,
        cx: &mut Context<'_>,
        ck: usize,
        why: &str,
    ) -> Result<bool, Gone> {
        self.refused_proxy_headers += 1;
        log::warn!(
            "proxy: closed a connection from {} without a valid PROXY protocol header: {why} \
             ({} refused so far)",
            self.clients[ck].peer,
            self.refused_proxy_headers
        );
        self.close_client(cx, ck, false);
        Err(Gone)
    }
}
