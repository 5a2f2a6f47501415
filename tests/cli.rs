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
