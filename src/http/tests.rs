//! Session tests: exact bytes on the wire for every rule the session implements, and
//! robustness against arbitrary input split arbitrarily.

use super::*;
use crate::policy::XorShift;

const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

fn hello(_req: &Request<'_>, res: &mut Response) {
    res.header("Content-Type", "text/plain");
    res.body("Hello, World!");
}

/// Answers `<method> <path> <version> [<body>]`, exposing what the session parsed.
fn echo(req: &Request<'_>, res: &mut Response) {
    use std::fmt::Write;
    let _ = write!(res, "{} {} 1.{} [", req.method(), req.path(), req.version());
    res.write(req.body());
    res.write(b"]");
}

/// Feeds `pieces` one after the other, as successive reads, calling `process` after each and
/// flushing `out` entirely whenever it is called. Returns everything written and the last
/// `Next`.
fn feed(session: &mut Session, pieces: &[&[u8]], handler: &dyn Handler) -> (Vec<u8>, Next) {
    let mut input = Vec::new();
    let mut written = Vec::new();
    let mut next = Next::Continue;
    for piece in pieces {
        input.extend_from_slice(piece);
        let mut out = Vec::new();
        next = session.process(&mut input, &mut out, handler, DATE);
        written.extend_from_slice(&out);
        if next == Next::Close {
            break;
        }
    }
    (written, next)
}

fn run(input: &[u8], handler: &dyn Handler) -> (String, Next, Session) {
    let mut session = Session::new(Limits::default());
    let (out, next) = feed(&mut session, &[input], handler);
    (String::from_utf8_lossy(&out).into_owned(), next, session)
}

/// The status codes of every response in `out`, in order.
fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| out.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[test]
fn hello_exact_bytes() {
    let (out, next, session) = run(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", &hello);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Content-Length: 13\r\n\r\nHello, World!"
    );
    assert_eq!(next, Next::Continue);
    assert_eq!(session.requests(), 1);
    assert!(!session.in_request() && !session.has_unread());
}

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], Next, Option<&str>)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Next::Continue, None),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Next::Close,
            Some("close"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close\r\n\r\n",
            Next::Close,
            Some("close"),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            Next::Continue,
            None,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", Next::Close, Some("close")),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            Next::Continue,
            Some("keep-alive"),
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            Next::Close,
            Some("close"),
        ),
    ];
    for (input, expected_next, connection) in cases {
        let (out, next, _) = run(input, &hello);
        assert_eq!(next, *expected_next, "{}", String::from_utf8_lossy(input));
        let header = connection.map(|c| format!("Content-Length: 13\r\nConnection: {c}\r\n\r\n"));
        let header = header.unwrap_or_else(|| "Content-Length: 13\r\n\r\n".into());
        assert!(out.contains(&header), "{out}");
    }
}

