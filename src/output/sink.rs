//! [`LogSink`]: where worker lines (and, through [`MasterWriter`], herd's own log) are
//! written: herd's stdout and stderr, or one `--log-file`. Whole lines, in order, never
//! blocking the master's loop.
//!
//! * **One queue per destination.** Every line for a destination is appended to its
//!   queue, and bytes leave the queue only from the front. A line the kernel took only
//!   part of stays at the front and is finished before any other byte goes out, so lines
//!   from different workers never mix inside this process. Pipes get whole lines in writes
//!   of at most `PIPE_BUF` (4096) bytes, which the kernel keeps together even against
//!   other writers to the same pipe (an old master during a binary upgrade); only a single
//!   line longer than that can be split among theirs.
//! * **Never blocking.** A pipe or terminal is reopened through `/proc/self/fd/N` as a new
//!   open file description with `O_NONBLOCK`: setting the flag on the inherited one would
//!   also make the shell's (or the next program's) terminal non-blocking. A socket (the
//!   journal's stdout) is written with `MSG_DONTWAIT`. A regular file never makes a write
//!   wait on a reader. If reopening fails, writes of at most `PIPE_BUF` go out only when
//!   `poll` says there is room.
//! * **Bounded.** A queue holds at most its limit (1 MiB by default); a line that does
//!   not fit is dropped whole and counted per worker, and [`LogSink::take_dropped`] hands
//!   the counts out at most every [`DROP_REPORT_INTERVAL`] for the master to log. A
//!   destination that fails (`EPIPE`: `herd | head` exited) drops everything from then on.
//! * **Reopen** (`SIGUSR1`, logrotate's convention): [`LogSink::reopen`] opens the log
//!   file's path again and carries the queue over to the new file.
//!
//! The sink is a cheap handle to shared state (`Arc<Mutex<…>>`, never contended: the
//! master is single-threaded) because herd's own logger needs one too: `env_logger` takes
//! a `Write + Send + 'static` target, and [`LogSink::master_writer`] is one.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::destination::{Destination, Origin};
use super::lines::{Line, LineSplitter, MAX_LINE};
use super::timestamp;

/// The default bound of one destination's queue.
pub const QUEUE_LIMIT: usize = 1 << 20;
/// How often, at most, dropped lines are reported.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Marks both sides of a cut in a line longer than [`MAX_LINE`].
const CUT: &[u8] = "…".as_bytes();

/// Which of a worker's output streams a line came from; with herd's stdout and stderr as
/// destinations it is also where the line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The worker's stdout.
    Stdout,
    /// The worker's stderr (and herd's own log).
    Stderr,
}

/// Lines that did not fit (or found their destination broken), from one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Whose lines.
    pub origin: Origin,
    /// How many since the last report.
    pub lines: u64,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.lines == 1 { "" } else { "s" };
        write!(
            f,
            "{} line{s} dropped from {}: output not keeping up",
            self.lines, self.origin
        )
    }
}

/// Where worker lines go; clones share one state. See the module documentation.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<Sink>>,
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSink").finish_non_exhaustive()
    }
}

struct Sink {
    target: Target,
    /// `--log-timestamps`: an RFC 3339 time before each worker line.
    timestamps: bool,
    /// The most bytes one destination queues.
    limit: usize,
    dropped: BTreeMap<Origin, u64>,
    last_report: Option<Instant>,
    /// The line being formatted (kept to reuse its allocation).
    scratch: Vec<u8>,
}

enum Target {
    Stdio { out: Destination, err: Destination },
    File { path: PathBuf, file: Destination },
}

impl LogSink {
    /// Worker stdout lines to herd's stdout, stderr lines (and herd's own log, through
    /// [`LogSink::master_writer`]) to herd's stderr.
    pub fn stdio() -> io::Result<LogSink> {
        Ok(LogSink::new(Target::Stdio {
            out: Destination::stdio(io::stdout().as_fd())?,
            err: Destination::stdio(io::stderr().as_fd())?,
        }))
    }

    /// As [`LogSink::stdio`], to other fds (a program embedding herd, a test). The sink
    /// writes through its own reopened or duplicated fds: the caller keeps these.
    pub fn to_fds(stdout: BorrowedFd<'_>, stderr: BorrowedFd<'_>) -> io::Result<LogSink> {
        Ok(LogSink::new(Target::Stdio {
            out: Destination::stdio(stdout)?,
            err: Destination::stdio(stderr)?,
        }))
    }

    /// Every line to the file at `path` (created if missing, appended to).
    pub fn file(path: impl Into<PathBuf>) -> io::Result<LogSink> {
        let path = path.into();
        let file = Destination::file(&path)?;
        Ok(LogSink::new(Target::File { path, file }))
    }

    fn new(target: Target) -> LogSink {
        LogSink {
            inner: Arc::new(Mutex::new(Sink {
                target,
                timestamps: false,
                limit: QUEUE_LIMIT,
                dropped: BTreeMap::new(),
                last_report: None,
                scratch: Vec::new(),
            })),
        }
    }

    /// `--log-timestamps`: prefix worker lines with the RFC 3339 UTC time they were read.
    pub fn with_timestamps(self, on: bool) -> LogSink {
        self.lock().timestamps = on;
        self
    }

    /// Bounds each destination's queue to `bytes` (at least two lines of [`MAX_LINE`]).
    pub fn with_queue_limit(self, bytes: usize) -> LogSink {
        self.lock().limit = bytes.max(2 * (MAX_LINE + 256));
        self
    }

