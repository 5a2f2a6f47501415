//! [`Balance`]: which target gets the next *request* (not connection: requests on one
//! keep-alive client connection are spread too).
//!
//! Each worker balances on its own, from what it alone sees (the seed program's counter
//! `i = (i + 1) % proxies.length` lived in one process; with N workers there are N counters).
//! Targets that passive health checks marked down are skipped.
//!
//! The sticky ways (`ip-hash`, `header:NAME`, `cookie:NAME`) need no shared state at all:
//! a request's key (the client's IP address, the header's value, the cookie's value) is
//! hashed onto the targets by rendezvous hashing ([`crate::rendezvous`], the same hash as
//! the master's `--policy ip-hash`), so every worker sends one key to one target. A target
//! marked down moves only its own keys, each to its second-best target, and they come back
//! once it is up. A request without the key (no such header or cookie) goes in rotation,
//! as nginx's `hash` does with an empty key. With `--proxy-protocol` the client's address
//! is the one its PROXY header names, so `ip-hash` follows the real client.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::http::Head;
use crate::policy::{Picker, Policy};
use crate::rendezvous;

/// How a worker picks the target of each request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    /// The next target in rotation (the seed's `i = (i + 1) % n`).
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight from this worker (ties in rotation).
    LeastConnections,
    /// Power of two choices: the less busy of two targets picked at random.
    P2c,
    /// Sticky by client: the target the client's IP address hashes to.
    IpHash,
    /// Sticky by header: the target the value of this request header hashes to.
    Header(String),
    /// Sticky by cookie: the target the value of this cookie hashes to.
    Cookie(String),
}

impl Balance {
    /// The ways to balance that take no argument, in the order `--help` lists them (and
    /// `header:NAME`, `cookie:NAME`).
    pub const ALL: &'static [Balance] = &[
        Balance::RoundRobin,
        Balance::LeastConnections,
        Balance::P2c,
        Balance::IpHash,
    ];

    /// The name on the command line (the same as the matching [`Policy`]'s), without the
    /// argument of `header:` and `cookie:`.
    pub fn name(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
            Balance::P2c => "p2c",
            Balance::IpHash => "ip-hash",
            Balance::Header(_) => "header",
            Balance::Cookie(_) => "cookie",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Balance::Header(name) | Balance::Cookie(name) => write!(f, "{}:{name}", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Balance, String> {
        let named = |kind: &str, name: &str, valid: fn(u8) -> bool| {
            if name.is_empty() || !name.bytes().all(valid) {
                Err(format!(
                    "bad {kind} name in '{s}': expected {kind}:NAME, NAME a token"
                ))
            } else {
                Ok(name.to_string())
            }
        };
        if let Some(name) = s.strip_prefix("header:") {
            return named("header", name, crate::http::syntax::is_token_byte).map(Balance::Header);
        }
        if let Some(name) = s.strip_prefix("cookie:") {
            return named("cookie", name, crate::http::syntax::is_token_byte).map(Balance::Cookie);
        }
        (Balance::ALL.iter())
            .find(|b| b.name() == s)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = Balance::ALL.iter().map(Balance::name).collect();
                format!(
                    "unknown balance '{s}' (expected one of: {}, header:NAME, cookie:NAME)",
                    names.join(", ")
                )
            })
    }
}

/// A worker's balancing state: the same decisions as the master's scheduling policies
/// ([`Picker`]), over targets instead of workers, with requests in flight as the load; or
/// for the sticky ways, the rendezvous hash of each request's key.
#[derive(Debug)]
pub(crate) struct Balancer {
    balance: Balance,
    policy: Policy,
    picker: Picker,
}

impl Balancer {
    pub fn new(balance: Balance, seed: u64) -> Balancer {
        let policy = match balance {
            Balance::LeastConnections => Policy::LeastConnections,
            Balance::P2c => Policy::P2c,
            // The sticky ways fall back to rotation for a request without a key.
            _ => Policy::RoundRobin,
        };
        Balancer {
            balance,
            policy,
            picker: Picker::with_seed(seed),
        }
    }

    /// The key a sticky balance hashes for the request `head` from `client`; `None` for
    /// the other ways, and for a request without the header or cookie.
    pub fn key(&self, head: &Head<'_, '_>, client: IpAddr) -> Option<u64> {
        match &self.balance {
            Balance::IpHash => Some(rendezvous::ip_key(client)),
            Balance::Header(name) => {
                let value = crate::http::syntax::trim_ows(head.header(name)?);
                (!value.is_empty()).then(|| rendezvous::key_of(value))
            }
            Balance::Cookie(name) => cookie(head, name).map(rendezvous::key_of),
            _ => None,
        }
    }

