//! The resource limits a [`Session`](super::Session) enforces on every request.
//!
//! Every limit exists to bound what one client can make a worker buffer or compute; exceeding one
//! answers the matching 4xx status and closes the connection.

/// Per-connection resource limits.
///
/// The defaults are generous for ordinary traffic and small enough that a few thousand idle or
/// hostile connections cannot exhaust a worker's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line, header fields and the blank line) in bytes; larger
    /// heads, even incomplete ones, are answered with 431. Also bounds chunked trailers. 16 KiB.
    pub max_header_bytes: usize,
    /// Longest request target in bytes; longer targets are answered with 414. The request line
    /// as a whole may exceed it by [`REQUEST_LINE_SLACK`](super::REQUEST_LINE_SLACK) bytes for
    /// the method and version. 8 KiB.
    pub max_uri_bytes: usize,
    /// Most header fields in one request head; more are answered with 431. 100.
    pub max_headers: usize,
    /// Largest request body (after de-chunking) in bytes; larger ones are answered with 413.
    /// 1 MiB.
    pub max_body_bytes: usize,
    /// Output backpressure: while the caller's unsent output is larger than this, the session
    /// stops answering pipelined requests until the caller has flushed it. 64 KiB.
    pub max_out_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            max_out_bytes: 64 * 1024,
        }
    }
}
