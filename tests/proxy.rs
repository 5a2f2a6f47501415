//! `herd proxy` end to end: real proxy processes forwarding over TCP to real targets (`herd
//! serve` instances, or small servers in this file for what herd serve cannot do: count
//! connections, send garbage, close mid-response, stream large bodies, echo a WebSocket).

mod common;
mod proxy_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;

use common::*;
use proxy_support::*;

#[test]
fn round_robin_per_request_over_pooled_connections() {
    let servers = [named("A"), named("B"), named("C")];
    let targets: Vec<String> = servers.iter().map(TestServer::url).collect();
    let p = proxy(&targets, &[]);
    let mut s = connect(p.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut order = String::new();
    for _ in 0..9 {
        let resp = get_on(&mut s, &mut r, "/who");
        assert_eq!(resp.status, 200);
        order.push_str(resp.text().lines().next().unwrap());
    }
    // Per request, not per connection: one client connection visits every target in turn.
    assert_eq!(order, "ABCABCABC");
    // Keep-alive reuse: each target saw one connection for its three requests.
    for server in &servers {
        assert_eq!(server.accepted(), 1);
    }
    // A second client connection reuses the same pooled upstream connections.
    let mut s2 = connect(p.addr);
    let mut r2 = BufReader::new(s2.try_clone().unwrap());
    for _ in 0..3 {
        assert_eq!(get_on(&mut s2, &mut r2, "/who").status, 200);
    }
    for server in &servers {
        assert_eq!(server.accepted(), 1);
    }

    // What the target received: the client's Host, X-Forwarded-*, no hop-by-hop fields.
    s.write_all(
        b"GET /h HTTP/1.1\r\nHost: front.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 10.1.2.3\r\nX-End: 2\r\n\r\n",
    )
    .unwrap();
    let received = read_response(&mut r, false).unwrap().text();
    let lines: Vec<&str> = received.lines().skip(1).collect();
    assert_eq!(lines[0], "GET /h HTTP/1.1");
    for expected in [
        "Host: front.test",
        "X-End: 2",
        "X-Forwarded-For: 10.1.2.3, 127.0.0.1",
        "X-Forwarded-Proto: http",
        "X-Forwarded-Host: front.test",
    ] {
        assert!(lines.contains(&expected), "{expected} missing in {lines:?}");
    }
    for hop in ["Connection", "X-Hop", "Keep-Alive", "TE"] {
        assert!(
            !lines.iter().any(|l| l.starts_with(&format!("{hop}:"))),
            "{hop} forwarded: {lines:?}"
        );
    }
}

#[test]
fn change_origin_sends_the_targets_host() {
    let a = named("A");
    let p = proxy(&[a.url()], &["--change-origin"]);
    let text = get(p.addr, "/").text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&format!("Host: {}", a.addr).as_str()),
        "{text}"
    );
    assert!(lines.contains(&"X-Forwarded-Host: test"), "{text}");
}

#[test]
fn change_origin_names_the_retried_target() {
    // The first target refuses, so the request is retried on the second: the Host it
    // carries must name the second, not the one that refused.
    let closed = closed_port();
    let a = named("A");
    let p = proxy(&[url(closed.addr), a.url()], &["--change-origin"]);
    let text = get(p.addr, "/").text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "A", "{text}");
    assert!(
        lines.contains(&format!("Host: {}", a.addr).as_str()),
        "{text}"
    );
    assert!(!text.contains(&closed.addr.to_string()), "{text}");
    // (It was a retry: the refusal is in the log.)
    p.log.wait_for("proxy error: connect");
    // HTTP/1.0 without Host: the proxy supplies the target's, and a retry changes it too.
    let p = proxy(&[url(closed.addr), a.url()], &[]);
    let r = exchange(p.addr, b"GET /old HTTP/1.0\r\n\r\n");
    let text = r[0].text();
    assert!(
        text.lines().any(|l| l == format!("Host: {}", a.addr)),
        "{text}"
    );
    p.log.wait_for("proxy error: connect");
}

