//! Rewriting heads on their way through: the request head sent to a target and the response
//! head sent back to the client (RFC 9110 §7.6).
//!
//! Hop-by-hop fields describe one connection, not the message, so they stop at the proxy:
//! `Connection` and every field it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//! `Transfer-Encoding` and `Upgrade`. The proxy then writes its own framing and connection
//! fields for the next hop, and adds the `X-Forwarded-*` fields that tell the target who the
//! client was (node-http-proxy's `xfwd`).
//!
//! The framing fields are always the proxy's own, written from the framing decision the
//! parser took (`Content-Length: n`, `Transfer-Encoding: chunked`), never copied: a copied
//! list such as `5, 5` may be read differently by the next hop, and a `Connection` field
//! naming `Content-Length` would otherwise strip the length of a body the proxy still
//! forwards, which the next hop would then read as the start of another message.

use std::net::IpAddr;
use std::ops::Range;

use httparse::Header;

use crate::http::syntax::{list_items, write_decimal};
use crate::http::{BodyKind, Head, ResponseHead};

/// Fields that never cross the proxy (lower case).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is hop-by-hop, given the `Connection` fields of the message (which may
/// name more).
fn is_hop_by_hop(name: &str, headers: &[Header<'_>]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| list_items(h.value))
            .any(|option| option.eq_ignore_ascii_case(name.as_bytes()))
}

/// Whether the message's `Connection` field carries `option` (`upgrade`, `close`…).
pub(crate) fn connection_has(headers: &[Header<'_>], option: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| list_items(h.value))
        .any(|o| o.eq_ignore_ascii_case(option.as_bytes()))
}

/// What the request head to the target says beyond the client's own fields.
pub(crate) struct Forwarded<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client: IpAddr,
    /// `Some(host:port)` replaces `Host` (`--change-origin`); `None` keeps the client's.
    pub host: Option<&'a str>,
    /// The target's `host:port`, the `Host` of a request that had none (HTTP/1.0).
    pub target_authority: &'a str,
    /// A `Connection: Upgrade` request to tunnel: keeps `Upgrade` and asks for it again.
    pub upgrade: bool,
    /// Discard the client's `X-Forwarded-For` and `Forwarded` instead of appending to them
    /// (`--strip-forwarded`: at the edge, whatever the client sent there is forged).
    pub strip: bool,
}

/// Writes the request head for the target: always HTTP/1.1 (keep-alive is the default, so the
/// connection can go back to the pool), the client's end-to-end fields, then `Host`,
/// `X-Forwarded-*`, framing and `Connection` as this hop needs them.
///
/// Returns where in `out` the `Host` value is when it names the target rather than what the
/// client sent (`--change-origin`, or an HTTP/1.0 request without `Host`): a retry on another
/// target must change it (see `Exchange::host`).
pub(crate) fn write_request_head(
    out: &mut Vec<u8>,
    head: &Head<'_, '_>,
    fwd: &Forwarded<'_>,
) -> Option<Range<usize>> {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut original_host = None;
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut had_length = false;
    for h in head.headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            original_host = Some(h.value);
            if fwd.host.is_some() {
                continue;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            had_length = true;
            continue;
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if !fwd.strip {
                forwarded_for.push(h.value);
            }
            continue;
        } else if name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || (fwd.strip && name.eq_ignore_ascii_case("forwarded"))
            || (is_hop_by_hop(name, head.headers)
                && !(fwd.upgrade && name.eq_ignore_ascii_case("upgrade")))
        {
            // Set by the proxy below, or meant for this hop only.
            continue;
        }
        field(out, name.as_bytes(), h.value);
    }
    let target_host = match (fwd.host, original_host) {
        (Some(host), _) => Some(host),
        (None, None) => Some(fwd.target_authority),
        (None, Some(_)) => None,
    };
    let host_range = target_host.map(|host| {
        let start = out.len() + b"Host: ".len();
        field(out, b"Host", host.as_bytes());
        start..start + host.len()
    });
    out.extend_from_slice(b"X-Forwarded-For: ");
    for previous in forwarded_for {
        out.extend_from_slice(previous);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(fwd.client.to_string().as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: http\r\n");
    if let Some(host) = original_host {
        field(out, b"X-Forwarded-Host", host);
    }
    match head.body {
        BodyKind::Length(n) => write_length(out, n),
        // `Content-Length: 0` said there is no body; some servers want it said for a POST.
        BodyKind::None if had_length => write_length(out, 0),
        BodyKind::None => {}
        // The chunked body is forwarded as it came, so its coding is declared again.
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if fwd.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
    host_range
}

/// How the response body reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientFraming {
    /// No body (a response to `HEAD`, 204, 304, 101): the target's `Content-Length`, which
    /// then describes the representation rather than framing anything, is copied.
    NoBody,
    /// `Content-Length: n`, written by the proxy.
    Length(u64),
    /// Chunks forwarded as they are (`Transfer-Encoding: chunked` declared again).
    Chunked,
    /// No length: the body ends when the proxy closes the connection (a read-until-close
    /// response, or a chunked one de-chunked for an HTTP/1.0 client).
    UntilClose,
}

/// Writes the response head for the client: the target's status and end-to-end fields, then
/// the framing and `Connection` fields of the client's hop. `keep_alive` says whether the
/// client connection stays open after this response; `upgrade` keeps `Upgrade` for a 101.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_, '_>,
    framing: ClientFraming,
    client_version: u8,
    keep_alive: bool,
    upgrade: bool,
) {
    write_status_and_fields(out, head, |name| {
        (framing != ClientFraming::NoBody && name.eq_ignore_ascii_case("content-length"))
            || (is_hop_by_hop(name, head.headers)
                && !(upgrade && name.eq_ignore_ascii_case("upgrade")))
    });
    match framing {
        ClientFraming::Length(n) => write_length(out, n),
        ClientFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        ClientFraming::NoBody | ClientFraming::UntilClose => {}
    }
    if upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes an interim response head (`100 Continue`, `103 Early Hints`) for an HTTP/1.1
/// client: the status line and the end-to-end fields, in the proxy's own CRLF framing.
pub(crate) fn write_interim_head(out: &mut Vec<u8>, head: &ResponseHead<'_, '_>) {
    write_status_and_fields(out, head, |name| is_hop_by_hop(name, head.headers));
    out.extend_from_slice(b"\r\n");
}

/// The status line (always HTTP/1.1: the version of the proxy's hop) and every field of
/// `head` but those `drop` names.
fn write_status_and_fields(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_, '_>,
    drop: impl Fn(&str) -> bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in head.headers {
        if !drop(h.name) {
            field(out, h.name.as_bytes(), h.value);
        }
    }
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    write_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A short plain-text error response from the proxy itself (502, 504, 400…), closing the
/// connection.
pub(crate) fn write_error(out: &mut Vec<u8>, status: u16, message: &str, date: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(crate::http::reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nConnection: close\r\nContent-Length: ");
    write_decimal(out, message.len() as u64 + 1);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, parse_response_head, Limits};
    use std::mem::MaybeUninit;

    fn forward(raw: &[u8], host: Option<&str>) -> String {
        let mut storage = [const { MaybeUninit::uninit() }; 100];
        let (head, _) = parse_head(raw, &Limits::default(), &mut storage)
            .unwrap()
            .unwrap();
        let upgrade = connection_has(head.headers, "upgrade");
        let mut out = Vec::new();
        let fwd = Forwarded {
            client: "10.0.0.9".parse().unwrap(),
            host,
            target_authority: "127.0.0.1:3000",
            upgrade,
            strip: false,
        };
        write_request_head(&mut out, &head, &fwd);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_heads() {
        let raw = b"POST /a?b HTTP/1.1\r\nHost: front\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
            Keep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            forward(raw, None),
            "POST /a?b HTTP/1.1\r\nHost: front\r\nAccept: */*\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.9\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-Host: front\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            forward(b"GET / HTTP/1.0\r\n\r\n", None),
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        let changed = forward(
            b"GET / HTTP/1.1\r\nHost: front\r\n\r\n",
            Some("localhost:3000"),
        );
        assert!(
            changed.contains("Host: localhost:3000\r\n") && !changed.contains("\r\nHost: front")
        );
        assert!(changed.contains("X-Forwarded-Host: front\r\n"));
        let ws = forward(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            None,
        );
        assert!(
            ws.contains("Upgrade: websocket\r\n") && ws.ends_with("Connection: Upgrade\r\n\r\n")
        );
    }

    #[test]
    fn response_heads() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let (head, _) = parse_response_head(raw, &Limits::default(), &mut storage, false)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &head, ClientFraming::Length(2), 1, true, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\n\r\n"
        );
        out.clear();
        write_response_head(&mut out, &head, ClientFraming::Length(2), 0, true, false);
        assert!(out.ends_with(b"Connection: keep-alive\r\n\r\n"));
        out.clear();
        write_response_head(&mut out, &head, ClientFraming::UntilClose, 1, false, false);
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
    }
}
