//! `herd run --listen ADDR -- CMD`: any program, socket-activated as systemd would start it
//! (the sockets at fd 3.., `LISTEN_PID`, a `NOTIFY_SOCKET` of its own), supervised by herd.
//! The programs are python3 ones under `tests/apps/`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;

fn app(name: &str) -> String {
    format!("{}/tests/apps/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `herd run --listen 127.0.0.1:0 --workers N ARGS… -- python3 tests/apps/APP`.
fn run_app(workers: usize, args: &[&str], script: &str, env: &[(&str, &str)]) -> Herd {
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        &workers.to_string(),
    ])
    .args(args)
    .args(["--", "python3", &app(script)])
    .envs(env.iter().copied());
    Herd::start(cmd, workers)
}

fn pid_of(h: &Herd) -> i32 {
    let r = get(h.addr, "/");
    assert_eq!(r.status, 200);
    r.text().parse().expect("a pid")
}

#[test]
fn both_policies_serve_from_the_sockets_the_workers_were_given() {
    for policy in ["shared", "reuseport"] {
        let h = run_app(2, &["--policy", policy], "activated.py", &[]);
        let workers: BTreeSet<i32> = h.live_worker_pids().into_iter().collect();
        // The app checked LISTEN_PID against its own pid (it exits otherwise) and said
        // READY=1 with a status line.
        h.log.wait_for_n(2, |l| l.contains("status: serving"));
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            let pid = pid_of(&h);
            assert!(workers.contains(&pid), "{policy}: {pid} is not a worker");
            seen.insert(pid);
        }
        assert!(!seen.is_empty());
        h.stop();
    }
}

#[test]
fn a_killed_worker_is_respawned_and_serves() {
    let h = run_app(2, &[], "activated.py", &[]);
    let victim = h.forks()[&1];
    // SAFETY: kill(2) on a worker of ours.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    h.log.wait_for("worker 1 exited (signal 9");
    h.log.wait_for("worker 3 listening on");
    let new = h.forks()[&3];
    wait_until("the new worker to serve", || pid_of(&h) == new);
    h.stop();
}

