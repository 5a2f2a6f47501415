//! The policy comparison of `herd bench`, short: every policy, the `connect` and `skewed`
//! workloads, 4 workers, 2 s per run. Prints the markdown table and writes the report to
//! `bench-policies/` in the target directory.
//!
//! `cargo bench --bench policies` (the full comparison is `herd bench`).

use std::path::PathBuf;
use std::time::Duration;

use herd::bench::{Config, Workload};
use herd::policy::Policy;

fn main() {
    // `cargo bench` passes `--bench`; anything naming a filter that is not ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"policies".contains(&a))
    {
        return;
    }
    let cfg = Config {
        herd: PathBuf::from(env!("CARGO_BIN_EXE_herd")),
        policies: Policy::ALL.to_vec(),
        workloads: vec![Workload::Connect, Workload::Skewed],
        workers: 4,
        duration: Duration::from_secs(2),
        command: "cargo bench --bench policies".to_string(),
    };
    let report = herd::bench::run(&cfg).expect("the benchmark runs");
    print!("{}", report.table());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let out = target.join("bench-policies");
    for f in herd::bench::write_files(&report, &out).expect("the report is written") {
        eprintln!("wrote {}", f.display());
    }
}
