//! Tunnels: after the target accepted an upgrade (`101 Switching Protocols`, a WebSocket),
//! the connection is no longer HTTP. Bytes are copied both ways, unchanged, until either
//! side closes; what is buffered is then flushed to the other side and both are closed. A
//! tunnel that carries nothing for `--tunnel-timeout` is closed ([`timeouts`](super::timeouts)).

use super::client::{Phase, CHUNK};
use super::service::{Gone, ProxyService};
use crate::worker::Context;

impl ProxyService {
    /// Copies what client `ck` and its target sent each other since the last pass.
    pub(super) fn tunnel(&mut self, cx: &mut Context<'_>, ck: usize) -> Result<bool, Gone> {
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
            self.end_exchange(ck);
            self.upstreams.remove(uk);
            self.clients[ck].phase = Phase::Closing { linger: false };
            return Ok(true);
        }
        Ok(progressed)
    }
}
