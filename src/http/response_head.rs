//! Response-head parsing and the response framing decision (RFC 9112 §6.3), for the reverse
//! proxy, which reads responses from its targets as a client does.
//!
//! Like [`parse_head`](super::parse_head) for requests, [`parse_response_head`] is sans IO: it
//! looks at a buffer and says whether a complete head is there, what it says, and how the body
//! that follows is delimited. A response's framing depends on the request it answers (a
//! response to `HEAD` has no body whatever its headers say), so the caller passes that in.

use httparse::Header;

use super::syntax::{self, list_items};
use super::{HttpError, Limits};

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: a response to `HEAD`, a 1xx, 204 or 304, or `Content-Length: 0`.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunked: ends with a zero-size chunk and a trailer section.
    Chunked,
    /// Neither length nor chunked: the body runs until the server closes the connection.
    UntilClose,
}

/// A parsed response head. Borrows the input buffer (`'b`) and the header storage (`'h`).
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead<'b, 'h> {
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: &'b str,
    /// The header fields in the order received.
    pub headers: &'h [Header<'b>],
    /// How the body that follows the head is delimited.
    pub body: ResponseBody,
    /// Whether the server keeps the connection open after this response: the HTTP/1.1
    /// default unless `Connection: close`; for HTTP/1.0 only with `Connection: keep-alive`.
    /// Always false for a body delimited by the close.
    pub keep_alive: bool,
}

/// Parses the response head at the front of `buf`; `request_is_head` says whether it answers
/// a `HEAD` request.
///
/// Returns `Ok(None)` while the head is incomplete and `Ok(Some((head, len)))` once it is, the
/// body starting at `buf[len]`. `storage` receives the header fields (httparse's
/// `EMPTY_HEADER`s); at most `min(storage.len(), limits.max_headers)` are accepted. A head
/// larger than `limits.max_header_bytes`, a malformed one ([`HttpError::InvalidResponse`]:
/// not HTTP/1.x, a status outside 100–599, a field-syntax error), or one with conflicting or
/// invalid framing is an error: the proxy answers 502 rather than guess where the body ends.
pub fn parse_response_head<'b, 'h>(
    buf: &'b [u8],
    limits: &Limits,
    storage: &'h mut [Header<'b>],
    request_is_head: bool,
) -> Result<Option<(ResponseHead<'b, 'h>, usize)>, HttpError> {
    let buf = &buf[..buf.len().min(limits.max_header_bytes)];
    let slots = storage.len().min(limits.max_headers);
    let mut res = httparse::Response::new(&mut storage[..slots]);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Err(HttpError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::InvalidResponse),
    };
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err(HttpError::InvalidResponse);
    };
    // Three digits is all httparse checks; a status class outside 1xx–5xx means nothing a
    // client could act on (RFC 9110 §15).
    if !(100..=599).contains(&status) {
        return Err(HttpError::InvalidResponse);
    }
    let headers: &'h [Header<'b>] = res.headers;
    let mut content_length = None;
    let mut transfer_encoding = false;
    let mut codings = 0;
    let mut last_is_chunked = false;
    let mut close = false;
    let mut keep_alive = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value =
                syntax::content_length(header.value).ok_or(HttpError::InvalidContentLength)?;
            if content_length.is_some_and(|previous| previous != value) {
                return Err(HttpError::InvalidContentLength);
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Several Transfer-Encoding fields form one list, applied in order.
            transfer_encoding = true;
            for coding in list_items(header.value) {
                codings += 1;
                last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_items(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let body = if request_is_head || (100..200).contains(&status) || status == 204 || status == 304
    {
        ResponseBody::None
    } else {
        match (transfer_encoding, content_length) {
            // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3), but a message
            // with both is how responses get smuggled: refuse it.
            (true, Some(_)) => return Err(HttpError::ConflictingFraming),
            // Only `chunked` alone can be forwarded: a body in another coding (which RFC 9112
            // §6.3 item 4 would read until the close) could reach a client only with its
            // coding stripped, since Transfer-Encoding is hop-by-hop.
            (true, None) if last_is_chunked && codings == 1 => ResponseBody::Chunked,
            (true, None) => return Err(HttpError::UnsupportedTransferEncoding),
            (false, None) => ResponseBody::UntilClose,
            (false, Some(0)) => ResponseBody::None,
            (false, Some(n)) => ResponseBody::Length(n),
        }
    };
    let keep_alive = body != ResponseBody::UntilClose
        && if version == 1 {
            !close
        } else {
            keep_alive && !close
        };
    let head = ResponseHead {
        version,
        status,
        reason: res.reason.unwrap_or(""),
        headers,
        body,
        keep_alive,
    };
    Ok(Some((head, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], is_head: bool) -> Result<Option<(u16, ResponseBody, bool)>, HttpError> {
        let mut storage = [httparse::EMPTY_HEADER; 100];
        let parsed = parse_response_head(buf, &Limits::default(), &mut storage, is_head)?;
        Ok(parsed.map(|(h, _)| (h.status, h.body, h.keep_alive)))
    }

    #[test]
    fn framing_decisions() {
        use ResponseBody::*;
        type Case = (&'static [u8], bool, (u16, ResponseBody, bool));
        let cases: &[Case] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                (200, Length(5), true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                (200, None, true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                (200, Chunked, true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                false,
                (200, Length(7), true),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                (304, None, true),
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, (200, UntilClose, false)),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, (204, None, true)),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n",
                false,
                (101, None, true),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                false,
                (200, None, false),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
                false,
                (200, Length(2), false),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
                false,
                (200, Length(2), true),
            ),
        ];
        for (input, is_head, expected) in cases {
            assert_eq!(
                parse(input, *is_head),
                Ok(Some(*expected)),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n", false), Ok(Option::None));
    }

    #[test]
    fn refusals() {
        use HttpError::*;
        let cases: &[(&[u8], HttpError)] = &[
            (b"garbage\r\n\r\n", InvalidResponse),
            (b"SPDY/9 what\r\n\r\n", InvalidResponse),
            (b"HTTP/2 200 OK\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 600 Nope\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 099 Nope\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 2000 OK\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 200 OK\r\nX(: a\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", InvalidResponse),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", InvalidContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ConflictingFraming),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", UnsupportedTransferEncoding),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", UnsupportedTransferEncoding),
        ];
        for (input, error) in cases {
            assert_eq!(
                parse(input, false),
                Err(*error),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
