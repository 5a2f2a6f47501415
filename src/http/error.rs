//! [`HttpError`]: every way a message can be refused, and the status code that refuses it.

use std::fmt;

/// Why a request cannot be served, or a response cannot be forwarded. Each variant maps to
/// the status code sent back (see [`HttpError::status`]); after any of them the connection
/// is closed, because the framing of whatever follows on the connection can no longer be
/// trusted. The response parser ([`parse_response_head`](super::parse_response_head)) reports
/// the framing variants too; a proxy answers all of its errors with 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request head is syntactically invalid (400).
    BadRequest,
    /// An HTTP/1.1 request without exactly one `Host` header, an HTTP/1.0 one with several,
    /// or a `Host` value that is not `host[:port]` (400, RFC 9112 §3.2).
    InvalidHost,
    /// The request head, or a chunked body's trailer section, is larger than
    /// [`Limits::max_header_bytes`](super::Limits::max_header_bytes) (431).
    HeadersTooLarge,
    /// More header fields than [`Limits::max_headers`](super::Limits::max_headers) (431).
    TooManyHeaders,
    /// The request target or request line is too long (414).
    UriTooLong,
    /// A `Transfer-Encoding` that ends in `chunked` but lists another coding too (501): herd
    /// decodes no other coding.
    UnsupportedTransferEncoding,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
    /// Both `Content-Length` and `Transfer-Encoding`, `Transfer-Encoding` in an HTTP/1.0
    /// request, or a `Transfer-Encoding` whose final coding is not `chunked` or that applies
    /// it twice (400): the classic request-smuggling ambiguities, refused rather than resolved.
    ConflictingFraming,
    /// A `Content-Length` that is not a decimal number, or several that differ (400).
    InvalidContentLength,
    /// The body is larger than [`Limits::max_body_bytes`](super::Limits::max_body_bytes) (413).
    BodyTooLarge,
    /// A malformed chunk-size line, chunk terminator or trailer field (400).
    InvalidChunk,
    /// An `Expect` header other than `100-continue` (417).
    ExpectationFailed,
    /// The client took too long to send its request (408).
    Timeout,
    /// The handler panicked (500).
    HandlerPanicked,
    /// A response head that is not HTTP/1.x, is malformed, or has a status outside 100–599
    /// (502: what a gateway answers for an invalid response).
    InvalidResponse,
}

impl HttpError {
    /// The status code of the response that reports this error.
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest
            | HttpError::InvalidHost
            | HttpError::ConflictingFraming
            | HttpError::InvalidContentLength
            | HttpError::InvalidChunk => 400,
            HttpError::Timeout => 408,
            HttpError::BodyTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::ExpectationFailed => 417,
            HttpError::HeadersTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::HandlerPanicked => 500,
            HttpError::InvalidResponse => 502,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::VersionNotSupported => 505,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::BadRequest => "malformed request head",
            HttpError::InvalidHost => "missing, repeated or invalid Host header",
            HttpError::HeadersTooLarge => "header section or trailers too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::UriTooLong => "request target too long",
            HttpError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            HttpError::VersionNotSupported => "unsupported HTTP version",
            HttpError::ConflictingFraming => "ambiguous message framing",
            HttpError::InvalidContentLength => "invalid Content-Length",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::InvalidChunk => "malformed chunked body",
            HttpError::ExpectationFailed => "unsupported expectation",
            HttpError::Timeout => "request timed out",
            HttpError::HandlerPanicked => "handler panicked",
            HttpError::InvalidResponse => "malformed response head",
        })
    }
}

impl std::error::Error for HttpError {}
