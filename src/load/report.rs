//! What a load run found: each thread counts into its own [`Tally`] (no sharing on the hot
//! path), and the tallies are merged into one [`LoadReport`] at the end, which prints itself like
//! wrk ([`Display`](std::fmt::Display)) or as JSON ([`LoadReport::to_json`], shaped in `json.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::config::Config;

/// Why a request failed, or (for the status kinds) completed with an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The connection could not be made (refused, no route, no free port).
    Connect,
    /// Reading failed, e.g. the server reset the connection.
    Read,
    /// Writing the request failed.
    Write,
    /// No complete response within `--timeout` of sending.
    Timeout,
    /// The response was not valid HTTP/1.1, or bytes came that no request asked for.
    Parse,
    /// The server closed the connection before the response was complete.
    Closed,
    /// A complete response with a 4xx status.
    Status4xx,
    /// A complete response with a 5xx status.
    Status5xx,
}

impl ErrorKind {
    /// Every kind, in the order the report lists them.
    const ALL: [ErrorKind; 8] = [
        ErrorKind::Connect,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Timeout,
        ErrorKind::Parse,
        ErrorKind::Closed,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
    ];

    /// The kind's key in [`LoadReport::errors`].
    fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Parse => "parse",
            ErrorKind::Closed => "closed",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
        }
    }
}

/// Latencies are recorded in microseconds from 1 µs to an hour, to 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// One thread's counts, merged into the [`LoadReport`] when the run ends.
pub(crate) struct Tally {
    /// Latency of every completed response, in microseconds.
    latency_us: Histogram<u64>,
    /// With a path mix, the same per path of the mix (indexed like its entries); empty when
    /// every request asks for one path.
    path_latency_us: Vec<Histogram<u64>>,
    /// Completed responses, any status.
    requests: u64,
    /// Completed responses by the first digit of their status.
    status_classes: [u64; 10],
    /// Errors, indexed like [`ErrorKind::ALL`].
    errors: [u64; ErrorKind::ALL.len()],
    /// Every byte read from the server, heads included.
    pub(crate) bytes_read: u64,
    /// Sockets the thread connected (or tried to).
    pub(crate) connections_opened: u64,
    /// Requests sent (or being connected for) but not complete when the run stopped.
    pub(crate) in_flight_at_deadline: u64,
    /// Open loop: requests whose time had come but found no free connection before the end.
    pub(crate) queued_at_deadline: u64,
    /// When the thread stopped: the run's elapsed time ends at the last thread's stop.
    pub(crate) stopped: Option<Instant>,
}

impl Tally {
    /// Nothing counted yet, for a run whose path mix has `paths` entries.
    pub(crate) fn new(paths: usize) -> Tally {
        let per_path = if paths > 1 { paths } else { 0 };
        Tally {
            latency_us: new_histogram(),
            path_latency_us: (0..per_path).map(|_| new_histogram()).collect(),
            requests: 0,
            status_classes: [0; 10],
            errors: [0; ErrorKind::ALL.len()],
            bytes_read: 0,
            connections_opened: 0,
            in_flight_at_deadline: 0,
            queued_at_deadline: 0,
            stopped: None,
        }
    }

    /// Counts a complete response to a request for path `path` of the mix that was due at
    /// `due`: its scheduled time in an open-loop run, the time it was sent in a closed-loop one.
    pub(crate) fn complete(&mut self, status: u16, due: Instant, path: usize) {
        let latency = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(latency);
        if let Some(h) = self.path_latency_us.get_mut(path) {
            h.saturating_record(latency);
        }
        self.requests += 1;
        self.status_classes[usize::from(status / 100).min(9)] += 1;
        match status / 100 {
            4 => self.error(ErrorKind::Status4xx),
            5 => self.error(ErrorKind::Status5xx),
            _ => {}
        }
    }

    /// Counts an error.
    pub(crate) fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }
}

