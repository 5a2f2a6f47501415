//! The watchdog: a worker that stops showing signs of life while it has work is killed and
//! replaced (`--worker-timeout`); one that never comes up is too (`--start-timeout`).
//!
//! A worker stuck in a handler (an infinite loop, a blocking call that never returns) still
//! gets its share of new connections under round-robin, and serves none of them. Its
//! process is alive, so nothing else notices. The master notices silence instead:
//!
//! * **Signs of life.** Any message from the worker counts. herd's own workers are asked, in
//!   their first packet ([`crate::channel::ToWorker::Heartbeat`]), for a heartbeat every
//!   quarter of the timeout, sent from their event loop only when it turns: a loop that
//!   turns is a worker that is not stuck. A Node worker says `accepted` for each connection
//!   handed over; a socket-activated program sends `WATCHDOG=1` on its `NOTIFY_SOCKET`
//!   every `WATCHDOG_USEC` (systemd's watchdog protocol).
//! * **Only while it owes one.** A worker idle with nothing to do sleeps in `epoll_wait` and
//!   says nothing, rightly: it is never killed for being quiet. It owes a sign of life while
//!   the master counts connections on it (open ones for herd's workers; for a Node worker,
//!   the ones handed over and not yet accepted), or, when it accepts for itself from a
//!   socket it was given, always (only it knows whether connections wait:
//!   [`crate::link::Link::watched_when_idle`]). The silence is measured from the later of
//!   its last message and the moment it began to owe one, so a worker idle for an hour is
//!   not killed the moment it is handed a connection.
//! * **The kill.** `worker N unresponsive for Xs: killed`: SIGABRT first, so that a core
//!   dump (where cores are kept) shows where it hung, then SIGKILL after [`ABORT_GRACE`]
//!   if it is still there. It is disconnected at once, so the connections queued in its
//!   channel and never read go to the other workers (see [`super::handoff`]); its exit is
//!   respawned into its slot like any other death.
//! * **Start.** With `--start-timeout`, a worker that is not online and listening (on at
//!   least one listener) that long after its start is killed the same way. A reload's
//!   replacement that never listens then stops the reload sooner than its own 30 s limit.
//!
//! [`Master::watchdog_tick`] runs in every loop turn ([`Master::timers`]), and
//! [`Master::watchdog_deadline`] wakes the loop when the next verdict is due.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Master, WorkerProc, WorkerState};
use crate::config::ClusterConfig;

/// How long a worker sent SIGABRT has to dump its core and go before SIGKILL.
pub const ABORT_GRACE: Duration = Duration::from_secs(3);

/// How often a worker is asked to send a heartbeat under `timeout`: four per timeout, so
/// that a late beat or a busy master does not make a live worker look dead.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_millis(1))
}

/// What the watchdog knows of one worker.
#[derive(Debug)]
pub(crate) struct Health {
    /// When the master last heard from it (any message; its start before the first).
    pub heard: Instant,
    /// Since when it has owed a sign of life (it holds connections, or accepts itself);
    /// `None` while it owes nothing.
    owing_since: Option<Instant>,
    /// It came online and listened once: the start timeout no longer applies.
    started: bool,
    /// When the watchdog sent it SIGABRT; SIGKILL follows after [`ABORT_GRACE`].
    aborted: Option<Instant>,
    /// SIGKILL sent.
    killed: bool,
}

impl Health {
    /// A worker started at `now`.
    pub fn new(now: Instant) -> Health {
        Health {
            heard: now,
            owing_since: None,
            started: false,
            aborted: None,
            killed: false,
        }
    }

    /// How long the worker has been silent at `now`.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.heard)
    }
}

/// The watchdog's settings and what it did.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    /// `--worker-timeout`.
    timeout: Option<Duration>,
    /// `--start-timeout`.
    start_timeout: Option<Duration>,
    /// Workers killed for silence.
    pub kills: u64,
    /// Workers killed for not starting in time.
    pub start_kills: u64,
}

impl Watchdog {
    /// The watchdog `config` asks for.
    pub fn new(config: &ClusterConfig) -> Watchdog {
        Watchdog {
            timeout: config.worker_timeout,
            start_timeout: config.start_timeout,
            ..Watchdog::default()
        }
    }
}

/// Whether worker `w` owes the master a sign of life now: the master counts connections
/// on it (open, or for a Node worker not yet accepted), or queued for it, or it accepts for
/// itself.
fn owes(w: &WorkerProc) -> bool {
    w.load.open > 0 || w.link.queued() > 0 || w.link.watched_when_idle()
}

