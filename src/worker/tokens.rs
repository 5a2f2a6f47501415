//! The worker's token rules: what each mio token of a worker's `Poll` stands for.
//!
//! ```text
//! bits 63..40: service index     bits 39..0: service-local id
//! 0 ..                           service s's ids, at (s << 40) | id   (Context::token)
//! ACCEPTORS (all ones)           acceptor i at (ACCEPTORS << 40) | i  (worker-accept)
//! SIGNALS                        the SIGTERM self-pipe                (all ones, less 1)
//! CHANNEL                        the channel to the master            (all ones)
//! ```
//!
//! A service splits its own range further (the proxy tags upstream connections with bit 39
//! of the local id). Services never see each other's tokens: the loop routes every event to
//! the service whose index the token carries.

use mio::Token;

/// Bits of a token that carry the service-local part; the bits above carry the service index.
pub(crate) const LOCAL_BITS: u32 = 40;
/// The pseudo service index of the worker's own listening sockets (worker-accept policies):
/// the highest, which no real service reaches.
pub(crate) const ACCEPTORS: usize = usize::MAX >> LOCAL_BITS;
/// The channel to the master.
pub(crate) const CHANNEL: Token = Token(usize::MAX);
/// The signal self-pipe.
pub(crate) const SIGNALS: Token = Token(usize::MAX - 1);

/// The token for service `service`'s `local` id. `local` must be < 2^40.
pub(crate) fn token(service: usize, local: usize) -> Token {
    debug_assert!(local < (1 << LOCAL_BITS));
    Token((service << LOCAL_BITS) | local)
}

/// The service-local id carried by `token`.
pub(crate) fn local(token: Token) -> usize {
    token.0 & ((1 << LOCAL_BITS) - 1)
}

/// The service index a token belongs to.
pub(crate) fn service_of(token: Token) -> usize {
    token.0 >> LOCAL_BITS
}

/// The token of acceptor `i` (distinct from the channel's and the signal pipe's, whose
/// local parts are all ones, and all ones less one).
pub(crate) fn acceptor_token(i: usize) -> Token {
    debug_assert!(i < (1 << LOCAL_BITS) - 2);
    token(ACCEPTORS, i)
}