#[test]
fn herd_serve_targets_pipelining_and_http_1_0() {
    let backends = [
        Herd::serve(1, &["--app", "bench"]),
        Herd::serve(1, &["--app", "bench"]),
    ];
    let targets: Vec<String> = backends.iter().map(|b| url(b.addr)).collect();
    let p = proxy(&targets, &["--balance", "least-connections"]);
    assert_pipelined_echo(p.addr);

    // HTTP/1.0: closes after the response unless it asked for keep-alive.
    let all = exchange(
        p.addr,
        b"GET /echo/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo/2 HTTP/1.0\r\n\r\n",
    );
    let texts: Vec<String> = all.iter().map(Response::text).collect();
    assert_eq!(texts, ["GET /echo/1 ", "GET /echo/2 "]);
    assert_eq!(all[0].header("connection"), Some("keep-alive"));
    assert_eq!(all[1].header("connection"), Some("close"));
}

/// Size of the streamed bodies (the 1 GB run is in scripts/proxy-large-bodies.sh).
const LARGE: usize = 64 << 20;

/// A cheap checksum that notices reordered, lost or repeated bytes.
fn checksum(state: &mut (u64, u64), bytes: &[u8]) {
    for &b in bytes {
        state.0 += 1;
        state.1 = state
            .1
            .wrapping_mul(31)
            .wrapping_add(u64::from(b) ^ (state.0 & 0xff));
    }
}

