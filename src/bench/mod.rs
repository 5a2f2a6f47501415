//! `herd bench`: the scheduling policies compared, under the same load, on this machine.
//!
//! For each policy it starts `herd serve --app bench --admin …` as a child process, drives
//! each workload with [`load::run`], reads the master's `/metrics` before and after
//! to see which worker took what, and reports per (policy, workload): requests/s, latency
//! percentiles, errors, each worker's connections and requests, Jain's fairness index and
//! max/mean share. Output: a markdown table on stdout; `report.md`, `report.json` and SVG
//! charts in `--out`.
//!
//! | file | what it owns |
//! |------|--------------|
//! | `mod.rs` | the [`Config`], the workloads, the run order |
//! | `server.rs` | the herd under test as a child process; `/metrics` scrapes |
//! | `report.rs` | fairness figures, the table, report.md and report.json |
//! | `svg.rs` | the charts |
//!
//! Workloads (the load generator is one thread; the server has `--workers` workers):
//!
//! * `keepalive`: 64 long-lived connections, closed loop;
//! * `connect`: 32 connections, a new connection per request, closed loop (the accept path);
//! * `skewed`: open loop at 70% of the capacity measured (once, closed loop, against the
//!   first policy) with the path mix `95:/,5:/cost/2000`: 5% of requests burn 2 ms of CPU.
//!   A new connection per request, so every request is a scheduling decision;
//! * `stall`: open loop at the same rate, a new connection per request; about two requests
//!   a second are `/sleep/200`, which blocks the worker that gets it for 200 ms.
//!
//! In every workload, for every policy, connection slot `i` comes from its own loopback
//! address ([`SOURCE_IPS`], `herd load --source-ips`): `ip-hash` places clients by address,
//! and one load generator on one address would be one client, all on one worker. So each
//! slot is a client, and the share columns show how 64 (or 32) clients spread.

mod report;
mod server;
mod svg;

pub use report::{jain, max_over_mean, BenchReport, RunResult};
pub use server::{Scrape, Server};

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::load::{self, PathMix};
use crate::policy::Policy;

/// The workloads `herd bench` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Long-lived connections, closed loop.
    Keepalive,
    /// A connection per request, closed loop.
    Connect,
    /// Open loop, 5% of requests cost 2 ms of CPU.
    Skewed,
    /// Open loop, now and then a request blocks its worker for 200 ms.
    Stall,
}

impl Workload {
    /// Every workload, in the default order.
    pub const ALL: &'static [Workload] = &[
        Workload::Keepalive,
        Workload::Connect,
        Workload::Skewed,
        Workload::Stall,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Keepalive => "keepalive",
            Workload::Connect => "connect",
            Workload::Skewed => "skewed",
            Workload::Stall => "stall",
        }
    }

    fn open_loop(self) -> bool {
        matches!(self, Workload::Skewed | Workload::Stall)
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Workload, String> {
        crate::policy::parse_name(s, Workload::ALL, |w| w.name(), "workload")
    }
}

/// The `skewed` path mix.
const SKEWED_MIX: &str = "95:/,5:/cost/2000";
/// Stalls per second in `stall`.
const STALLS_PER_SEC: f64 = 2.0;
/// The open-loop rate as a fraction of the measured capacity.
const LOAD_FACTOR: f64 = 0.7;
/// Where the load's connections come from: one address per connection slot.
pub const SOURCE_IPS: &str = "127.0.0.2-127.0.0.65";

/// One `herd bench` run, from flags or from code (`cargo bench`).
#[derive(Debug, Clone)]
pub struct Config {
    /// The herd binary to start servers from.
    pub herd: PathBuf,
    /// Policies, in order.
    pub policies: Vec<Policy>,
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Workers per server.
    pub workers: usize,
    /// Per run.
    pub duration: Duration,
    /// The command line, for the report.
    pub command: String,
}

/// The load for `workload` against `addr`.
fn load_config(
    workload: Workload,
    addr: std::net::SocketAddr,
    duration: Duration,
    rate: Option<f64>,
) -> io::Result<load::Config> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut cfg = load::Config::new(&format!("http://{addr}/")).map_err(|e| bad(e.to_string()))?;
    cfg.duration = duration;
    cfg.source_ips = SOURCE_IPS.parse().map_err(bad)?;
    match workload {
        Workload::Keepalive => cfg.connections = 64,
        Workload::Connect => {
            cfg.connections = 32;
            cfg.close = true;
        }
        Workload::Skewed | Workload::Stall => {
            let rate = rate.expect("open-loop workloads have a rate");
            cfg.connections = 64;
            cfg.close = true;
            cfg.rate = Some(rate);
            cfg.paths = if workload == Workload::Skewed {
                SKEWED_MIX.parse().map_err(bad)?
            } else {
                let plain = (rate / STALLS_PER_SEC).round().max(1.0) as u64;
                format!("{plain}:/,1:/sleep/200")
                    .parse::<PathMix>()
                    .map_err(bad)?
            };
        }
    }
    Ok(cfg)
}

