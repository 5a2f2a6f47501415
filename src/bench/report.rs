//! What `herd bench` found: one [`RunResult`] per (policy, workload), the fairness figures,
//! and the report as markdown and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::LoadReport;
use crate::policy::Policy;

use super::Workload;

/// Jain's fairness index J = (Σx)² / (n·Σx²): 1 when every worker got the same, 1/n when
/// one worker got everything. `None` for no workers or nothing shared.
pub fn jain(xs: &[u64]) -> Option<f64> {
    let sum: f64 = xs.iter().map(|&x| x as f64).sum();
    let squares: f64 = xs.iter().map(|&x| (x as f64) * (x as f64)).sum();
    (squares > 0.0).then(|| sum * sum / (xs.len() as f64 * squares))
}

/// The largest share over the mean share: 1 when even, n when one worker got everything.
pub fn max_over_mean(xs: &[u64]) -> Option<f64> {
    let sum: u64 = xs.iter().sum();
    let max = *xs.iter().max()?;
    (sum > 0).then(|| max as f64 * xs.len() as f64 / sum as f64)
}

/// One (policy, workload) run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The policy under test.
    pub policy: Policy,
    /// The workload driven.
    pub workload: Workload,
    /// The client's view.
    pub load: LoadReport,
    /// Per worker (id order): connections and requests it took during the run.
    pub per_worker: Vec<(u64, u64)>,
}

impl RunResult {
    /// Each worker's connections in the run.
    pub fn connections(&self) -> Vec<u64> {
        self.per_worker.iter().map(|w| w.0).collect()
    }

    /// Each worker's requests in the run.
    pub fn requests(&self) -> Vec<u64> {
        self.per_worker.iter().map(|w| w.1).collect()
    }

    /// Each worker's share of the connections (0 to 1).
    pub fn connection_shares(&self) -> Vec<f64> {
        let c = self.connections();
        let total: u64 = c.iter().sum();
        c.iter()
            .map(|&x| {
                if total > 0 {
                    x as f64 / total as f64
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// A latency percentile in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.load.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// With a path mix, a latency percentile in milliseconds of the light requests alone:
    /// those for the mix's most common path (`/`, which costs nothing). In `skewed` the
    /// overall p99 is made of the expensive requests themselves, which no policy can make
    /// cheaper; the light requests' tail is the time they spent behind an expensive one,
    /// which is what a policy decides.
    pub fn light_latency_ms(&self, quantile: f64) -> Option<f64> {
        let light = self.load.paths.iter().max_by_key(|p| p.weight)?;
        Some(light.latency_us.value_at_quantile(quantile) as f64 / 1000.0)
    }
}

/// Everything one `herd bench` measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// When and where: the command line that produced it.
    pub command: String,
    /// Workers per server.
    pub workers: usize,
    /// The open-loop rate of `skewed` and `stall` (70% of the measured capacity).
    pub open_loop_rate: Option<f64>,
    /// The capacity measurement it came from (requests/s).
    pub capacity: Option<f64>,
    /// Every run, in the order run.
    pub runs: Vec<RunResult>,
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".to_string(), |x| format!("{x:.digits$}"))
}

impl BenchReport {
    /// The markdown table (also the stdout summary).
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| workload | policy | req/s | p50 ms | p99 ms | p99.9 ms | max ms | p99 light ms | \
             errors | Jain (conns) | max/mean | Jain (reqs) | connections per worker |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
        );
        for r in &self.runs {
            let conns = r.connections();
            let per: Vec<String> = conns.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} |",
                r.workload.name(),
                r.policy,
                r.load.requests_per_sec,
                r.latency_ms(0.5),
                r.latency_ms(0.99),
                r.latency_ms(0.999),
                r.load.latency_us.max() as f64 / 1000.0,
                opt(r.light_latency_ms(0.99), 2),
                r.load.errors_total(),
                opt(jain(&conns), 3),
                opt(max_over_mean(&conns), 2),
                opt(jain(&r.requests()), 3),
                per.join(" / "),
            );
        }
        out
    }

    /// `report.md`: how it was run, then the table.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# herd bench\n\n`{}`\n\n{} workers per server. ",
            self.command, self.workers
        );
        if let (Some(rate), Some(cap)) = (self.open_loop_rate, self.capacity) {
            let _ = write!(
                out,
                "Open-loop workloads (`skewed`, `stall`) run at {rate:.0} requests/s, 70% of \
                 the {cap:.0} requests/s measured closed loop with the `skewed` path mix. "
            );
        }
        out.push_str(
            "Latency is from the scheduled send time in open loop (no coordinated omission). \
             Jain's index J = (Σx)²/(n·Σx²) over the connections (and requests) each worker \
             took, from the master's `/metrics`; 1 is perfectly even, 1/n all on one worker. \
             `p99 light` is the p99 of the mix's cheap requests (`/`) alone: in `skewed` the \
             overall p99 is the expensive requests' own time, the light requests' tail is the \
             time they waited behind one.\n\n",
        );
        out.push_str(&self.table());
        out.push_str(
            "\nCharts: `share-WORKLOAD.svg` (each worker's share of connections, by policy), \
             `latency-WORKLOAD.svg` (p50/p99/p99.9 by policy).\n",
        );
        out
    }

    /// `report.json`: every run, with the full load report of each, on one line.
    pub fn json(&self) -> String {
        let json = BenchJson {
            workers: self.workers,
            capacity: self.capacity,
            open_loop_rate: self.open_loop_rate,
            runs: (self.runs.iter())
                .map(|r| {
                    let conns = r.connections();
                    let reqs = r.requests();
                    RunJson {
                        policy: r.policy.name(),
                        workload: r.workload.name(),
                        jain_connections: jain(&conns),
                        jain_requests: jain(&reqs),
                        max_over_mean_connections: max_over_mean(&conns),
                        connections_per_worker: conns,
                        requests_per_worker: reqs,
                        load: &r.load,
                    }
                })
                .collect(),
        };
        serde_json::to_string(&json).expect("a report has string keys and serializes") + "\n"
    }
}