/// The result of a load run: counts, throughput and the latency distribution.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The target URL.
    pub url: String,
    /// Threads used.
    pub threads: usize,
    /// Connections (concurrent requests at most).
    pub connections: usize,
    /// The requested total rate of an open-loop run; `None` for closed loop.
    pub rate: Option<f64>,
    /// Whether each request had a connection of its own (`--close`).
    pub close: bool,
    /// From the start of the run until the last thread stopped.
    pub elapsed: Duration,
    /// Complete responses, whatever their status.
    pub requests: u64,
    /// `requests` divided by `elapsed`.
    pub requests_per_sec: f64,
    /// Complete responses by status class: keys `"2xx"`, `"3xx"`, `"4xx"`, `"5xx"` (always
    /// present) and any other class seen.
    pub status: BTreeMap<String, u64>,
    /// Bytes read from the server, heads and bodies.
    pub bytes_read: u64,
    /// Errors by kind, every kind present: `connect`, `read`, `write`, `timeout`, `parse`,
    /// `closed` (the server closed before the response was complete), and `status_4xx`,
    /// `status_5xx` (complete responses, also counted in `requests`).
    pub errors: BTreeMap<String, u64>,
    /// Connections opened (attempts included): equal to `connections` in a healthy keep-alive
    /// run, one per request with `--close`.
    pub connections_opened: u64,
    /// Requests sent but not complete when the run stopped. They are neither requests nor
    /// errors: the run ended, not the request.
    pub in_flight_at_deadline: u64,
    /// Open loop: requests that were due but still waited for a free connection at the end.
    pub queued_at_deadline: u64,
    /// Latency of every complete response in microseconds. Closed loop: from sending (or
    /// connecting, with `--close`) to the last byte. Open loop: from the time the request was
    /// scheduled, so time spent waiting for a free connection counts.
    pub latency_us: Histogram<u64>,
    /// With a path mix (`--path-mix`), the latency of each path's requests, in the mix's
    /// order; empty for a single path. In a mix of cheap and expensive requests, the cheap
    /// ones' tail shows who waited behind an expensive one, which the overall tail (made of
    /// the expensive requests themselves) cannot.
    pub paths: Vec<PathLatency>,
}

/// The latency of the requests for one path of a mix.
#[derive(Debug, Clone)]
pub struct PathLatency {
    /// The path.
    pub path: String,
    /// Its weight in the mix.
    pub weight: u32,
    /// Latency of its complete responses, in microseconds, measured as for the whole run.
    pub latency_us: Histogram<u64>,
}

impl LoadReport {
    /// Merges the threads' tallies of a run of `cfg` that began at `start`.
    pub(crate) fn new(cfg: &Config, start: Instant, tallies: Vec<Tally>) -> LoadReport {
        let mut latency_us = new_histogram();
        let mut status_classes = [0; 10];
        let mut errors = [0; ErrorKind::ALL.len()];
        let mut report = LoadReport {
            url: cfg.target.to_string(),
            threads: cfg.threads,
            connections: cfg.connections,
            rate: cfg.rate,
            close: cfg.close,
            elapsed: Duration::ZERO,
            requests: 0,
            requests_per_sec: 0.0,
            status: BTreeMap::new(),
            bytes_read: 0,
            errors: BTreeMap::new(),
            connections_opened: 0,
            in_flight_at_deadline: 0,
            queued_at_deadline: 0,
            latency_us: new_histogram(),
            paths: Vec::new(),
        };
        if cfg.paths.entries().len() > 1 {
            report.paths = (cfg.paths.entries().iter())
                .map(|(weight, path)| PathLatency {
                    path: path.clone(),
                    weight: *weight,
                    latency_us: new_histogram(),
                })
                .collect();
        }
        for tally in &tallies {
            latency_us
                .add(&tally.latency_us)
                .expect("histograms share their bounds");
            for (sum, h) in report.paths.iter_mut().zip(&tally.path_latency_us) {
                sum.latency_us
                    .add(h)
                    .expect("histograms share their bounds");
            }
            report.requests += tally.requests;
            report.bytes_read += tally.bytes_read;
            report.connections_opened += tally.connections_opened;
            report.in_flight_at_deadline += tally.in_flight_at_deadline;
            report.queued_at_deadline += tally.queued_at_deadline;
            for (sum, n) in status_classes.iter_mut().zip(tally.status_classes) {
                *sum += n;
            }
            for (sum, n) in errors.iter_mut().zip(tally.errors) {
                *sum += n;
            }
            if let Some(stopped) = tally.stopped {
                report.elapsed = report.elapsed.max(stopped.duration_since(start));
            }
        }
        report.latency_us = latency_us;
        for (class, &n) in status_classes.iter().enumerate() {
            if (2..=5).contains(&class) || n > 0 {
                report.status.insert(format!("{class}xx"), n);
            }
        }
        for kind in ErrorKind::ALL {
            report
                .errors
                .insert(kind.name().to_string(), errors[kind as usize]);
        }
        let secs = report.elapsed.as_secs_f64();
        if secs > 0.0 {
            report.requests_per_sec = report.requests as f64 / secs;
        }
        report
    }