    /// The target for the next request among those `usable` allows, given each target's
    /// requests in flight and the request's `key` (from [`Balancer::key`]); `None` if no
    /// target is usable.
    pub fn pick(
        &mut self,
        in_flight: &[u32],
        usable: impl Fn(usize) -> bool,
        key: Option<u64>,
    ) -> Option<usize> {
        match key {
            Some(key) => rendezvous::pick(key, in_flight.len(), usable, |t| t as u64),
            None => self.picker.pick(self.policy, in_flight.len(), usable, |t| {
                in_flight[t] as u64
            }),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` fields (`a=1; b=2`, RFC 6265
/// §5.4), if it is there and not empty. Names match exactly, as cookie names do.
fn cookie<'b>(head: &Head<'b, '_>, name: &str) -> Option<&'b [u8]> {
    let fields = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"));
    fields
        .flat_map(|h| h.value.split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = crate::http::syntax::trim_ows(pair);
            let at = pair.iter().position(|&b| b == b'=')?;
            (&pair[..at] == name.as_bytes()).then(|| &pair[at + 1..])
        })
        .find(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_unusable() {
        let mut b = Balancer::new(Balance::RoundRobin, 1);
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(&[0; 3], |_| true, None).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4)
            .map(|_| b.pick(&[0; 3], |t| t != 1, None).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(b.pick(&[0; 3], |_| false, None), None);
    }

    #[test]
    fn names_round_trip() {
        for b in Balance::ALL {
            assert_eq!(b.name().parse().as_ref(), Ok(b));
        }
        for s in ["header:X-User", "cookie:sid"] {
            assert_eq!(s.parse::<Balance>().unwrap().to_string(), s);
        }
        let err = "fastest".parse::<Balance>().unwrap_err();
        assert!(err.contains("unknown balance 'fastest'"), "{err}");
        assert!(err.contains("cookie:NAME"), "{err}");
        for bad in ["header:", "cookie:", "header:a b", "cookie:x;y"] {
            let err = bad.parse::<Balance>().unwrap_err();
            assert!(err.contains("NAME a token"), "{bad}: {err}");
        }
    }

    /// A request head with these header fields.
    fn with_head<R>(fields: &[(&str, &str)], f: impl FnOnce(&Head<'_, '_>) -> R) -> R {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for (name, value) in fields {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        let mut storage = [const { std::mem::MaybeUninit::uninit() }; 16];
        let limits = crate::http::Limits::default();
        let (head, _) = crate::http::parse_head(raw.as_bytes(), &limits, &mut storage)
            .unwrap()
            .unwrap();
        f(&head)
    }

    #[test]
    fn sticky_keys_come_from_the_address_the_header_or_the_cookie() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.1.2.4".parse().unwrap();
        let by_ip = Balancer::new(Balance::IpHash, 1);
        with_head(&[], |h| {
            assert_eq!(by_ip.key(h, ip), Some(rendezvous::ip_key(ip)));
            assert_ne!(by_ip.key(h, ip), by_ip.key(h, other));
        });
        let by_header = Balancer::new("header:x-user".parse().unwrap(), 1);
        with_head(&[("X-User", " alice ")], |h| {
            assert_eq!(by_header.key(h, ip), Some(rendezvous::key_of(b"alice")));
        });
        with_head(&[("X-User", "")], |h| {
            assert_eq!(by_header.key(h, ip), None)
        });
        with_head(&[], |h| assert_eq!(by_header.key(h, ip), None));
        let by_cookie = Balancer::new("cookie:sid".parse().unwrap(), 1);
        with_head(&[("Cookie", "a=1; sid=abc; b=2")], |h| {
            assert_eq!(by_cookie.key(h, ip), Some(rendezvous::key_of(b"abc")));
        });
        with_head(&[("Cookie", "xsid=1"), ("Cookie", "SID=2;sid=z")], |h| {
            assert_eq!(by_cookie.key(h, ip), Some(rendezvous::key_of(b"z")));
        });
        with_head(&[("Cookie", "sid=")], |h| {
            assert_eq!(by_cookie.key(h, ip), None)
        });
        let plain = Balancer::new(Balance::RoundRobin, 1);
        with_head(&[("Cookie", "sid=abc")], |h| {
            assert_eq!(plain.key(h, ip), None)
        });
    }

    #[test]
    fn a_key_keeps_its_target_and_a_down_target_moves_only_its_keys() {
        let mut b = Balancer::new(Balance::IpHash, 1);
        let keys: Vec<u64> = (0..200u32)
            .map(|k| rendezvous::key_of(&k.to_le_bytes()))
            .collect();
        let home: Vec<usize> = keys
            .iter()
            .map(|&k| b.pick(&[0; 4], |_| true, Some(k)).unwrap())
            .collect();
        for (&k, &t) in keys.iter().zip(&home) {
            // Load does not move a sticky key.
            assert_eq!(b.pick(&[9, 0, 3, 1], |_| true, Some(k)), Some(t));
            let moved = b.pick(&[0; 4], |u| u != 2, Some(k)).unwrap();
            if t == 2 {
                assert_ne!(moved, 2);
            } else {
                assert_eq!(moved, t, "a key whose target stayed up moved");
            }
        }
        assert!(home.contains(&2) && home.contains(&0), "{home:?}");
    }

    #[test]
    fn least_connections_and_p2c_prefer_idle() {
        let mut b = Balancer::new(Balance::LeastConnections, 1);
        assert_eq!(b.pick(&[3, 0, 2], |_| true, None), Some(1));
        let mut b = Balancer::new(Balance::P2c, 42);
        for _ in 0..50 {
            // With two targets both are always compared: the idle one wins.
            assert_eq!(b.pick(&[5, 0], |_| true, None), Some(1));
            assert!(b.pick(&[1, 1, 1], |_| true, None).is_some());
        }
    }
}
