//! `herd proxy --spawn N --spawn-port BASE -- CMD`: the design document's last program
//! (one server scaled as instances on ports BASE, BASE+1, … behind a round-robin proxy),
//! with herd starting, watching and replacing the instances.
//!
//! The instances bind `$PORT` themselves, so BASE cannot be port 0: each test draws one at
//! random below the kernel's ephemeral range (32768 and up here), where no port-0 bind of
//! another test can land.

mod common;

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::process::Command;
use std::time::Duration;

use common::*;

fn app(name: &str) -> String {
    format!("{}/tests/apps/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A base port for `n` instances: random in 20000..32000, from the clock and the pid.
fn base_port(n: u16) -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id().rotate_left(16);
    20000 + (seed % (12000 - n as u32)) as u16
}

/// `herd proxy --spawn 3 …` over `tests/apps/instance.py`, once every instance is ready.
fn spawn_proxy(extra: &[&str]) -> Herd {
    let base = base_port(3).to_string();
    let mut cmd = Command::new(herd_bin());
    cmd.args(["proxy", "--listen", "127.0.0.1:0", "--workers", "2"])
        .args(["--spawn", "3", "--spawn-port", &base])
        .args(extra)
        .args(["--", "python3", &app("instance.py")]);
    let h = Herd::start(cmd, 2);
    h.log.wait_for("master ready");
    h
}

fn instance_of(text: &str) -> (u32, i32) {
    let words: Vec<&str> = text.split_whitespace().collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

/// Runs `herd load` against `h` for `secs` while `during` runs; every request must succeed.
fn load_without_errors(h: &Herd, secs: u32, during: impl FnOnce()) -> u64 {
    let url = format!("http://{}/", h.addr);
    let load = Command::new(herd_bin())
        .args(["load", &url, "-c", "4", "-d", &format!("{secs}s"), "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    during();
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let errors: u64 = (report["errors"].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 0, "{report}");
    report["requests"].as_u64().unwrap()
}

#[test]
fn requests_rotate_over_the_three_instances() {
    let h = spawn_proxy(&[]);
    // One keep-alive connection: its worker sends each request to the next instance.
    let mut s = connect(h.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut seen = Vec::new();
    for _ in 0..6 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        seen.push(instance_of(&resp.text()).0);
    }
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 3, "{seen:?}");
    for k in 3..6 {
        assert_eq!(seen[k], seen[k - 3], "not a rotation: {seen:?}");
    }
    drop(s);
    h.signal(libc::SIGTERM);
}

#[test]
fn a_killed_instance_costs_no_failed_request_and_is_restarted() {
    let h = spawn_proxy(&["--ready-path", "/health"]);
    let forks = h.forks();
    let victim = forks[&3]; // workers 1-2 are the proxy's, 3-5 the instances
    let requests = load_without_errors(&h, 3, || {
        std::thread::sleep(Duration::from_millis(700));
        // SAFETY: kill(2) on an instance of ours.
        unsafe { libc::kill(victim, libc::SIGKILL) };
        h.log.wait_for("worker 3 exited (signal 9");
    });
    assert!(requests > 100, "{requests}");
    h.log.wait_for("instance 6 ready on");
    h.signal(libc::SIGTERM);
}

#[test]
fn a_reload_under_load_replaces_every_instance_one_at_a_time_and_fails_nothing() {
    let h = spawn_proxy(&[]);
    let before: BTreeSet<i32> = h.forks().values().copied().collect();
    load_without_errors(&h, 6, || {
        std::thread::sleep(Duration::from_millis(700));
        h.signal(libc::SIGHUP);
        h.log.wait_for("reload done");
    });
    // Every instance replaced, in its place (on its port), one at a time.
    for id in 3..=5 {
        h.log.wait_for(&format!(
            "reload: stopping worker {id} to start its replacement"
        ));
    }
    let mut now = BTreeSet::new();
    for _ in 0..12 {
        let (_, pid) = instance_of(&get(h.addr, "/").text());
        now.insert(pid);
    }
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.is_disjoint(&before), "{now:?} {before:?}");
    h.signal(libc::SIGTERM);
}
