//! Worker output through real pipes: python3 workers write lines in odd-sized pieces, a
//! mio loop like the master's reads them with `WorkerOutput::on_readable`, and the
//! `LogSink` writes them out whole and prefixed; a flooding worker never stalls the loop.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd::output::{Drained, LogSink, Origin, Stream, WorkerOutput, MAX_LINE};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use common::DEADLINE;

/// Prints `count` lines on stdout and every tenth on stderr, each `W I stream xxx…` with
/// lengths up to 9000 bytes (past PIPE_BUF), in writes that cut lines at random places;
/// then one line of 100 KiB and a last line without a newline.
const WRITER: &str = r#"
import os, random, sys
wid, count = sys.argv[1], int(sys.argv[2])
random.seed(int(wid))
out = {1: bytearray(), 2: bytearray()}
for i in range(count):
    fd = 2 if i % 10 == 0 else 1
    name = "err" if fd == 2 else "out"
    out[fd] += f"{wid} {i} {name} ".encode() + b"x" * (i * 37 % 9000) + b"\n"
    for f in (1, 2):
        if len(out[f]) > 20000 or i == count - 1:
            data = bytes(out[f]); out[f].clear()
            while data:
                n = random.randint(1, 7000)
                os.write(f, data[:n]); data = data[n:]
os.write(1, f"{wid} long ".encode() + b"y" * (100 * 1024) + b"\n")
os.write(1, f"{wid} unterminated".encode())
"#;

/// The lines worker `wid` writes, as the WRITER above makes them, per stream.
fn expected(wid: u32, count: usize) -> HashMap<&'static str, Vec<Vec<u8>>> {
    let mut want: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
    for i in 0..count {
        let name = if i % 10 == 0 { "err" } else { "out" };
        let mut line = format!("{wid} {i} {name} ").into_bytes();
        line.extend(vec![b'x'; i * 37 % 9000]);
        want.entry(name).or_default().push(line);
    }
    let mut long = format!("{wid} long ").into_bytes();
    long.extend(vec![b'y'; 100 * 1024]);
    let out = want.entry("out").or_default();
    out.push(long);
    out.push(format!("{wid} unterminated").into_bytes());
    want
}

/// A worker: python3 running `script` with its stdout and stderr on fresh output pipes.
fn start_worker(id: u32, script: &str, args: &[&str]) -> (Child, Vec<WorkerOutput>) {
    let (out, out_w) = WorkerOutput::pipe(id, Stream::Stdout).unwrap();
    let (err, err_w) = WorkerOutput::pipe(id, Stream::Stderr).unwrap();
    let child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn()
        .unwrap();
    // The Command (dropped here) held the write ends: the child has the only ones now.
    (child, vec![out, err])
}

/// The master's loop over worker outputs: poll, `on_readable`, again at once on `More`,
/// until every pipe is closed. Returns the longest single `on_readable` call.
fn pump(sink: &LogSink, mut outputs: Vec<WorkerOutput>) -> Duration {
    let mut poll = Poll::new().unwrap();
    for (i, o) in outputs.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&o.fd()), Token(i), Interest::READABLE)
            .unwrap();
    }
    let mut events = Events::with_capacity(16);
    let mut open = vec![true; outputs.len()];
    let mut again: Vec<usize> = Vec::new();
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + DEADLINE;
    while open.iter().any(|o| *o) {
        assert!(Instant::now() < deadline, "the workers' pipes never closed");
        let timeout = if again.is_empty() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        let mut ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        ready.append(&mut again);
        ready.sort_unstable();
        ready.dedup();
        for i in ready {
            if !open[i] {
                continue;
            }
            let started = Instant::now();
            let drained = outputs[i].on_readable(sink).unwrap();
            slowest = slowest.max(started.elapsed());
            match drained {
                Drained::Empty => {}
                Drained::More => again.push(i),
                Drained::Closed => {
                    poll.registry()
                        .deregister(&mut SourceFd(&outputs[i].fd()))
                        .unwrap();
                    open[i] = false;
                }
            }
        }
    }
    outputs.clear();
    slowest
}