#[test]
fn handler_may_close_the_connection() {
    let closing = |_: &Request<'_>, res: &mut Response| res.header("Connection", "close");
    let (out, next, _) = run(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &closing);
    assert_eq!(next, Next::Close);
    assert!(
        out.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (out, next, session) = run(
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
        &echo,
    );
    let date = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
    let expected: String = (1..=3)
        .map(|i| format!("HTTP/1.1 200 OK\r\n{date}Content-Length: 13\r\n\r\nGET /{i} 1.1 []"))
        .collect();
    assert_eq!(out, expected);
    assert_eq!((next, session.requests()), (Next::Continue, 3));
}

/// A conversation exercising every body framing; it ends with a closing request and then
/// pipelined bytes that must stay unread.
const STREAM: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
3;ext=\"a;b\"\r\nabc\r\n0001\r\nd\r\n0\r\nTrailer: x\r\n\r\n\
HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n\
GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
DELETE /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\
GET /never HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn stream_split_anywhere_gives_identical_output() {
    let (whole, next, session) = run(STREAM, &echo);
    assert_eq!(next, Next::Close);
    assert_eq!(session.requests(), 6);
    assert!(session.has_unread());
    assert_eq!(statuses(&whole), [200; 6]);
    for body in [
        "GET /a 1.1 []",
        "POST /cl 1.1 [hello]",
        "POST /chunked 1.1 [abcd]",
        "DELETE /last 1.1 []",
    ] {
        assert!(whole.contains(body), "{body} missing from {whole}");
    }
    assert!(
        whole.contains("Content-Length: 17\r\n\r\nHTTP/1.1 200 OK"),
        "HEAD sends no body"
    );
    assert!(!whole.contains("/never"));

    for split in 0..=STREAM.len() {
        let mut session = Session::new(Limits::default());
        let (a, b) = STREAM.split_at(split);
        let (out, next) = feed(&mut session, &[a, b], &echo);
        assert_eq!(
            (String::from_utf8_lossy(&out), next),
            (whole.as_str().into(), Next::Close),
            "split at {split}"
        );
    }
    let mut session = Session::new(Limits::default());
    let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
    let (out, next) = feed(&mut session, &bytes, &echo);
    assert_eq!(
        (String::from_utf8_lossy(&out), next),
        (whole.as_str().into(), Next::Close)
    );
    assert_eq!(session.requests(), 6);
}

#[test]
fn content_length_body_then_next_request() {
    let mut session = Session::new(Limits::default());
    let head = b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    let (out, _) = feed(
        &mut session,
        &[
            head,
            b"hello",
            b" world",
            b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        &echo,
    );
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("\r\n\r\nPUT /x 1.1 [hello world]HTTP/1.1 200 OK"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nGET /y 1.1 []"), "{out}");
}

#[test]
fn body_in_progress_is_a_request_in_progress() {
    let mut session = Session::new(Limits::default());
    let (mut input, mut out) = (b"GET / HTTP/1.1\r\nHo".to_vec(), Vec::new());
    assert_eq!(
        session.process(&mut input, &mut out, &echo, DATE),
        Next::Continue
    );
    assert!(session.in_request() && out.is_empty());
    input.extend_from_slice(b"st: a\r\nContent-Length: 2\r\n\r\nx");
    session.process(&mut input, &mut out, &echo, DATE);
    assert!(session.in_request() && out.is_empty());
    input.extend_from_slice(b"y");
    session.process(&mut input, &mut out, &echo, DATE);
    assert!(!session.in_request() && input.is_empty());
    assert!(out.ends_with(b"[xy]"));
}

#[test]
fn chunked_body_with_extensions_and_trailers_then_next_request() {
    let (out, next, _) = run(
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value;flag\r\nhello\r\n6 ; ext=\"q;uoted\"\r\n world\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        &echo,
    );
    assert_eq!(next, Next::Continue);
    assert!(
        out.contains("Content-Length: 26\r\n\r\nPOST /up 1.1 [hello world]"),
        "{out}"
    );
    assert!(out.ends_with("GET /next 1.1 []"), "{out}");
}

#[test]
fn chunked_body_does_not_accumulate_in_input() {
    let mut session = Session::new(Limits::default());
    let mut input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let head_len = input.len();
    let mut out = Vec::new();
    for _ in 0..100 {
        input.extend_from_slice(b"400\r\n");
        input.extend_from_slice(&[b'z'; 0x400]);
        input.extend_from_slice(b"\r\n");
        session.process(&mut input, &mut out, &echo, DATE);
        assert_eq!(
            input.len(),
            head_len,
            "decoded chunks are dropped from input"
        );
    }
    input.extend_from_slice(b"0\r\n\r\n");
    session.process(&mut input, &mut out, &echo, DATE);
    assert!(input.is_empty());
    assert!(String::from_utf8_lossy(&out).contains("Content-Length: 102413\r\n"));
}

#[test]
fn expect_100_continue() {
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let mut session = Session::new(Limits::default());
    let (mut input, mut out) = (head.to_vec(), Vec::new());
    assert_eq!(
        session.process(&mut input, &mut out, &echo, DATE),
        Next::Continue
    );
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    input.extend_from_slice(b"da");
    session.process(&mut input, &mut out, &echo, DATE);
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n", "sent only once");
    input.extend_from_slice(b"ta");
    session.process(&mut input, &mut out, &echo, DATE);
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
    assert!(out.ends_with("[data]"));

    // Not sent when the body came along with the head, nor to HTTP/1.0 clients.
    let (out, _, _) = run(&[&head[..], b"data"].concat(), &echo);
    assert_eq!(statuses(&out), [200]);
    let (out, _, _) = run(
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        &echo,
    );
    assert_eq!(out, "");

    // Chunked bodies too.
    let (out, _, _) = run(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        &echo,
    );
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");

    let (out, next, _) = run(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
        &echo,
    );
    assert_eq!((statuses(&out), next), (vec![417], Next::Close));
}

#[test]
fn head_has_length_but_no_body() {
    let (out, next, _) = run(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", &hello);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Content-Length: 13\r\n\r\n"
    );
    assert_eq!(next, Next::Continue);
}

#[test]
fn error_responses() {
    let limits = Limits::default();
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(limits.max_uri_bytes)
    );
    let unfinished_target = format!(
        "GET /{}",
        "a".repeat(limits.max_uri_bytes + REQUEST_LINE_SLACK)
    );
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(limits.max_header_bytes)
    );
    let unfinished_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}",
        "a".repeat(limits.max_header_bytes)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: 1\r\n".repeat(limits.max_headers)
    );
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (long_header.as_bytes(), 431),
        (unfinished_header.as_bytes(), 431),
        (many_headers.as_bytes(), 431),
        (long_target.as_bytes(), 414),
        (unfinished_target.as_bytes(), 414),
        // Without `chunked` last the length is unknowable: 400 (RFC 9112 §6.3 item 4); with
        // it last, the other coding is merely not understood: 501 (RFC 9110 §6.1).
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400),
    ];
    for (input, status) in cases {
        let (out, next, session) = run(input, &echo);
        let shown = String::from_utf8_lossy(&input[..input.len().min(80)]);
        assert_eq!(statuses(&out), [*status], "{shown}");
        assert_eq!(next, Next::Close, "{shown}");
        assert!(out.contains("Connection: close\r\n\r\n"), "{shown}");
        assert!(session.has_unread(), "{shown}");
        assert_eq!(session.requests(), 0);
    }
    let (out, _, _) = run(
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        &echo,
    );
    assert_eq!(
        out,
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"
    );
}

