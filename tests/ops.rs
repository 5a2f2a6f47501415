//! Operating herd, end to end with real processes: rolling reload and binary upgrade under
//! continuous load (nothing may fail), restart limits, systemd notification and socket
//! activation, privilege drop.

mod common;

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// Clients that make requests until told to stop, recording every outcome. Half open a fresh
/// connection per request; half keep one connection alive and reconnect only when the
/// server says `Connection: close` (what a well-behaved HTTP/1.1 client does). Neither
/// retries: a request that fails is counted as failed.
struct LoadLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    /// Worker ids that answered, with the time their request was sent.
    seen: Arc<Mutex<Vec<(Instant, u32)>>>,
    threads: Vec<JoinHandle<()>>,
}

impl LoadLoop {
    fn start(addr: SocketAddr, fresh: usize, keep_alive: usize) -> LoadLoop {
        let l = LoadLoop {
            stop: Arc::default(),
            ok: Arc::default(),
            failures: Arc::default(),
            seen: Arc::default(),
            threads: Vec::new(),
        };
        let mut threads = Vec::new();
        for i in 0..fresh + keep_alive {
            let (stop, ok, failures, seen) = (
                l.stop.clone(),
                l.ok.clone(),
                l.failures.clone(),
                l.seen.clone(),
            );
            let keep = i >= fresh;
            threads.push(std::thread::spawn(move || {
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    match one_request(addr, keep, &mut conn) {
                        Ok(id) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            seen.lock().unwrap().push((sent, id));
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            conn = None;
                        }
                    }
                }
            }));
        }
        LoadLoop { threads, ..l }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests have succeeded (the load really runs through).
    fn wait_more(&self, n: u64) {
        let target = self.ok() + n;
        wait_until(&format!("{n} more answered requests"), || {
            self.ok() >= target || !self.failures.lock().unwrap().is_empty()
        });
    }

    /// Stops the clients; returns the failures and the worker ids that answered requests
    /// sent after `since`.
    fn finish(self, since: Instant) -> (Vec<String>, BTreeSet<u32>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let seen = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|&(_, id)| id)
            .collect();
        (failures, seen)
    }
}

