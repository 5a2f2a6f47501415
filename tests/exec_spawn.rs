//! `herd::exec::Program::spawn` against real children (`sh`, `python3`, `cat`, `sleep`):
//! the pid in `LISTEN_PID`, the fds at their numbers and nothing else, the environment,
//! the process group, signals, errors, credentials and the master's death.
//!
//! This test binary has no libtest harness (`harness = false` in Cargo.toml): it is a
//! plain single-threaded `main` that runs each check in turn. libtest runs every test on a
//! thread of its own, and `spawn` refuses to fork from a process with more than one thread,
//! as herd's master must never do; besides, `PR_SET_PDEATHSIG` fires when the *thread*
//! that forked exits, which a test thread does. Testing through a single-threaded binary
//! exercises `spawn` exactly as the master calls it, the thread check included.
//!
//! `cargo test --test exec_spawn -- NAME` runs the checks whose names contain NAME.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use herd::exec::{ChildFds, Program};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use common::{is_gone, wait_until};

/// Set in the environment of this binary re-run as a master that spawns `sleep` and
/// waits to be killed.
const ROLE_ENV: &str = "HERD_SPAWN_TEST_ROLE";

type Check = fn();

const CHECKS: &[(&str, Check)] = &[
    (
        "listen_pid_is_the_childs_own_pid",
        listen_pid_is_the_childs_own_pid,
    ),
    (
        "placed_fds_are_at_their_numbers_and_nothing_else_is_inherited",
        placed_fds_are_at_their_numbers_and_nothing_else_is_inherited,
    ),
    (
        "the_environment_passes_through_with_additions_and_removals",
        the_environment_passes_through_with_additions_and_removals,
    ),
    (
        "the_child_leads_its_own_process_group",
        the_child_leads_its_own_process_group,
    ),
    (
        "a_signal_to_the_group_reaches_a_grandchild",
        a_signal_to_the_group_reaches_a_grandchild,
    ),
    (
        "signal_dispositions_and_mask_start_at_the_defaults",
        signal_dispositions_and_mask_start_at_the_defaults,
    ),
    (
        "a_missing_or_unrunnable_command_is_an_error_with_a_clear_message",
        a_missing_or_unrunnable_command_is_an_error_with_a_clear_message,
    ),
    (
        "credentials_switch_the_user_before_exec",
        credentials_switch_the_user_before_exec,
    ),
    (
        "the_child_dies_with_its_master",
        the_child_dies_with_its_master,
    ),
    (
        "spawn_refuses_a_multithreaded_process",
        spawn_refuses_a_multithreaded_process,
    ),
];

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        play_master_that_gets_killed();
    }
    // Fds this process inherited from whatever started the tests (a shell, make) would
    // reach the children and look like leaks; herd's master does the same at startup.
    herd::exec::mark_inherited_fds_cloexec().unwrap();
    // Single-threaded here: changing the environment is sound.
    std::env::set_var("HERD_SPAWN_KEEP", "kept");
    std::env::set_var("HERD_SPAWN_DROP", "dropped");
    std::env::set_var("HERD_SPAWN_OVER", "old");
    std::env::set_var("LISTEN_PID", "1"); // stale, from "our own" service manager

    // libtest's command line, as far as it matters here: names to filter on, `--list`,
    // and options whose value is not a filter.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in CHECKS {
            println!("{name}: test");
        }
        return;
    }
    let takes_value = ["--test-threads", "--skip", "--format", "--color", "-Z"];
    let filters: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !takes_value.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .collect();
    let chosen: Vec<&(&str, Check)> = CHECKS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} checks", chosen.len());
    let mut failed = Vec::new();
    for (name, check) in chosen {
        let outcome = catch_unwind(AssertUnwindSafe(check));
        println!(
            "check {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures: {failed:?}");
        std::process::exit(101);
    }
    println!("\ncheck result: ok\n");
}

/// A pipe, both ends close-on-exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// Spawns `program` with its stdout on a pipe (plus `fds`), reads it to the end and
/// reaps the child. Returns the pid, the output and the exit status.
fn run(program: &Program, fds: ChildFds<'_>) -> (Pid, String, WaitStatus) {
    let (read, write) = pipe();
    let pid = program.spawn(&fds.stdout(write.as_fd())).unwrap();
    drop(write);
    let mut out = String::new();
    std::fs::File::from(read).read_to_string(&mut out).unwrap();
    let status = waitpid(pid, None).unwrap();
    (pid, out, status)
}