#[test]
fn responses_before_an_error_are_kept() {
    let (out, next, session) = run(
        b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/9.9\r\n\r\nGET /never HTTP/1.1\r\n",
        &echo,
    );
    assert_eq!((statuses(&out), next), (vec![200, 505], Next::Close));
    assert_eq!(session.requests(), 1);
}

#[test]
fn handler_panic_answers_500() {
    let panicking = |req: &Request<'_>, res: &mut Response| {
        res.body("partial output that must not leak");
        if req.path() == "/boom" {
            panic!("boom");
        }
    };
    let (out, next, session) = run(
        b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\nGET /boom HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
        &panicking,
    );
    assert_eq!((statuses(&out), next), (vec![200, 500], Next::Close));
    assert!(
        out.ends_with("Connection: close\r\n\r\nInternal Server Error\n"),
        "{out}"
    );
    assert_eq!(session.requests(), 2);
    assert!(session.has_unread(), "the third request was never read");
}

#[test]
fn output_backpressure() {
    let limits = Limits {
        max_out_bytes: 10,
        ..Limits::default()
    };
    let mut session = Session::new(limits);
    let mut input = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n".repeat(3);
    let mut out = Vec::new();
    let mut answered = Vec::new();
    for expected in 1..=3 {
        assert_eq!(
            session.process(&mut input, &mut out, &echo, DATE),
            Next::Continue
        );
        assert_eq!(session.requests(), expected);
        assert_eq!(
            statuses(&String::from_utf8_lossy(&out)),
            [200],
            "one response per flush"
        );
        assert_eq!(session.in_request(), expected < 3);
        answered.append(&mut out);
    }
    assert!(input.is_empty());
    // Nothing is processed while `out` is over the limit.
    let mut full = vec![0; 11];
    input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    session.process(&mut input, &mut full, &echo, DATE);
    assert_eq!(full.len(), 11);
}

