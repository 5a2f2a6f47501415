//! The requests a load thread sends: one pre-built byte string per path of the mix, and the
//! seeded weighted draw that picks the path for each request. Building the bytes once keeps
//! formatting off the hot path: sending a request is one `write` of a ready slice.

use super::config::Config;
use crate::policy::XorShift;

/// The request bytes for each path, and the weighted choice among them.
pub(crate) struct Requests {
    /// `GET <path> HTTP/1.1` with its headers, one per entry of the path mix.
    bytes: Vec<Box<[u8]>>,
    /// The running sum of the weights: path `i` is drawn when the draw is below `bounds[i]`
    /// and not below `bounds[i - 1]`.
    bounds: Vec<u64>,
    /// The draws. Random, not a fixed rotation: a mix that repeats every 20 requests lines
    /// up with a round-robin over 4 workers, so one worker would get every expensive request
    /// and the others none, which no real workload does. Seeded, so that a run is repeatable.
    rng: XorShift,
}

impl Requests {
    /// Builds the request for every path of `cfg`'s mix; `seed` starts the draws (one per
    /// load thread, so that threads do not send the same sequence).
    pub(crate) fn new(cfg: &Config, seed: u64) -> Requests {
        let connection = if cfg.close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let entries = cfg.paths.entries();
        let bytes = entries
            .iter()
            .map(|(_, path)| {
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {}\r\n{connection}\r\n",
                    cfg.target.host
                )
                .into_bytes()
                .into_boxed_slice()
            })
            .collect();
        let bounds = entries
            .iter()
            .scan(0u64, |sum, &(w, _)| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        Requests {
            bytes,
            bounds,
            rng: XorShift::new(seed),
        }
    }

    /// Picks the path of the next request: path `i` with probability weight / total.
    pub(crate) fn next(&mut self) -> usize {
        let total = match self.bounds[..] {
            [_] => return 0,
            [.., total] => total,
            [] => unreachable!("a path mix has at least one entry"),
        };
        let draw = self.rng.below(total);
        self.bounds.partition_point(|&b| b <= draw)
    }

    /// The bytes of the request for path `path`.
    pub(crate) fn bytes(&self, path: usize) -> &[u8] {
        &self.bytes[path]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_keeps_its_weights_without_a_period() {
        let mut cfg = Config::new("http://127.0.0.1:8080/").unwrap();
        cfg.paths = "3:/a,1:/b,1:/c".parse().unwrap();
        let mut requests = Requests::new(&cfg, 1);
        let picks: Vec<usize> = (0..50_000).map(|_| requests.next()).collect();
        let mut seen = [0i32; 3];
        for &p in &picks {
            seen[p] += 1;
        }
        // 30,000 / 10,000 / 10,000 expected; a binomial's spread is about 100.
        for (got, want) in seen.iter().zip([30_000, 10_000, 10_000]) {
            assert!((got - want).abs() < 600, "{seen:?}");
        }
        // What a rotation over 4 workers would see: /b at every position mod 4.
        let mut positions = [0; 4];
        for (i, _) in picks.iter().enumerate().filter(|&(_, &p)| p == 1) {
            positions[i % 4] += 1;
        }
        assert!(positions.iter().all(|&n| n > 2_000), "{positions:?}");
        // The same seed, the same sequence.
        let mut again = Requests::new(&cfg, 1);
        assert!(picks[..100].iter().all(|&p| p == again.next()));
        assert_eq!(
            requests.bytes(1),
            b"GET /b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        cfg.close = true;
        assert!(Requests::new(&cfg, 1)
            .bytes(0)
            .ends_with(b"\r\nConnection: close\r\n\r\n"));
    }
}