fn listen_pid_is_the_childs_own_pid() {
    let program = Program::new("sh")
        .args(["-c", "echo \"$LISTEN_PID $WATCHDOG_PID $$\""])
        .env_pid("LISTEN_PID")
        .env_pid("WATCHDOG_PID");
    for _ in 0..3 {
        let (pid, out, status) = run(&program, ChildFds::new());
        assert_eq!(status, WaitStatus::Exited(pid, 0));
        let p = pid.to_string();
        assert_eq!(out.trim(), format!("{p} {p} {p}"), "the child is pid {p}");
    }
}

/// The fds a child has open, as `number → (device, inode)`, seen from inside it.
const FD_PROBE: &str = "
import os
for fd in range(0, 4096):
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    print(fd, st.st_dev, st.st_ino)
";

fn identity(fd: BorrowedFd<'_>) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd).unwrap();
    (st.st_dev, st.st_ino)
}

/// A close-on-exec duplicate of `fd` at the lowest free number from `at`.
fn dup_at(fd: BorrowedFd<'_>, at: RawFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that only the OwnedFd owns.
    unsafe {
        let new = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at);
        assert!(new >= at, "dup: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(new)
    }
}

fn placed_fds_are_at_their_numbers_and_nothing_else_is_inherited() {
    // What a master holds: a listener, a worker's channel, its poll instance, a pipe, a
    // datagram socket. All of herd's and std's are close-on-exec.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (channel, _master_end) = herd::channel::Channel::pair().unwrap();
    let _poll = mio::Poll::new().unwrap();
    let (_pipe_r, _pipe_w) = pipe();
    let _dgram = std::os::unix::net::UnixDatagram::unbound().unwrap();
    // Sources whose numbers are each other's targets (20 ↔ 21), and one placed at its own
    // number (22, close-on-exec in the parent: the child must get it without the flag).
    let (a, b) = pipe();
    let (a, b) = (dup_at(a.as_fd(), 20), dup_at(b.as_fd(), 21));
    assert_eq!(
        (a.as_raw_fd(), b.as_raw_fd()),
        (20, 21),
        "fds 20, 21 were free"
    );
    let same = dup_at(listener.as_fd(), 22);
    assert_eq!(same.as_raw_fd(), 22);
    // The control: an fd without close-on-exec *is* inherited, so the probe can see a leak.
    // SAFETY: F_DUPFD returns a new fd (without close-on-exec) that only the OwnedFd owns.
    let leak =
        unsafe { OwnedFd::from_raw_fd(libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD, 30)) };
    let leak_fd = leak.as_raw_fd();
    assert!(leak_fd >= 30);

    let channel_fd = channel.raw_fd();
    // SAFETY: `channel` outlives the spawn below.
    let channel_borrowed = unsafe { BorrowedFd::borrow_raw(channel_fd) };
    let fds = ChildFds::new()
        .place(listener.as_fd(), 3)
        .place(channel_borrowed, 4)
        .place(a.as_fd(), 21)
        .place(b.as_fd(), 20)
        .place(same.as_fd(), 22);
    let program = Program::new("python3").args(["-I", "-c", FD_PROBE]);
    let (pid, out, status) = run(&program, fds);
    assert_eq!(status, WaitStatus::Exited(pid, 0), "{out}");
    let seen: BTreeMap<RawFd, (u64, u64)> = out
        .lines()
        .map(|l| {
            let f: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            (f[0] as RawFd, (f[1], f[2]))
        })
        .collect();

    let mut expected: BTreeMap<RawFd, (u64, u64)> = BTreeMap::new();
    expected.insert(3, identity(listener.as_fd()));
    expected.insert(4, identity(channel_borrowed));
    expected.insert(21, identity(a.as_fd()));
    expected.insert(20, identity(b.as_fd()));
    expected.insert(22, identity(listener.as_fd()));
    expected.insert(leak_fd, identity(listener.as_fd()));
    // stdin and stderr are this process's; stdout is the pipe `run` reads.
    for fd in [0, 2] {
        // SAFETY: fstat through a borrowed fd that stays open for the call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if nix::sys::stat::fstat(borrowed).is_ok() {
            expected.insert(fd, identity(borrowed));
        }
    }
    let numbers = |m: &BTreeMap<RawFd, (u64, u64)>| m.keys().copied().collect::<BTreeSet<_>>();
    let mut without_stdout = seen.clone();
    without_stdout.remove(&1);
    assert!(seen.contains_key(&1), "stdout: {seen:?}");
    assert_eq!(
        numbers(&without_stdout),
        numbers(&expected),
        "the child's fds, beyond its stdout"
    );
    assert_eq!(without_stdout, expected, "each fd is the file placed there");
    drop(leak);
}

