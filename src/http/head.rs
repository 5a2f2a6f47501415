//! Request-head parsing and the framing decision (RFC 9112 §2–§6), with no session state, so
//! that the reverse proxy can reuse it.
//!
//! [`parse_head`] runs httparse over a buffer, enforces the size limits even on incomplete
//! heads, and then reads the few header fields that decide how the connection proceeds: how the
//! body is delimited, whether the connection persists, and whether the client waits for
//! `100 Continue`.

use std::mem::MaybeUninit;

use httparse::Header;

use super::syntax::{self, list_items, trim_ows};
use super::{HttpError, Limits};

/// How many bytes the request line may exceed [`Limits::max_uri_bytes`] by, for the method,
/// the two spaces and the version. A longer line is refused with 414 before it is complete,
/// which keeps a client from making the session buffer an endless request line.
pub const REQUEST_LINE_SLACK: usize = 64;

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`, or `Content-Length: 0`.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// The body is chunked and ends with a zero-size chunk and a trailer section.
    Chunked,
}

/// A parsed request head: the request line, the header fields, and the framing decision taken
/// from them. Borrows the input buffer (`'b`) and the header storage (`'h`).
#[derive(Clone, Copy, Debug)]
pub struct Head<'b, 'h> {
    /// The method, such as `GET`; case-sensitive.
    pub method: &'b str,
    /// The request target, such as `/index.html?q=1`.
    pub path: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The header fields in the order received.
    pub headers: &'h [Header<'b>],
    /// How the body that follows the head is delimited.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this one: the HTTP/1.1 default
    /// unless `Connection: close`; for HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// Whether an HTTP/1.1 client sent `Expect: 100-continue` for a body it has not sent yet,
    /// and waits for `100 Continue` before sending it.
    pub expect_continue: bool,
    /// Whether the method is `HEAD`, whose response carries no body.
    pub is_head: bool,
}

impl<'b> Head<'b, '_> {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        find_header(self.headers, name)
    }
}

/// The first value of header `name` (case-insensitive) in `headers`.
pub(crate) fn find_header<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Parses the request head at the front of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, and `Ok(Some((head, len)))` once it is,
/// `len` being the head's length in bytes (the body, if any, starts at `buf[len]`). `storage`
/// receives the header fields; at most `min(storage.len(), limits.max_headers)` are accepted.
/// Stack storage costs nothing to prepare:
///
/// ```
/// use std::mem::MaybeUninit;
/// use herd::http::{parse_head, BodyKind, Limits};
///
/// let mut storage = [const { MaybeUninit::uninit() }; 100];
/// let buf = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
/// let (head, len) = parse_head(buf, &Limits::default(), &mut storage).unwrap().unwrap();
/// assert_eq!((head.method, head.path, head.body), ("POST", "/upload", BodyKind::Length(5)));
/// assert_eq!(&buf[len..], b"hello");
/// ```
///
/// The limits are checked on incomplete heads too, so that an endless head is refused as soon
/// as it is too long rather than buffered forever. Only the first `max_header_bytes` of `buf`
/// are ever looked at, which also makes the outcome independent of how the bytes arrived: the
/// same bytes give the same answer whether they come in one piece or one at a time.
pub fn parse_head<'b, 'h>(
    buf: &'b [u8],
    limits: &Limits,
    storage: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<(Head<'b, 'h>, usize)>, HttpError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let buf = &buf[..buf.len().min(limits.max_header_bytes)];
    check_request_line(buf, limits)?;

    let slots = storage.len().min(limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, &mut storage[..slots]);
    // httparse fills in the target as soon as it has read it, so a long one is refused even if
    // the head is still incomplete or broken further on.
    if req
        .path
        .is_some_and(|path| path.len() > limits.max_uri_bytes)
    {
        return Err(HttpError::UriTooLong);
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Err(HttpError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(HttpError::BadRequest),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::BadRequest);
    };
    let headers: &'h [Header<'b>] = req.headers;
    let framing = Framing::read(headers, version, limits)?;
    let head = Head {
        method,
        path,
        version,
        headers,
        body: framing.body,
        keep_alive: framing.keep_alive,
        expect_continue: framing.expect_continue,
        is_head: method == "HEAD",
    };
    Ok(Some((head, len)))
}