#[test]
fn unread_input_after_close() {
    // Body announced but refused: the client is still sending it.
    let (_, next, session) = run(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\nabc",
        &echo,
    );
    assert_eq!(next, Next::Close);
    assert!(session.has_unread());
    // A clean close with nothing behind it.
    let (_, next, session) = run(b"GET / HTTP/1.0\r\n\r\n", &echo);
    assert_eq!(next, Next::Close);
    assert!(!session.has_unread());
    // Pipelined bytes behind a close.
    let (_, _, session) = run(b"GET / HTTP/1.0\r\n\r\nGET", &echo);
    assert!(session.has_unread());
}

#[test]
fn timeout_answers_408() {
    let mut session = Session::new(Limits::default());
    let (mut input, mut out) = (b"GET / HTTP/1.1\r\n".to_vec(), Vec::new());
    session.process(&mut input, &mut out, &echo, DATE);
    assert!(session.in_request());
    session.timeout(&mut out, DATE);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(statuses(&text), [408]);
    assert!(text.ends_with("Connection: close\r\n\r\nRequest Timeout\n"));
    assert!(!session.in_request());
    assert_eq!(
        session.process(&mut input, &mut out, &echo, DATE),
        Next::Close
    );
    session.timeout(&mut out, DATE);
    assert_eq!(out.len(), text.len(), "nothing more once closed");
}

#[test]
fn drain_closes_after_the_next_response() {
    let mut session = Session::new(Limits::default());
    let (mut input, mut out) = (
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n".to_vec(),
        Vec::new(),
    );
    session.close_after_current();
    assert_eq!(
        session.process(&mut input, &mut out, &hello, DATE),
        Next::Close
    );
    assert!(out.ends_with(b"Connection: close\r\n\r\nHello, World!"));
    assert_eq!(session.requests(), 1);
    assert!(session.has_unread());
}

#[test]
fn buffers_are_reused_across_requests() {
    let mut session = Session::new(Limits::default());
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let (mut input, mut out) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    let mut capacities = None;
    for _ in 0..100 {
        input.extend_from_slice(request);
        session.process(&mut input, &mut out, &hello, DATE);
        out.clear();
        let now = (input.capacity(), out.capacity());
        assert_eq!(*capacities.get_or_insert(now), now);
    }
    assert_eq!(session.requests(), 100);
}

/// Deterministic randomness (the crate's xorshift64*), with usize draws for indexing.
struct Rng(XorShift);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(XorShift::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

#[test]
fn random_input_in_random_splits_never_panics() {
    // Fragments of valid HTTP make the random streams reach deep into the parser; raw random
    // bytes cover everything else.
    const FRAGMENTS: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"POST /x HTTP/1.1\r\n",
        b"HEAD / HTTP/1.0\r\n",
        b"Host: a\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: 1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Connection: close\r\n",
        b"Connection: keep-alive\r\n",
        b"Expect: 100-continue\r\n",
        b"\r\n",
        b"\n",
        b"3\r\nabc\r\n",
        b"0\r\n\r\n",
        b"1;e=1\r\nx\r\n",
        b"abc",
        b" ",
        b":",
        b"ffffffff\r\n",
        b"HTTP/2.0",
        b"X: y\r\n",
    ];
    let limits = Limits {
        max_header_bytes: 512,
        max_uri_bytes: 64,
        max_headers: 8,
        max_body_bytes: 256,
        max_out_bytes: 300,
    };
    let panicky = |req: &Request<'_>, res: &mut Response| {
        res.body(req.body());
        if req.body() == b"abc" {
            panic!("handler panic under fuzzing");
        }
    };
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut stream = Vec::new();
        for _ in 0..rng.below(40) {
            if rng.below(4) == 0 {
                stream.extend((0..rng.below(8)).map(|_| rng.next() as u8));
            } else {
                stream.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
            }
        }
        let mut session = Session::new(limits.clone());
        let (mut input, mut out) = (Vec::new(), Vec::new());
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len()));
            rest = tail;
            input.extend_from_slice(piece);
            let before = input.len();
            let next = session.process(&mut input, &mut out, &panicky, DATE);
            assert!(input.len() <= before);
            if rng.below(2) == 0 {
                out.clear();
            }
            if next == Next::Close {
                break;
            }
        }
        if session.in_request() {
            session.timeout(&mut out, DATE);
        }
    }
}