    fn lock(&self) -> MutexGuard<'_, Sink> {
        // A panic while holding the lock leaves at worst a half-queued line.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one line from `origin`'s `stream` (dropped, and counted, if it does not fit).
    /// Call [`LogSink::flush`] after a batch of lines.
    pub fn line(&self, stream: Stream, origin: Origin, line: Line<'_>) {
        self.lock().push(stream, origin, line);
    }

    /// Writes what the destinations take now; never blocks.
    pub fn flush(&self) {
        self.lock().flush();
    }

    /// Some queued bytes wait for a destination to take them.
    pub fn pending(&self) -> bool {
        self.lock().destinations().any(Destination::pending)
    }

    /// The fds to register with the master's poll for `WRITABLE` (call [`LogSink::flush`]
    /// on the event). Regular files are not among them: they are always writable, and
    /// epoll refuses them.
    pub fn pollable_fds(&self) -> Vec<RawFd> {
        self.lock()
            .destinations()
            .filter(|d| d.pollable())
            .map(|d| d.fd().as_raw_fd())
            .collect()
    }

    /// Flushes, waiting up to `timeout` for slow destinations (at exit: herd's last lines
    /// should not stay in the queue).
    ///
    /// The lock is held while waiting: the master, the one thread that writes, is the
    /// caller, and it has nothing else to do.
    pub fn flush_for(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut sink = self.lock();
        loop {
            sink.flush();
            let left = deadline.saturating_duration_since(Instant::now());
            let mut waiting: Vec<PollFd<'_>> = sink
                .destinations()
                .filter(|d| d.pending())
                .map(|d| PollFd::new(d.fd(), PollFlags::POLLOUT))
                .collect();
            if waiting.is_empty() || left.is_zero() {
                return;
            }
            let ms = left.as_millis().clamp(1, 1000) as u16;
            // An error (EINTR) only ends this wait early; the loop flushes and waits again.
            let _ = poll(&mut waiting, PollTimeout::from(ms));
        }
    }

    /// Reopens the log file (`SIGUSR1`): a new file at the same path, once logrotate has
    /// moved the old one; what was queued goes to the new file. With stdio, nothing to do.
    /// On error the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let mut sink = self.lock();
        if let Target::File { path, file } = &mut sink.target {
            let fresh = Destination::file(path)?;
            file.replace_fd(fresh);
        }
        Ok(())
    }

    /// The counts of dropped lines since the last report, if there are any and the last
    /// report is at least [`DROP_REPORT_INTERVAL`] old; the master logs each.
    pub fn take_dropped(&self, now: Instant) -> Vec<Dropped> {
        let mut sink = self.lock();
        let due = sink
            .last_report
            .is_none_or(|t| now.duration_since(t) >= DROP_REPORT_INTERVAL);
        if sink.dropped.is_empty() || !due {
            return Vec::new();
        }
        sink.last_report = Some(now);
        std::mem::take(&mut sink.dropped)
            .into_iter()
            .map(|(origin, lines)| Dropped { origin, lines })
            .collect()
    }

    /// A writer for herd's own log (`env_logger`'s `Target::Pipe`): its lines go to the
    /// stderr destination unprefixed, through the same queue as the workers' lines.
    pub fn master_writer(&self) -> MasterWriter {
        MasterWriter {
            sink: self.clone(),
            lines: LineSplitter::new(),
        }
    }
}

impl Sink {
    fn destinations(&self) -> impl Iterator<Item = &Destination> {
        let (a, b) = match &self.target {
            Target::Stdio { out, err } => (out, Some(err)),
            Target::File { file, .. } => (file, None),
        };
        std::iter::once(a).chain(b)
    }

    fn push(&mut self, stream: Stream, origin: Origin, line: Line<'_>) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        if let Origin::Worker(id) = origin {
            if self.timestamps {
                out.reserve(timestamp::LEN + 1);
                timestamp::write(&mut out, SystemTime::now());
                out.push(b' ');
            }
            let _ = write!(out, "[worker {id}] "); // cannot fail: a Vec grows
        }
        if line.starts_mid_line {
            out.extend_from_slice(CUT);
        }
        out.extend_from_slice(line.text);
        if line.ends_mid_line {
            out.extend_from_slice(CUT);
        }
        out.push(b'\n');
        let limit = self.limit;
        let destination = match &mut self.target {
            Target::Stdio { out, .. } if stream == Stream::Stdout => out,
            Target::Stdio { err, .. } => err,
            Target::File { file, .. } => file,
        };
        if !destination.enqueue(&out, origin, limit) {
            *self.dropped.entry(origin).or_default() += 1;
        }
        self.scratch = out;
    }

    fn flush(&mut self) {
        let (a, b) = match &mut self.target {
            Target::Stdio { out, err } => (out, Some(err)),
            Target::File { file, .. } => (file, None),
        };
        for destination in std::iter::once(a).chain(b) {
            if let Err(lost) = destination.flush() {
                for origin in lost {
                    *self.dropped.entry(origin).or_default() += 1;
                }
            }
        }
    }
}

/// herd's own log lines into the [`LogSink`] (see [`LogSink::master_writer`]). Never
/// blocks: a line that does not fit is dropped and counted like a worker's.
#[allow(missing_debug_implementations)] // a byte sink; nothing worth showing
pub struct MasterWriter {
    sink: LogSink,
    lines: LineSplitter,
}

impl io::Write for MasterWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut sink = self.sink.lock();
        self.lines.feed(bytes, |line| {
            sink.push(Stream::Stderr, Origin::Master, line)
        });
        sink.flush();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
