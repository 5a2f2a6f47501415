//! The requests a load thread sends: one pre-built byte string per path of the mix, and the
//! smooth weighted round-robin that picks the path for each request. Building the bytes once
//! keeps formatting off the hot path: sending a request is one `write` of a ready slice.

use super::config::LoadConfig;

/// The request bytes for each path, and the weighted choice among them.
pub(crate) struct Requests {
    /// `GET <path> HTTP/1.1` with its headers, one per entry of the path mix.
    bytes: Vec<Box<[u8]>>,
    /// The weight of each path.
    weights: Vec<i64>,
    /// Smooth weighted round-robin state (as in nginx's upstream balancer): each pick adds every
    /// weight to its counter and takes the largest, which then gives back the total. Over a cycle
    /// of `total` picks each path comes up exactly `weight` times, spread out rather than bunched.
    current: Vec<i64>,
    /// The sum of the weights.
    total: i64,
}

impl Requests {
    /// Builds the request for every path of `cfg`'s mix.
    pub(crate) fn new(cfg: &LoadConfig) -> Requests {
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
        let weights: Vec<i64> = entries.iter().map(|&(w, _)| i64::from(w)).collect();
        Requests {
            bytes,
            current: vec![0; weights.len()],
            total: weights.iter().sum(),
            weights,
        }
    }

    /// Picks the path of the next request.
    pub(crate) fn next(&mut self) -> usize {
        if self.weights.len() == 1 {
            return 0;
        }
        let mut best = 0;
        for i in 0..self.current.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
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
    fn mix_keeps_its_weights_in_every_cycle() {
        let mut cfg = LoadConfig::new("http://127.0.0.1:8080/").unwrap();
        cfg.paths = "3:/a,1:/b,1:/c".parse().unwrap();
        let mut requests = Requests::new(&cfg);
        for _ in 0..4 {
            let mut seen = [0; 3];
            for _ in 0..5 {
                seen[requests.next()] += 1;
            }
            assert_eq!(seen, [3, 1, 1]);
        }
        assert_eq!(
            requests.bytes(1),
            b"GET /b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        cfg.close = true;
        assert!(Requests::new(&cfg)
            .bytes(0)
            .ends_with(b"\r\nConnection: close\r\n\r\n"));
    }
}