/// `env -0` of a child: its environment as name → value.
fn environment_of(program: &Program) -> BTreeMap<String, Vec<String>> {
    let (_, out, _) = run(&program.clone().arg("-0"), ChildFds::new());
    let mut env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for var in out.split('\0').filter(|v| !v.is_empty()) {
        let (name, value) = var.split_once('=').unwrap();
        env.entry(name.to_string())
            .or_default()
            .push(value.to_string());
    }
    env
}

fn the_environment_passes_through_with_additions_and_removals() {
    let program = Program::new("env")
        .env("HERD_SPAWN_OVER", "new")
        .env("HERD_SPAWN_ADD", "with spaces\nand a newline")
        .env_remove("HERD_SPAWN_DROP")
        .env_remove("HERD_SPAWN_NEVER_SET");
    let env = environment_of(&program);
    let one = |v: &str| Some(vec![v.to_string()]);
    assert_eq!(env.get("HERD_SPAWN_KEEP").cloned(), one("kept"));
    assert_eq!(env.get("HERD_SPAWN_OVER").cloned(), one("new"));
    assert_eq!(
        env.get("HERD_SPAWN_ADD").cloned(),
        one("with spaces\nand a newline")
    );
    assert_eq!(env.get("HERD_SPAWN_DROP"), None);
    assert_eq!(
        env.get("PATH").cloned(),
        Some(vec![std::env::var("PATH").unwrap()])
    );
    // A variable set to the pid replaces the inherited one rather than doubling it.
    let env = environment_of(&program.env_pid("LISTEN_PID"));
    let listen_pid = env.get("LISTEN_PID").unwrap();
    assert_eq!(listen_pid.len(), 1);
    assert_ne!(listen_pid[0], "1");
}

fn the_child_leads_its_own_process_group() {
    let program = Program::new("python3").args([
        "-c",
        "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))",
    ]);
    let (pid, out, _) = run(&program, ChildFds::new());
    let ids: Vec<i32> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(ids[0], pid.as_raw());
    assert_eq!(ids[1], pid.as_raw(), "its process group is its own");
    let my_session = nix::unistd::getsid(None).unwrap().as_raw();
    assert_eq!(ids[2], my_session, "it stays in the master's session");
}

fn a_signal_to_the_group_reaches_a_grandchild() {
    // A shell wrapper whose real server is its child: what `--stop-signal` must reach.
    let program = Program::new("sh").args(["-c", "sleep 1000 & echo $!; wait"]);
    let (read, write) = pipe();
    // The parent blocks SIGTERM: the child must not inherit the mask.
    let mut term = nix::sys::signal::SigSet::empty();
    term.add(Signal::SIGTERM);
    term.thread_block().unwrap();
    let pid = program
        .spawn(&ChildFds::new().stdout(write.as_fd()))
        .unwrap();
    term.thread_unblock().unwrap();
    drop(write);
    let mut line = String::new();
    BufReader::new(std::fs::File::from(read))
        .read_line(&mut line)
        .unwrap();
    let grandchild: i32 = line.trim().parse().unwrap();
    assert!(!is_gone(grandchild));
    killpg(pid, Signal::SIGTERM).unwrap();
    assert_eq!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Signaled(pid, Signal::SIGTERM, false)
    );
    wait_until("the grandchild gone", || is_gone(grandchild));
}

/// A `Sig…:` mask from `/proc/PID/status`, as bits.
fn mask(status: &str, field: &str) -> u64 {
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

fn signal_dispositions_and_mask_start_at_the_defaults() {
    use nix::sys::signal::{signal, SigHandler, SigSet};
    // SAFETY: SIG_IGN runs no code; restored below.
    unsafe { signal(Signal::SIGUSR1, SigHandler::SigIgn) }.unwrap();
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGUSR2);
    blocked.add(Signal::SIGHUP);
    blocked.thread_block().unwrap();
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    // Rust's runtime ignores SIGPIPE; this process also ignores USR1 and blocks two.
    assert_ne!(mask(&mine, "SigIgn:"), 0);
    assert_ne!(mask(&mine, "SigBlk:"), 0);
    let spawned = run(
        &Program::new("cat").arg("/proc/self/status"),
        ChildFds::new(),
    );
    blocked.thread_unblock().unwrap();
    // SAFETY: back to the default.
    unsafe { signal(Signal::SIGUSR1, SigHandler::SigDfl) }.unwrap();
    let (_, theirs, _) = spawned;
    assert_eq!(mask(&theirs, "SigIgn:"), 0, "ignored signals in the child");
    assert_eq!(mask(&theirs, "SigBlk:"), 0, "blocked signals in the child");
}

