//! Property: however a stream of valid requests is split into reads, the session writes
//! exactly the same bytes. Streams and splits come from a seeded generator (so a failure
//! names a reproducible case): requests with and without bodies (Content-Length and chunked,
//! with extensions and trailers), HEAD, HTTP/1.0 keep-alive, pipelined, under default and
//! tiny output limits (backpressure).

#[path = "../fuzz/drive.rs"]
#[allow(dead_code)]
mod drive;

use herd::http::Limits;
use herd::policy::XorShift;

/// Deterministic randomness (the crate's xorshift64*), with usize draws for indexing.
struct Rng(XorShift);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(XorShift::new(seed))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One valid request; `last` may ask to close.
fn request(rng: &mut Rng, last: bool) -> Vec<u8> {
    let method = rng.pick(&["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"]);
    let path = rng.pick(&[
        "/",
        "/a",
        "/a/b?c=d&e",
        "/%20x",
        "/echo/long/path/with/segments",
    ]);
    let http10 = rng.below(6) == 0;
    let mut req = format!("{method} {path} HTTP/1.{}\r\n", u8::from(!http10));
    if !http10 || rng.below(2) == 0 {
        req.push_str("Host: example.test\r\n");
    }
    for _ in 0..rng.below(4) {
        let name = rng.pick(&["X-A", "Accept", "User-Agent", "X-Forwarded-For", "Cookie"]);
        let value = rng.pick(&[
            "1",
            "text/plain, */*;q=0.8",
            "herd-test/1.0",
            "  spaced  ",
            "",
        ]);
        req.push_str(&format!("{name}:{value}\r\n"));
    }
    if http10 {
        req.push_str("Connection: keep-alive\r\n");
    } else if last && rng.below(2) == 0 {
        req.push_str("Connection: close\r\n");
    }
    let mut body = Vec::new();
    match rng.below(3) {
        0 => {}
        1 => {
            let len = rng.below(300);
            body = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            req.push_str(&format!("Content-Length: {len}\r\n\r\n"));
        }
        _ if !http10 => {
            req.push_str("Transfer-Encoding: chunked\r\n\r\n");
            for _ in 0..rng.below(4) {
                let len = 1 + rng.below(40);
                let ext = rng.pick(&["", ";x=1", ";name=\"q;v\""]);
                body.extend(format!("{len:x}{ext}\r\n").bytes());
                body.extend((0..len).map(|i| b'0' + (i % 10) as u8));
                body.extend(b"\r\n");
            }
            body.extend(b"0\r\n");
            if rng.below(2) == 0 {
                body.extend(b"Trailer-Field: t\r\n");
            }
            body.extend(b"\r\n");
        }
        _ => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    if !req.ends_with("\r\n\r\n") {
        req.push_str("\r\n");
    }
    let mut bytes = req.into_bytes();
    bytes.extend(body);
    bytes
}

/// `data` cut at `cuts` random places.
fn split<'a>(rng: &mut Rng, data: &'a [u8], cuts: usize) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = (0..cuts).map(|_| rng.below(data.len() + 1)).collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

#[test]
fn any_split_of_a_valid_request_stream_yields_the_same_responses() {
    let tiny_out = Limits {
        max_out_bytes: 100,
        ..Limits::default()
    };
    let mut rng = Rng::new(0x5eed_cafe_f00d_0001);
    for case in 0..400 {
        let count = 1 + rng.below(8);
        let stream: Vec<u8> = (0..count)
            .flat_map(|i| request(&mut rng, i + 1 == count))
            .collect();
        let limits = if case % 2 == 0 {
            Limits::default()
        } else {
            tiny_out.clone()
        };
        let plan = drive::Plan::default();
        let whole = drive::replay(&limits, plan, &[&stream[..]]);
        let statuses = drive::check_responses(&whole);
        assert_eq!(
            statuses.len(),
            count,
            "case {case}: {:?}",
            String::from_utf8_lossy(&whole)
        );
        assert!(
            statuses.iter().all(|&s| s == 200),
            "case {case}: {statuses:?}"
        );
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            drive::replay(&limits, plan, &bytewise),
            whole,
            "case {case}, a byte per read"
        );
        for cuts in [1, 2, 5, 20] {
            let reads = split(&mut rng, &stream, cuts);
            assert_eq!(
                drive::replay(&limits, plan, &reads),
                whole,
                "case {case}: {:?}",
                reads
                    .iter()
                    .map(|r| String::from_utf8_lossy(r))
                    .collect::<Vec<_>>()
            );
        }
    }
}