#[test]
fn a_reload_under_load_answers_every_request_and_replaces_every_pid() {
    let h = run_app(2, &[], "activated.py", &[]);
    let before: BTreeSet<i32> = h.live_worker_pids().into_iter().collect();
    let url = format!("http://{}/", h.addr);
    let load = Command::new(herd_bin())
        .args(["load", &url, "-c", "4", "-d", "4s", "--close", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    h.signal(libc::SIGHUP);
    h.log.wait_for("reload done");
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let errors: u64 = (report["errors"].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(report["requests"].as_u64().unwrap() > 50, "{report}");
    assert_eq!(errors, 0, "{report}");
    let after: BTreeSet<i32> = h.live_worker_pids().into_iter().collect();
    assert!(before.is_disjoint(&after), "{before:?} {after:?}");
    for _ in 0..10 {
        assert!(after.contains(&pid_of(&h)));
    }
    h.stop();
}

#[test]
fn a_program_that_never_notifies_is_ready_after_ready_after() {
    let h = run_app(
        1,
        &["--ready-after", "0.3"],
        "activated.py",
        &[("NO_READY", "1")],
    );
    h.log.wait_for("sent no READY=1: taken as ready");
    h.log.wait_for("master ready");
    assert!(pid_of(&h) > 0);
    h.stop();
}

#[test]
fn every_output_line_arrives_whole_and_prefixed() {
    let h = run_app(2, &[], "chatty.py", &[("LINES", "2000")]);
    let pids = h.forks();
    for (id, pid) in [(1, pids[&1]), (2, pids[&2])] {
        for stream in ["out", "err"] {
            let prefix = format!("[worker {id}] {stream} {pid} ");
            let lines = h.log.wait_for_n(2000, |l| l.starts_with(&prefix));
            for line in lines {
                let rest = &line[prefix.len()..];
                let (n, pad) = rest.split_once(' ').unwrap_or((rest, ""));
                let n: usize = n.parse().unwrap_or_else(|_| panic!("cut line: {line:?}"));
                let fill = if stream == "out" { 'x' } else { 'y' };
                assert_eq!(pad, fill.to_string().repeat(n % 300), "cut line: {line:?}");
            }
        }
    }
    h.stop();
}

#[test]
fn sigusr1_reopens_a_moved_log_file() {
    let dir = std::env::temp_dir().join(format!("herd-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("herd.log");
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--log-file",
    ])
    .arg(&log)
    .args(["--", "python3", &app("activated.py")]);
    let (mut child, _) = spawn_logged(cmd);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_until("herd's log in the file", || {
        read(&log).contains("master ready")
    });
    let addr: std::net::SocketAddr = read(&log)
        .lines()
        .find_map(|l| l.split("master listening on ").nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let moved = dir.join("herd.log.1");
    std::fs::rename(&log, &moved).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    wait_until("a new log file", || {
        read(&log).contains("log file reopened")
    });
    assert_eq!(get(addr, "/").status, 200);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
    assert!(read(&log).contains("all workers gone"), "{}", read(&log));
    assert!(
        read(&moved).contains("[worker 1] serving on"),
        "{}",
        read(&moved)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_program_that_exits_at_once_backs_off_and_gives_up_at_max_restarts() {
    let out = Command::new(herd_bin())
        .args(["run", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args([
            "--max-restarts",
            "2",
            "--",
            "python3",
            "-c",
            "raise SystemExit(3)",
        ])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("respawning in"), "{err}");
    assert!(err.contains("more than 2 restarts"), "{err}");
}

#[test]
fn bad_commands_and_combinations_are_one_line_errors_with_exit_2() {
    let cases: [(&[&str], &str); 3] = [
        (&["--", "python3", "x.py"], "needs --listen"),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--policy",
                "round-robin",
                "--",
                "python3",
                "x.py",
            ],
            "cannot serve systemd workers",
        ),
        (
            &["--listen", "127.0.0.1:0", "--", "herd-no-such-command"],
            "cannot run herd-no-such-command",
        ),
    ];
    for (args, says) in cases {
        assert_refused(Command::new(herd_bin()).arg("run").args(args), says);
    }
}

/// A worker that is a shell wrapper: its helper child (which holds `MB` MiB, touched) runs
/// beside the server the shell `exec`s into, so the worker's own process is small and its
/// process tree is not. With `once`, only the first worker starts a helper (the others
/// find `once` already there).
fn run_wrapped(args: &[&str], mb: u32, once: Option<&std::path::Path>) -> Herd {
    let helper = format!(
        "python3 -c 'import time; x = bytes(range(256)) * ({mb} << 12); time.sleep(600)' &"
    );
    let helper = match once {
        Some(mark) => format!("if mkdir {} 2>/dev/null; then {helper} fi;", mark.display()),
        None => helper,
    };
    let script = format!("{helper} exec python3 {}", app("activated.py"));
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(args)
        .args(["--", "sh", "-c", &script]);
    Herd::start(cmd, 1)
}

fn status(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = get(admin, "/status");
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.text()).expect("JSON")
}

#[test]
fn status_and_metrics_count_the_worker_process_tree_and_its_slot_restarts() {
    let h = run_wrapped(&["--admin", "127.0.0.1:0"], 64, None);
    let admin = h.admin_addr();
    let first = h.forks()[&1];
    assert_eq!(pid_of(&h), first);
    // The helper has filled its 64 MiB once the tree's RSS passes it.
    wait_until("the tree's RSS to include the helper's 64 MiB", || {
        let w = &status(admin)["workers"][0];
        w["rss_bytes"].as_u64().unwrap_or(0) > 64 << 20
    });
    let w = &status(admin)["workers"][0];
    assert_eq!(w["pid"], first);
    assert!(w["processes"].as_u64().unwrap() >= 2, "{w}");
    assert!(w["cpu_seconds"].as_f64().is_some(), "{w}");
    assert_eq!(w["restarts"], 0);
    let metrics = get(admin, "/metrics").text();
    let rss_line = (metrics.lines())
        .find(|l| l.starts_with("herd_worker_resident_memory_bytes{worker=\"1\"}"))
        .unwrap_or_else(|| panic!("no RSS series in\n{metrics}"));
    let rss: f64 = rss_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(rss > (64 << 20) as f64, "{rss_line}");
    assert!(metrics.contains("herd_worker_cpu_seconds_total{worker=\"1\"}"));
    assert!(
        metrics.contains(&format!(
            "herd_worker_info{{worker=\"1\",pid=\"{first}\",state=\"online\"}} 1"
        )),
        "{metrics}"
    );

    // A killed worker's slot counts one restart, shown on its successor. The whole
    // process group, so that the helper does not outlive the test.
    // SAFETY: kill(2) on the process group a worker of ours leads.
    unsafe { libc::kill(-first, libc::SIGKILL) };
    h.log.wait_for("worker 2 listening on");
    wait_until("the successor's status", || {
        let w = &status(admin)["workers"][0];
        w["id"] == 2 && w["state"] == "online"
    });
    let w = &status(admin)["workers"][0];
    assert_eq!(w["restarts"], 1, "{w}");
    assert!(get(admin, "/metrics")
        .text()
        .contains("herd_worker_slot_restarts{worker=\"2\"} 1"));
    h.stop();
}

#[test]
fn max_worker_rss_limits_the_process_tree_not_only_the_worker() {
    // The server alone is ~10 MB; with its helper the tree is over 48 MB. Only the first
    // worker has a helper, so its replacement stays.
    let mark = std::env::temp_dir().join(format!("herd-tree-rss-{}", std::process::id()));
    let _ = std::fs::remove_dir(&mark);
    let h = run_wrapped(&["--max-worker-rss", "48"], 64, Some(&mark));
    let first = h.forks()[&1];
    h.log.wait_for("worker 1 (its process tree) uses");
    h.log.wait_for("over --max-worker-rss 48 MB: replacing it");
    // Replaced through the reload path: the successor serves, the old tree is gone.
    h.log.wait_for("worker 2 listening on");
    let second = h.forks()[&2];
    wait_until("the replacement to serve", || pid_of(&h) == second);
    wait_until("the old worker gone", || is_gone(first));
    h.stop();
    let _ = std::fs::remove_dir(&mark);
}
