//! `herd proxy`'s message rules, tried as an attacker would: raw bytes on real sockets, and
//! targets that record exactly what reaches them, so that "refused" also means "nothing of
//! it was forwarded" (RFC 9112 §2.2, §3.2, §5, §6, §7; RFC 9110 §7.6.1). A request the
//! proxy cannot frame the way every backend would is answered 400 (or 501) and never sent
//! on; a response it cannot frame is answered 502, never passed on, and its connection
//! closed.

mod common;
mod proxy_support;

use std::io::{BufReader, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use proxy_support::*;

/// A request the proxy must refuse, and its status.
struct Refused {
    what: &'static str,
    raw: Vec<u8>,
    status: u16,
}

fn refused(what: &'static str, raw: impl AsRef<[u8]>, status: u16) -> Refused {
    Refused {
        what,
        raw: raw.as_ref().to_vec(),
        status,
    }
}

/// `POST /` with `fields` (CRLF-terminated lines) and then `body`.
fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: t\r\n{fields}\r\n{body}").into_bytes()
}

fn chunked(body: &str) -> Vec<u8> {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// Requests whose framing or fields are refused from what fits in one read: the head, or
/// the head and a body that breaks within the bytes that came with it.
fn refused_requests() -> Vec<Refused> {
    let long_extension = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(5000));
    vec![
        // Message length (RFC 9112 §6).
        refused(
            "TE and CL",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        refused(
            "CL and TE",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        refused(
            "TE not ending in chunked",
            post("Transfer-Encoding: gzip\r\n", "x"),
            400,
        ),
        refused(
            "TE chunked then gzip",
            post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
            400,
        ),
        refused(
            "TE identity",
            post("Transfer-Encoding: identity\r\n", "x"),
            400,
        ),
        refused(
            "TE chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        refused("TE empty", post("Transfer-Encoding: \r\n", ""), 400),
        refused(
            "TE unknown before chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            501,
        ),
        refused(
            "TE in HTTP/1.0",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        refused(
            "CL list that differs",
            post("Content-Length: 1, 2\r\n", "xx"),
            400,
        ),
        refused(
            "CL repeated and differing",
            post("Content-Length: 1\r\nContent-Length: 2\r\n", "xx"),
            400,
        ),
        refused("CL with a sign", post("Content-Length: +1\r\n", "x"), 400),
        refused("CL negative", post("Content-Length: -1\r\n", "x"), 400),
        refused("CL hex", post("Content-Length: 0x1\r\n", "x"), 400),
        refused("CL with a letter", post("Content-Length: 1a\r\n", "x"), 400),
        refused(
            "CL with inner space",
            post("Content-Length: 1 1\r\n", "x"),
            400,
        ),
        refused("CL empty", post("Content-Length: \r\n", ""), 400),
        refused(
            "CL overflowing",
            post("Content-Length: 99999999999999999999\r\n", ""),
            400,
        ),
        refused(
            "chunk size overflowing",
            chunked("ffffffffffffffffff\r\nx\r\n0\r\n\r\n"),
            400,
        ),
        refused("chunk size not hex", chunked("zz\r\nx\r\n0\r\n\r\n"), 400),
        refused("chunk size empty", chunked("\r\nx\r\n0\r\n\r\n"), 400),
        refused(
            "chunk size then space",
            chunked("1 \r\nx\r\n0\r\n\r\n"),
            400,
        ),
        refused("chunk line ending in LF", chunked("1\nx\r\n0\r\n\r\n"), 400),
        refused(
            "chunk data without CRLF",
            chunked("1\r\nxyz\r\n0\r\n\r\n"),
            400,
        ),
        refused(
            "chunk extension with bare CR",
            chunked("1;a\rb\r\nx\r\n0\r\n\r\n"),
            400,
        ),
        refused(
            "chunk extension unterminated",
            chunked("1;a=\"b\r\nx\r\n0\r\n\r\n"),
            400,
        ),
        refused(
            "chunk extension not a token",
            chunked("1;(\r\nx\r\n0\r\n\r\n"),
            400,
        ),
        refused("chunk extension too long", chunked(&long_extension), 400),
        refused(
            "trailer with space before colon",
            chunked("1\r\nx\r\n0\r\nX : y\r\n\r\n"),
            400,
        ),
        refused(
            "trailer folded",
            chunked("1\r\nx\r\n0\r\nX: y\r\n z\r\n\r\n"),
            400,
        ),
        refused(
            "trailer with NUL",
            chunked("1\r\nx\r\n0\r\nX: a\0b\r\n\r\n"),
            400,
        ),
        // Field syntax (RFC 9112 §5, RFC 9110 §5.5).
        refused(
            "space before colon",
            b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
            400,
        ),
        refused(
            "tab before colon",
            b"GET / HTTP/1.1\r\nHost: t\r\nX\t: y\r\n\r\n",
            400,
        ),
        refused(
            "name not a token",
            b"GET / HTTP/1.1\r\nHost: t\r\nX(y: 1\r\n\r\n",
            400,
        ),
        refused(
            "name with a space",
            b"GET / HTTP/1.1\r\nHost: t\r\nX y: 1\r\n\r\n",
            400,
        ),
        refused(
            "NUL in a value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n",
            400,
        ),
        refused(
            "bare CR in a value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
            400,
        ),
        refused(
            "bare CR ending a line",
            b"GET / HTTP/1.1\rHost: t\r\n\r\n",
            400,
        ),
        refused(
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n",
            400,
        ),
        refused(
            "obs-fold with a tab",
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n\tfolded\r\n\r\n",
            400,
        ),
        refused(
            "first field folded",
            b"GET / HTTP/1.1\r\n Host: t\r\n\r\n",
            400,
        ),
        refused(
            "NUL in the target",
            b"GET /\0 HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
        ),
        refused(
            "method not a token",
            b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
        ),
        // Host (RFC 9112 §3.2).
        refused("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", 400),
        refused(
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        refused(
            "the same Host twice",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
        ),
        refused(
            "two Hosts in HTTP/1.0",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        refused(
            "Host with userinfo",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            400,
        ),
        refused(
            "Host with a path",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            400,
        ),
    ]
}

#[test]
fn refused_requests_get_their_status_and_nothing_reaches_the_target() {
    let target = recorder();
    let mut p = Some(proxy(&[target.url()], &[]));
    let addr = p.as_ref().unwrap().addr;
    for case in refused_requests() {
        let responses = exchange(addr, &case.raw);
        assert_eq!(responses.len(), 1, "{}: {responses:?}", case.what);
        assert_eq!(responses[0].status, case.status, "{}", case.what);
        assert_eq!(
            responses[0].header("connection"),
            Some("close"),
            "{}",
            case.what
        );
    }
    // One request that is fine, so the test knows the target would have seen the others.
    assert_eq!(get(addr, "/fine").status, 200);
    // Stopping the proxy closes its upstream connections; once the target has read each to
    // its end, everything that reached it is recorded.
    drop(p.take());
    target.wait_all_closed();
    let received = String::from_utf8_lossy(&target.received()).into_owned();
    assert!(
        received.starts_with("GET /fine HTTP/1.1\r\n") && received.ends_with("\r\n\r\n"),
        "{received:?}"
    );
    assert_eq!(received.matches("HTTP/1.1").count(), 1, "{received:?}");
}

#[test]
fn a_body_that_breaks_after_it_began_to_stream_closes_the_upstream_connection() {
    let target = recorder();
    let p = proxy(&[target.url()], &[]);
    let mut s = connect(p.addr);
    s.write_all(&chunked("5\r\nfirst\r\n")).unwrap();
    wait_until("the first chunk to reach the target", || {
        String::from_utf8_lossy(&target.received()).contains("5\r\nfirst\r\n")
    });
    s.write_all(b"zz\r\nsecond\r\n0\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r, false).expect("an answer");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("connection"), Some("close"));
    // The connection that carried half a request is closed, never pooled.
    target.wait_all_closed();
    assert!(!String::from_utf8_lossy(&target.received()).contains("zz"));
    // Extensions over the bound across many chunks (each line short): the same.
    let many = format!("1;{}\r\nx\r\n", "e".repeat(1000)).repeat(17);
    let mut s = connect(p.addr);
    s.write_all(&chunked(&many)).unwrap();
    let got = read_until_closed(&mut s);
    assert!(
        got.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    target.wait_all_closed();
}

#[test]
fn what_reaches_the_target_is_always_crlf_and_framed_by_the_proxy() {
    let target = recorder();
    let p = proxy(&[target.url()], &[]);
    // Bare LF line endings, an HTTP/1.0 request without Host, a Content-Length list of one
    // value, and a chunked body with extensions and a trailer: all forwarded, normalised.
    let requests: [&[u8]; 4] = [
        b"POST /lf HTTP/1.1\nHost: t\nX-A: 1\nContent-Length: 2\n\nok",
        b"GET /old HTTP/1.0\r\n\r\n",
        b"POST /list HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\nok",
        b"POST /chunks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n2;a=\"b\"\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
    ];
    for raw in requests {
        // One response each (most keep the connection open).
        let mut s = connect(p.addr);
        s.write_all(raw).unwrap();
        let resp = read_response(&mut BufReader::new(s), false);
        assert_eq!(
            resp.map(|r| r.status),
            Some(200),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    drop(p);
    target.wait_all_closed();
    let received = target.received();
    assert!(
        only_crlf(&received),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    let text = String::from_utf8_lossy(&received);
    let expected = [
        "POST /lf HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n",
        "Content-Length: 2\r\n\r\nok",
        &format!("GET /old HTTP/1.1\r\nHost: {}\r\n", target.addr),
        "POST /list HTTP/1.1\r\nHost: t\r\nX-Forwarded-For",
        "Transfer-Encoding: chunked\r\n\r\n2;a=\"b\"\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
    ];
    for part in expected {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }
    assert!(!text.contains("2, 2"), "{text}");
}

#[test]
fn hop_by_hop_fields_stop_at_the_proxy_both_ways() {
    let target = scripted(vec![b"HTTP/1.1 200 OK\r\nConnection: X-Internal, keep-alive\r\n\
        X-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
        Trailer: X-Sum\r\nUpgrade: h2c\r\nX-End: 1\r\nContent-Length: 2\r\n\r\nok"
        .to_vec()]);
    let p = proxy(&[target.url()], &[]);
    let responses = exchange(
        p.addr,
        b"GET /0 HTTP/1.1\r\nHost: t\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\
          Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nX-End: 2\r\n\r\n",
    );
    assert_eq!(responses.len(), 1);
    let names: Vec<String> = responses[0]
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"x-end".to_string()), "{names:?}");
    for hop in [
        "x-internal",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !names.contains(&hop.to_string()),
            "{hop} reached the client: {names:?}"
        );
    }
    // Only the proxy's own Connection field.
    assert_eq!(responses[0].header("connection"), Some("close"));
    // (The target's connection went back to the pool: stopping the proxy closes it.)
    drop(p);
    target.wait_all_closed();
    let request = String::from_utf8_lossy(&target.received()).to_ascii_lowercase();
    assert!(request.contains("x-end: 2\r\n"), "{request}");
    for hop in [
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "te:",
        "trailer",
        "upgrade",
        "connection",
    ] {
        assert!(
            !request.contains(hop),
            "{hop} reached the target: {request}"
        );
    }
}

/// Responses the proxy must refuse with 502. Each carries `LEAK` where it would reach the
/// client if any of it were forwarded.
fn refused_responses() -> Vec<(&'static str, Vec<u8>)> {
    let ok = |fields: &str, body: &str| format!("HTTP/1.1 200 OK\r\n{fields}\r\n{body}");
    let chunked = |body: &str| ok("Transfer-Encoding: chunked\r\n", body);
    let cases: Vec<(&str, String)> = vec![
        // Status line.
        (
            "status 600",
            "HTTP/1.1 600 LEAK\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        (
            "status 099",
            "HTTP/1.1 099 LEAK\r\nContent-Length: 0\r\n\r\n".into(),
        ),
        ("status of four digits", "HTTP/1.1 2000 LEAK\r\n\r\n".into()),
        ("not HTTP", "SPDY/9 LEAK\r\n\r\n".into()),
        ("HTTP/2", "HTTP/2 200 LEAK\r\n\r\n".into()),
        ("HTTP/1.2", "HTTP/1.2 200 LEAK\r\n\r\n".into()),
        ("garbage", "LEAK\r\n\r\n".into()),
        (
            "101 without Upgrade asked",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: LEAK\r\nConnection: Upgrade\r\n\r\n"
                .into(),
        ),
        // Message length.
        (
            "TE and CL",
            ok(
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                "4\r\nLEAK\r\n0\r\n\r\n",
            ),
        ),
        ("TE gzip", ok("Transfer-Encoding: gzip\r\n", "LEAK")),
        (
            "TE chunked then gzip",
            ok("Transfer-Encoding: chunked, gzip\r\n", "LEAK"),
        ),
        (
            "TE gzip then chunked",
            ok(
                "Transfer-Encoding: gzip, chunked\r\n",
                "4\r\nLEAK\r\n0\r\n\r\n",
            ),
        ),
        (
            "CL list that differs",
            ok("Content-Length: 4, 5\r\n", "LEAK"),
        ),
        (
            "CL repeated and differing",
            ok("Content-Length: 4\r\nContent-Length: 5\r\n", "LEAK"),
        ),
        ("CL with a sign", ok("Content-Length: +4\r\n", "LEAK")),
        ("CL with a letter", ok("Content-Length: 4x\r\n", "LEAK")),
        (
            "chunk size overflowing",
            chunked("ffffffffffffffffff\r\nLEAK\r\n0\r\n\r\n"),
        ),
        ("chunk size not hex", chunked("zz\r\nLEAK\r\n0\r\n\r\n")),
        ("chunk line ending in LF", chunked("4\nLEAK\r\n0\r\n\r\n")),
        ("chunk data without CRLF", chunked("4\r\nLEAKxx0\r\n\r\n")),
        (
            "chunk extension with bare LF",
            chunked("4;a\nb\r\nLEAK\r\n0\r\n\r\n"),
        ),
        (
            "chunk extension too long",
            chunked(&format!("4;{}\r\nLEAK\r\n0\r\n\r\n", "e".repeat(5000))),
        ),
        (
            "trailer folded",
            chunked("4\r\nLEAK\r\n0\r\nX: a\r\n b\r\n\r\n"),
        ),
        (
            "trailer with space before colon",
            chunked("4\r\nLEAK\r\n0\r\nX : a\r\n\r\n"),
        ),
        // Field syntax.
        (
            "space before colon",
            ok("X : LEAK\r\nContent-Length: 0\r\n", ""),
        ),
        (
            "name not a token",
            ok("X(: LEAK\r\nContent-Length: 0\r\n", ""),
        ),
        (
            "NUL in a value",
            ok("X: LEAK\0\r\nContent-Length: 0\r\n", ""),
        ),
        (
            "bare CR in a value",
            ok("X: a\rLEAK\r\nContent-Length: 0\r\n", ""),
        ),
        ("obs-fold", ok("X: a\r\n LEAK\r\nContent-Length: 0\r\n", "")),
        (
            "head too large",
            ok(&format!("X: LEAK{}\r\n", "a".repeat(17 * 1024)), ""),
        ),
        ("too many fields", ok(&"X-LEAK: 1\r\n".repeat(101), "")),
    ];
    cases
        .into_iter()
        .map(|(what, raw)| (what, raw.into_bytes()))
        .collect()
}

#[test]
fn refused_responses_are_502_and_their_connection_is_closed() {
    let cases = refused_responses();
    let target = scripted(cases.iter().map(|(_, raw)| raw.clone()).collect());
    let p = proxy(&[target.url()], &[]);
    for (n, (what, _)) in cases.iter().enumerate() {
        let mut s = connect(p.addr);
        s.write_all(format!("GET /{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let got = read_until_closed(&mut s);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
            "{what}: {text}"
        );
        assert!(!text.contains("LEAK"), "{what}: {text}");
        // The target's connection is closed, never pooled for the next request.
        target.wait_all_closed();
        assert_eq!(target.accepted(), n + 1, "{what}");
    }
    p.log
        .wait_for("proxy error: invalid response: malformed response head (target 0:");
    p.log.wait_for("proxy error: invalid response body: ");
    p.log
        .wait_for("proxy error: 101 to a request without Upgrade");
}

#[test]
fn a_response_body_that_breaks_after_it_began_to_stream_is_cut_off_and_its_connection_closed() {
    // The target sends the head and a first chunk, waits until the client has them, then
    // sends a chunk line that is not one.
    let go = Arc::new((Mutex::new(false), Condvar::new()));
    let wait = go.clone();
    let target = TestServer::start(move |r, stats| {
        let (mut r, mut w) = recording(r, stats);
        if read_head(&mut r).is_none() {
            return;
        }
        w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ngood\r\n")
            .unwrap();
        let (ready, cv) = &*wait;
        drop(
            cv.wait_while(ready.lock().unwrap(), |ready| !*ready)
                .unwrap(),
        );
        let _ = w.write_all(b"zz\r\nbad\r\n0\r\n\r\n");
        let mut sink = [0u8; 64];
        while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
        stats.closed_by_peer.fetch_add(1, Ordering::SeqCst);
    });
    let p = proxy(&[target.url()], &[]);
    let mut s = connect(p.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"4\r\ngood\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let (ready, cv) = &*go;
    *ready.lock().unwrap() = true;
    cv.notify_all();
    // Cut off: the client never sees the end of the body, nor anything of the bad chunk.
    let rest = read_until_closed(&mut s);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    target.wait_all_closed();
    p.log.wait_for("proxy error: invalid response body: ");
}

#[test]
fn a_response_head_with_bare_lf_reaches_the_client_as_crlf() {
    let target = scripted(vec![
        b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 2\n\nok".to_vec()
    ]);
    let p = proxy(&[target.url()], &[]);
    let mut s = connect(p.addr);
    s.write_all(b"GET /0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut s);
    assert!(only_crlf(&got), "{:?}", String::from_utf8_lossy(&got));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nX-A: 1\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}

#[test]
fn interim_responses_reach_http_1_1_clients_only() {
    let hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let target = scripted(vec![hints.to_vec()]);
    let p = proxy(&[target.url()], &[]);
    let mut s = connect(p.addr);
    s.write_all(b"GET /0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_until_closed(&mut s)).unwrap();
    assert!(
        text.starts_with(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
    // HTTP/1.0 knows no interim response: only the final one.
    let mut s = connect(p.addr);
    s.write_all(b"GET /0 HTTP/1.0\r\n\r\n").unwrap();
    let text = String::from_utf8(read_until_closed(&mut s)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("103"), "{text}");
}

#[test]
fn expect_100_continue_passes_through() {
    let backend = Herd::serve(1, &["--app", "bench"]);
    let p = proxy(&[format!("http://{}", backend.addr)], &[]);
    let mut s = connect(p.addr);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    // The body is sent only once the 100 came back through the proxy.
    assert_eq!(read_response(&mut r, false).unwrap().status, 100);
    s.write_all(b"hello").unwrap();
    let fin = read_response(&mut r, false).unwrap();
    assert_eq!(fin.status, 200);
}

#[test]
fn strip_forwarded_discards_what_the_client_claimed() {
    let a = named("A");
    let forged =
        "GET / HTTP/1.1\r\nHost: front\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\
                  X-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n";
    let lines = |p: &Herd| -> Vec<String> {
        let responses = exchange(p.addr, forged.as_bytes());
        responses[0].text().lines().map(str::to_string).collect()
    };
    // Behind another proxy (the default): the chain is appended to, Forwarded kept; the
    // proxy's own Host and Proto always replace the client's.
    let behind = lines(&proxy(&[a.url()], &[]));
    for expected in [
        "X-Forwarded-For: 6.6.6.6, 127.0.0.1",
        "Forwarded: for=6.6.6.6",
        "X-Forwarded-Host: front",
        "X-Forwarded-Proto: http",
    ] {
        assert!(
            behind.iter().any(|l| l == expected),
            "{expected}: {behind:?}"
        );
    }
    assert!(!behind
        .iter()
        .any(|l| l.contains("evil") || l.contains("https")));
    // At the edge: nothing the client claimed survives.
    let edge = lines(&proxy(&[a.url()], &["--strip-forwarded"]));
    assert!(
        edge.iter().any(|l| l == "X-Forwarded-For: 127.0.0.1"),
        "{edge:?}"
    );
    assert!(
        !edge
            .iter()
            .any(|l| l.contains("6.6.6.6") || l.contains("evil")),
        "{edge:?}"
    );
}