/// Why the watchdog kills a worker.
enum Verdict {
    /// Silent for this long while it owed a sign of life.
    Unresponsive(Duration),
    /// Not online and listening this long after its start.
    NotStarted(Duration),
    /// It said so itself (`WATCHDOG=trigger`).
    Triggered,
}

impl Master {
    /// Kills what is overdue: the SIGKILL that follows a SIGABRT, a silent worker, a worker
    /// that did not start.
    pub(super) fn watchdog_tick(&mut self, now: Instant) {
        let (timeout, start_timeout) = (self.watchdog.timeout, self.watchdog.start_timeout);
        if timeout.is_none() && start_timeout.is_none() {
            return;
        }
        let mut verdicts = Vec::new();
        for (key, w) in self.workers.iter_mut() {
            let health = &mut w.health;
            if let Some(at) = health.aborted {
                if !health.killed && now >= at + ABORT_GRACE {
                    log::warn!(
                        "worker {} still there {ABORT_GRACE:?} after SIGABRT: SIGKILL",
                        w.id
                    );
                    health.killed = true;
                    w.signal(Signal::SIGKILL);
                }
                continue;
            }
            if w.state == WorkerState::Disconnected {
                continue;
            }
            if !health.started {
                let listening = w.state == WorkerState::Online
                    && self
                        .listeners
                        .ids()
                        .any(|l| self.listeners.get(l).subscribers.contains(&key));
                if listening {
                    health.started = true;
                } else if let Some(limit) = start_timeout {
                    let waited = now.saturating_duration_since(w.started);
                    if waited >= limit && w.state != WorkerState::Stopping {
                        verdicts.push((key, Verdict::NotStarted(waited)));
                    }
                    continue;
                }
            }
            let Some(limit) = timeout else { continue };
            if !owes(w) {
                w.health.owing_since = None;
                continue;
            }
            let since = *w.health.owing_since.get_or_insert(now);
            let silent = now.saturating_duration_since(w.health.heard.max(since));
            if silent >= limit {
                verdicts.push((key, Verdict::Unresponsive(silent)));
            }
        }
        for (key, verdict) in verdicts {
            self.kill_hung(key, verdict, now);
        }
    }

    /// The worker asked to be treated as hung (`WATCHDOG=trigger`): with a watchdog, it is.
    pub(super) fn watchdog_triggered(&mut self, key: usize) {
        if self.watchdog.timeout.is_some() {
            self.kill_hung(key, Verdict::Triggered, Instant::now());
        }
    }

    /// SIGABRT to worker `key`, and its unread connections to the others.
    fn kill_hung(&mut self, key: usize, verdict: Verdict, now: Instant) {
        let w = &mut self.workers[key];
        match verdict {
            Verdict::Unresponsive(silent) => {
                log::warn!(
                    "worker {} unresponsive for {:.1}s: killed",
                    w.id,
                    silent.as_secs_f64()
                );
                self.watchdog.kills += 1;
            }
            Verdict::Triggered => {
                log::warn!("worker {} asked to be treated as hung: killed", w.id);
                self.watchdog.kills += 1;
            }
            Verdict::NotStarted(waited) => {
                log::warn!(
                    "worker {} not online and listening after {:.1}s (--start-timeout): killed",
                    w.id,
                    waited.as_secs_f64()
                );
                self.watchdog.start_kills += 1;
            }
        }
        w.health.aborted = Some(now);
        w.signal(Signal::SIGABRT);
        self.disconnect(key);
    }

    /// When the watchdog next has a verdict to give, if it watches anything.
    pub(super) fn watchdog_deadline(&self) -> Option<Instant> {
        let (timeout, start_timeout) = (self.watchdog.timeout, self.watchdog.start_timeout);
        if timeout.is_none() && start_timeout.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for (_, w) in &self.workers {
            let health = &w.health;
            if let Some(at) = health.aborted {
                if !health.killed {
                    consider(at + ABORT_GRACE);
                }
                continue;
            }
            if w.state == WorkerState::Disconnected {
                continue;
            }
            if !health.started {
                if let Some(limit) = start_timeout {
                    consider(Master::deadline(w.started, limit));
                    continue;
                }
            }
            if let Some(limit) = timeout {
                if owes(w) {
                    let since = health.owing_since.unwrap_or(now);
                    consider(Master::deadline(health.heard.max(since), limit));
                }
            }
        }
        next
    }
}