/// The shape of `report.json`; a figure that does not exist (no capacity measured, no
/// connection to be fair about) is `null`.
#[derive(Serialize)]
struct BenchJson<'a> {
    workers: usize,
    capacity: Option<f64>,
    open_loop_rate: Option<f64>,
    runs: Vec<RunJson<'a>>,
}

/// One run in `report.json`.
#[derive(Serialize)]
struct RunJson<'a> {
    policy: &'static str,
    workload: &'static str,
    connections_per_worker: Vec<u64>,
    requests_per_worker: Vec<u64>,
    jain_connections: Option<f64>,
    jain_requests: Option<f64>,
    max_over_mean_connections: Option<f64>,
    load: &'a LoadReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_even_and_one_over_n_when_one_takes_all() {
        assert_eq!(jain(&[5, 5, 5, 5]), Some(1.0));
        assert_eq!(jain(&[20, 0, 0, 0]), Some(0.25));
        assert!((jain(&[3, 1]).unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(jain(&[0, 0]), None);
        assert_eq!(max_over_mean(&[20, 0, 0, 0]), Some(4.0));
        assert_eq!(max_over_mean(&[2, 2]), Some(1.0));
        assert_eq!(max_over_mean(&[]), None);
    }

    #[test]
    fn json_is_one_object_per_run_with_nulls_for_missing_figures() {
        let load = LoadReport {
            url: "http://127.0.0.1:1/".to_string(),
            threads: 1,
            connections: 2,
            rate: None,
            close: true,
            elapsed: std::time::Duration::from_secs(1),
            requests: 0,
            requests_per_sec: 0.0,
            status: Default::default(),
            bytes_read: 0,
            errors: Default::default(),
            connections_opened: 0,
            in_flight_at_deadline: 0,
            queued_at_deadline: 0,
            latency_us: hdrhistogram::Histogram::new(3).unwrap(),
            paths: Vec::new(),
        };
        let report = BenchReport {
            command: "herd bench".to_string(),
            workers: 2,
            open_loop_rate: Some(700.5),
            capacity: None,
            runs: vec![RunResult {
                policy: Policy::RoundRobin,
                workload: Workload::Connect,
                load,
                per_worker: vec![(3, 4), (1, 2)],
            }],
        };
        let text = report.json();
        assert!(
            text.ends_with("}\n") && !text.trim_end().contains('\n'),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["workers"], 2);
        assert_eq!(json["capacity"], serde_json::Value::Null);
        assert_eq!(json["open_loop_rate"], 700.5);
        let run = &json["runs"][0];
        assert_eq!(run["policy"], "round-robin");
        assert_eq!(run["workload"], "connect");
        assert_eq!(run["connections_per_worker"], serde_json::json!([3, 1]));
        assert_eq!(run["requests_per_worker"], serde_json::json!([4, 2]));
        assert_eq!(run["jain_connections"], 0.8);
        assert_eq!(run["max_over_mean_connections"], 1.5);
        assert_eq!(run["load"]["url"], "http://127.0.0.1:1/");
        assert_eq!(run["load"]["latency_us"]["count"], 0);
    }
}
