//! A worker program's stdout and stderr, forwarded to herd's own (or to `--log-file`) one
//! whole line at a time, each prefixed with its worker: `[worker 3] listening on 3000`.
//!
//! ```text
//! worker 3 ──stdout pipe──► WorkerOutput ─┐                    ┌─► herd's stdout
//!          ──stderr pipe──► WorkerOutput ─┼─► LogSink queues ──┼─► herd's stderr
//! worker 4 ──stdout pipe──► WorkerOutput ─┤   (whole lines)    └─► or --log-file
//! herd's own log ── MasterWriter ─────────┘
//! ```
//!
//! * [`WorkerOutput`] owns the read end of one pipe (the write end is the child's fd 1 or
//!   2, see [`ChildFds::stdout`](crate::exec::ChildFds::stdout)), non-blocking, for the master's
//!   poll. [`WorkerOutput::on_readable`] reads a bounded amount, splits it into lines
//!   ([`LineSplitter`]: a line over [`MAX_LINE`] = 64 KiB is cut into pieces marked `…`
//!   at the cut, on both sides), and queues them in the [`LogSink`].
//! * [`LogSink`] writes whole lines without ever blocking the master, drops (and counts)
//!   lines when a destination is not keeping up, and reopens the log file on `SIGUSR1`.
//!
//! Why the master and not the child's stdout directly: two workers writing to one
//! terminal or pipe interleave inside lines as soon as a line needs more than one write,
//! and a worker blocked on a full stdout stops serving. Here a flooding worker's lines are
//! dropped in the master, and the worker itself never waits longer than the master takes
//! to read its pipe.

mod destination;
mod lines;
mod sink;
mod timestamp;

pub use destination::Origin;
pub use lines::{Line, LineSplitter, MAX_LINE};
pub use sink::{Dropped, LogSink, MasterWriter, Stream, DROP_REPORT_INTERVAL, QUEUE_LIMIT};

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::worker::WorkerId;

/// Bytes read from one pipe per [`WorkerOutput::on_readable`] call at most, so that one
/// flooding worker cannot keep the master's loop from everything else.
pub const READ_BUDGET: usize = 256 * 1024;
/// One read's size.
const CHUNK: usize = 32 * 1024;

/// How [`WorkerOutput::on_readable`] left the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Read until it would block: wait for the next readiness event.
    Empty,
    /// [`READ_BUDGET`] spent with bytes perhaps left: call again on the next loop turn
    /// without waiting for an event (an edge-triggered poll will not repeat it).
    More,
    /// End of file: every process holding the write end (the worker, and any child it
    /// gave its stdout) is gone; the last partial line was written. Deregister and drop.
    Closed,
}

/// The master's end of one worker stream.
#[derive(Debug)]
pub struct WorkerOutput {
    id: WorkerId,
    stream: Stream,
    /// The read end, non-blocking and close-on-exec.
    pipe: File,
    lines: LineSplitter,
}

impl WorkerOutput {
    /// A pipe for worker `id`'s `stream`: the master's end, and the write end to give the
    /// child (blocking, as programs expect of their stdout; close-on-exec in the master,
    /// placed without the flag by [`crate::exec::Program::spawn`]). Close the write end in the
    /// master once the child is spawned, or the pipe never reaches end-of-file.
    pub fn pipe(id: WorkerId, stream: Stream) -> io::Result<(WorkerOutput, OwnedFd)> {
        // Only the read end is non-blocking: the flag belongs to the open file description,
        // which the child's end does not share.
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let output = WorkerOutput {
            id,
            stream,
            pipe: File::from(read),
            lines: LineSplitter::new(),
        };
        Ok((output, write))
    }

    /// The fd to register with the master's poll for `READABLE`.
    pub fn fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }

    /// The worker this output is from.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// Which of its streams.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// The pipe is readable: reads up to [`READ_BUDGET`], queues every whole line in
    /// `sink` and flushes it. An error other than "would block" is the pipe's; treat it
    /// as [`Drained::Closed`].
    pub fn on_readable(&mut self, sink: &LogSink) -> io::Result<Drained> {
        let mut buf = [0u8; CHUNK];
        let mut budget = READ_BUDGET;
        let origin = Origin::Worker(self.id);
        let stream = self.stream;
        let outcome = loop {
            if budget == 0 {
                break Ok(Drained::More);
            }
            let n = match (&self.pipe).read(&mut buf) {
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break Ok(Drained::Empty),
                    _ => break Err(e),
                },
            };
            if n == 0 {
                self.lines.finish(|line| sink.line(stream, origin, line));
                break Ok(Drained::Closed);
            }
            budget = budget.saturating_sub(n);
            self.lines
                .feed(&buf[..n], |line| sink.line(stream, origin, line));
        };
        sink.flush();
        outcome
    }
}