/// Measures the closed-loop capacity with the `skewed` path mix, a connection per request.
fn measure_capacity(cfg: &Config) -> io::Result<f64> {
    let policy = cfg.policies[0];
    let server = Server::start(&cfg.herd, policy, cfg.workers)?;
    let mut load = load_config(Workload::Connect, server.addr, cfg.duration, None)?;
    load.paths = SKEWED_MIX
        .parse()
        .map_err(|e: String| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let report = load::run(&load)?;
    server.stop()?;
    eprintln!(
        "herd bench: capacity with the skewed mix under {policy}: {:.0} requests/s",
        report.requests_per_sec
    );
    Ok(report.requests_per_sec)
}

/// Runs every (policy, workload) pair.
pub fn run(cfg: &Config) -> io::Result<BenchReport> {
    if cfg.policies.is_empty() || cfg.workloads.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no policy or no workload to run",
        ));
    }
    let capacity = if cfg.workloads.iter().any(|w| w.open_loop()) {
        Some(measure_capacity(cfg)?)
    } else {
        None
    };
    let rate = capacity.map(|c| (c * LOAD_FACTOR).max(1.0));
    let mut runs = Vec::new();
    for &policy in &cfg.policies {
        let server = Server::start(&cfg.herd, policy, cfg.workers)?;
        for &workload in &cfg.workloads {
            let before = server.settled_scrape()?;
            let load = load_config(workload, server.addr, cfg.duration, rate)?;
            let report = load::run(&load)?;
            let after = server.settled_scrape()?;
            let result = RunResult {
                policy,
                workload,
                per_worker: after.since(&before),
                load: report,
            };
            eprintln!(
                "herd bench: {policy} / {}: {:.0} req/s, p99 {:.2} ms, Jain {}",
                workload.name(),
                result.load.requests_per_sec,
                result.latency_ms(0.99),
                jain(&result.connections()).map_or("-".into(), |j| format!("{j:.3}"))
            );
            runs.push(result);
        }
        server.stop()?;
    }
    Ok(BenchReport {
        command: cfg.command.clone(),
        workers: cfg.workers,
        open_loop_rate: rate,
        capacity,
        runs,
    })
}

/// Writes report.md, report.json and the charts into `dir`; returns the files written.
pub fn write_files(report: &BenchReport, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = vec![
        (dir.join("report.md"), report.markdown()),
        (dir.join("report.json"), report.json()),
    ];
    let ran = |w: &&Workload| report.runs.iter().any(|r| r.workload == **w);
    for &workload in Workload::ALL.iter().filter(ran) {
        let runs: Vec<&RunResult> = report
            .runs
            .iter()
            .filter(|r| r.workload == workload)
            .collect();
        let n = runs.iter().map(|r| r.per_worker.len()).max().unwrap_or(0);
        let share = svg::BarChart {
            title: &format!(
                "Each worker's share of connections, {} workload",
                workload.name()
            ),
            y_label: "share of connections",
            series: (1..=n).map(|i| format!("worker #{i}")).collect(),
            groups: runs
                .iter()
                .map(|r| (r.policy.to_string(), r.connection_shares()))
                .collect(),
            reference: (n > 0).then(|| (1.0 / n as f64, "even share")),
        }
        .render();
        let latency = svg::BarChart {
            title: &format!("Latency by policy, {} workload", workload.name()),
            y_label: "milliseconds",
            series: if workload.open_loop() {
                vec![
                    "p50".into(),
                    "p99".into(),
                    "p99.9".into(),
                    "p99 light (/)".into(),
                ]
            } else {
                vec!["p50".into(), "p99".into(), "p99.9".into()]
            },
            groups: runs
                .iter()
                .map(|r| {
                    let mut p = [0.5, 0.99, 0.999].map(|q| r.latency_ms(q)).to_vec();
                    p.extend(r.light_latency_ms(0.99));
                    (r.policy.to_string(), p)
                })
                .collect(),
            reference: None,
        }
        .render();
        files.push((dir.join(format!("share-{}.svg", workload.name())), share));
        files.push((
            dir.join(format!("latency-{}.svg", workload.name())),
            latency,
        ));
    }
    for (path, text) in &files {
        std::fs::write(path, text)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