/// The body's byte at `i`.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Uploads: answers `LEN SUM` of the body. Downloads (`GET /download/chunked` or
/// `/download/length`): `LARGE` bytes of `pattern`.
fn bulk_server() -> TestServer {
    TestServer::start(|mut r, _| {
        while let Some(head) = read_head(&mut r) {
            let mut sum = (0, 0);
            if !read_body(&mut r, &head, |b| checksum(&mut sum, b)) {
                return;
            }
            let w = r.get_mut();
            let chunked = head[0].contains("/download/chunked");
            let ok = if head[0].starts_with("GET /download/") {
                let header = if chunked {
                    "Transfer-Encoding: chunked".to_string()
                } else {
                    format!("Content-Length: {LARGE}")
                };
                w.write_all(format!("HTTP/1.1 200 OK\r\n{header}\r\n\r\n").as_bytes())
                    .is_ok()
                    && (0..LARGE).step_by(100_000).all(|start| {
                        let piece: Vec<u8> =
                            (start..(start + 100_000).min(LARGE)).map(pattern).collect();
                        let framed = if chunked {
                            [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat()
                        } else {
                            piece
                        };
                        w.write_all(&framed).is_ok()
                    })
                    && (!chunked || w.write_all(b"0\r\n\r\n").is_ok())
            } else {
                let body = format!("{} {}", sum.0, sum.1);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                w.write_all(resp.as_bytes()).is_ok()
            };
            if !ok {
                return;
            }
        }
    })
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn large_bodies_stream_both_ways_with_bounded_memory() {
    let server = bulk_server();
    let p = proxy(&[server.url()], &[]);
    let mut expected = (0, 0);
    let body: Vec<u8> = (0..LARGE).map(pattern).collect();
    checksum(&mut expected, &body);
    let expected_text = format!("{} {}", expected.0, expected.1);

    let mut s = connect(p.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    // Upload, Content-Length.
    s.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {LARGE}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.write_all(&body).unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().text(), expected_text);
    // Upload, chunked.
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for piece in body.chunks(1 << 20) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        s.write_all(piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().text(), expected_text);
    // Downloads, both framings: the proxy forwards chunks as they are.
    for kind in ["length", "chunked"] {
        s.write_all(format!("GET /download/{kind} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let head = {
            let mut status = String::new();
            r.read_line(&mut status).unwrap();
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            let mut lines = Vec::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                if l.trim_end().is_empty() {
                    break lines;
                }
                lines.push(l.trim_end().to_string());
            }
        };
        let mut sum = (0, 0);
        assert!(
            read_body(&mut r, &head, |b| checksum(&mut sum, b)),
            "{kind}"
        );
        assert_eq!(sum, expected, "{kind}");
    }
    // 4 × 64 MB went through; the worker never held more than a few buffers of it.
    let worker = p.live_worker_pids()[0];
    let peak = peak_rss_kb(worker);
    assert!(peak < 32 * 1024, "worker peak RSS {peak} kB");
}

/// A target that answers an Upgrade request with 101, then echoes raw bytes until the proxy
/// closes (counted in `closed_by_peer`).
fn websocket_echo() -> TestServer {
    TestServer::start(|mut r, stats| {
        let Some(head) = read_head(&mut r) else {
            return;
        };
        assert_eq!(header(&head, "upgrade"), Some("websocket"));
        let w = r.get_mut();
        w.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .unwrap();
        // Echo raw bytes until the proxy closes.
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    stats.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(n) => {
                    if r.get_mut().write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

#[test]
fn websocket_upgrade_is_tunnelled_both_ways() {
    let server = websocket_echo();
    let p = proxy(&[server.url()], &[]);
    let mut s = connect(p.addr);
    // The first frame rides in the same packet as the upgrade request.
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nfirst",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let head = read_head(&mut r).unwrap();
    assert_eq!(head[0], "HTTP/1.1 101 Switching Protocols");
    assert_eq!(header(&head, "upgrade"), Some("websocket"));
    assert_eq!(header(&head, "connection"), Some("Upgrade"));
    let mut echoed = [0u8; 5];
    r.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"first");
    for msg in [&b"\x81\x05hello"[..], &[7u8; 100_000]] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        r.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    // The client closes: the proxy closes the target side too.
    drop(r);
    drop(s);
    wait_until("the target to see the tunnel closed", || {
        server.stats.closed_by_peer.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn refused_target_is_retried_on_the_next_then_skipped_and_brought_back() {
    // Target 0 is a closed port that comes back later on the same port.
    let closed = closed_port();
    let down = closed.addr;
    let b = named("B");
    let p = proxy(&[url(down), b.url()], &[]);
    let mut s = connect(p.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..6 {
        let resp = get_on(&mut s, &mut r, "/");
        assert_eq!(resp.status, 200);
        assert!(resp.text().starts_with('B'));
    }
    p.log.wait_for(&format!(
        "proxy error: connect: Connection refused (os error 111) (target 0: {})",
        url(down)
    ));
    p.log.wait_for("proxy: target 0 (");
    assert!(p
        .log
        .lines()
        .iter()
        .any(|l| l.contains("marked down for 1s")));
    // Marked down after two refusals: skipped without even a connect attempt.
    let refusals = || {
        p.log
            .lines()
            .iter()
            .filter(|l| l.contains("Connection refused"))
            .count()
    };
    let before = refusals();
    for _ in 0..4 {
        assert_eq!(get_on(&mut s, &mut r, "/").status, 200);
    }
    assert!(
        refusals() <= before + 1,
        "a down target was tried repeatedly"
    );

    // It comes back: after its back-off, a request succeeds there and it is put back.
    drop(closed); // free the port for the target that comes back on it
    let a = TestServer::bind(TcpListener::bind(down).unwrap(), |mut r, _| {
        while let Some(head) = read_head(&mut r) {
            read_body(&mut r, &head, |_| {});
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nBACK");
        }
    });
    wait_until("target 0 to be used again", || {
        get_on(&mut s, &mut r, "/").text().starts_with("BACK")
    });
    p.log.wait_for("is back up");
    assert!(a.accepted() >= 1);
    // Back in the rotation: it alternates with B again.
    let texts: Vec<String> = (0..4)
        .map(|_| {
            get_on(&mut s, &mut r, "/")
                .text()
                .lines()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts.iter().filter(|t| *t == "BACK").count(),
        2,
        "{texts:?}"
    );
}

#[test]
fn all_targets_down_is_502() {
    let (x, y) = (closed_port(), closed_port());
    let p = proxy(&[url(x.addr), url(y.addr)], &[]);
    let resp = get(p.addr, "/");
    assert_eq!(resp.status, 502);
    assert!(resp.text().contains("Bad Gateway"), "{}", resp.text());
    p.log.wait_for("proxy error: connect: Connection refused");
    // Once both are marked down, each request still tries the one whose back-off ends
    // first: the 502 says that attempt failed, not only that the targets were marked.
    for _ in 0..3 {
        assert_eq!(get(p.addr, "/").status, 502);
    }
    p.log
        .wait_for("proxy: every target is marked down; trying target ");
    let refusals = p.log.wait_for_n(5, |l| l.contains("Connection refused"));
    assert!(refusals.len() >= 5, "{refusals:?}");
}

/// A target that answers `GET /0` with garbage and anything else with `200 ok`.
fn garbage_on_path_0() -> TestServer {
    scripted(vec![
        b"SPDY/9 what\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ])
}

#[test]
fn one_bad_response_does_not_take_a_single_target_down() {
    let target = garbage_on_path_0();
    let p = proxy(&[target.url()], &[]);
    assert_eq!(get(p.addr, "/0").status, 502);
    // The very next request is served.
    let resp = get(p.addr, "/1");
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
}

#[test]
fn a_target_marked_down_still_serves_when_it_is_the_only_one() {
    let target = garbage_on_path_0();
    let p = proxy(&[target.url()], &[]);
    assert_eq!(get(p.addr, "/0").status, 502);
    assert_eq!(get(p.addr, "/0").status, 502);
    p.log.wait_for("proxy: target 0 (");
    p.log.wait_for("marked down for 1s");
    // Marked down, but the only target: tried anyway, and it answers.
    let resp = get(p.addr, "/1");
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    p.log
        .wait_for("proxy: every target is marked down; trying target 0, whose back-off ends first");
    p.log.wait_for("is back up");
}

#[test]
fn no_response_head_in_time_is_504() {
    let backend = Herd::serve(1, &["--app", "bench"]);
    let p = proxy(&[url(backend.addr)], &["--upstream-timeout", "0.5"]);
    let resp = get(p.addr, "/sleep/3000");
    assert_eq!(resp.status, 504);
    assert!(resp.text().contains("Gateway Timeout"));
    p.log
        .wait_for("proxy error: no response within 0.5s (target 0:");
}

#[test]
fn garbage_or_early_close_before_the_response_is_502() {
    let garbage = TestServer::start(|mut r, _| {
        if read_head(&mut r).is_some() {
            let _ = r.get_mut().write_all(b"SPDY/9 what\r\n\r\n");
        }
    });
    let closer = TestServer::start(|mut r, _| {
        let _ = read_head(&mut r);
    });
    for (server, cause) in [
        (
            &garbage,
            "invalid response: malformed response head (target 0: ",
        ),
        (&closer, "connection closed before a response"),
    ] {
        let p = proxy(&[server.url()], &[]);
        let resp = get(p.addr, "/");
        assert_eq!(resp.status, 502, "{cause}");
        p.log.wait_for(&format!("proxy error: {cause}"));
        // A response is never called a request in the log.
        let lines = p.log.lines();
        assert!(
            !lines.iter().any(|l| l.contains("request head")),
            "{lines:?}"
        );
    }
}

#[test]
fn close_mid_response_closes_the_client_connection() {
    let server = TestServer::start(|mut r, _| {
        if read_head(&mut r).is_some() {
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
        }
    });
    let p = proxy(&[server.url()], &[]);
    let mut s = connect(p.addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    // EOF or a reset: either way the connection ends before the 100 announced bytes.
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.len() < text.find("\r\n\r\n").unwrap() + 4 + 100,
        "{text}"
    );
    p.log
        .wait_for("proxy error: connection closed mid-response (target 0:");
}

#[test]
fn client_disconnect_mid_request_closes_the_upstream_connection() {
    let server = TestServer::start(|mut r, stats| {
        // Read whatever comes until EOF: the proxy must not keep this connection.
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        stats.closed_by_peer.fetch_add(1, Ordering::SeqCst);
    });
    let p = proxy(&[server.url()], &[]);
    let mut s = connect(p.addr);
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\npartial")
        .unwrap();
    wait_until("the proxy to connect to the target", || {
        server.accepted() == 1
    });
    drop(s);
    wait_until("the upstream connection to be closed", || {
        server.stats.closed_by_peer.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn an_idle_tunnel_is_closed_on_both_sides() {
    let server = websocket_echo();
    let p = proxy(&[server.url()], &["--tunnel-timeout", "0.3"]);
    let mut s = connect(p.addr);
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(
        read_head(&mut r).unwrap()[0],
        "HTTP/1.1 101 Switching Protocols"
    );
    // Nothing either way (no exchange here, so that a slow machine cannot fail the test by
    // letting 0.3 s pass between steps): the proxy closes the client side (EOF, not the
    // read timeout)…
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    let n = r.read_to_end(&mut rest).expect("EOF from the proxy");
    assert_eq!(n, 0, "{rest:?}");
    // …and the target side.
    wait_until("the target to see the tunnel closed", || {
        server.stats.closed_by_peer.load(Ordering::SeqCst) == 1
    });
    p.log.wait_for("tunnel idle for 0.3s, closed");
}

#[test]
fn upstream_sockets_count_against_the_workers_fd_budget() {
    raise_fd_limit();
    // A target that takes 100 ms to answer, so that many requests are in flight at once.
    let slow = TestServer::start(|mut r, _| {
        while let Some(head) = read_head(&mut r) {
            read_body(&mut r, &head, |_| {});
            std::thread::sleep(std::time::Duration::from_millis(100));
            if r.get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    // 128 descriptors: a worker's budget is 64. Were clients alone counted, it would take
    // 64 clients, and their 64 upstream connections would run it out of descriptors (502s).
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=128:128")
        .arg(herd_bin())
        .args(["proxy", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--target", &slow.url()]);
    let p = Herd::start(cmd, 1);
    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(p.addr)).collect();
    for c in &mut clients {
        c.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for c in clients {
        let r = read_response(&mut BufReader::new(c), false).expect("a response");
        assert_eq!(r.status, 200, "{}: {:?}", r.text(), p.log.lines());
    }
    assert!(
        !p.log.lines().iter().any(|l| l.contains("proxy error")),
        "{:?}",
        p.log.lines()
    );
}

/// A target whose connect fails at once, inside `connect(2)`: TCP cannot connect to a
/// multicast address, and Linux says so with `ENETUNREACH` before sending anything, whatever
/// the machine's routes (a refused port fails later, with the RST, as an event).
const UNREACHABLE: &str = "http://224.0.0.1:1";

#[test]
fn a_retry_whose_connect_fails_at_once_is_blamed_on_its_own_target() {
    // Round-robin: the first request goes to target 0, which refuses; its retry goes to
    // target 1, whose connect fails at once. The second request starts on target 1.
    let closed = closed_port();
    let p = proxy(&[url(closed.addr), UNREACHABLE.to_string()], &[]);
    for _ in 0..2 {
        let resp = get(p.addr, "/");
        assert_eq!(resp.status, 502, "{}", resp.text());
    }
    let unreachable = format!(
        "proxy error: connect: Network is unreachable (os error 101) (target 1: {UNREACHABLE})"
    );
    p.log.wait_for_n(2, |l| l.contains(&unreachable));
    let refused = format!(
        "proxy error: connect: Connection refused (os error 111) (target 0: {})",
        url(closed.addr)
    );
    p.log.wait_for_n(2, |l| l.contains(&refused));
    let lines = p.log.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Network is unreachable") && l.contains("(target 0")),
        "the failed retry was blamed on the first target: {lines:?}"
    );
    // Each target failed twice, and is marked down once: no count went wrong (an in-flight
    // count decremented twice panics a debug build, here the worker).
    for target in ["target 0 (", "target 1 ("] {
        let marked = |l: &str| l.contains(target) && l.contains("marked down for 1s");
        p.log.wait_for_n(1, marked);
        // Read again: on a busy machine the line may have come after `lines` was taken.
        let lines = p.log.lines();
        assert_eq!(lines.iter().filter(|l| marked(l)).count(), 1, "{lines:?}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("exited")),
        "a worker died: {lines:?}"
    );
}

/// Whether process `pid` holds the server side of the TCP connection whose client end is
/// `client` (IPv4): its socket inode, from /proc/net/tcp, among the process's fds.
fn holds_connection_from(pid: i32, client: SocketAddr) -> bool {
    let SocketAddr::V4(client) = client else {
        panic!("IPv4 only")
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(client.ip().octets()),
        client.port()
    );
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let Some(inode) = tcp.lines().skip(1).find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        // State 01: established (a closed connection's TIME_WAIT entry has no inode).
        (fields.get(2) == Some(&remote.as_str()) && fields[3] == "01")
            .then(|| fields[9].to_string())
    }) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .any(|link| link.to_string_lossy() == wanted)
        })
        .unwrap_or(false)
}

#[test]
fn a_request_sent_just_after_the_drain_began_is_answered() {
    let a = named("A");
    let mut cmd = proxy_command(&[a.url()], &[]);
    cmd.env("RUST_LOG", "debug"); // for the worker's "draining" line
    let mut p = Herd::start(cmd, 1);
    let worker = p.live_worker_pids()[0];
    // A keep-alive client served once and now idle, and one that has sent nothing yet.
    let mut idle = connect(p.addr);
    let mut idle_r = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(get_on(&mut idle, &mut idle_r, "/").status, 200);
    let mut fresh = connect(p.addr);
    let opened = std::time::Instant::now();
    let fresh_r = BufReader::new(fresh.try_clone().unwrap());
    let from = fresh.local_addr().unwrap();
    wait_until("the worker to hold the fresh connection", || {
        holds_connection_from(worker, from)
    });
    // The fresh connection is older than the drain's grace when the drain begins: its
    // grace still counts from the drain, not from its arrival.
    let grace = herd::http::Timeouts::default().drain_grace;
    wait_until(
        "the fresh connection to be older than the drain grace",
        || opened.elapsed() > grace,
    );
    p.signal(libc::SIGTERM);
    p.log.wait_for("worker 1 draining");
    // Both requests leave after the drain began, as a request already on the wire during a
    // reload: each gets a whole answer that says the connection closes, then the close.
    for (s, mut r) in [(&mut idle, idle_r), (&mut fresh, fresh_r)] {
        s.write_all(b"GET /late HTTP/1.1\r\nHost: front.test\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).expect("an answer to the late request");
        assert_eq!(resp.status, 200);
        assert!(resp.text().starts_with("A\nGET /late "), "{}", resp.text());
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(
            read_response(&mut r, false).is_none(),
            "closed after the answer"
        );
    }
    assert_eq!(p.wait_exit().code(), Some(0));
}

/// The proxy of `examples/proxy.rs`: built from the library, with every client-side time
/// limit (`http::Timeouts`) set to `seconds`.
fn library_proxy(targets: &[String], seconds: &str) -> Herd {
    let mut cmd = Command::new(example_bin("proxy"));
    cmd.args(["127.0.0.1:0", seconds]).args(targets);
    Herd::start(cmd, 1)
}

#[test]
fn client_time_limits_come_from_the_configured_timeouts() {
    let a = named("A");
    let p = library_proxy(&[a.url()], "0.2");
    let defaults = herd::http::Timeouts::default();
    // A head that never ends: 408 after 0.2 s, not after the default 10 s.
    let started = std::time::Instant::now();
    let mut slow = connect(p.addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let resp = read_response(&mut BufReader::new(slow), false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(
        started.elapsed() < defaults.request / 2,
        "408 after {:?}",
        started.elapsed()
    );
    // An idle keep-alive connection: closed after 0.2 s, not after the default 5 s.
    let mut s = connect(p.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(get_on(&mut s, &mut r, "/").status, 200);
    let idle = std::time::Instant::now();
    assert!(read_response(&mut r, false).is_none(), "closed when idle");
    assert!(
        idle.elapsed() < defaults.keep_alive / 2,
        "closed after {:?}",
        idle.elapsed()
    );
}
