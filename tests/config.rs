//! `herd --config FILE serve|proxy|run`: a file runs the cluster its flags would, flags on
//! the command line replace its settings, and a bad file is one line naming the line and
//! key, exit 2, before anything starts. Real herd and node processes on port 0.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

/// A directory of its own for one test's files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("herd-config-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    /// Writes `text` to the file `name`; its path.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Node.js cluster worker answering `$GREETING <its worker id>`.
const GREETING_JS: &str = "const cluster = require('cluster');
require('http')
    .createServer((req, res) => res.end(`${process.env.GREETING} ${cluster.worker.id}`))
    .listen(0, '127.0.0.1');
";

fn herd(args: &[&str]) -> Command {
    let mut cmd = Command::new(herd_bin());
    cmd.args(args);
    cmd
}

/// Runs herd, which is expected to stop at once: its exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = herd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herd {args:?} did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `herd --config FILE SUBCOMMAND` with `toml` as the file: exits 2 with exactly
/// `herd: FILE:LINE: MESSAGE` on one line, or `herd: FILE: MESSAGE` without a line.
fn assert_refused(subcommand: &str, toml: &str, line: Option<usize>, message: &str) {
    let (file, err) = refused_file(subcommand, toml);
    let place = line.map(|l| format!(":{l}")).unwrap_or_default();
    assert_eq!(err, format!("herd: {file}{place}: {message}\n"), "{toml}");
}

/// `herd --config FILE SUBCOMMAND` with `toml` as the file, which must exit 2 with one
/// line on stderr: the file's path and that line.
fn refused_file(subcommand: &str, toml: &str) -> (String, String) {
    let dir = Dir::new(&format!("refused-{}", unique()));
    let file = dir.write("herd.toml", toml);
    let (code, err) = refused(&["--config", &file, subcommand]);
    assert_eq!(code, Some(2), "{toml}\n{err}");
    assert_eq!(err.lines().count(), 1, "{toml}\n{err}");
    (file, err)
}

