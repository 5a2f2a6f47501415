//! Test helpers: start real herd processes on 127.0.0.1:0, read their logs, talk HTTP over
//! TCP, inspect /proc. Every wait polls a condition against a generous deadline.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The deadline for anything a test waits for (a busy 2-core machine can be slow).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The log lines of a child process, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    fn push(&self, line: String) {
        let (lines, cv) = &*self.0;
        lines.lock().unwrap().push(line);
        cv.notify_all();
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `count` lines satisfy `pred`; returns them. Panics with the log at the deadline.
    pub fn wait_for_n(&self, count: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let (lines, cv) = &*self.0;
        let deadline = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            let found: Vec<String> = guard.iter().filter(|l| pred(l)).cloned().collect();
            if found.len() >= count {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                let log = guard.join("\n");
                drop(guard); // don't poison the lock: Drop impls read the log too
                panic!("timed out waiting for {count} matching log lines; log:\n{log}");
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits for a line containing `needle` (which ends in `listening on ` or the start of
    /// an address) and parses the address at the end of that line.
    pub fn wait_for_addr(&self, needle: &str) -> SocketAddr {
        let line = self.wait_for(needle);
        let addr = line.rsplit("listening on ").next().unwrap().trim();
        addr.parse()
            .unwrap_or_else(|e| panic!("no address at the end of {line:?}: {e}"))
    }

    /// Waits for one line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_n(1, |l| l.contains(needle)).remove(0)
    }
}

/// Runs `cmd`, collecting stderr (and stdout) lines into a [`Log`].
pub fn spawn_logged(mut cmd: Command) -> (Child, Log) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let set_by_caller = cmd.get_envs().any(|(name, _)| name == "RUST_LOG");
    if std::env::var_os("RUST_LOG").is_none() && !set_by_caller {
        cmd.env("RUST_LOG", "info");
    }
    let mut child = cmd.spawn().expect("spawn");
    let log = Log::default();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HERD_TEST_ECHO").is_some() {
                    eprintln!("| {line}");
                }
                log.push(line);
            }
        });
    }
    (child, log)
}

/// The herd binary under test; `$HERD_TEST_BIN` runs the tests against another build (an
/// older one, to see a test fail before its fix).
pub fn herd_bin() -> PathBuf {
    std::env::var_os("HERD_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_herd")))
}

/// An example binary (cargo builds examples for `cargo test`).
pub fn example_bin(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

/// A running herd master.
pub struct Herd {
    pub child: Child,
    pub log: Log,
    pub addr: SocketAddr,
}

impl Herd {
    /// `herd serve --listen 127.0.0.1:0 ARGS…`, waiting until `workers` workers listen.
    pub fn serve(workers: usize, args: &[&str]) -> Herd {
        let mut cmd = Command::new(herd_bin());
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--workers", &workers.to_string()])
            .args(args);
        Herd::start(cmd, workers)
    }

    /// Starts any command that runs a herd master, waiting until `workers` workers listen.
    pub fn start(cmd: Command, workers: usize) -> Herd {
        let (child, log) = spawn_logged(cmd);
        let addr = log.wait_for_addr("master listening on ");
        log.wait_for_n(workers, |l| {
            l.contains("] worker ") && l.contains(" listening on ")
        });
        Herd { child, log, addr }
    }

    /// The admin address from the `admin listening on` line (`--admin`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.log.wait_for_addr("admin listening on ")
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Worker id → pid for every `fork:` line so far.
    pub fn forks(&self) -> HashMap<u32, i32> {
        self.log
            .lines()
            .iter()
            .filter_map(|l| {
                let rest = l.split("fork: worker ").nth(1)?;
                let (id, rest) = rest.split_once(" (pid ")?;
                Some((id.parse().ok()?, rest.trim_end_matches(')').parse().ok()?))
            })
            .collect()
    }

    /// Pids of the workers that have not exited (per the log).
    pub fn live_worker_pids(&self) -> Vec<i32> {
        let lines = self.log.lines();
        let mut forks: Vec<(u32, i32)> = self.forks().into_iter().collect();
        forks.sort();
        forks
            .into_iter()
            .filter(|(id, _)| {
                !lines
                    .iter()
                    .any(|l| l.contains(&format!("worker {id} exited")))
            })
            .map(|(_, pid)| pid)
            .collect()
    }

    /// Waits until one of the workers is asleep in its handler (`/sleep/N` in flight).
    pub fn wait_worker_asleep(&self) {
        wait_until("a worker asleep in its handler", || {
            self.live_worker_pids().into_iter().any(asleep_in_handler)
        });
    }

    /// Sends a signal to the master.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the master to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }

    /// Stops the master with SIGTERM: it exits 0 and leaves no worker process behind.
    pub fn stop(mut self) {
        let pids = self.live_worker_pids();
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert!(
            status.success(),
            "{status:?}\n{}",
            self.log.lines().join("\n")
        );
        for pid in pids {
            wait_until("the worker gone", || is_gone(pid));
        }
    }
}

/// Waits (with the deadline) for a child to exit.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        let workers = self.live_worker_pids();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in workers {
            // SAFETY: kill(2); the worse case is a pid already gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether process `pid` sleeps in `nanosleep` (a bench handler's `/sleep/N`: `thread::sleep`).
///
/// An idle worker sleeps too, in `epoll_wait`; what tells the two apart is the system call.
/// `/proc/PID/syscall` names it by number while the process is blocked in one (`running`
/// otherwise). `/proc/PID/wchan` would name the kernel function instead, but kernels that
/// hide their symbols print `0` there. glibc's `nanosleep` is the `clock_nanosleep` system
/// call; both numbers are accepted, from `libc` for this architecture (x86_64: 35 and 230,
/// aarch64: 101 and 115). Reading the file needs ptrace access to the process, which the test
/// has over its own descendants; where it is denied (Yama's admin-only mode), `wchan` decides.
pub fn asleep_in_handler(pid: i32) -> bool {
    let sleeping = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('S'))
    });
    if !sleeping {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
        Ok(syscall) => syscall
            .split_whitespace()
            .next()
            .and_then(|nr| nr.parse::<libc::c_long>().ok())
            .is_some_and(|nr| nr == libc::SYS_nanosleep || nr == libc::SYS_clock_nanosleep),
        Err(_) => std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("nanosleep")),
    }
}

