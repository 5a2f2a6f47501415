//! HTTP/1.1 server side, sans IO: everything between the bytes a worker reads from a
//! connection and the bytes it writes back.
//!
//! This module owns request parsing ([`parse_head`], [`ChunkedDecoder`]), the framing and
//! persistence rules of RFC 9112, response serialization ([`Response`]) and the per-connection
//! state machine ([`Session`]) that ties them together. It owns no socket, timer or event loop:
//! the worker reads into a buffer, calls [`Session::process`] with a [`Handler`], writes out
//! what the session produced, and applies the timeouts that [`Session::in_request`] selects.
//! The reverse proxy reuses the head parsers ([`parse_head`], [`parse_response_head`]) and the
//! chunked framing ([`ChunkedDecoder::frame`]) without the session.
//!
//! ```
//! use herd::http::{Limits, Next, Request, Response, Session};
//!
//! let hello = |_req: &Request<'_>, res: &mut Response| res.body("Hello, World!");
//! let mut session = Session::new(Limits::default());
//! let (mut input, mut out) = (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), Vec::new());
//! let next = session.process(&mut input, &mut out, &hello, b"Sun, 06 Nov 1994 08:49:37 GMT");
//! assert_eq!(next, Next::Continue);
//! assert!(out.ends_with(b"Content-Length: 13\r\n\r\nHello, World!"));
//! ```

mod chunked;
mod date;
mod error;
mod head;
mod limits;
mod request;
mod response;
mod response_head;
mod session;
pub(crate) mod syntax;
#[cfg(test)]
mod tests;
mod timeouts;

pub use chunked::{ChunkedDecoder, Progress, MAX_CHUNK_LINE};
pub use date::DateCache;
pub use error::HttpError;
pub use head::{parse_head, BodyKind, Head, REQUEST_LINE_SLACK};
pub use limits::Limits;
pub use request::Request;
pub use response::{reason_phrase, Response};
pub use response_head::{parse_response_head, ResponseBody, ResponseHead};
pub use session::{Next, Session};
pub use timeouts::Timeouts;

/// The application: turns each request into a response.
///
/// Called once per request, on the worker's event-loop thread, so it must not block. A panic
/// is caught and answered with `500 Internal Server Error`, and the connection is closed.
/// Any `Fn(&Request, &mut Response)` closure is a handler. (A handler a worker serves with
/// must also be `'static`; one that borrows state, as the master's admin endpoint's view of
/// the master does, can answer the requests of one call.)
pub trait Handler {
    /// Fills in `res` (status, header fields, body) for `req`. `res` starts as an empty 200.
    fn handle(&self, req: &Request<'_>, res: &mut Response);
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>, &mut Response),
{
    fn handle(&self, req: &Request<'_>, res: &mut Response) {
        self(req, res)
    }
}
