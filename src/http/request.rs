//! [`Request`]: what a [`Handler`](super::Handler) sees of a request.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use httparse::Header;

use super::head::{find_header, Head};

/// A complete request, borrowed from the session's buffers for the duration of one
/// [`Handler::handle`](super::Handler::handle) call. Nothing is copied to build it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    method: &'a str,
    path: &'a str,
    version: u8,
    headers: &'a [Header<'a>],
    body: &'a [u8],
    peer: Peer,
}

/// Where a request's client address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Not known.
    Unknown,
    /// Given (a PROXY protocol header's, say).
    Known(SocketAddr),
    /// The connection's own peer, asked of its socket only if a handler wants it: most do
    /// not, and `getpeername` would cost every connection a system call.
    Socket(RawFd),
}

impl<'a> Request<'a> {
    /// A request from its parts; handy to unit-test a handler without a session.
    pub fn new(
        method: &'a str,
        path: &'a str,
        version: u8,
        headers: &'a [Header<'a>],
        body: &'a [u8],
    ) -> Request<'a> {
        Request {
            method,
            path,
            version,
            headers,
            body,
            peer: Peer::Unknown,
        }
    }

    /// The same request, from `peer`.
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> Request<'a> {
        self.peer = peer.map_or(Peer::Unknown, Peer::Known);
        self
    }

    /// The request for a parsed head and its decoded body.
    pub(crate) fn from_head(head: &Head<'a, 'a>, body: &'a [u8], peer: Peer) -> Request<'a> {
        let mut request = Request::new(head.method, head.path, head.version, head.headers, body);
        request.peer = peer;
        request
    }

    /// The client's address: the connection's peer, or, behind a balancer speaking the
    /// PROXY protocol (`--proxy-protocol`), the client address its header named. `None`
    /// when it is not known (a request built by hand, a peer that was already gone).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self.peer {
            Peer::Unknown => None,
            Peer::Known(addr) => Some(addr),
            // The socket is open for as long as the handler runs (the session's connection).
            Peer::Socket(fd) => {
                let addr: nix::sys::socket::SockaddrStorage =
                    nix::sys::socket::getpeername(fd).ok()?;
                if let Some(v4) = addr.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    addr.as_sockaddr_in6()
                        .map(|v6| SocketAddr::V6((*v6).into()))
                }
            }
        }
    }

    /// The method, such as `GET`. Methods are case-sensitive.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target as sent, such as `/search?q=herd` (path and query, not decoded).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The value of the first header field called `name`, compared case-insensitively, with
    /// surrounding whitespace removed.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        find_header(self.headers, name)
    }

    /// Every header field as `(name, value)`, in the order received; repeated fields appear
    /// once per occurrence.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The complete body, already de-chunked; empty when the request has none.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}
