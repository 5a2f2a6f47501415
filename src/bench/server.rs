//! The herd under test: `herd serve --app bench --admin …` as a child process, and its
//! `/metrics` read back per worker.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::policy::Policy;

/// How long a server may take to start or to stop.
const DEADLINE: Duration = Duration::from_secs(30);

/// One running `herd serve`.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its admin endpoint.
    pub admin: SocketAddr,
}

/// Per-worker counters from one `/metrics` scrape, by worker id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrape {
    /// `herd_worker_connections_total`.
    pub connections: BTreeMap<u32, u64>,
    /// `herd_worker_requests_total`.
    pub requests: BTreeMap<u32, u64>,
    /// `herd_worker_open_connections`.
    pub open: BTreeMap<u32, u64>,
}

impl Server {
    /// Starts `herd` (the binary at `herd`) with `workers` workers under `policy` and waits
    /// until every worker listens.
    pub fn start(herd: &Path, policy: Policy, workers: usize) -> io::Result<Server> {
        let mut child = Command::new(herd)
            .args(["serve", "--app", "bench", "--listen", "127.0.0.1:0"])
            .args(["--admin", "127.0.0.1:0", "--policy", policy.name()])
            .args(["--workers", &workers.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // The log is read to its end by a thread of this (client) process, so the server
        // never blocks on a full pipe; start-up lines come back over the channel.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let address = |line: &str| line.rsplit("listening on ").next()?.trim().parse().ok();
        let (mut addr, mut admin, mut listening) = (None, None, 0);
        let deadline = Instant::now() + DEADLINE;
        while addr.is_none() || admin.is_none() || listening < workers {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "herd serve --policy {policy} did not start ({workers} workers listening)"
                )));
            };
            if line.contains("master listening on ") {
                addr = address(&line);
            } else if line.contains("admin listening on ") {
                admin = address(&line);
            } else if line.contains("] worker ") && line.contains(" listening on ") {
                listening += 1;
            }
        }
        Ok(Server {
            child,
            addr: addr.expect("checked"),
            admin: admin.expect("checked"),
        })
    }

    /// Reads `/metrics`.
    pub fn scrape(&self) -> io::Result<Scrape> {
        let mut s = TcpStream::connect(self.admin)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: herd\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(Scrape::parse(&text))
    }

    /// Scrapes once every connection the run opened has been reported closed (the workers
    /// report every ≤ 50 ms), or after 5 s, whichever is first.
    pub fn settled_scrape(&self) -> io::Result<Scrape> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let scrape = self.scrape()?;
            if scrape.open.values().all(|&n| n == 0) || Instant::now() >= deadline {
                return Ok(scrape);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Graceful stop (SIGTERM); killed if it has not exited within the deadline.
    pub fn stop(mut self) -> io::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + DEADLINE;
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                self.child.wait()?;
                return Err(io::Error::other("herd serve did not stop in time; killed"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only if `stop` was not reached (an error on the way): do not leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Scrape {
    /// Reads the per-worker series out of a Prometheus text body (headers are skipped: no
    /// header line starts with a metric name).
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((name, labels)) = series.split_once("{worker=\"") else {
                continue;
            };
            let (Some(id), Ok(value)) = (
                labels.trim_end_matches("\"}").parse::<u32>().ok(),
                value.parse::<u64>(),
            ) else {
                continue;
            };
            let map = match name {
                "herd_worker_connections_total" => &mut scrape.connections,
                "herd_worker_requests_total" => &mut scrape.requests,
                "herd_worker_open_connections" => &mut scrape.open,
                _ => continue,
            };
            map.insert(id, value);
        }
        scrape
    }

    /// What each worker took between `before` and `self`: (connections, requests), in
    /// worker-id order.
    pub fn since(&self, before: &Scrape) -> Vec<(u64, u64)> {
        self.connections
            .iter()
            .map(|(id, &c)| {
                let c0 = before.connections.get(id).copied().unwrap_or(0);
                let r = self.requests.get(id).copied().unwrap_or(0);
                let r0 = before.requests.get(id).copied().unwrap_or(0);
                (c.saturating_sub(c0), r.saturating_sub(r0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_parse_and_subtract() {
        let before = Scrape::parse(
            "# TYPE herd_worker_connections_total counter\n\
             herd_worker_connections_total{worker=\"1\"} 2\n\
             herd_worker_connections_total{worker=\"2\"} 0\n\
             herd_worker_requests_total{worker=\"1\"} 5\n",
        );
        let after = Scrape::parse(
            "herd_worker_connections_total{worker=\"1\"} 10\n\
             herd_worker_connections_total{worker=\"2\"} 4\n\
             herd_worker_requests_total{worker=\"1\"} 25\n\
             herd_worker_requests_total{worker=\"2\"} 8\n\
             herd_worker_open_connections{worker=\"2\"} 1\n\
             herd_worker_exits_total 0\n",
        );
        assert_eq!(after.open.get(&2), Some(&1));
        assert_eq!(after.since(&before), [(8, 20), (4, 8)]);
    }
}
