//! [`Response`]: what a [`Handler`](super::Handler) fills in, and how the session writes it.
//!
//! The handler only chooses the status, its own header fields and the body. Everything that
//! concerns the connection rather than the resource — `Content-Length`, `Transfer-Encoding`,
//! `Connection` — belongs to the session, which computes it when it serializes the response,
//! so a handler can never produce a response whose framing lies about its body.

use std::fmt;

use super::syntax::{is_field_value, is_token, write_decimal};

/// Capacity kept by reusable buffers between requests. A rare large body should not pin its
/// memory for the rest of a long keep-alive connection.
pub(crate) const RETAINED_CAPACITY: usize = 64 * 1024;

/// The response to one request. The session owns one per connection and clears it before each
/// request, so its buffers are reused rather than reallocated.
///
/// Defaults: status 200, no header fields, empty body.
#[derive(Clone, Debug)]
pub struct Response {
    status: u16,
    /// The handler's header fields, already serialized as `Name: value\r\n` lines.
    headers: Vec<u8>,
    body: Vec<u8>,
    has_date: bool,
    close: bool,
}

impl Response {
    /// An empty `200` response.
    pub fn new() -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
            has_date: false,
            close: false,
        }
    }

    /// Sets the status code. Codes outside `100..=999` cannot be written and are sent as 500.
    /// Handlers should not send 1xx codes: those are interim responses, and the client would
    /// keep waiting for the final one.
    pub fn status(&mut self, code: u16) {
        self.status = code;
    }

    /// Adds a header field.
    ///
    /// `Content-Length` and `Transfer-Encoding` are ignored: the session frames the body
    /// itself. `Connection` is not copied, but a `close` option in it makes the session close
    /// the connection after this response. A `Date` field replaces the session's. A name that
    /// is not a token, or a value containing CR, LF or another control character, would let
    /// the value inject header fields or split the response; such fields are dropped and
    /// logged.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        let value = value.as_ref();
        if !is_token(name.as_bytes()) || !is_field_value(value) {
            log::warn!("dropping invalid response header field {name:?}");
            return;
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return;
        }
        if name.eq_ignore_ascii_case("connection") {
            self.close |=
                super::syntax::list_items(value).any(|o| o.eq_ignore_ascii_case(b"close"));
            return;
        }
        self.has_date |= name.eq_ignore_ascii_case("date");
        self.headers.reserve(name.len() + value.len() + 4);
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
    }

    /// Replaces the body.
    pub fn body(&mut self, body: impl AsRef<[u8]>) {
        self.body.clear();
        self.body.extend_from_slice(body.as_ref());
    }

    /// Appends to the body.
    pub fn write(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
    }

    /// The status code set so far.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The body written so far.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Whether the handler asked for the connection to close (`Connection: close`).
    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }

    /// Back to the default empty 200, keeping (a bounded amount of) the buffers' capacity.
    pub(crate) fn clear(&mut self) {
        self.status = 200;
        self.headers.clear();
        self.body.clear();
        self.body.shrink_to(RETAINED_CAPACITY);
        self.has_date = false;
        self.close = false;
    }

    /// Serializes the response onto `out`.
    ///
    /// `head_request` omits the body but keeps the Content-Length it would have had
    /// (RFC 9110 §9.3.2). `close` announces that the connection closes after this response;
    /// otherwise an HTTP/1.0 client (`version` 0) is told `Connection: keep-alive`, since
    /// persistence is not its default.
    pub(crate) fn write_to(
        &self,
        out: &mut Vec<u8>,
        date: &[u8],
        head_request: bool,
        version: u8,
        close: bool,
    ) {
        let status = if (100..=999).contains(&self.status) {
            self.status
        } else {
            500
        };
        // 1xx and 204 responses never have content, and may not even announce a length
        // (RFC 9110 §8.6); a 304 describes a representation it does not carry (§15.4.5).
        let bodiless = status < 200 || status == 204 || status == 304;
        let send_body = !bodiless && !head_request;
        out.reserve(
            96 + self.headers.len() + date.len() + if send_body { self.body.len() } else { 0 },
        );

        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
            b' ',
        ]);
        out.extend_from_slice(reason_phrase(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.headers);
        if !self.has_date {
            out.extend_from_slice(b"Date: ");
            out.extend_from_slice(date);
            out.extend_from_slice(b"\r\n");
        }
        if !bodiless {
            out.extend_from_slice(b"Content-Length: ");
            write_decimal(out, self.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if version == 0 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if send_body {
            out.extend_from_slice(&self.body);
        }
    }
}

impl Default for Response {
    fn default() -> Response {
        Response::new()
    }
}

/// Lets handlers build the body with `write!`.
impl fmt::Write for Response {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.body.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The reason phrase for `status` (RFC 9110 §15), or `""` for codes without a registered one;
/// the phrase is informational and may be empty.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn written(res: &Response, head_request: bool, version: u8, close: bool) -> String {
        let mut out = Vec::new();
        res.write_to(&mut out, DATE, head_request, version, close);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_headers_belong_to_the_session() {
        let mut res = Response::new();
        res.status(404);
        res.header("Content-Length", "999");
        res.header("Transfer-Encoding", "chunked");
        res.header("X-Bad", "a\r\nSet-Cookie: evil=1");
        res.header("Bad Name", "x");
        res.header("Date", "Mon, 07 Nov 1994 08:49:37 GMT");
        res.body("gone");
        assert_eq!(
            written(&res, false, 1, false),
            "HTTP/1.1 404 Not Found\r\nDate: Mon, 07 Nov 1994 08:49:37 GMT\r\nContent-Length: 4\r\n\r\ngone"
        );
        assert!(!res.wants_close());
        res.header("Connection", "close");
        assert!(res.wants_close());
    }

    #[test]
    fn bodiless_statuses_and_connection_headers() {
        let mut res = Response::new();
        res.status(204);
        res.body("ignored");
        assert_eq!(
            written(&res, false, 0, false),
            "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: keep-alive\r\n\r\n"
        );
        res.status(304);
        assert_eq!(
            written(&res, false, 1, true),
            "HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n"
        );
        res.status(7);
        assert!(
            written(&res, false, 1, false).starts_with("HTTP/1.1 500 Internal Server Error\r\n")
        );
        res.status(599);
        assert!(written(&res, false, 1, false).starts_with("HTTP/1.1 599 \r\n"));
    }

    #[test]
    fn clear_keeps_capacity_within_bounds() {
        let mut res = Response::new();
        res.header("X", "y");
        use std::fmt::Write;
        write!(res, "{}-{}", 1, 2).unwrap();
        res.write(b"!");
        assert_eq!(res.body_bytes(), b"1-2!");
        res.clear();
        assert_eq!((res.status_code(), res.body_bytes()), (200, &b""[..]));
        res.body(vec![0; 4 * RETAINED_CAPACITY]);
        res.clear();
        assert!(res.body.capacity() <= RETAINED_CAPACITY);
    }
}