    /// All errors, status errors included.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Bytes read per second.
    pub fn bytes_per_sec(&self) -> f64 {
        match self.elapsed.as_secs_f64() {
            s if s > 0.0 => self.bytes_read as f64 / s,
            _ => 0.0,
        }
    }
}

impl fmt::Display for LoadReport {
    /// Prints like wrk with `--latency`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.latency_us;
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "Running {secs:.2}s test @ {}", self.url)?;
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} requests/s"),
            None => "closed loop".to_string(),
        };
        let connection = if self.close {
            "a connection per request"
        } else {
            "keep-alive"
        };
        writeln!(
            f,
            "  {} threads and {} connections, {mode}, {connection}",
            self.threads, self.connections
        )?;
        writeln!(f, "  Latency     Avg       Stdev     Max")?;
        writeln!(
            f,
            "            {:>8}  {:>8}  {:>8}",
            micros(h.mean()),
            micros(h.stdev()),
            micros(h.max() as f64)
        )?;
        writeln!(f, "  Latency Distribution")?;
        for (label, q) in [("50%", 0.5), ("90%", 0.9), ("99%", 0.99), ("99.9%", 0.999)] {
            writeln!(
                f,
                "  {label:>7}  {:>8}",
                micros(h.value_at_quantile(q) as f64)
            )?;
        }
        writeln!(f, "  {:>7}  {:>8}", "max", micros(h.max() as f64))?;
        if !self.paths.is_empty() {
            writeln!(
                f,
                "  Latency by path       50%       99%     99.9%       max   requests"
            )?;
            for p in &self.paths {
                let h = &p.latency_us;
                writeln!(
                    f,
                    "  {:<18}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}",
                    p.path,
                    micros(h.value_at_quantile(0.5) as f64),
                    micros(h.value_at_quantile(0.99) as f64),
                    micros(h.value_at_quantile(0.999) as f64),
                    micros(h.max() as f64),
                    h.len()
                )?;
            }
        }
        writeln!(
            f,
            "  {} requests in {secs:.2}s, {} read, {} connections opened",
            self.requests,
            bytes(self.bytes_read as f64),
            self.connections_opened
        )?;
        let classes: Vec<String> = self
            .status
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        if !classes.is_empty() {
            writeln!(f, "  Status: {}", classes.join(", "))?;
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        if !errors.is_empty() {
            writeln!(f, "  Errors: {}", errors.join(", "))?;
        }
        if self.in_flight_at_deadline + self.queued_at_deadline > 0 {
            writeln!(
                f,
                "  At the deadline: {} in flight, {} queued (not counted)",
                self.in_flight_at_deadline, self.queued_at_deadline
            )?;
        }
        writeln!(f, "Requests/sec: {:>10.2}", self.requests_per_sec)?;
        writeln!(f, "Transfer/sec: {:>10}", bytes(self.bytes_per_sec()))
    }
}

