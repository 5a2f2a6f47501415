//! A worker's `NOTIFY_SOCKET` with real python3 senders: the notices in order, several per
//! datagram, garbage ignored, fds closed at once (which answers `BARRIER=1`), and only the
//! worker and its process group heard.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd::exec::notify::{Notice, NotifySocket};
use nix::unistd::Pid;

use common::DEADLINE;

/// The worker: one notification after another, some garbage, fds, a child in its group
/// and one that left it, then `BARRIER=1` (what `systemd-notify` does before exiting, so
/// that it is still there to be checked when its message is read).
const WORKER: &str = r#"
import os, subprocess, sys
exec(os.environ["NOTIFY_LIB"])
s.sendto(b"READY=1", addr)
s.sendto(b"STATUS=Serving\nWATCHDOG=1", addr)
s.sendto(b"hello", addr)
s.sendto(b"READY=0", addr)
s.sendto(b"RELOADING=1\nMONOTONIC_USEC=123\nSTATUS=reloading", addr)
s.sendto(b"READY=1\n" + b"X" * 5000, addr)
r, w = os.pipe()
send_fds(b"FDSTORE=1", [r, w])
print("passed pipe", os.fstat(r).st_ino, flush=True)
os.close(r); os.close(w)
child = 'exec(os.environ["NOTIFY_LIB"]); s.sendto(os.environ["WHO"].encode(), addr); barrier()'
run = lambda who, **kw: subprocess.run([sys.executable, "-c", "import os\n" + child],
                                       env=dict(os.environ, WHO=who), check=True, **kw)
run("STATUS=from child")
run("STATUS=escaped", start_new_session=True)
s.sendto(b"MAINPID=1234\nSTOPPING=1", addr)
print("barrier answered" if barrier() else "barrier timed out", flush=True)
"#;

/// Shared by the worker and its children: the socket, fds with a datagram, and the
/// barrier (`BARRIER=1` with a pipe's write end; the receiver's closing it is the answer).
const NOTIFY_LIB: &str = r#"
import array, os, select, socket
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send_fds(data, fds):
    s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], 0, addr)
def barrier():
    r, w = os.pipe()
    send_fds(b"BARRIER=1", [w])
    os.close(w)
    p = select.poll()
    p.register(r, select.POLLHUP)
    return bool(p.poll(30000))
"#;

/// Reads `socket` until `done` holds and nothing more is queued; notices and ignored count.
fn collect(socket: &mut NotifySocket, mut done: impl FnMut() -> bool) -> (Vec<Notice>, usize) {
    let (mut notices, mut ignored) = (Vec::new(), 0);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let finished = done();
        let got = socket.on_readable().unwrap();
        let quiet = got.notices.is_empty() && got.ignored == 0 && !got.more;
        notices.extend(got.notices);
        ignored += got.ignored;
        if finished && quiet {
            return (notices, ignored);
        }
        assert!(Instant::now() < deadline, "gave up; so far {notices:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `text` to `address` from a python3 process of its own (not in any worker's group).
fn send_from_outside(address: &str, text: &str) {
    let script = "import socket, sys; a = sys.argv[1]; a = '\\0' + a[1:]; \
                  socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), a)";
    let status = Command::new("python3")
        .args(["-c", script, address, text])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_worker_and_its_group_are_heard_in_order_and_nobody_else() {
    let mut socket = NotifySocket::bind(1).unwrap();
    assert!(socket.address().starts_with("@herd/"));
    let mut worker = Command::new("python3")
        .args(["-c", WORKER])
        .env("NOTIFY_SOCKET", socket.address())
        .env("NOTIFY_LIB", NOTIFY_LIB)
        .process_group(0) // as exec::Program::spawn does
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    socket.set_worker(Pid::from_raw(worker.id() as i32));
    send_from_outside(socket.address(), "READY=1");

    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = worker.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let (notices, ignored) = collect(&mut socket, || worker.try_wait().unwrap().is_some());
    reader.join().unwrap();
    assert!(worker.wait().unwrap().success());
    let lines = lines.lock().unwrap().clone();

    assert_eq!(
        notices,
        [
            Notice::Ready,
            Notice::Status("Serving".into()),
            Notice::Watchdog,
            Notice::Reloading,
            Notice::Status("reloading".into()),
            Notice::Status("from child".into()),
            Notice::MainPid(1234),
            Notice::Stopping,
        ]
    );
    // The outsider's READY=1, the escaped grandchild's status and barrier (its fd closed
    // all the same: it did not wait 30 s), the 5000-byte datagram.
    assert_eq!(ignored, 4);
    assert_eq!(lines.last().map(String::as_str), Some("barrier answered"));
    // The two fds that came with FDSTORE=1 were closed, not kept.
    let inode = lines[0].strip_prefix("passed pipe ").unwrap();
    let pipe = format!("pipe:[{inode}]");
    let held: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| *l == pipe)
        .collect();
    assert!(held.is_empty(), "still holding {held:?}");
}

#[test]
fn nothing_is_heard_before_the_worker_is_known_or_after_its_sender_is_gone() {
    let mut socket = NotifySocket::bind(2).unwrap();
    send_from_outside(socket.address(), "READY=1");
    let (notices, ignored) = collect(&mut socket, || true);
    assert_eq!((notices, ignored), (vec![], 1), "no worker set yet");

    // A child in the worker's group that notifies and exits at once, without a barrier:
    // once it is reaped, nothing says whose datagram that was. The worker's own is still
    // its pid's.
    let script = r#"
import os, socket, subprocess, sys
a = os.environ["NOTIFY_SOCKET"]; a = "\0" + a[1:]
send = "import os, socket; a = os.environ['NOTIFY_SOCKET']; a = '\\0' + a[1:]; " \
       "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'STATUS=gone', a)"
subprocess.run([sys.executable, "-c", send], check=True)
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", a)
"#;
    let mut worker = Command::new("python3")
        .args(["-c", script])
        .env("NOTIFY_SOCKET", socket.address())
        .process_group(0)
        .spawn()
        .unwrap();
    socket.set_worker(Pid::from_raw(worker.id() as i32));
    assert!(worker.wait().unwrap().success());
    let (notices, ignored) = collect(&mut socket, || true);
    assert_eq!((notices, ignored), (vec![Notice::Ready], 1));
}
