//! `herd serve --proxy-protocol`: behind an L4 balancer, each connection starts with a
//! PROXY protocol header, and the client it names is the requests' peer address.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::*;
use herd::proxy_protocol::{write, Version};

fn serve() -> Herd {
    Herd::serve(
        1,
        &[
            "--app",
            "bench",
            "--proxy-protocol",
            "--proxy-protocol-timeout",
            "0.5",
        ],
    )
}

/// Sends `header` then a `GET /peer`, and reads the whole answer (empty if closed).
fn peer_through(addr: SocketAddr, header: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(header).unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_header_names_the_client_in_v1_and_v2_for_ipv4_and_ipv6() {
    let h = serve();
    let v1 = peer_through(h.addr, b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
    assert!(v1.ends_with("192.0.2.1:56324"), "{v1}");
    let v1_6 = peer_through(h.addr, b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n");
    assert!(v1_6.ends_with("[2001:db8::1]:4000"), "{v1_6}");
    for (source, destination) in [
        ("203.0.113.9:1234", "198.51.100.7:443"),
        ("[2001:db8::9]:1234", "[2001:db8::2]:443"),
    ] {
        let mut header = Vec::new();
        write(
            &mut header,
            Version::V2,
            source.parse().unwrap(),
            destination.parse().unwrap(),
        );
        let answer = peer_through(h.addr, &header);
        assert!(answer.ends_with(source), "{source}: {answer}");
    }
    // UNKNOWN (v1) keeps the connection's own address.
    let unknown = peer_through(h.addr, b"PROXY UNKNOWN\r\n");
    let peer = unknown.rsplit("\r\n").next().unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{unknown}");
}

#[test]
fn a_connection_without_a_valid_header_is_closed_unanswered_and_counted() {
    let h = serve();
    for (what, bytes) in [
        ("plain HTTP", &b""[..]),
        ("bad v1", &b"PROXY TCP4 not-an-ip 198.51.100.7 1 2\r\n"[..]),
        (
            "v2 with a bad version",
            &b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c"[..],
        ),
    ] {
        let answer = peer_through(h.addr, bytes);
        assert_eq!(answer, "", "{what}: answered");
    }
    h.log.wait_for("(3 refused so far)");
    // Silent past the deadline: closed too.
    let mut s = connect(h.addr);
    s.write_all(b"PROXY TCP4 192.0.2.1").unwrap(); // and nothing more
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // The worker serves on.
    let ok = peer_through(h.addr, b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn without_the_flag_the_peer_is_the_connection_s_own() {
    let h = Herd::serve(1, &["--app", "bench"]);
    let r = get(h.addr, "/peer");
    assert!(r.text().starts_with("127.0.0.1:"), "{}", r.text());
}
