//! Drives one [`herd::http::Session`] the way a worker's connection does, over input split
//! into reads, and checks that what it writes is a well-formed sequence of responses.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/http_session.rs`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`, which includes this file with `#[path]`), so the corpus the fuzzer
//! found is replayed by `cargo test` through exactly the code the fuzzer ran.
//!
//! A fuzz input is `[flags] [n] [len_1 .. len_n] [data…]`: `n % 16` explicit read lengths
//! (each 1 to 256 bytes), then whatever data remains arrives as one last read. `flags` bit 0
//! asks for a graceful drain after the first read, bit 1 for the request timeout (408) at
//! the end if a request is under way, bit 2 for tight limits (so the 413/414/431 and
//! backpressure paths are reachable with small inputs).

use herd::http::{Limits, Next, Request, Response, Session};

/// The Date header value; fixed so that runs are reproducible.
pub const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

/// Echoes what the session parsed, so that parsing bugs show up in the output, and marks
/// responses to HEAD (which carry a Content-Length but no body) for the framing check.
/// (It never panics: libFuzzer's panic hook aborts before `catch_unwind` could answer 500.)
pub fn echo(req: &Request<'_>, res: &mut Response) {
    if req.method() == "HEAD" {
        res.header("X-Head", "1");
    }
    res.write(req.method().as_bytes());
    res.write(b" ");
    res.write(req.path().as_bytes());
    res.write(b" ");
    res.write(req.body());
}

/// How a fuzz input is replayed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plan {
    /// Graceful drain after the first read.
    pub drain: bool,
    /// Fire the request timeout at the end when a request is under way.
    pub timeout: bool,
    /// Small limits instead of the defaults.
    pub tight: bool,
}

/// Splits a fuzz input into its plan and reads, per the encoding in the module doc.
pub fn decode(input: &[u8]) -> (Plan, Vec<&[u8]>) {
    let (&flags, rest) = input.split_first().unwrap_or((&0, &[]));
    let (&n, mut rest) = rest.split_first().unwrap_or((&0, &[]));
    let n = (n % 16) as usize;
    let lens: Vec<usize> = rest.iter().take(n).map(|&b| b as usize + 1).collect();
    rest = &rest[lens.len()..];
    let mut reads = Vec::new();
    for len in lens {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(len.min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    if !rest.is_empty() {
        reads.push(rest);
    }
    let plan = Plan {
        drain: flags & 1 != 0,
        timeout: flags & 2 != 0,
        tight: flags & 4 != 0,
    };
    (plan, reads)
}

/// The limits a plan runs with.
pub fn limits(plan: Plan) -> Limits {
    if plan.tight {
        Limits {
            max_header_bytes: 256,
            max_uri_bytes: 64,
            max_headers: 4,
            max_body_bytes: 64,
            max_out_bytes: 128,
        }
    } else {
        Limits::default()
    }
}

/// Feeds `reads` to a fresh session with `limits` as a worker would: append each read to the input,
/// process, flush the output, and process again after a flush while unanswered input
/// remains (the session stops at `max_out_bytes`). Returns every byte written, in order.
/// Panics if the session panics or breaks one of its promises.
pub fn replay(limits: &Limits, plan: Plan, reads: &[&[u8]]) -> Vec<u8> {
    let mut session = Session::new(limits.clone());
    let (mut input, mut out, mut written) = (Vec::new(), Vec::new(), Vec::new());
    let mut closed = false;
    'reads: for (i, read) in reads.iter().enumerate() {
        input.extend_from_slice(read);
        loop {
            let before = input.len();
            let next = session.process(&mut input, &mut out, &echo, DATE);
            assert!(input.len() <= before, "process grew its input");
            let produced = !out.is_empty();
            written.append(&mut out);
            if next == Next::Close {
                closed = true;
                break 'reads;
            }
            // Called again only after a flush with input left, as the worker does.
            if !produced || input.is_empty() {
                break;
            }
        }
        if i == 0 && plan.drain {
            session.close_after_current();
        }
    }
    if !closed && plan.timeout && session.in_request() {
        session.timeout(&mut out, DATE);
        assert!(!out.is_empty(), "a timeout in a request answers 408");
        written.append(&mut out);
    }
    // Once closed, the session stays closed and writes nothing more.
    if closed {
        let mut more = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        let next = session.process(&mut more, &mut out, &echo, DATE);
        assert_eq!(next, Next::Close);
        assert!(out.is_empty(), "a closed session wrote more output");
    }
    check_responses(&written);
    written
}

/// Asserts that `out` is a sequence of complete HTTP/1.1 responses, each framed by its
/// Content-Length (none for HEAD, 1xx, 204 and 304). Returns their status codes.
pub fn check_responses(mut out: &[u8]) -> Vec<u16> {
    let mut statuses = Vec::new();
    while !out.is_empty() {
        assert!(
            out.starts_with(b"HTTP/1.1 "),
            "a response does not start with `HTTP/1.1 `: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(80)])
        );
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head without its blank line")
            + 4;
        let head = std::str::from_utf8(&out[..end]).expect("a response head that is not UTF-8");
        let status: u16 = head[9..12].parse().expect("a status code of three digits");
        let mut length = None;
        let mut is_head = false;
        for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(": ").expect("a header line without `: `");
            if name.eq_ignore_ascii_case("content-length") {
                assert!(length.is_none(), "two Content-Length fields");
                length = Some(value.parse::<usize>().expect("a numeric Content-Length"));
            }
            is_head |= name == "X-Head";
        }
        let bodiless = is_head || status < 200 || status == 204 || status == 304;
        let body = if bodiless {
            0
        } else {
            length.expect("a response without Content-Length")
        };
        assert!(out.len() >= end + body, "a response body cut short");
        statuses.push(status);
        out = &out[end + body..];
    }
    statuses
}
