//! The watchdog for workers that are programs (`herd run`): a socket-activated python3
//! program under systemd's watchdog protocol (`WATCHDOG_USEC`, `WATCHDOG=1`), one that never
//! says `READY=1` (`--start-timeout`), and a Node worker stuck in a loop, which leaves the
//! connections handed to it unaccepted; plus `--max-requests`, refused for socket activation.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

fn fixture(dir: &str, name: &str) -> String {
    format!("{}/tests/{dir}/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `herd run --listen 127.0.0.1:0 ARGS… -- python3 tests/apps/SCRIPT`.
fn python(args: &[&str], script: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--listen", "127.0.0.1:0"])
        .args(args)
        .args(["--", "python3", &fixture("apps", script)])
        .envs(env.iter().copied());
    cmd
}

#[test]
fn a_socket_activated_program_that_stops_pinging_is_killed_and_replaced() {
    no_core_dumps();
    let cmd = python(
        &["--workers", "1", "--worker-timeout", "1"],
        "watchdog.py",
        &[],
    );
    let h = Herd::start(cmd, 1);
    // It was given the protocol's variables (it exits unless WATCHDOG_PID is its pid).
    h.log.wait_for("watchdog period 1.0s");
    let first = h.forks()[&1];
    // Pinging every 0.25 s for 1.5 s, more than a timeout period: it is not touched.
    let stopped = h.log.wait_for("stopped pinging");
    let lines = h.log.lines();
    let at = lines.iter().position(|l| *l == stopped).unwrap();
    assert!(
        !lines[..at].iter().any(|l| l.contains("unresponsive")),
        "killed while it pinged:\n{}",
        lines.join("\n")
    );
    let killed = h.log.wait_for("worker 1 unresponsive for ");
    assert!(killed.ends_with("s: killed"), "{killed}");
    h.log.wait_for("worker 1 exited (signal 6, SIGABRT)");
    assert!(is_gone(first) || h.log.lines().iter().any(|l| l.contains("SIGKILL")));
    h.log.wait_for("worker 2 listening on");
    let r = get(h.addr, "/");
    assert_eq!(r.text(), h.forks()[&2].to_string());
}

#[test]
fn a_program_that_never_says_ready_is_killed_at_the_start_timeout() {
    no_core_dumps();
    let started = Instant::now();
    let cmd = python(
        &["--workers", "1", "--start-timeout", "1"],
        "activated.py",
        &[("NO_READY", "1")],
    );
    let (mut child, log) = spawn_logged(cmd);
    let line = log.wait_for("worker 1 not online and listening after ");
    assert!(line.contains("(--start-timeout): killed"), "{line}");
    assert!(started.elapsed().as_secs_f64() >= 1.0);
    log.wait_for("worker 1 exited (signal 6, SIGABRT)");
    // Its replacement gets the same treatment.
    log.wait_for("fork: worker 2");
    log.wait_for("worker 2 not online and listening after ");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn max_requests_is_refused_for_a_socket_activated_program() {
    assert_refused(
        &mut python(&["--max-requests", "100"], "activated.py", &[]),
        "--max-requests cannot count",
    );
}

#[test]
fn a_node_worker_stuck_in_a_loop_is_killed_and_its_waiting_connections_served() {
    no_core_dumps();
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--workers", "2", "--worker-timeout", "2"])
        .args(["--", "node", &fixture("node", "blocking.js")]);
    let h = Herd::start(cmd, 2);
    let addr = h.addr;
    let stuck = std::thread::spawn(move || {
        exchange(
            addr,
            b"GET /block/60000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
    });
    let blocked = worker_of_line(&h.log.wait_for("] blocking"));
    // It took the connection it is stuck on: it owes nothing until it is handed another,
    // which it cannot accept. Each of these is answered, by the other worker.
    let waiting: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(addr, "/")))
        .collect();
    for t in waiting {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200);
        assert_ne!(
            r.text().trim(),
            blocked.to_string(),
            "served by the stuck worker"
        );
    }
    let killed = h
        .log
        .wait_for(&format!("worker {blocked} unresponsive for "));
    assert!(killed.ends_with("s: killed"), "{killed}");
    h.log
        .wait_for(&format!("worker {blocked} exited (signal 6, SIGABRT)"));
    h.log.wait_for("worker 3 listening on");
    assert!(
        stuck.join().unwrap().is_empty(),
        "the stuck request dies with it"
    );
}