/// Microseconds as wrk prints times: `850.00us`, `1.23ms`, `2.50s`.
fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.2}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// Bytes in binary units as wrk prints them: `512.00B`, `70.12MB`.
fn bytes(n: f64) -> String {
    let mut n = n;
    for unit in ["B", "KB", "MB", "GB"] {
        if n < 1024.0 {
            return format!("{n:.2}{unit}");
        }
        n /= 1024.0;
    }
    format!("{n:.2}TB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LoadReport {
        let mut cfg = Config::new("http://127.0.0.1:8080/\"q").unwrap();
        cfg.paths = "3:/a,1:/b".parse().unwrap();
        let start = Instant::now();
        let mut a = Tally::new(2);
        let mut b = Tally::new(2);
        a.complete(200, start, 0);
        a.complete(503, start, 1);
        b.complete(301, start, 0);
        b.error(ErrorKind::Read);
        b.stopped = Some(start + Duration::from_secs(2));
        LoadReport::new(&cfg, start, vec![a, b])
    }

    #[test]
    fn tallies_merge() {
        let r = report();
        assert_eq!(r.requests, 3);
        assert_eq!(r.latency_us.len(), 3);
        let by_path: Vec<(&str, u32, u64)> = (r.paths.iter())
            .map(|p| (p.path.as_str(), p.weight, p.latency_us.len()))
            .collect();
        assert_eq!(by_path, [("/a", 3, 2), ("/b", 1, 1)]);
        assert_eq!(r.elapsed, Duration::from_secs(2));
        assert_eq!(r.requests_per_sec, 1.5);
        assert_eq!(
            (
                r.status["2xx"],
                r.status["3xx"],
                r.status["4xx"],
                r.status["5xx"]
            ),
            (1, 1, 0, 1)
        );
        assert_eq!((r.errors["read"], r.errors["status_5xx"]), (1, 1));
        assert_eq!(r.errors.len(), ErrorKind::ALL.len());
        assert_eq!(r.errors_total(), 2);
        let text = r.to_string();
        assert!(text.contains("Requests/sec:       1.50"), "{text}");
        assert!(text.contains("Errors: read 1, status_5xx 1"), "{text}");
        assert!(text.contains("Latency by path"), "{text}");
    }

    #[test]
    fn json_is_escaped_and_complete() {
        let json = report().to_json();
        assert!(
            json.starts_with("{\"url\":\"http://127.0.0.1:8080/\\\"q\","),
            "{json}"
        );
        assert!(json.contains("\"rate\":null"), "{json}");
        assert!(json.contains("\"status\":{\"2xx\":1,\"3xx\":1,\"4xx\":0,\"5xx\":1}"));
        assert!(json.contains("\"requests_per_sec\":1.5,"), "{json}");
        assert!(json.contains("\"paths\":[{\"path\":\"/a\",\"weight\":3,\"count\":2,"));
        assert!(json.ends_with("}]}"), "{json}");
        assert_eq!(json.matches('{').count(), json.matches('}').count());
    }

    #[test]
    fn json_has_every_field_the_scripts_read() {
        let json: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        // In the order written: serde_json keeps it (preserve_order).
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(&json),
            [
                "url",
                "threads",
                "connections",
                "rate",
                "close",
                "elapsed_s",
                "requests",
                "requests_per_sec",
                "bytes_read",
                "bytes_per_sec",
                "connections_opened",
                "in_flight_at_deadline",
                "queued_at_deadline",
                "status",
                "errors",
                "latency_us",
                "paths"
            ]
        );
        assert_eq!(
            keys(&json["latency_us"]),
            ["count", "min", "mean", "stdev", "p50", "p90", "p99", "p99_9", "max"]
        );
        assert_eq!(json["latency_us"]["count"], 3);
        assert_eq!(json["errors"]["read"], 1);
        assert_eq!(json["elapsed_s"], 2.0);
        assert_eq!(json["paths"][1]["path"], "/b");
        assert_eq!(json["paths"][1]["count"], 1);
    }
}
