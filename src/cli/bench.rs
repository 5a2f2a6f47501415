//! `herd bench`: the flags become a [`bench::Config`]; [`bench::run`]'s report goes to stdout
//! as a table and to `--out` as files.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration, Outcome};
use crate::bench::{self, Workload};
use crate::policy::Policy;

/// Compares the scheduling policies under several workloads (the flags of `herd bench`).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Policies to compare, comma-separated [default: all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub policies: Vec<Policy>,
    /// Workloads: keepalive, connect, skewed, stall, comma-separated [default: all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Worker processes per server.
    #[arg(long, short = 'w', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// How long each (policy, workload) run lasts ("5s", "500ms").
    #[arg(
        long,
        short = 'd',
        default_value = "5s",
        allow_negative_numbers = true,
        value_parser = duration::positive()
    )]
    pub duration: Duration,
    /// Directory for report.md, report.json and the SVG charts (created if missing).
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
}

impl BenchArgs {
    /// The configuration these flags describe, starting servers from this executable.
    pub fn config(&self) -> std::io::Result<bench::Config> {
        Ok(bench::Config {
            herd: std::env::current_exe()?,
            policies: or_all(&self.policies, Policy::ALL),
            workloads: or_all(&self.workloads, Workload::ALL),
            workers: self.workers as usize,
            duration: self.duration,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        })
    }
}

/// The list given, or every one when none was.
fn or_all<T: Copy>(given: &[T], all: &[T]) -> Vec<T> {
    if given.is_empty() { all } else { given }.to_vec()
}

/// Runs every (policy, workload), prints the table, writes the files.
pub fn run(args: BenchArgs) -> Outcome {
    let outcome = args.config().and_then(|cfg| {
        let report = bench::run(&cfg)?;
        let files = bench::write_files(&report, &args.out)?;
        Ok((report, files))
    });
    match outcome {
        Ok((report, files)) => {
            print!("{}", report.table());
            for f in files {
                eprintln!("herd bench: wrote {}", f.display());
            }
            Outcome::Success
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
