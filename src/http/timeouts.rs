//! [`Timeouts`]: how long an HTTP/1.1 connection may take at each stage before the worker
//! gives up on it.
//!
//! The sans-IO [`Session`](super::Session) says which stage a connection is in
//! ([`Session::in_request`](super::Session::in_request)); the worker's socket code
//! (`worker::http_service` for `herd serve`, the proxy's client side for `herd proxy`)
//! compares the time spent there with these limits. One value, passed to both, so that the
//! two servers apply the same rules and a test can shorten them all (to 200 ms, say) instead
//! of waiting 10 real seconds.

use std::time::Duration;

/// Per-connection time limits (see the field docs for what each one bounds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a client has to send a complete request (head and body) once it started
    /// one, or its first request once connected: past it the answer is `408` (the slowloris
    /// defence). 10 s.
    pub request: Duration,
    /// How long an idle keep-alive connection stays open between requests (Node's default).
    /// 5 s.
    pub keep_alive: Duration,
    /// How long a response may sit unsent without the client reading any of it (a slow or
    /// vanished reader). 10 s.
    pub write: Duration,
    /// How long a lingering close (write side shut, unread request bytes being discarded)
    /// waits for the client's EOF. 2 s.
    pub linger: Duration,
    /// While the worker drains: how long a connection that has sent nothing yet gets to send
    /// its request, and how long an idle keep-alive connection stays open after the drain
    /// began. Closing an idle keep-alive connection races with the client sending its next
    /// request on it (the request is lost to a reset, and the client cannot tell whether it
    /// was processed); a draining worker instead answers that next request with
    /// `Connection: close`, and closes a connection that stays silent only after this grace.
    /// 1 s.
    pub drain_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            request: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            write: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            drain_grace: Duration::from_secs(1),
        }
    }
}

impl Timeouts {
    /// Every limit set to `d`: for tests that want timeouts to fire quickly.
    pub fn all(d: Duration) -> Timeouts {
        Timeouts {
            request: d,
            keep_alive: d,
            write: d,
            linger: d,
            drain_grace: d,
        }
    }
}
