//! The command line: bad flags and bad addresses get one clear line and a non-zero exit.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::herd_bin;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(herd_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["serve", "--listen", &addr, "--workers", "1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("herd: cannot listen on {addr}")),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("address in use") || err.contains("Address already in use"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_flags_are_rejected_without_a_panic() {
    for args in [
        &["serve", "--workers", "0"][..],
        &["serve", "--workers", "many"],
        &["serve", "--policy", "fastest"],
        &["serve", "--listen", "not-an-address"],
        &["serve", "--shutdown-timeout", "-1"],
        &["serve", "--max-connections", "0"],
        &["serve", "--max-connections", "lots"],
        &["serve", "--no-such-flag"],
        &["frobnicate"],
    ] {
        let (code, err) = run(args);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{args:?} exited {code:?}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
}

#[test]
fn help_names_the_signals() {
    let out = Command::new(herd_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("graceful stop"), "{text}");
}

#[test]
fn absurd_durations_are_a_one_line_usage_error() {
    // Past u64 seconds `Duration::from_secs_f64` panics; past i64 seconds `Instant + Duration`
    // overflows at the first SIGTERM. Both must be refused before anything starts.
    for args in [
        &["serve", "--shutdown-timeout", "1e20"][..],
        &["serve", "--shutdown-timeout", "1e19"],
        &["serve", "--shutdown-timeout", "inf"],
        &["serve", "--shutdown-timeout", "NaN"],
        &["serve", "--shutdown-timeout", ""],
        &["serve", "--max-restarts", "3", "--restart-window", "1e19"],
        &[
            "proxy",
            "--target",
            "http://127.0.0.1:1",
            "--upstream-timeout",
            "1e20",
        ],
        &[
            "proxy",
            "--target",
            "http://127.0.0.1:1",
            "--tunnel-timeout",
            "0",
        ],
        &["load", "http://127.0.0.1:1/", "-d", "1e19"],
        &["load", "http://127.0.0.1:1/", "--timeout", "-5"],
        &["bench", "--duration", "1e20"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // clap's error line, then only its "For more information, try '--help'." hint.
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: invalid value") && lines[0].contains("up to a year"),
            "{args:?}: {err}"
        );
    }
}
