//! The PROXY protocol at `herd proxy`'s two ends, over real sockets, IPv4 and IPv6:
//! `--proxy-protocol` (every client connection starts with a v1 or v2 header, whose client
//! is the one forwarded; one without is closed, counted, and nothing of it forwarded) and
//! `--send-proxy v1|v2` (each new upstream connection starts with a header naming the
//! client, and is reused only by that client's connection).

mod common;
mod proxy_support;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::*;
use herd::proxy_protocol::{self, Addresses, Header, Version};
use proxy_support::*;

/// A v2 header: signature, `ver_cmd`, `family`, then `payload` with its length.
fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = proxy_protocol::V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[ver_cmd, family]);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header naming `source` (connected to `destination`), as `version` writes it.
fn header(version: Version, source: &str, destination: &str) -> Vec<u8> {
    let mut out = Vec::new();
    proxy_protocol::write(
        &mut out,
        version,
        source.parse().unwrap(),
        destination.parse().unwrap(),
    );
    out
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// The `X-Forwarded-For` the target got for a connection that sent `preface` then a request.
fn forwarded_for(proxy: SocketAddr, preface: &[u8]) -> String {
    let mut s = connect(proxy);
    s.write_all(&[preface, REQUEST].concat()).unwrap();
    let responses = {
        let mut r = BufReader::new(s);
        std::iter::from_fn(|| read_response(&mut r, false)).collect::<Vec<_>>()
    };
    assert_eq!(responses.len(), 1, "{preface:?}");
    let text = responses[0].text();
    text.lines()
        .find_map(|l| l.strip_prefix("X-Forwarded-For: "))
        .unwrap_or_else(|| panic!("no X-Forwarded-For in {text}"))
        .to_string()
}

#[test]
fn the_header_names_the_client_in_both_versions_and_both_families() {
    let a = named("A");
    let p = proxy(&[a.url()], &["--proxy-protocol"]);
    let cases = [
        (
            header(Version::V1, "192.0.2.1:56324", "198.51.100.7:443"),
            "192.0.2.1",
        ),
        (
            header(Version::V1, "[2001:db8::1]:56324", "[2001:db8::7]:443"),
            "2001:db8::1",
        ),
        (
            header(Version::V2, "192.0.2.1:56324", "198.51.100.7:443"),
            "192.0.2.1",
        ),
        (
            header(Version::V2, "[2001:db8::1]:56324", "[2001:db8::7]:443"),
            "2001:db8::1",
        ),
        // Health checks from the balancer itself: the connection's own peer stands.
        (v2(0x20, 0x00, &[]), "127.0.0.1"),
        (b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
        // TLVs after the addresses are skipped.
        (
            v2(
                0x21,
                0x11,
                &[192, 0, 2, 9, 127, 0, 0, 1, 0, 80, 0, 80, 0xea, 0, 1, 7],
            ),
            "192.0.2.9",
        ),
    ];
    for (preface, client) in &cases {
        assert_eq!(&forwarded_for(p.addr, preface), client, "{preface:?}");
    }
    // A header that arrives a byte at a time.
    let mut s = connect(p.addr);
    s.set_nodelay(true).unwrap();
    for &b in &header(Version::V2, "192.0.2.3:1", "198.51.100.7:443") {
        s.write_all(&[b]).unwrap();
    }
    s.write_all(REQUEST).unwrap();
    let text = read_response(&mut BufReader::new(s), false).unwrap().text();
    assert!(text.contains("X-Forwarded-For: 192.0.2.3\n"), "{text}");
    // The client the header names is the one in the logs.
    let closed = closed_port();
    let p = proxy(&[url(closed.addr)], &["--proxy-protocol"]);
    let mut s = connect(p.addr);
    let preface = header(Version::V1, "192.0.2.4:5", "198.51.100.7:443");
    s.write_all(&[preface.as_slice(), REQUEST].concat())
        .unwrap();
    let resp = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(resp.status, 502);
    p.log.wait_for("), client 192.0.2.4:5");
}

/// What a client does after the bytes of a malformed case.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// Sends a request (which must not be forwarded).
    Request,
    /// Closes its side (a truncated header).
    Close,
    /// Sends nothing more (the deadline).
    Silence,
}

#[test]
fn connections_without_a_valid_header_are_closed_counted_and_never_forwarded() {
    let target = recorder();
    let p = proxy(
        &[target.url()],
        &["--proxy-protocol", "--proxy-protocol-timeout", "0.3"],
    );
    let valid_v2 = header(Version::V2, "192.0.2.1:1", "198.51.100.7:443");
    let mut too_long = valid_v2[..16].to_vec();
    too_long[14..16].copy_from_slice(&1025u16.to_be_bytes());
    // (what is sent, what follows, the reason logged)
    let cases: Vec<(Vec<u8>, Then, &str)> = vec![
        (Vec::new(), Then::Request, "no PROXY protocol signature"),
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n".to_vec(),
            Then::Request,
            "malformed",
        ),
        (
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            Then::Request,
            "address family",
        ),
        (
            format!("PROXY UNKNOWN {}", "f".repeat(200)).into_bytes(),
            Then::Request,
            "too long",
        ),
        (
            v2(0x11, 0x11, &[0; 12]),
            Then::Request,
            "unknown PROXY protocol version",
        ),
        (
            v2(0x22, 0x11, &[0; 12]),
            Then::Request,
            "unknown PROXY protocol v2 command",
        ),
        (v2(0x21, 0x41, &[0; 12]), Then::Request, "address family"),
        (v2(0x21, 0x13, &[0; 12]), Then::Request, "address family"),
        (too_long, Then::Request, "too long"),
        (v2(0x21, 0x21, &[0; 12]), Then::Request, "malformed"),
        // Truncated: the client closes its side halfway through the header…
        (
            valid_v2[..20].to_vec(),
            Then::Close,
            "closed before a whole PROXY protocol header",
        ),
        (
            b"PROXY TCP4 192.0.2.1 ".to_vec(),
            Then::Close,
            "closed before a whole",
        ),
        // …or goes silent: the deadline closes it.
        (
            valid_v2[..20].to_vec(),
            Then::Silence,
            "no whole PROXY protocol header in time",
        ),
        (
            Vec::new(),
            Then::Silence,
            "no whole PROXY protocol header in time",
        ),
    ];
    for (n, (sent, then, why)) in cases.iter().enumerate() {
        let mut s = connect(p.addr);
        s.write_all(sent).unwrap();
        match then {
            Then::Request => s.write_all(REQUEST).unwrap(),
            Then::Close => s.shutdown(Shutdown::Write).unwrap(),
            Then::Silence => {}
        }
        // Closed without an answer: it is not known to speak HTTP.
        let got = read_until_closed(&mut s);
        assert!(got.is_empty(), "{why}: {}", String::from_utf8_lossy(&got));
        let line = p.log.wait_for(&format!("({} refused so far)", n + 1));
        assert!(line.contains(why), "{line}");
        assert!(line.contains("from 127.0.0.1:"), "{line}");
    }
    // Nothing reached the target, not even a connection.
    assert_eq!(target.accepted(), 0);
    // A valid header on the same listener still works.
    let mut s = connect(p.addr);
    s.write_all(&[valid_v2.as_slice(), REQUEST].concat())
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(s), false).unwrap().status,
        200
    );
}