/// Polls `cond` every 10 ms until it holds; panics with `what` at the deadline.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects with read/write timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Reads one response (Content-Length framed, chunked — decoded —, or until EOF) from
/// `reader`.
pub fn read_response(reader: &mut impl BufRead, head_request: bool) -> Option<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = Vec::new();
    if head_request || status == 100 || status == 204 || status == 304 {
    } else if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2]; // with its CRLF
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break; // (no trailers in the tests' responses)
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = len {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else {
        reader.read_to_end(&mut body).ok()?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes on a new connection and reads every response until the server closes.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<Response> {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut reader = BufReader::new(s);
    let mut out = Vec::new();
    while let Some(r) = read_response(&mut reader, false) {
        out.push(r);
    }
    out
}

/// `GET path` on a new connection with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let mut all = exchange(addr, req.as_bytes());
    assert_eq!(all.len(), 1, "expected one response to GET {path}");
    all.remove(0)
}

/// Open fds of a process.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// True if the process is gone or a zombie.
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_none_or(|s| s.trim_start().starts_with('Z')),
    }
}

/// Raises this process's soft fd limit to the hard limit (tests open thousands of sockets).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Sends five pipelined requests to a `herd serve --app bench` (directly or through a proxy):
/// GET, HEAD, a Content-Length body, a chunked body with an extension and a trailer, and a
/// GET with `Connection: close`; asserts the answers come in order with the right bodies
/// (the bench app's `/echo…` answers `METHOD PATH BODY`) and that the connection then closes.
pub fn assert_pipelined_echo(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(
        b"GET /echo/a HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /echo/b HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /echo/c HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo/d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n\
          GET /echo/e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut bodies = Vec::new();
    for head in [false, true, false, false, false] {
        let resp = read_response(&mut r, head).expect("a response");
        assert_eq!(resp.status, 200);
        if head {
            assert_eq!(resp.header("content-length"), Some("13"));
        }
        bodies.push(resp.text());
    }
    assert_eq!(
        bodies,
        [
            "GET /echo/a ",
            "",
            "POST /echo/c hello",
            "POST /echo/d abcde",
            "GET /echo/e "
        ]
    );
    assert!(
        read_response(&mut r, false).is_none(),
        "closed after Connection: close"
    );
}

/// Connects to `addr` from the local address `source` (any of 127.0.0.0/8 reaches the
/// loopback interface), with the read/write timeouts set: a client as the server sees it.
/// std's `TcpStream` cannot bind before it connects; nix's sockets can.
pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{
        bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    use std::os::fd::AsRawFd;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    let local = SockaddrStorage::from(SocketAddr::new(source, 0));
    bind(fd.as_raw_fd(), &local).unwrap_or_else(|e| panic!("bind {source}: {e}"));
    connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s
}

/// `GET path` with `Connection: close` on a new connection from `source`.
pub fn get_from(source: std::net::IpAddr, addr: SocketAddr, path: &str) -> Response {
    let mut s = connect_from(source, addr);
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut BufReader::new(s), false).expect("a response")
}

/// Sets this process's core-file limit to 0, for its children too: a test that makes herd
/// SIGABRT a worker leaves no core file behind where cores are kept.
pub fn no_core_dumps() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_CORE).unwrap();
    setrlimit(Resource::RLIMIT_CORE, 0, hard).unwrap();
}

/// Runs `cmd` (a herd command line that is bad input) and checks that herd refused it as
/// it should: exit code 2, and one single-spaced line on stderr that contains `says`
/// (herd's own INFO log, and clap's blank line and `For more information` hint under a
/// usage error, aside).
pub fn assert_refused(cmd: &mut Command, says: &str) {
    let out = cmd.output().expect("herd runs");
    let err = String::from_utf8_lossy(&out.stderr);
    let what = format!("{:?}", cmd.get_args().collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    let lines: Vec<&str> = (err.lines())
        .filter(|l| !l.contains(" INFO ") && !l.is_empty())
        .filter(|l| !l.starts_with("For more information"))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: one line: {err}");
    assert!(lines[0].contains(says), "{what}: {err}");
    assert!(!lines[0].contains("  "), "{what}: single-spaced: {err}");
}

/// The worker id of a line an exec'd worker wrote, as herd prefixes it: `[worker N] …`.
pub fn worker_of_line(line: &str) -> u32 {
    (line.split("[worker ").nth(1))
        .and_then(|rest| rest.split(']').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no [worker N] prefix in {line:?}"))
}
