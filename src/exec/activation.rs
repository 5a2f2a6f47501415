//! [`ActivationLink`]: the master's side of a socket-activated worker program, the third
//! kind of [`Link`] (herd's own seqpacket link and Node's are the others).
//!
//! A program started the way systemd starts a socket-activated service has its listening
//! sockets from the start (fds 3, 4, … with `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`)
//! and accepts every connection itself: there is nothing to hand over, so the policies that
//! need the master to accept cannot serve it (only `shared`, one socket for every worker,
//! and `reuseport`, one socket each). What the master hears from it comes on its own
//! `NOTIFY_SOCKET` ([`super::notify`]):
//!
//! * `READY=1`: it serves. Only then is it online and listening, as far as reloads,
//!   upgrades and herd's own `READY=1` are concerned: a pre-bound socket accepts
//!   connections long before the program is ready to answer them, which is how a reload
//!   that waits only for the `exec` drops requests. A program that never notifies is
//!   declared ready `--ready-after` its start, if that is given.
//! * `STOPPING=1`: it is on its way out (nothing more to wait for);
//! * `WATCHDOG=1` (`--worker-timeout`, systemd's watchdog protocol: the program was given
//!   `WATCHDOG_USEC` and `WATCHDOG_PID`): a sign of life. Once it is ready it must send one
//!   at least every `WATCHDOG_USEC`, busy or idle, or the master's watchdog kills it;
//!   `WATCHDOG=trigger` asks for that at once;
//! * `STATUS=…`: logged.
//!
//! Draining it is a signal (`--stop-signal`, SIGTERM by default) to its process group, so
//! that a shell wrapper's children get it too; the shutdown timeout's SIGKILL follows if it
//! does not exit.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::notify::{Notice, NotifySocket};
use crate::channel::ListenerId;
use crate::link::{Accepted, FromWorker, Grant, Link};
use crate::worker::WorkerId;

/// The master's side of one socket-activated worker. See the module documentation.
#[derive(Debug)]
pub(crate) struct ActivationLink {
    id: WorkerId,
    notify: NotifySocket,
    pid: Pid,
    /// The listeners it was given at start, in fd order.
    listeners: Vec<ListenerId>,
    ready: bool,
    /// When it counts as ready without a word, if ever (`--ready-after`).
    ready_at: Option<Instant>,
    stop_signal: Signal,
    stop_sent: bool,
}

impl ActivationLink {
    /// The link to worker `id` (pid `pid`), which hears it on `notify` and was given
    /// `listeners`.
    pub fn new(
        id: WorkerId,
        notify: NotifySocket,
        pid: Pid,
        listeners: Vec<ListenerId>,
        ready_after: Option<Duration>,
        stop_signal: Signal,
    ) -> ActivationLink {
        ActivationLink {
            id,
            notify,
            pid,
            listeners,
            ready: false,
            ready_at: ready_after.map(|d| Instant::now() + d),
            stop_signal,
            stop_sent: false,
        }
    }

    fn become_ready(&mut self, out: &mut Vec<FromWorker>) {
        if !self.ready {
            self.ready = true;
            self.ready_at = None;
            out.push(FromWorker::Online);
            out.push(FromWorker::Listening {
                listeners: self.listeners.clone(),
            });
        }
    }
}

impl Link for ActivationLink {
    fn fd(&self) -> Option<RawFd> {
        Some(self.notify.fd())
    }

    fn fds(&self) -> Vec<RawFd> {
        vec![self.notify.fd()]
    }

    fn queue(&mut self, conn: Accepted) {
        // Never dispatched to (the master does not accept under the policies it allows);
        // should one come, it is closed.
        log::error!(
            "worker {}: a connection for a socket-activated program",
            self.id
        );
        drop(conn);
    }

    fn queue_message(&mut self, _msg: &[u8]) -> Result<(), String> {
        Err("a socket-activated program has no channel for messages".into())
    }

    fn queue_drain(&mut self) {
        if !self.stop_sent {
            self.stop_sent = true;
            if let Err(e) = killpg(self.pid, self.stop_signal) {
                log::debug!("worker {}: {}: {e}", self.id, self.stop_signal);
            }
        }
    }

    fn has_unsent(&self) -> bool {
        false
    }

    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn receive(&mut self, out: &mut Vec<FromWorker>) -> io::Result<bool> {
        loop {
            let got = self.notify.on_readable()?;
            for notice in got.notices {
                match notice {
                    Notice::Ready => self.become_ready(out),
                    Notice::Stopping => out.push(FromWorker::Leaving),
                    Notice::Watchdog => out.push(FromWorker::Heartbeat),
                    Notice::WatchdogTrigger => out.push(FromWorker::Hung),
                    Notice::Status(status) => log::info!("worker {} status: {status}", self.id),
                    other => log::debug!("worker {}: {other:?}", self.id),
                }
            }
            if !got.more {
                return Ok(true);
            }
        }
    }

    fn reply_listen(&mut self, _req: u64, _grant: Result<Grant, io::Error>) -> io::Result<()> {
        Ok(())
    }

    fn recover(&mut self) -> Vec<Accepted> {
        Vec::new()
    }

    fn queued(&self) -> usize {
        0
    }

    fn unacked(&self) -> u64 {
        0
    }

    fn blocked(&self) -> bool {
        false
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.ready_at
    }

    fn watched_when_idle(&self) -> bool {
        // It accepts every connection itself: only its pings say it is alive.
        self.ready
    }

    fn counts_requests(&self) -> bool {
        false
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<FromWorker>) {
        if self.ready_at.is_some_and(|t| t <= now) {
            log::info!(
                "worker {} sent no READY=1: taken as ready (--ready-after)",
                self.id
            );
            self.become_ready(out);
        }
    }
}