/// A target that reads a PROXY protocol header at the start of each connection (kept in
/// the returned list, in order), then answers each request with `200` and the request head
/// it received, as [`named`] does.
fn proxy_aware() -> (TestServer, Arc<Mutex<Vec<Header>>>) {
    let headers = Arc::new(Mutex::new(Vec::new()));
    let seen = headers.clone();
    let server = TestServer::start(move |mut r, stats| {
        let mut buf = Vec::new();
        let header = loop {
            let mut byte = [0u8];
            if r.read_exact(&mut byte).is_err() {
                return;
            }
            buf.push(byte[0]);
            match proxy_protocol::parse(&buf) {
                Ok(Some((header, _))) => break header,
                Ok(None) => {}
                Err(e) => panic!("the proxy sent no valid header: {e}: {buf:?}"),
            }
        };
        seen.lock().unwrap().push(header);
        while let Some(head) = read_head(&mut r) {
            read_body(&mut r, &head, |_| {});
            let body = head.join("\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if r.get_mut().write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
        stats.closed_by_peer.fetch_add(1, Ordering::SeqCst);
    });
    (server, headers)
}

fn relayed(version: Version, source: SocketAddr, destination: SocketAddr) -> Header {
    Header {
        version,
        addresses: Some(Addresses {
            source,
            destination,
        }),
    }
}

#[test]
fn send_proxy_names_the_client_and_keeps_its_connection_to_it() {
    for version in [Version::V1, Version::V2] {
        let (target, headers) = proxy_aware();
        let p = proxy(&[target.url()], &["--send-proxy", version.name()]);
        // Two requests on one client connection: one upstream connection, one header.
        let mut first = connect(p.addr);
        let mut first_r = BufReader::new(first.try_clone().unwrap());
        for _ in 0..2 {
            assert_eq!(get_on(&mut first, &mut first_r, "/").status, 200);
        }
        assert_eq!(target.accepted(), 1);
        let expected = relayed(version, first.local_addr().unwrap(), p.addr);
        assert_eq!(*headers.lock().unwrap(), [expected], "{version:?}");
        // Another client, while the first one's connection sits idle: never given it.
        let mut second = connect(p.addr);
        let mut second_r = BufReader::new(second.try_clone().unwrap());
        assert_eq!(get_on(&mut second, &mut second_r, "/").status, 200);
        assert_eq!(target.accepted(), 2);
        let second_header = relayed(version, second.local_addr().unwrap(), p.addr);
        assert_eq!(headers.lock().unwrap()[1], second_header, "{version:?}");
        // The first client leaves: the connection that named it goes too.
        drop(first_r);
        drop(first);
        wait_until("the first client's upstream connection to close", || {
            target.stats.closed_by_peer.load(Ordering::SeqCst) == 1
        });
        assert_eq!(get_on(&mut second, &mut second_r, "/").status, 200);
        assert_eq!(
            target.accepted(),
            2,
            "the second client's connection was kept"
        );
    }
}

#[test]
fn the_client_of_an_incoming_header_is_the_client_of_the_outgoing_one() {
    let (target, headers) = proxy_aware();
    let p = proxy(&[target.url()], &["--proxy-protocol", "--send-proxy", "v2"]);
    let mut s = connect(p.addr);
    let incoming = header(Version::V1, "192.0.2.1:56324", "198.51.100.7:443");
    s.write_all(&[incoming.as_slice(), REQUEST].concat())
        .unwrap();
    let text = read_response(&mut BufReader::new(s), false).unwrap().text();
    assert!(text.contains("X-Forwarded-For: 192.0.2.1\n"), "{text}");
    let expected = relayed(
        Version::V2,
        "192.0.2.1:56324".parse().unwrap(),
        "198.51.100.7:443".parse().unwrap(),
    );
    assert_eq!(*headers.lock().unwrap(), [expected]);
}

/// `herd proxy` listening on `[::1]:0`.
fn ipv6_proxy(targets: &[String], args: &[&str]) -> Herd {
    Herd::start(proxy_command_on("[::1]:0", targets, args), 1)
}

#[test]
fn over_ipv6_loopback() {
    // A client on [::1]: its health-check header (LOCAL) keeps the socket's own address…
    let a = named("A");
    let p = ipv6_proxy(&[a.url()], &["--proxy-protocol"]);
    assert!(p.addr.is_ipv6(), "{}", p.addr);
    assert_eq!(forwarded_for(p.addr, &v2(0x20, 0x00, &[])), "::1");
    assert_eq!(forwarded_for(p.addr, b"PROXY UNKNOWN\r\n"), "::1");
    // …and sending: an IPv6 client is named in TCP6 / INET6 headers.
    for version in [Version::V1, Version::V2] {
        let (target, headers) = proxy_aware();
        let p = ipv6_proxy(&[target.url()], &["--send-proxy", version.name()]);
        let mut s = connect(p.addr);
        let client = s.local_addr().unwrap();
        s.write_all(REQUEST).unwrap();
        let resp = read_response(&mut BufReader::new(s), false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(*headers.lock().unwrap(), [relayed(version, client, p.addr)]);
    }
}