fn scratch_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("herd-exec-output-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn two_workers_printing_many_lines_at_once_arrive_whole_prefixed_and_in_order() {
    let path = scratch_file("two.log");
    let sink = LogSink::file(&path).unwrap();
    let count = 3000;
    let (mut a, mut outputs) = start_worker(1, WRITER, &["1", &count.to_string()]);
    let (mut b, more) = start_worker(2, WRITER, &["2", &count.to_string()]);
    outputs.extend(more);
    pump(&sink, outputs);
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    sink.flush();
    assert!(!sink.pending());
    assert!(sink.take_dropped(Instant::now()).is_empty());

    let text = std::fs::read(&path).unwrap();
    let mut got: HashMap<(u32, &str), Vec<Vec<u8>>> = HashMap::new();
    // A long line's pieces, glued back together: `…` ends a piece and starts the next.
    let mut glued: HashMap<u32, Vec<u8>> = HashMap::new();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let rest = line.strip_prefix(b"[worker ").expect("prefixed");
        let (id, body) = rest.split_at(rest.iter().position(|&b| b == b']').unwrap());
        let id: u32 = std::str::from_utf8(id).unwrap().parse().unwrap();
        let body = body.strip_prefix(b"] ").expect("prefix ends in '] '");
        let cut = "…".as_bytes();
        let mut body = body.to_vec();
        if let Some(start) = glued.remove(&id) {
            assert!(body.starts_with(cut), "a piece after a cut starts with …");
            body = [start, body[cut.len()..].to_vec()].concat();
        }
        if body.ends_with(cut) {
            assert_eq!(
                body.len(),
                MAX_LINE + cut.len(),
                "a cut piece is MAX_LINE long"
            );
            body.truncate(body.len() - cut.len());
            glued.insert(id, body);
            continue;
        }
        let stream = if body.windows(5).take(16).any(|w| w == b" err ") {
            "err"
        } else {
            "out"
        };
        got.entry((id, stream)).or_default().push(body);
    }
    assert!(glued.is_empty(), "a cut line was never finished");
    for id in [1, 2] {
        let want = expected(id, count);
        for stream in ["out", "err"] {
            let lines = got.remove(&(id, stream)).unwrap_or_default();
            assert_eq!(lines.len(), want[stream].len(), "worker {id} {stream}");
            for (i, (g, w)) in lines.iter().zip(&want[stream]).enumerate() {
                assert!(g == w, "worker {id} {stream} line {i} differs");
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
}

/// Writes 200 000 lines of 100 bytes as fast as it can, then exits.
const FLOOD: &str = r#"
import os
line = b"f" * 99 + b"\n"
batch = line * 1000
for _ in range(200):
    os.write(1, batch)
"#;

#[test]
fn a_flooding_worker_never_stalls_the_loop_when_herds_output_is_full() {
    // herd's stdout is a pipe that nobody reads until the end: a stuck terminal.
    let (herd_out_r, herd_out_w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let sink = LogSink::to_fds(herd_out_w.as_fd(), herd_out_w.as_fd()).unwrap();
    drop(herd_out_w);
    let (mut worker, outputs) = start_worker(7, FLOOD, &[]);
    let slowest = pump(&sink, outputs);
    // The worker wrote 20 MB and exited although herd's output took at most 1 MiB + 64 KiB.
    assert!(worker.wait().unwrap().success());
    assert!(
        slowest < Duration::from_secs(2),
        "one on_readable call took {slowest:?}"
    );
    let dropped = sink.take_dropped(Instant::now());
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].origin, Origin::Worker(7));
    assert!(dropped[0].lines > 100_000, "{}", dropped[0]);
    // What did get through is whole lines only.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::fs::File::from(herd_out_r)
            .read_to_end(&mut all)
            .unwrap();
        all
    });
    sink.flush_for(DEADLINE);
    assert!(!sink.pending());
    drop(sink);
    let all = reader.join().unwrap();
    let want = [b"[worker 7] ".as_slice(), &[b'f'; 99]].concat();
    let lines: Vec<&[u8]> = all.split(|&b| b == b'\n').collect();
    assert_eq!(lines.last(), Some(&&b""[..]), "ends with a whole line");
    let lines = &lines[..lines.len() - 1];
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| *l == want.as_slice()));
    assert_eq!(lines.len() as u64 + dropped[0].lines, 200_000);
}
