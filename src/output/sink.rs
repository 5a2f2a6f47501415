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
mod tests;