/// Refuses a request line longer than the target limit plus [`REQUEST_LINE_SLACK`], complete
/// or not. Empty lines before the request line are allowed (RFC 9112 §2.2) and not counted;
/// their total is bounded by `max_header_bytes` like the rest of the head.
fn check_request_line(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    let max_line = limits.max_uri_bytes.saturating_add(REQUEST_LINE_SLACK);
    if buf.len() <= max_line {
        // The common case, which spares the hot path a scan for the end of the line.
        return Ok(());
    }
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let line_len = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    if line_len > max_line {
        return Err(HttpError::UriTooLong);
    }
    Ok(())
}

/// httparse reports `Error::Version` for anything that is not exactly `HTTP/1.0` or
/// `HTTP/1.1`. Only a well-formed version of another number (`HTTP/2.0`, `HTTP/1.2`) deserves
/// 505; garbage in the version position is a plain syntax error.
fn version_error(buf: &[u8]) -> HttpError {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf[start..].split(|&b| b == b'\n').next().unwrap_or(b"");
    match line.split(|&b| b == b' ').nth(2) {
        Some([b'H', b'T', b'T', b'P', b'/', digit, ..]) if digit.is_ascii_digit() => {
            HttpError::VersionNotSupported
        }
        _ => HttpError::BadRequest,
    }
}

/// The framing decision drawn from the header fields.
struct Framing {
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
}

