//! Worker output in the master's loop: the pipes an exec'd worker's stdout and stderr go
//! to, read as they fill and written to herd's own output a whole line at a time
//! ([`crate::output`] does the lines and the writing; this file the polling).
//!
//! * Each pipe is registered for reading at `OUTPUT_BASE + k`. A read takes at most a
//!   budget per loop turn; a pipe left with bytes is read again on the next turn without
//!   waiting for an event (the poll is edge-triggered).
//! * A pipe lives until end-of-file, not until its worker is reaped: the worker's own
//!   children may hold it. Before "worker N exited" is logged, what the dead worker wrote
//!   is read, so that its last lines come before the line that says it is gone.
//! * Lines dropped because herd's own output is not keeping up are counted, and reported
//!   at most every few seconds; SIGUSR1 reopens `--log-file` (logrotate's convention).

use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{Master, OUTPUT_BASE};
use crate::output::{Drained, LogSink, WorkerOutput};
use crate::worker::WorkerId;

/// How long the master waits at exit for herd's output to take what is queued.
const EXIT_FLUSH: Duration = Duration::from_secs(2);

impl Master {
    /// Starts reading a new worker's output pipes.
    pub(super) fn watch_outputs(&mut self, outputs: Vec<WorkerOutput>) {
        if outputs.is_empty() {
            return;
        }
        if self.sink.is_none() {
            match LogSink::stdio() {
                Ok(sink) => self.sink = Some(sink),
                Err(e) => log::error!("cannot forward worker output: {e}"),
            }
        }
        for output in outputs {
            let key = self.outputs.vacant_key();
            let fd = output.fd();
            let registered = self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(OUTPUT_BASE + key),
                Interest::READABLE,
            );
            match registered {
                Ok(()) => {
                    self.outputs.insert(output);
                    // Bytes may be there already.
                    self.outputs_pending.push(key);
                }
                Err(e) => log::error!("worker {}: cannot read its output: {e}", output.id()),
            }
        }
    }

    /// Reads output pipe `key`.
    pub(super) fn read_output(&mut self, key: usize) {
        let (Some(output), Some(sink)) = (self.outputs.get_mut(key), self.sink.as_ref()) else {
            return;
        };
        match output.on_readable(sink) {
            Ok(Drained::Empty) => {}
            Ok(Drained::More) => self.outputs_pending.push(key),
            Ok(Drained::Closed) | Err(_) => {
                let output = self.outputs.remove(key);
                let fd = output.fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
    }

    /// Reads what worker `id` left in its pipes (it has exited).
    pub(super) fn drain_outputs_of(&mut self, id: WorkerId) {
        let keys: Vec<usize> = (self.outputs.iter())
            .filter(|(_, o)| o.id() == id)
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.read_output(key);
        }
    }

    /// Pipes that had bytes left after their budget: read again this turn.
    pub(super) fn read_pending_outputs(&mut self) {
        for key in std::mem::take(&mut self.outputs_pending) {
            self.read_output(key);
        }
    }

    /// Says how many lines were dropped, at most every few seconds.
    pub(super) fn output_tick(&mut self, now: Instant) {
        if let Some(sink) = self.sink.as_ref() {
            for dropped in sink.take_dropped(now) {
                log::warn!("{dropped}");
            }
            sink.flush();
        }
    }

    /// SIGUSR1: reopen the log file.
    pub(super) fn reopen_output(&mut self) {
        if let Some(sink) = self.sink.as_ref() {
            match sink.reopen() {
                Ok(()) => log::info!("master: SIGUSR1: log file reopened"),
                Err(e) => log::error!("master: SIGUSR1: cannot reopen the log file: {e}"),
            }
        }
    }

    /// At exit: give herd's output what is queued, for a moment.
    pub(super) fn flush_output(&mut self) {
        for key in (self.outputs.iter()).map(|(k, _)| k).collect::<Vec<_>>() {
            self.read_output(key);
        }
        if let Some(sink) = self.sink.as_ref() {
            sink.flush_for(EXIT_FLUSH);
        }
    }

    /// The output fds (pipes and herd's own destinations), for a forked child to close.
    pub(super) fn output_fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds: Vec<_> = self.outputs.iter().map(|(_, o)| o.fd()).collect();
        fds.extend(self.sink.iter().flat_map(|s| s.pollable_fds()));
        fds
    }
}
