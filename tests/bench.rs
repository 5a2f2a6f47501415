//! `herd bench` end to end: real servers, a tiny duration, every report file written.

mod common;

use std::process::Command;

use common::*;

#[test]
fn herd_bench_runs_end_to_end_and_writes_its_report() {
    let out = std::env::temp_dir().join(format!("herd-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(herd_bin())
        .args([
            "bench",
            "--policies",
            "round-robin,shared",
            "--workers",
            "2",
        ])
        .args(["--workloads", "connect,stall", "--duration", "300ms"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let table = String::from_utf8_lossy(&run.stdout);
    for row in [
        "| connect | round-robin |",
        "| stall | round-robin |",
        "| connect | shared |",
        "| stall | shared |",
    ] {
        assert!(table.contains(row), "missing {row}:\n{table}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains(table.trim()), "report.md holds the table");
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert_eq!(json.matches("\"policy\":").count(), 4, "{json}");
    assert!(json.contains("\"jain_connections\":"));
    for chart in [
        "share-connect",
        "latency-connect",
        "share-stall",
        "latency-stall",
    ] {
        let svg = std::fs::read_to_string(out.join(format!("{chart}.svg"))).unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("round-robin") && svg.contains("shared"));
    }
    // The servers it started are gone.
    assert!(!stderr.contains("did not stop"), "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn herd_bench_rejects_an_unknown_policy_in_one_line() {
    let run = Command::new(herd_bin())
        .args(["bench", "--policies", "round-robin,fastest"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("unknown policy 'fastest'"), "{stderr}");
}