impl Framing {
    fn read(headers: &[Header<'_>], version: u8, limits: &Limits) -> Result<Framing, HttpError> {
        let mut content_length = None;
        let mut transfer_encoding = false;
        let mut codings = 0;
        let mut chunked = 0;
        let mut last_is_chunked = false;
        let mut close = false;
        let mut keep_alive = false;
        let mut expect_continue = false;
        let mut hosts = 0;

        for header in headers {
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                // A repeated Content-Length (or a list such as `5, 5`) is tolerated only when
                // every value agrees (RFC 9112 §6.3 item 5).
                let length =
                    syntax::content_length(header.value).ok_or(HttpError::InvalidContentLength)?;
                if content_length.is_some_and(|previous| previous != length) {
                    return Err(HttpError::InvalidContentLength);
                }
                content_length = Some(length);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Several Transfer-Encoding fields form one list, applied in order.
                transfer_encoding = true;
                for coding in list_items(header.value) {
                    codings += 1;
                    last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    chunked += usize::from(last_is_chunked);
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for option in list_items(header.value) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                let expectation = trim_ows(header.value);
                if expectation.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else if !expectation.is_empty() {
                    return Err(HttpError::ExpectationFailed);
                }
            } else if name.eq_ignore_ascii_case("host") {
                if !syntax::is_host(header.value) {
                    return Err(HttpError::InvalidHost);
                }
                hosts += 1;
            }
        }

        // HTTP/1.1 requires exactly one Host; HTTP/1.0 predates it but may not repeat it
        // (RFC 9112 §3.2).
        if hosts > 1 || (version == 1 && hosts == 0) {
            return Err(HttpError::InvalidHost);
        }
        let body = if transfer_encoding {
            // Either of these lets a front end and a back end disagree on where the body ends
            // (request smuggling), so the request is refused instead of guessed at
            // (RFC 9112 §6.1, §6.3 item 3).
            if content_length.is_some() || version == 0 {
                return Err(HttpError::ConflictingFraming);
            }
            // Without `chunked` as the final coding, or with it applied twice, the length of
            // a request cannot be known (RFC 9112 §6.1, §6.3 item 4): 400. With `chunked`
            // last, another coding before it is merely not understood (RFC 9110 §6.1): 501.
            if !last_is_chunked || chunked > 1 {
                return Err(HttpError::ConflictingFraming);
            }
            if codings != 1 {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            BodyKind::Chunked
        } else {
            match content_length {
                None | Some(0) => BodyKind::None,
                Some(n) if n > limits.max_body_bytes as u64 => return Err(HttpError::BodyTooLarge),
                Some(n) => BodyKind::Length(n),
            }
        };
        Ok(Framing {
            body,
            keep_alive: if version == 1 {
                !close
            } else {
                keep_alive && !close
            },
            // An HTTP/1.0 client cannot expect 100 Continue, which it does not know (RFC 9110
            // §10.1.1: the expectation must be ignored); without a body there is nothing to
            // wait for.
            expect_continue: expect_continue && version == 1 && body != BodyKind::None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<(BodyKind, bool, bool, usize)>, HttpError> {
        let mut storage = [const { MaybeUninit::uninit() }; 100];
        let parsed = parse_head(buf, &Limits::default(), &mut storage)?;
        Ok(parsed.map(|(h, len)| (h.body, h.keep_alive, h.expect_continue, len)))
    }

    #[test]
    fn framing_decisions() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            parse(get),
            Ok(Some((BodyKind::None, true, false, get.len())))
        );
        let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12, 12\r\n\r\n";
        assert_eq!(
            parse(post),
            Ok(Some((BodyKind::Length(12), true, false, post.len())))
        );
        let chunked =
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nExpect: 100-Continue\r\n\r\n";
        assert_eq!(
            parse(chunked),
            Ok(Some((BodyKind::Chunked, true, true, chunked.len())))
        );
        let close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, CLOSE\r\n\r\n";
        assert!(!parse(close).unwrap().unwrap().1);
        let old = b"GET / HTTP/1.0\r\n\r\n";
        assert!(!parse(old).unwrap().unwrap().1);
        let old_ka = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert!(parse(old_ka).unwrap().unwrap().1);
        // Leading empty lines are skipped (RFC 9112 §2.2).
        assert!(parse(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        // Bare LF line endings are read as CRLF (RFC 9112 §2.2 allows it); whoever forwards
        // the head writes its own CRLFs (the proxy rewrites every head it forwards).
        let lf = b"POST / HTTP/1.1\nHost: a\nContent-Length: 2\n\nok";
        assert_eq!(
            parse(lf),
            Ok(Some((BodyKind::Length(2), true, false, lf.len() - 2)))
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n", HttpError::InvalidHost),
            (b"GET / HTTP/2.0\r\n\r\n", HttpError::VersionNotSupported),
            (b"GET / HTTP/1.2\r\n", HttpError::VersionNotSupported),
            (b"GET / HTTX/1.1\r\n", HttpError::BadRequest),
            (b"G\x01T / HTTP/1.1\r\n", HttpError::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HttpError::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", HttpError::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", HttpError::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", HttpError::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", HttpError::BodyTooLarge),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::ConflictingFraming),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::ConflictingFraming),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HttpError::UnsupportedTransferEncoding),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::ConflictingFraming),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HttpError::ConflictingFraming),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", HttpError::ConflictingFraming),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", HttpError::ConflictingFraming),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", HttpError::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 6\r\n\r\n", HttpError::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", HttpError::BadRequest),
            (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", HttpError::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", HttpError::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", HttpError::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n folded\r\n\r\n", HttpError::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: bribe\r\n\r\n", HttpError::ExpectationFailed),
        ];
        for (input, error) in cases {
            assert_eq!(
                parse(input),
                Err(*error),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_apply_to_incomplete_heads() {
        let limits = Limits::default();
        let mut storage = [const { MaybeUninit::uninit() }; 100];
        let long_line = vec![b'a'; limits.max_uri_bytes + REQUEST_LINE_SLACK + 1];
        assert_eq!(
            parse_head(&long_line, &limits, &mut storage).err(),
            Some(HttpError::UriTooLong)
        );
        let mut long_head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long_head.resize(limits.max_header_bytes, b'a');
        assert_eq!(
            parse_head(&long_head, &limits, &mut storage).err(),
            Some(HttpError::HeadersTooLarge)
        );
        long_head.truncate(limits.max_header_bytes - 1);
        let mut storage = [const { MaybeUninit::uninit() }; 100];
        assert!(parse_head(&long_head, &limits, &mut storage)
            .unwrap()
            .is_none());
    }
}