/// A number no other call of this process got, for directory names.
fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Asks until `count` different bodies have answered `path`, then `count` more times: every
/// body seen (more than `count` if there are more workers than that).
fn answers(addr: SocketAddr, path: &str, count: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    wait_until(&format!("{count} different answers to {path}"), || {
        seen.insert(get(addr, path).text());
        seen.len() >= count
    });
    for _ in 0..count {
        seen.insert(get(addr, path).text());
    }
    seen
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The master's `master ready: N worker(s) listening` line, without its timestamp.
fn ready_line(h: &Herd) -> String {
    let line = h.log.wait_for("master ready: ");
    line[line.find("master ready: ").unwrap()..].to_string()
}

#[test]
fn a_serve_table_runs_the_cluster_its_flags_would() {
    let dir = Dir::new("serve");
    let file = dir.write(
        "herd.toml",
        "[serve]\nlisten = [\"127.0.0.1:0\"]\nworkers = 3\napp = \"bench\"\n",
    );
    let by_file = Herd::start(herd(&["--config", &file, "serve"]), 3);
    let by_flags = Herd::serve(3, &["--app", "bench"]);
    for h in [&by_file, &by_flags] {
        assert_eq!(ready_line(h), "master ready: 3 worker(s) listening");
        assert_eq!(answers(h.addr, "/worker", 3), set(&["1", "2", "3"]));
    }
}

#[test]
fn a_run_table_runs_the_program_its_flags_would() {
    let dir = Dir::new("run");
    let app = dir.write("greeting.js", GREETING_JS);
    let file = dir.write(
        "herd.toml",
        &format!(
            "[run]\nworkers = 2\ncommand = [\"node\", '{app}']\n\n[run.env]\nGREETING = \"hi\"\n"
        ),
    );
    // --config after the subcommand works as well as before it.
    let by_file = Herd::start(herd(&["run", "--config", &file]), 2);
    let by_flags = Herd::start(
        herd(&[
            "run",
            "--workers",
            "2",
            "--env",
            "GREETING=hi",
            "--",
            "node",
            &app,
        ]),
        2,
    );
    for h in [&by_file, &by_flags] {
        assert_eq!(answers(h.addr, "/", 2), set(&["hi 1", "hi 2"]));
    }
}

#[test]
fn a_proxy_table_gives_its_required_targets_and_the_other_tables_are_not_its() {
    let backend = Herd::serve(1, &["--app", "bench"]);
    let dir = Dir::new("proxy");
    // One file for all three subcommands: the proxy reads [proxy] only.
    let file = dir.write(
        "herd.toml",
        &format!(
            "[serve]\nworkers = 3\n\n[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
             target = [\"http://{}\"]\n\n[run]\ncommand = [\"node\", \"app.js\"]\n",
            backend.addr
        ),
    );
    let proxy = Herd::start(herd(&["--config", &file, "proxy"]), 1);
    assert_eq!(ready_line(&proxy), "master ready: 1 worker(s) listening");
    let r = get(proxy.addr, "/worker");
    assert_eq!((r.status, r.text()), (200, "1".to_string()));
}

#[test]
fn flags_on_the_command_line_replace_the_files_settings() {
    // The file's address is taken: the cluster starts only if the command line's --listen
    // replaces the file's list instead of adding to it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = Dir::new("override-serve");
    let file = dir.write(
        "herd.toml",
        &format!(
            "[serve]\nlisten = [\"{}\"]\nworkers = 3\napp = \"hello\"\n",
            taken.local_addr().unwrap()
        ),
    );
    let h = Herd::start(
        herd(&[
            "--config",
            &file,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--app",
            "bench",
        ]),
        2,
    );
    assert_eq!(ready_line(&h), "master ready: 2 worker(s) listening");
    assert_eq!(answers(h.addr, "/worker", 2), set(&["1", "2"]));
}

#[test]
fn a_command_and_env_on_the_command_line_replace_the_files() {
    let dir = Dir::new("override-run");
    let app = dir.write("greeting.js", GREETING_JS);
    // Its command cannot run and its GREETING is replaced; its workers still count.
    let file = dir.write(
        "herd.toml",
        "[run]\nworkers = 2\ncommand = [\"/nonexistent/program\"]\n\
         env = { GREETING = \"from the file\" }\n",
    );
    let h = Herd::start(
        herd(&[
            "--config",
            &file,
            "run",
            "--env",
            "GREETING=from flags",
            "node",
            &app,
        ]),
        2,
    );
    assert_eq!(
        answers(h.addr, "/", 2),
        set(&["from flags 1", "from flags 2"])
    );
}

#[test]
fn an_unknown_key_or_table_is_named_with_its_line() {
    let header = "# herd's settings\n\n[serve]\n";
    assert_refused(
        "serve",
        &format!("{header}worker = 3\n"),
        Some(4),
        "unknown key 'worker' in [serve] (did you mean 'workers'?)",
    );
    // One spelling: the flag's.
    assert_refused(
        "serve",
        &format!("{header}workers = 2\nmax_restarts = 3\n"),
        Some(5),
        "unknown key 'max_restarts' in [serve] (did you mean 'max-restarts'?)",
    );
    assert_refused(
        "serve",
        &format!("{header}config = \"other.toml\"\n"),
        Some(4),
        "unknown key 'config' in [serve]",
    );
    // A key of another subcommand's.
    assert_refused(
        "run",
        "[run]\ncommand = [\"node\"]\napp = \"bench\"\n",
        Some(3),
        "unknown key 'app' in [run]",
    );
    assert_refused(
        "serve",
        "[serve]\nworkers = 2\n\n[server]\nworkers = 3\n",
        Some(4),
        "unknown table [server] (did you mean [serve]?)",
    );
    assert_refused(
        "serve",
        "[serve]\n[load]\n",
        Some(2),
        "unknown table [load] (expected [serve], [proxy] or [run])",
    );
}

#[test]
fn a_bad_value_is_named_with_its_key_and_line() {
    let cases = [
        ("serve", "policy = \"fastest\"", "policy: unknown policy 'fastest' (expected one of: round-robin, node, least-connections, p2c, ip-hash, shared, shared-exclusive, reuseport)"),
        ("serve", "workers = 0", "workers: 0 is not in 1..=1024"),
        ("serve", "workers = \"many\"", "workers: invalid value 'many': invalid digit found in string"),
        ("serve", "workers = true", "workers: expected a string or a number, found a boolean"),
        ("serve", "workers = [1, 2]", "workers: expected a string or a number, found an array"),
        ("serve", "app = \"x\"", "app: invalid value 'x' (expected one of: hello, bench)"),
        ("serve", "listen = [\"127.0.0.1:0\", true]", "listen: expected an array or one value, found a boolean in it"),
        ("serve", "shutdown-timeout = -1", "shutdown-timeout: invalid value '-1': expected seconds (\"2.5\") or a number with a unit (\"500ms\", \"10s\", \"1m\"), from 0 up to a year"),
        ("proxy", "listen = [\"127.0.0.1:0\"]", "listen: expected a string or a number, found an array"),
        ("proxy", "target = [\"http://127.0.0.1:3000/x\"]", "target: bad target 'http://127.0.0.1:3000/x': a target cannot have a path (expected http://IP:PORT)"),
        ("proxy", "change-origin = \"yes\"", "change-origin: expected true or false, found a string"),
        ("run", "command = { node = \"app.js\" }", "command: expected an array of strings (the program and its arguments), found a table"),
        ("run", "env = [\"NODE_ENV\"]", "env: 'NODE_ENV': expected NAME=VALUE, e.g. NODE_ENV=production"),
        ("run", "env = { A = [1] }", "env: expected an array, a table or one value, found an array for 'A'"),
        ("run", "env = { A = \"x\\u0000y\" }", "env: a value cannot contain a NUL character"),
        ("run", "map-port = { 3000 = \"x\" }", "map-port: 'x' in '3000=x' is not a port number"),
    ];
    for (subcommand, line, message) in cases {
        let toml = format!("# line 1\n[{subcommand}]\n{line}\n");
        assert_refused(subcommand, &toml, Some(3), message);
    }
}

#[test]
fn a_missing_file_bad_toml_or_a_missing_table_is_one_line() {
    let missing = "/nonexistent/herd.toml";
    let (code, err) = refused(&["--config", missing, "serve"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!("herd: {missing}: No such file or directory (os error 2)\n")
    );

    // toml's own words for what is wrong, after the place.
    for (toml, line) in [
        ("[serve]\nworkers = = 3\n", 2),
        ("[serve\nworkers = 3\n", 1),
        ("[serve]\nworkers = 3\nworkers = 4\n", 3),
        ("[serve]\nlisten = [\"127.0.0.1:0\"\n\n", 2),
        ("[serve]\nuser = \"www-data\n", 2),
    ] {
        let (file, err) = refused_file("serve", toml);
        assert!(
            err.starts_with(&format!("herd: {file}:{line}: ")),
            "{toml}\n{err}"
        );
    }
    // A setting outside any table.
    assert_refused(
        "serve",
        "workers = 3\n",
        Some(1),
        "invalid type: integer `3`, expected a table: every setting goes under [serve], \
         [proxy] or [run]",
    );
    assert_refused("serve", "[run]\nworkers = 3\n", None, "no [serve] table");
}

#[test]
fn a_subcommand_without_a_table_refuses_a_file() {
    let dir = Dir::new("load");
    let file = dir.write("herd.toml", "[serve]\n");
    let (code, err) = refused(&["--config", &file, "load", "http://127.0.0.1:1/"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "herd: --config: herd load takes no config file (only serve, proxy and run do)\n"
    );
}

#[test]
fn a_binary_upgrade_reads_the_file_again() {
    // The new master is started with the old one's command line, --config included: an
    // edited file takes effect, and a broken one fails the upgrade, not the service.
    let dir = Dir::new("upgrade");
    let file = dir.write(
        "herd.toml",
        "[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 2\napp = \"bench\"\n",
    );
    let mut h = Herd::start(herd(&["--config", &file, "serve"]), 2);
    assert_eq!(answers(h.addr, "/worker", 2), set(&["1", "2"]));

    dir.write("herd.toml", "[serve]\nworkers = 0\n");
    h.signal(libc::SIGUSR2);
    h.log
        .wait_for(&format!("herd: {file}:2: workers: 0 is not in 1..=1024"));
    let failed = h.log.wait_for("upgrade failed:");
    assert!(failed.contains("exited (code 2)"), "{failed}");
    assert_eq!(answers(h.addr, "/worker", 2), set(&["1", "2"]));

    dir.write(
        "herd.toml",
        "[serve]\nlisten = \"127.0.0.1:0\"\nworkers = 3\napp = \"bench\"\n",
    );
    h.signal(libc::SIGUSR2);
    let line = h.log.wait_for("upgrade: new master pid ");
    let new_master: i32 = line
        .split("new master pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the new master's pid");
    let status = h.wait_exit();
    let new_workers = || -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{new_master}/task/{new_master}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    // The new master continues the worker ids, with the file's new count.
    let seen = answers(h.addr, "/worker", 3);
    let workers = new_workers();
    // SAFETY: kill(2) on the new master, ours to stop; its workers exit with it (PDEATHSIG).
    unsafe { libc::kill(new_master, libc::SIGKILL) };
    for pid in &workers {
        // SAFETY: as above; at worst the pid is gone already.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(status.success(), "the old master exits 0: {status:?}");
    assert_eq!(seen, set(&["3", "4", "5"]));
    assert_eq!(workers.len(), 3, "{workers:?}");
}
