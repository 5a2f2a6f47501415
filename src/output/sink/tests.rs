use super::*;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

fn line(text: &[u8]) -> Line<'_> {
    Line {
        text,
        starts_mid_line: false,
        ends_mid_line: false,
    }
}

/// A directory of its own for one test, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("herd-sink-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (r.into(), w)
}

#[test]
fn worker_lines_are_prefixed_and_cuts_marked_and_herds_own_are_not() {
    let dir = Scratch::new("prefix");
    let path = dir.file("prefix.log");
    let sink = LogSink::file(&path).unwrap();
    sink.line(Stream::Stdout, Origin::Worker(3), line(b"hello"));
    sink.line(Stream::Stderr, Origin::Worker(12), line(b""));
    let cut = Line {
        text: b"abc",
        starts_mid_line: true,
        ends_mid_line: true,
    };
    sink.line(Stream::Stdout, Origin::Worker(3), cut);
    let mut herd = sink.master_writer();
    // env_logger may hand a record over in pieces: only whole lines come out.
    herd.write_all(b"[INFO herd] fork: ").unwrap();
    herd.write_all(b"worker 1 (pid 7)\nsecond").unwrap();
    herd.write_all(b" line\n").unwrap();
    sink.flush();
    assert!(!sink.pending());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[worker 3] hello\n[worker 12] \n[worker 3] …abc…\n\
         [INFO herd] fork: worker 1 (pid 7)\nsecond line\n"
    );
}

#[test]
fn timestamps_come_first_on_worker_lines_only() {
    let dir = Scratch::new("timestamps");
    let path = dir.file("timestamps.log");
    let sink = LogSink::file(&path).unwrap().with_timestamps(true);
    sink.line(Stream::Stdout, Origin::Worker(1), line(b"up"));
    sink.master_writer().write_all(b"herd line\n").unwrap();
    sink.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (time, rest) = lines[0].split_at(timestamp::LEN);
    assert_eq!(rest, " [worker 1] up");
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");
    assert_eq!(&time[10..11], "T");
    assert_eq!(lines[1], "herd line");
}

#[test]
fn stdout_and_stderr_lines_go_to_their_own_destinations() {
    let (mut out_r, out_w) = pipe();
    let (mut err_r, err_w) = pipe();
    let sink = LogSink::to_fds(out_w.as_fd(), err_w.as_fd()).unwrap();
    drop((out_w, err_w)); // the sink has its own fds
    sink.line(Stream::Stdout, Origin::Worker(1), line(b"to stdout"));
    sink.line(Stream::Stderr, Origin::Worker(1), line(b"to stderr"));
    sink.flush();
    assert_eq!(sink.pollable_fds().len(), 2);
    drop(sink);
    let mut out = String::new();
    out_r.read_to_string(&mut out).unwrap();
    let mut err = String::new();
    err_r.read_to_string(&mut err).unwrap();
    assert_eq!(out, "[worker 1] to stdout\n");
    assert_eq!(err, "[worker 1] to stderr\n");
}

#[test]
fn a_full_pipe_drops_whole_lines_counts_them_and_never_blocks() {
    let (mut reader, w) = pipe();
    let sink = LogSink::to_fds(w.as_fd(), w.as_fd())
        .unwrap()
        .with_queue_limit(0); // the smallest: two long lines
    let text = vec![b'x'; 999];
    let started = Instant::now();
    for _ in 0..2000 {
        sink.line(Stream::Stdout, Origin::Worker(5), line(&text));
        sink.flush();
    }
    sink.line(Stream::Stdout, Origin::Worker(6), line(&text));
    assert!(started.elapsed() < Duration::from_secs(5), "it blocked");
    assert!(sink.pending(), "the reader never read: the queue is full");
    let now = Instant::now();
    let dropped = sink.take_dropped(now);
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert_eq!(dropped[0].origin, Origin::Worker(5));
    assert_eq!(
        dropped[1],
        Dropped {
            origin: Origin::Worker(6),
            lines: 1
        }
    );
    let in_pipe_and_queue = 2000 - dropped[0].lines;
    assert!(dropped[0].lines > 1000, "{}", dropped[0].lines);
    assert!(dropped[0]
        .to_string()
        .ends_with("dropped from worker 5: output not keeping up"));
    // Counted again, but not reported before the interval is up.
    sink.line(Stream::Stdout, Origin::Worker(5), line(&text));
    assert!(sink.take_dropped(now + Duration::from_secs(1)).is_empty());
    assert_eq!(sink.take_dropped(now + DROP_REPORT_INTERVAL)[0].lines, 1);
    // Once read, the queue drains; every line that arrives is whole.
    let done = std::thread::spawn(move || {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        all
    });
    sink.flush_for(Duration::from_secs(30));
    assert!(!sink.pending());
    drop((sink, w));
    let all = done.join().unwrap();
    let lines: Vec<&[u8]> = all
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len() as u64, in_pipe_and_queue);
    let want = [b"[worker 5] ".as_slice(), &text].concat();
    assert!(lines.iter().all(|l| *l == want.as_slice()));
}

#[test]
fn a_closed_reader_breaks_the_destination_and_its_lines_are_counted() {
    let (reader, w) = pipe();
    let sink = LogSink::to_fds(w.as_fd(), w.as_fd()).unwrap();
    drop((reader, w));
    sink.line(Stream::Stdout, Origin::Worker(2), line(b"into the void"));
    sink.flush(); // EPIPE (herd ignores SIGPIPE, as every Rust program does)
    sink.line(Stream::Stdout, Origin::Worker(2), line(b"after"));
    sink.flush();
    assert!(!sink.pending());
    let dropped = sink.take_dropped(Instant::now());
    assert_eq!(
        dropped,
        [Dropped {
            origin: Origin::Worker(2),
            lines: 2
        }]
    );
}

#[test]
fn reopen_starts_a_new_file_where_logrotate_moved_the_old_one() {
    let dir = Scratch::new("rotate");
    let path = dir.file("rotate.log");
    let moved = path.with_extension("log.1");
    let sink = LogSink::file(&path).unwrap();
    sink.line(Stream::Stdout, Origin::Worker(1), line(b"before"));
    sink.flush();
    std::fs::rename(&path, &moved).unwrap();
    sink.line(
        Stream::Stdout,
        Origin::Worker(1),
        line(b"still the old file"),
    );
    sink.flush();
    // A path that cannot be opened keeps the old file in use.
    std::fs::create_dir(&path).unwrap();
    let err = sink.reopen().unwrap_err();
    assert!(err.to_string().contains("rotate.log"), "{err}");
    sink.line(Stream::Stdout, Origin::Worker(1), line(b"kept"));
    sink.flush();
    std::fs::remove_dir(&path).unwrap();
    sink.reopen().unwrap();
    sink.line(Stream::Stderr, Origin::Worker(1), line(b"after"));
    sink.flush();
    assert_eq!(
        std::fs::read_to_string(&moved).unwrap(),
        "[worker 1] before\n[worker 1] still the old file\n[worker 1] kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[worker 1] after\n"
    );
}
