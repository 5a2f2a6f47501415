//! Scheduling policies: which worker gets the next connection.
//!
//! herd's default is Node's default: the master accepts every connection and hands it to the
//! next worker in strict rotation (`SCHED_RR` in Node's sources). The choice is made per
//! listener, over the workers that asked to listen on it and are not stopping, so a dead,
//! starting or draining worker is simply skipped.

use std::fmt;
use std::str::FromStr;

/// How the master spreads accepted connections over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The k-th connection goes to the k-th eligible worker in rotation (Node's default).
    #[default]
    RoundRobin,
}

impl Policy {
    /// Every policy, for help texts and benchmarks.
    pub const ALL: &'static [Policy] = &[Policy::RoundRobin];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        Policy::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "unknown policy '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// The rotation state of one listener under [`Policy::RoundRobin`].
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// Picks the index of the next candidate for which `eligible` holds, starting where the
    /// previous pick left off; `None` if no candidate is eligible.
    pub fn pick(&mut self, len: usize, mut eligible: impl FnMut(usize) -> bool) -> Option<usize> {
        for step in 0..len {
            let i = (self.next + step) % len;
            if eligible(i) {
                self.next = (i + 1) % len;
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_skips_ineligible_workers() {
        let mut rr = RoundRobin::default();
        let picks: Vec<_> = (0..6).map(|_| rr.pick(3, |_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4).map(|_| rr.pick(3, |i| i != 1).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
        assert_eq!(rr.pick(3, |_| false), None);
        assert_eq!(rr.pick(0, |_| true), None);
    }

    #[test]
    fn names_parse_back() {
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>().unwrap(), *p);
        }
        assert!("fastest"
            .parse::<Policy>()
            .unwrap_err()
            .contains("round-robin"));
    }
}