/// `GET /worker`; the answering worker's id, or why it failed.
fn one_request(
    addr: SocketAddr,
    keep_alive: bool,
    conn: &mut Option<BufReader<TcpStream>>,
) -> Result<u32, String> {
    if conn.is_none() {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        *conn = Some(BufReader::new(s));
    }
    let reader = conn.as_mut().unwrap();
    let req: &[u8] = if keep_alive {
        b"GET /worker HTTP/1.1\r\nHost: t\r\n\r\n"
    } else {
        b"GET /worker HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    };
    reader
        .get_mut()
        .write_all(req)
        .map_err(|e| format!("write (keep-alive {keep_alive}): {e}"))?;
    let resp = read_response(reader, false)
        .ok_or_else(|| format!("no response (keep-alive {keep_alive})"))?;
    if resp.status != 200 {
        return Err(format!("status {}", resp.status));
    }
    if !keep_alive || resp.header("connection") == Some("close") {
        *conn = None;
    }
    resp.text()
        .parse()
        .map_err(|_| format!("bad body {:?}", resp.text()))
}

/// A process to SIGKILL when the test ends, whatever happens (a new master is not our child).
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill(2); at worst the pid is gone already.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// USR2 to the master: waits until the new master is ready and the old one has exited 0;
/// the new master's pid.
fn upgrade(h: &mut Herd) -> i32 {
    h.signal(libc::SIGUSR2);
    let line = h.log.wait_for("upgrade: new master pid ");
    let new_master: i32 = line
        .split("new master pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the new master's pid");
    // Killed if the old master does not exit as it should; the caller owns it after.
    let mut cleanup = KillOnDrop(vec![new_master]);
    assert_eq!(h.wait_exit().code(), Some(0), "the old master exits 0");
    cleanup.0.clear();
    new_master
}

fn worker_pids_of(master: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_rolling_reload_under_load_fails_no_request_and_replaces_every_worker() {
    let h = Herd::serve(2, &["--app", "bench"]);
    let old_pids = h.live_worker_pids();
    assert_eq!(old_pids.len(), 2);
    let load = LoadLoop::start(h.addr, 2, 2);
    load.wait_more(200);
    h.signal(libc::SIGHUP);
    h.log.wait_for("reload done");
    // And again, while the first one's replacements are fresh.
    load.wait_more(100);
    h.signal(libc::SIGHUP);
    h.log.wait_for_n(2, |l| l.contains("reload done"));
    let after = Instant::now();
    load.wait_more(200);
    let (failures, seen) = load.finish(after);
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    for (old, new) in [(1, 3), (2, 4), (3, 5), (4, 6)] {
        h.log
            .wait_for(&format!("reload: worker {old} replaced by worker {new}"));
    }
    assert_eq!(
        seen,
        BTreeSet::from([5, 6]),
        "after two reloads only workers 5 and 6 answer"
    );
    wait_until("the old workers gone", || {
        old_pids.iter().all(|&p| is_gone(p))
    });
    assert_eq!(h.live_worker_pids().len(), 2, "{:#?}", h.log.lines());
}

#[test]
fn a_worker_over_max_worker_rss_is_replaced_without_failing_a_request() {
    // Every worker is over 1 MB, so each is replaced about once a second: churn under load.
    let h = Herd::serve(1, &["--app", "bench", "--max-worker-rss", "1"]);
    let load = LoadLoop::start(h.addr, 1, 1);
    h.log.wait_for("over --max-worker-rss 1 MB: replacing it");
    h.log.wait_for("reload: worker 2 replaced by worker 3");
    h.log.wait_for("worker 2 exited (code 0)");
    let after = Instant::now();
    load.wait_more(100);
    let (failures, seen) = load.finish(after);
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(seen.iter().all(|&id| id >= 3), "{seen:?}");
}

#[test]
fn a_binary_upgrade_under_load_fails_no_request_and_the_new_master_takes_over() {
    let dir = std::env::temp_dir().join(format!("herd-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("herd.pid");
    let mut h = Herd::serve(
        2,
        &["--app", "bench", "--pid-file", pid_file.to_str().unwrap()],
    );
    let old_master = h.pid();
    let read_pid =
        || -> Option<i32> { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() };
    assert_eq!(read_pid(), Some(old_master));
    let old_workers = h.live_worker_pids();
    let load = LoadLoop::start(h.addr, 2, 2);
    load.wait_more(200);

    let new_master = upgrade(&mut h);
    let mut cleanup = KillOnDrop(vec![new_master]);
    assert_eq!(
        read_pid(),
        Some(new_master),
        "the pid file names the new master"
    );
    let after = Instant::now();
    load.wait_more(300);
    let (failures, seen) = load.finish(after);
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    // The new master's workers continue the ids: 3 and 4.
    assert_eq!(seen, BTreeSet::from([3, 4]), "{:#?}", h.log.lines());
    assert!(old_workers.iter().all(|&p| is_gone(p)));
    let new_workers = worker_pids_of(new_master);
    assert_eq!(new_workers.len(), 2, "{new_workers:?}");
    cleanup.0.extend(&new_workers);

    // The new master is a full master: it stops gracefully and removes its pid file.
    // SAFETY: kill(2) on the new master's pid, alive (checked by the requests above).
    unsafe { libc::kill(new_master, libc::SIGTERM) };
    wait_until("the new master gone", || is_gone(new_master));
    wait_until("its workers gone", || {
        new_workers.iter().all(|&p| is_gone(p))
    });
    assert_eq!(read_pid(), None, "the pid file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reuseport_upgrade_keeps_the_port() {
    // Under reuseport the master holds a bound, non-listening reservation; the upgrade
    // passes it on and the new master's workers listen on the same port.
    let mut h = Herd::serve(2, &["--app", "bench", "--policy", "reuseport"]);
    let new_master = upgrade(&mut h);
    let mut cleanup = KillOnDrop(vec![new_master]);
    let mut seen = BTreeSet::new();
    wait_until("both new workers answering on the old port", || {
        seen.insert(get(h.addr, "/worker").text().parse::<u32>().unwrap());
        seen.len() == 2
    });
    assert_eq!(seen, BTreeSet::from([3, 4]), "{:#?}", h.log.lines());
    cleanup.0.extend(worker_pids_of(new_master));
}

#[test]
fn an_upgrade_to_a_binary_that_fails_leaves_the_old_master_serving() {
    // An executable file that is no program: execve itself refuses it (ENOEXEC), which
    // the forked child reports back before it exits.
    let dir = std::env::temp_dir().join(format!("herd-upgrade-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("herd");
    std::fs::write(&garbage, b"\x7fnot a program\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    let not_a_program = format!("cannot run {}: Exec format error", garbage.display());
    for (bin, why) in [
        ("/bin/false", "exited (code 1)"),
        // Known before any fork: `Program::spawn` looks the binary up first.
        (
            "/nonexistent/herd",
            "cannot run /nonexistent/herd: No such file or directory",
        ),
        (garbage.to_str().unwrap(), not_a_program.as_str()),
    ] {
        let mut cmd = Command::new(herd_bin());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--app",
            "bench",
        ])
        .env("HERD_UPGRADE_BIN", bin);
        let h = Herd::start(cmd, 2);
        let workers = h.live_worker_pids();
        let load = LoadLoop::start(h.addr, 1, 1);
        load.wait_more(50);
        h.signal(libc::SIGUSR2);
        let line = h.log.wait_for("upgrade failed:");
        assert!(line.contains(why), "{bin}: {line}");
        assert!(line.contains("this master keeps serving"), "{line}");
        let after = Instant::now();
        load.wait_more(100);
        let (failures, seen) = load.finish(after);
        assert!(failures.is_empty(), "{bin}: failed requests: {failures:?}");
        assert_eq!(seen, BTreeSet::from([1, 2]), "the same workers serve on");
        assert!(workers.iter().all(|&p| !is_gone(p)));
        // SAFETY: kill(0) only checks that the process exists.
        assert_eq!(unsafe { libc::kill(h.pid(), 0) }, 0, "the old master runs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Receives notifications on a Unix datagram socket until one contains `want`.
fn wait_notification(socket: &UnixDatagram, want: &str, got: &mut Vec<String>) {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 512];
    while !got.iter().any(|m| m.contains(want)) {
        assert!(Instant::now() < deadline, "no {want} in {got:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn systemd_notify_says_ready_reloading_and_stopping() {
    let dir = std::env::temp_dir().join(format!("herd-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = Command::new(herd_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
        .env("NOTIFY_SOCKET", &path);
    let mut h = Herd::start(cmd, 2);
    let mut got = Vec::new();
    wait_notification(&socket, "READY=1", &mut got);
    assert_eq!(got, ["READY=1"], "READY=1 comes first, once");
    h.log.wait_for("master ready: 2 worker(s) listening");

    h.signal(libc::SIGHUP);
    wait_notification(&socket, "RELOADING=1", &mut got);
    assert!(got[1].contains("MONOTONIC_USEC="), "{got:?}");
    got.clear();
    wait_notification(&socket, "READY=1", &mut got);
    h.log.wait_for("reload done");

    h.signal(libc::SIGTERM);
    wait_notification(&socket, "STOPPING=1", &mut got);
    assert_eq!(h.wait_exit().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs herd with `listener` as fd 3 and `LISTEN_FDS=1`, `LISTEN_PID` = herd's own pid
/// (set by a shell that then `exec`s herd, keeping its pid).
fn socket_activated(listener: &TcpListener, listen: &str) -> Command {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(herd_bin())
        .args(["serve", "--listen", listen, "--workers", "2"]);
    // SAFETY: dup2 and fcntl are async-signal-safe; they give the child the listener at
    // fd 3 without close-on-exec, as the socket activation protocol wants (dup2 onto itself
    // would leave close-on-exec set, hence fcntl when the listener already is fd 3).
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn socket_activation_serves_on_the_inherited_listener_without_binding() {
    // The test keeps its own copy open: binding the port again would fail, so an answer
    // proves herd serves on the socket it inherited.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let h = Herd::start(socket_activated(&listener, &addr.to_string()), 2);
    assert_eq!(h.addr, addr);
    h.log
        .wait_for(&format!("using inherited fd 3 ({addr}) for {addr}"));
    for _ in 0..4 {
        let r = get(addr, "/");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello world");
    }
}

#[test]
fn an_inherited_socket_that_matches_no_listen_address_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = socket_activated(&listener, "127.0.0.1:0").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "herd: inherited socket fd 3 ({}) matches no --listen address",
            listener.local_addr().unwrap()
        )),
        "{err}"
    );
}

#[test]
fn listen_fds_naming_an_fd_that_is_not_open_is_a_clear_error() {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec 3<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(herd_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("herd: inherited fd 3 is not a listening TCP socket: Bad file descriptor"),
        "{err}"
    );
}

#[test]
fn restart_limit_a_worker_that_always_crashes_makes_the_master_give_up() {
    let mut cmd = Command::new(example_bin("crashing_worker"));
    cmd.args(["127.0.0.1:0", "1", "3"]);
    let (mut child, log) = spawn_logged(cmd);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1), "{:#?}", log.lines());
    log.wait_for("more than 3 restarts within 60s (--max-restarts, --restart-window); giving up");
    // The first worker and its 3 restarts, no more.
    let forks = log
        .lines()
        .iter()
        .filter(|l| l.contains("fork: worker"))
        .count();
    assert_eq!(forks, 4, "{:#?}", log.lines());
}

#[test]
fn restart_flags_are_checked() {
    for args in [
        &["--restart-window", "0"][..],
        &["--restart-window", "-3"],
        &["--max-restarts", "-1"],
        &["--max-worker-rss", "0"],
        &["--group", "root"],
    ] {
        let out = Command::new(herd_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(c) if c != 0), "{args:?}");
        assert!(
            !err.contains("panicked") && !err.trim().is_empty(),
            "{args:?}: {err}"
        );
    }
}

fn uid_of(user: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {user} in /etc/passwd"))
}

fn uids(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn workers_run_as_the_user_given_and_the_master_keeps_root() {
    if !is_root() {
        eprintln!("SKIPPED: privilege drop needs root (CI runs as root)");
        return;
    }
    let nobody = uid_of("nobody");
    let h = Herd::serve(2, &["--user", "nobody"]);
    let workers = h.live_worker_pids();
    assert_eq!(workers.len(), 2);
    for pid in &workers {
        assert_eq!(uids(*pid), format!("{nobody} {nobody} {nobody} {nobody}"));
    }
    assert_eq!(uids(h.pid()), "0 0 0 0");
    assert_eq!(get(h.addr, "/").status, 200);
}

#[test]
fn a_worker_that_cannot_drop_privileges_stops_the_master_with_a_clear_error() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to take CAP_SETUID/CAP_SETGID away");
        return;
    }
    // Root without CAP_SETUID and CAP_SETGID (removed from the bounding set, so root's
    // exec gets neither): the master believes it can switch, the worker cannot.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-setuid,-setgid", "--"])
        .arg(herd_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--user",
            "nobody",
        ]);
    let (mut child, log) = spawn_logged(cmd);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1), "{:#?}", log.lines());
    log.wait_for("cannot switch to user nobody");
    log.wait_for("refusing to serve as root");
    log.wait_for("herd: worker ");
    let forks = log
        .lines()
        .iter()
        .filter(|l| l.contains("fork: worker"))
        .count();
    assert_eq!(
        forks,
        2,
        "no respawn of a worker that cannot start: {:#?}",
        log.lines()
    );
}

#[test]
fn user_needs_a_master_that_can_switch_users() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to start herd as another user");
        return;
    }
    let out = Command::new(herd_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--user",
            "root",
        ])
        .uid(uid_of("nobody"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--user root: the master runs as uid"), "{err}");
    let out = Command::new(herd_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "no-such-user-here",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--user no-such-user-here: no such user"),
        "{err}"
    );
}

#[test]
fn help_names_reload_and_upgrade_signals() {
    let out = Command::new(herd_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HUP         rolling reload"), "{text}");
    assert!(text.contains("USR2        binary upgrade"), "{text}");
    let out = Command::new(herd_bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--pid-file",
        "--max-restarts",
        "--restart-window",
        "--max-worker-rss",
        "--user",
        "--group",
    ] {
        assert!(text.contains(flag), "{flag} missing from: {text}");
    }
}

#[test]
fn status_shows_the_reload_and_the_log_names_each_replacement() {
    let h = Herd::serve(2, &["--admin", "127.0.0.1:0"]);
    let admin = h.admin_addr();
    h.signal(libc::SIGHUP);
    h.log.wait_for("reload done");
    h.log.wait_for("reload: worker 1 replaced by worker 3");
    h.log.wait_for("reload: worker 2 replaced by worker 4");
    let status = get(admin, "/status").text();
    assert!(
        status.contains("\"ops\":{\"reload\":{\"in_progress\":false"),
        "{status}"
    );
    assert!(status.contains("\"reloads\":1"), "{status}");
    assert!(status.contains("\"replaced\":2"), "{status}");
}