/// A scratch directory for this run.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herd-exec-spawn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_file(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_spawn_error(program: Program, kind: std::io::ErrorKind, message: &str) {
    let err = program.spawn(&ChildFds::new()).unwrap_err();
    assert_eq!(err.to_string(), message);
    assert_eq!(err.kind(), kind, "{err}");
}

fn a_missing_or_unrunnable_command_is_an_error_with_a_clear_message() {
    use std::io::ErrorKind;
    let dir = scratch();
    let plain = dir.join("plain");
    write_file(&plain, "#!/bin/sh\necho hi\n", 0o644);
    let broken = dir.join("broken");
    write_file(&broken, "#!/herd/no/such/interpreter\n", 0o755);
    let on_path = dir.join("herd-test-tool");
    write_file(&on_path, "#!/bin/sh\necho from the scratch path\n", 0o755);

    assert_spawn_error(
        Program::new("herd-no-such-command"),
        ErrorKind::NotFound,
        "cannot run herd-no-such-command: command not found",
    );
    assert_spawn_error(
        Program::new(&plain),
        ErrorKind::PermissionDenied,
        &format!("cannot run {}: Permission denied", plain.display()),
    );
    // Found and executable, so only exec can tell: the child reports its errno.
    assert_spawn_error(
        Program::new(&broken),
        ErrorKind::NotFound,
        &format!("cannot run {}: No such file or directory", broken.display()),
    );
    // ... and was reaped: this process has no child left.
    assert_eq!(
        waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
        Err(nix::errno::Errno::ECHILD)
    );
    // The child's own $PATH is where its command is looked up.
    let in_scratch = Program::new("herd-test-tool").env("PATH", &dir);
    assert_eq!(
        run(&in_scratch, ChildFds::new()).1,
        "from the scratch path\n"
    );
    assert_spawn_error(
        Program::new("herd-test-tool"),
        ErrorKind::NotFound,
        "cannot run herd-test-tool: command not found",
    );
    let bad_arg = Program::new("true").arg(OsString::from("a\0b"));
    assert_eq!(
        bad_arg.spawn(&ChildFds::new()).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn credentials_switch_the_user_before_exec() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("  (not root: nobody to switch to; --user is refused in the master)");
        return;
    }
    let nobody = herd::worker::Credentials::resolve("nobody", None).unwrap();
    let program = Program::new("sh")
        .args(["-c", "id -u; id -g; id -G"])
        .credentials(nobody.clone());
    let (pid, out, status) = run(&program, ChildFds::new());
    assert_eq!(status, WaitStatus::Exited(pid, 0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string());
    assert_eq!(lines[1], nobody.gid.to_string());
    let groups: BTreeSet<String> = lines[2].split(' ').map(str::to_string).collect();
    let want: BTreeSet<String> = nobody.groups.iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, want, "supplementary groups");
}

/// In the re-run binary: spawn `sleep`, print its pid, wait for SIGKILL.
fn play_master_that_gets_killed() -> ! {
    let pid = Program::new("sleep")
        .arg("1000")
        .spawn(&ChildFds::new())
        .unwrap();
    println!("{pid}");
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

fn the_child_dies_with_its_master() {
    let mut master = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(master.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let worker: i32 = line.trim().parse().expect("the worker's pid");
    assert!(!is_gone(worker));
    master.kill().unwrap(); // SIGKILL: the master runs no code of its own on the way out
    master.wait().unwrap();
    wait_until("the worker killed by PR_SET_PDEATHSIG", || is_gone(worker));
}

fn spawn_refuses_a_multithreaded_process() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let err = Program::new("true").spawn(&ChildFds::new()).unwrap_err();
    assert!(err.to_string().contains("refusing to spawn true"), "{err}");
    drop(tx);
    other.join().unwrap().unwrap_err();
    wait_until("the thread gone", || threads() == 1);
    let (pid, _, status) = run(&Program::new("true"), ChildFds::new());
    assert_eq!(status, WaitStatus::Exited(pid, 0));
}

/// This process's thread count, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}
