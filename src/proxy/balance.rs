//! [`Balance`]: which target gets the next *request* (not connection: requests on one
//! keep-alive client connection are spread too).
//!
//! Each worker balances on its own, from what it alone sees (the seed program's counter
//! `i = (i + 1) % proxies.length` lived in one process; with N workers there are N counters).
//! Targets that passive health checks marked down are skipped.

use std::fmt;
use std::str::FromStr;

use crate::policy::{parse_name, Picker, Policy};

/// How a worker picks the target of each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// The next target in rotation (the seed's `i = (i + 1) % n`).
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight from this worker (ties in rotation).
    LeastConnections,
    /// Power of two choices: the less busy of two targets picked at random.
    P2c,
}

impl Balance {
    /// Every way to balance, in the order `--help` lists them.
    pub const ALL: &'static [Balance] =
        &[Balance::RoundRobin, Balance::LeastConnections, Balance::P2c];

    /// The name on the command line (the same as the matching [`Policy`]'s).
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
            Balance::P2c => "p2c",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(s: &str) -> Result<Balance, String> {
        parse_name(s, Balance::ALL, |b| b.name(), "balance")
    }
}

/// A worker's balancing state: the same decisions as the master's scheduling policies
/// ([`Picker`]), over targets instead of workers, with requests in flight as the load.
#[derive(Debug)]
pub(crate) struct Balancer {
    policy: Policy,
    picker: Picker,
}

impl Balancer {
    pub fn new(balance: Balance, seed: u64) -> Balancer {
        let policy = match balance {
            Balance::RoundRobin => Policy::RoundRobin,
            Balance::LeastConnections => Policy::LeastConnections,
            Balance::P2c => Policy::P2c,
        };
        Balancer {
            policy,
            picker: Picker::with_seed(seed),
        }
    }

    /// The target for the next request among those `usable` allows, given each target's
    /// requests in flight; `None` if no target is usable.
    pub fn pick(&mut self, in_flight: &[u32], usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.picker.pick(self.policy, in_flight.len(), usable, |t| {
            in_flight[t] as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_unusable() {
        let mut b = Balancer::new(Balance::RoundRobin, 1);
        let picks: Vec<_> = (0..6).map(|_| b.pick(&[0; 3], |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4)
            .map(|_| b.pick(&[0; 3], |t| t != 1).unwrap())
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(b.pick(&[0; 3], |_| false), None);
    }

    #[test]
    fn names_round_trip() {
        for &b in Balance::ALL {
            assert_eq!(b.name().parse(), Ok(b));
        }
        let err = "fastest".parse::<Balance>().unwrap_err();
        assert!(err.contains("unknown balance 'fastest'"), "{err}");
    }

    #[test]
    fn least_connections_and_p2c_prefer_idle() {
        let mut b = Balancer::new(Balance::LeastConnections, 1);
        assert_eq!(b.pick(&[3, 0, 2], |_| true), Some(1));
        let mut b = Balancer::new(Balance::P2c, 42);
        for _ in 0..50 {
            // With two targets both are always compared: the idle one wins.
            assert_eq!(b.pick(&[5, 0], |_| true), Some(1));
            assert!(b.pick(&[1, 1, 1], |_| true).is_some());
        }
    }
}
