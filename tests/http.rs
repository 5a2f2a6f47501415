//! HTTP/1.1 through a real worker over TCP: exact bytes, framing, bad input, timeouts.

mod common;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn server() -> Herd {
    Herd::serve(1, &[])
}

/// A server with short time limits, so that timeout tests need not wait 10 real seconds.
fn quick_server() -> Herd {
    Herd::serve(
        1,
        &["--request-timeout", "1.5", "--keep-alive-timeout", "0.5"],
    )
}

#[test]
fn hello_world_exact_response() {
    let h = server();
    let mut s = connect(h.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let headers: Vec<&str> = lines.collect();
    assert!(headers.contains(&"Content-Length: 11"), "{headers:?}");
    assert!(headers.contains(&"Connection: close"), "{headers:?}");
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("Date: ") && h.ends_with(" GMT")),
        "{headers:?}"
    );
    assert_eq!(body, "hello world");
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let h = Herd::serve(1, &["--app", "bench"]);
    assert_pipelined_echo(h.addr);
}

#[test]
fn a_request_split_at_every_byte_boundary_is_answered() {
    let h = server();
    let req = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbodyGET /y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut s = connect(h.addr);
    s.set_nodelay(true).unwrap();
    for b in req {
        s.write_all(&[*b]).unwrap();
    }
    let mut r = BufReader::new(s);
    for _ in 0..2 {
        let resp = read_response(&mut r, false).expect("a response");
        assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
    }
    assert!(read_response(&mut r, false).is_none());
}

#[test]
fn keep_alive_rules_for_1_0_and_1_1() {
    let h = server();
    // 1.1: keep-alive by default — two requests on one connection.
    let rs = exchange(
        h.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(rs.len(), 2);
    // 1.0: close by default — the second request is never answered.
    let rs = exchange(h.addr, b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n");
    assert_eq!(rs.len(), 1);
    // 1.0 with keep-alive asked for.
    let rs = exchange(
        h.addr,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    );
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].header("connection"), Some("keep-alive"));
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let h = server();
    let mut s = connect(h.addr);
    s.write_all(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let cont = read_response(&mut r, false).unwrap();
    assert_eq!(cont.status, 100);
    s.write_all(b"abc").unwrap();
    let fin = read_response(&mut r, false).unwrap();
    assert_eq!(fin.status, 200);
}

#[test]
fn bad_input_gets_a_status_and_a_close() {
    let h = server();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "b".repeat(17 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("uri too long", long_uri.into_bytes(), 414),
        ("headers too large", big_headers.into_bytes(), 431),
        // A final coding other than chunked leaves the request's length unknowable: 400
        // (RFC 9112 §6.3 item 4). Only a coding herd does not decode in front of a final
        // `chunked` is "not implemented" (501, RFC 9110 §6.1).
        ("coding not ending in chunked", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 400),
        ("unsupported coding", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 501),
        ("http/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        (
            "length and chunked",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
        ),
        (
            "conflicting lengths",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            400,
        ),
    ];
    for (what, raw, status) in cases {
        let rs = exchange(h.addr, &raw);
        assert_eq!(rs.len(), 1, "{what}: {rs:?}");
        assert_eq!(rs[0].status, status, "{what}");
        assert_eq!(rs[0].header("connection"), Some("close"), "{what}");
    }
    // The worker survived all of it.
    assert_eq!(get(h.addr, "/").status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_keep_alive_timeout() {
    let h = quick_server();
    let mut s = connect(h.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    let idle = Instant::now();
    assert!(
        read_response(&mut r, false).is_none(),
        "closed without a response"
    );
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed too early: {waited:?}"
    );
}

#[test]
fn a_slowloris_gets_408_and_a_close() {
    let h = quick_server();
    let mut s = connect(h.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap(); // never finishes its headers
    let started = Instant::now();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(read_response(&mut r, false).is_none());
}

#[test]
fn a_client_that_never_reads_does_not_stall_the_others() {
    let h = server();
    // Pipeline many requests and never read: the worker's buffer for this connection is
    // bounded, and other clients are served meanwhile.
    let mut hog = connect(h.addr);
    let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2000);
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = hog.write_all(&req); // may stop once both sides' buffers are full
    for _ in 0..20 {
        assert_eq!(get(h.addr, "/").status, 200);
    }
}

#[test]
fn a_client_that_connects_and_stays_silent_gets_408_too() {
    // The listener defers accept until data arrives (TCP_DEFER_ACCEPT); a silent client is
    // still accepted after about a second and then meets the request timeout.
    let h = quick_server();
    let s = connect(h.addr);
    let started = Instant::now();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r, false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(1400));
}
