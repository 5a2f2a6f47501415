//! Rolling reload: replace every worker, one at a time, without refusing or dropping a
//! connection (SIGHUP, [`crate::Control::reload`]); and the one-worker version of it for a
//! worker over `--max-worker-rss`, or past `--max-requests` or `--max-worker-age`
//! ([`super::recycle`]).
//!
//! One step, per worker, with at most one extra worker alive at any moment:
//!
//! ```text
//! fork replacement into the old worker's slot ─► replacement online and subscribed to every
//! listener the old one had ─► old worker: no more dispatch (Stopping) + Drain ─► old exits
//! ```
//!
//! * The replacement takes the slot at the fork, so the old worker's exit does not respawn
//!   anything. Until the replacement listens, the old worker still takes connections; after,
//!   both are eligible for a moment and then only the replacement: the listeners never lack
//!   a taker, and connections never wait on a worker that is leaving.
//! * `Drain` travels behind every connection already dispatched to the old worker, which
//!   finishes its in-flight requests. Idle keep-alive connections are the hard part: a
//!   client may be sending its next request at the very moment the server closes, and then
//!   sees a reset for a request nobody got. So a draining worker closes a keep-alive
//!   connection only at a request boundary, answering the next request with
//!   `Connection: close`, and closes a silent one only after a grace period (see
//!   `worker::http_service`). A client that sends within the grace never loses a request.
//! * A replacement that exits before it listens, or does not listen within
//!   [`READY_TIMEOUT`], stops the reload: the old worker keeps its slot and keeps serving
//!   (a reload with a broken setup must not take capacity away). An old worker that does
//!   not finish draining within the shutdown timeout is killed.
//! * A second reload request during a reload extends it: every worker forked before the
//!   latest request is replaced.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{systemd, Master, Phase, WorkerProc, WorkerState};
use crate::channel::ListenerId;
use crate::event::ExitStatus;
use crate::worker::WorkerId;

/// How long a replacement has to come online and listen before the reload gives up on it.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often resident memory is checked against `--max-worker-rss`.
pub const RSS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What `/status` shows of the reload.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Workers are being replaced.
    pub in_progress: bool,
    /// `(old, new)`: the step under way.
    pub replacing: Option<(WorkerId, WorkerId)>,
    /// Reloads completed (every targeted worker replaced).
    pub reloads: u64,
    /// Workers replaced, in all.
    pub replaced: u64,
    /// The last reload's outcome, or why it stopped.
    pub last: Option<String>,
}

/// The reload in progress, if any.
#[derive(Debug, Default)]
pub(super) struct Reload {
    /// Workers with an id below this are to be replaced (0: none).
    cutoff: WorkerId,
    /// Workers to replace one by one (over the memory limit).
    targets: Vec<WorkerId>,
    step: Option<Step>,
    /// `RELOADING=1` was sent; `READY=1` is owed at the end.
    announced: bool,
    reloads: u64,
    replaced: u64,
    last: Option<String>,
}

#[derive(Debug)]
struct Step {
    old_key: usize,
    old_id: WorkerId,
    new_key: usize,
    new_id: WorkerId,
    slot: usize,
    /// The listeners the old worker served: the replacement must serve them all.
    listeners: Vec<ListenerId>,
    wait: Wait,
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    /// A replacement that needs what its predecessor holds (an instance's port): for the
    /// old worker to stop first; killed at the deadline. The replacement starts when the
    /// old one is reaped.
    OldFirst { deadline: Instant, killed: bool },
    /// For the replacement to come online and listen.
    Replacement { deadline: Instant },
    /// For the old worker to drain and exit; killed at the deadline.
    Exit { deadline: Instant, killed: bool },
}

impl Reload {
    fn active(&self) -> bool {
        self.cutoff > 0 || !self.targets.is_empty() || self.step.is_some()
    }

    fn wanted(&self, w: &WorkerProc) -> bool {
        w.id < self.cutoff || self.targets.contains(&w.id)
    }

    /// Forgets the rest of the reload; returns whether `READY=1` is owed.
    fn abort(&mut self, why: String) -> bool {
        self.cutoff = 0;
        self.targets.clear();
        self.step = None;
        self.last = Some(why);
        std::mem::take(&mut self.announced)
    }

    /// Queues worker `id` for a one-worker replacement (over a limit: `--max-worker-rss`,
    /// [`super::recycle`]); false if the reload already covers it.
    pub(super) fn replace_one(&mut self, id: WorkerId) -> bool {
        let replacing = self.step.as_ref().is_some_and(|s| s.old_id == id);
        if replacing || id < self.cutoff || self.targets.contains(&id) {
            return false;
        }
        self.targets.push(id);
        true
    }

    pub(super) fn status(&self) -> ReloadStatus {
        ReloadStatus {
            in_progress: self.active(),
            replacing: self.step.as_ref().map(|s| (s.old_id, s.new_id)),
            reloads: self.reloads,
            replaced: self.replaced,
            last: self.last.clone(),
        }
    }
}

impl Master {
    /// Starts (or extends) a rolling reload of every worker alive now.
    pub(super) fn request_reload(&mut self, why: &str) {
        if self.phase != Phase::Running {
            log::info!("reload ({why}) ignored: the master is stopping");
            return;
        }
        if self.ops.upgrade.is_pending() {
            log::warn!("reload ({why}) ignored: a binary upgrade is in progress");
            return;
        }
        let r = &mut self.ops.reload;
        r.cutoff = self.next_id;
        log::info!(
            "reload ({why}): replacing {} worker(s) one at a time",
            self.workers
                .iter()
                .filter(|(_, w)| w.state == WorkerState::Online && w.id < r.cutoff)
                .count()
        );
        if !r.announced {
            r.announced = true;
            systemd::notify_reloading();
        }
        self.reload_tick(Instant::now());
    }

    /// Advances the reload as far as it can go now.
    pub(super) fn reload_tick(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            // The stop drains every worker, the replacement included.
            if self.ops.reload.active() {
                self.ops.reload.abort("stopped by the master's stop".into());
            }
            return;
        }
        loop {
            let Some(step) = self.ops.reload.step.as_mut() else {
                if !self.start_step() {
                    return;
                }
                continue;
            };
            let old_alive = self
                .workers
                .get(step.old_key)
                .is_some_and(|w| w.id == step.old_id);
            match step.wait {
                Wait::OldFirst { deadline, killed } => {
                    if now >= deadline && !killed && old_alive {
                        step.wait = Wait::OldFirst {
                            deadline,
                            killed: true,
                        };
                        let old = &self.workers[step.old_key];
                        log::warn!("reload: worker {} still stopping: killing it", old.id);
                        old.signal(Signal::SIGKILL);
                    }
                    return; // the reap of the old worker moves the step on
                }
                Wait::Replacement { deadline } => {
                    let ready = self.workers.get(step.new_key).is_some_and(|w| {
                        w.id == step.new_id
                            && w.state == WorkerState::Online
                            && step.listeners.iter().all(|&l| {
                                let l = self.listeners.get(l);
                                l.socket.is_none() || l.subscribers.contains(&step.new_key)
                            })
                    });
                    if ready {
                        let (old_key, old_id, new_id) = (step.old_key, step.old_id, step.new_id);
                        step.wait = Wait::Exit {
                            deadline: Master::deadline(now, self.config.shutdown_timeout),
                            killed: false,
                        };
                        if old_alive {
                            let old = &mut self.workers[old_key];
                            if old.state != WorkerState::Disconnected {
                                old.state = WorkerState::Stopping;
                                old.link.queue_drain();
                                self.dirty.push(old_key);
                            }
                        }
                        self.ops.reload.replaced += 1;
                        log::info!("reload: worker {old_id} replaced by worker {new_id}");
                        continue;
                    }
                    if now >= deadline {
                        let (old_key, new_key, slot, old_id, new_id) = (
                            step.old_key,
                            step.new_key,
                            step.slot,
                            step.old_id,
                            step.new_id,
                        );
                        if let Some(w) = self.workers.get(new_key).filter(|w| w.id == new_id) {
                            w.signal(Signal::SIGKILL);
                        }
                        if old_alive {
                            self.slots[slot].worker = Some(old_key);
                            self.slots[slot].respawn_at = None;
                        }
                        self.reload_failed(format!(
                            "reload stopped: worker {new_id} did not listen within \
                             {READY_TIMEOUT:?}; worker {old_id} keeps serving"
                        ));
                    }
                    return;
                }
                Wait::Exit { deadline, killed } => {
                    if !old_alive {
                        self.ops.reload.step = None;
                        continue;
                    }
                    if now >= deadline && !killed {
                        step.wait = Wait::Exit {
                            deadline,
                            killed: true,
                        };
                        let old = &self.workers[step.old_key];
                        log::warn!(
                            "reload: worker {} still draining after {:?}: killing it",
                            old.id,
                            self.config.shutdown_timeout
                        );
                        old.signal(Signal::SIGKILL);
                    }
                    return;
                }
            }
        }
    }

    /// Picks the next worker to replace and forks its replacement; false when there is
    /// nothing (more) to do.
    fn start_step(&mut self) -> bool {
        let r = &self.ops.reload;
        if !r.active() {
            return false;
        }
        let next = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Online && r.wanted(w))
            .min_by_key(|(_, w)| w.id)
            .map(|(key, w)| (key, w.id, w.slot));
        let Some((old_key, old_id, slot)) = next else {
            let r = &mut self.ops.reload;
            let done = r.cutoff > 0;
            r.cutoff = 0;
            r.targets.clear();
            if done {
                r.reloads += 1;
                let msg = format!("reload done: {} worker(s) replaced in all", r.replaced);
                log::info!("{msg}");
                r.last = Some(msg);
            }
            if std::mem::take(&mut r.announced) {
                systemd::notify("READY=1");
            }
            return false;
        };
        self.ops.reload.targets.retain(|&t| t != old_id);
        let listeners: Vec<ListenerId> = self
            .listeners
            .ids()
            .filter(|&l| self.listeners.get(l).subscribers.contains(&old_key))
            .collect();
        if self.launches[self.slots[slot].group].replaces_in_place() {
            // Its replacement needs its port: stop it first (the others serve meanwhile).
            let old = &mut self.workers[old_key];
            old.state = WorkerState::Stopping;
            old.link.queue_drain();
            self.dirty.push(old_key);
            log::info!("reload: stopping worker {old_id} to start its replacement in its place");
            self.ops.reload.step = Some(Step {
                old_key,
                old_id,
                new_key: usize::MAX,
                new_id: 0,
                slot,
                listeners,
                wait: Wait::OldFirst {
                    deadline: Master::deadline(Instant::now(), self.config.shutdown_timeout),
                    killed: false,
                },
            });
            return true;
        }
        match self.spawn(slot) {
            Ok(new_key) => {
                let new_id = self.workers[new_key].id;
                log::info!("reload: forked worker {new_id} to replace worker {old_id}");
                self.ops.reload.step = Some(Step {
                    old_key,
                    old_id,
                    new_key,
                    new_id,
                    slot,
                    listeners,
                    wait: Wait::Replacement {
                        deadline: Instant::now() + READY_TIMEOUT,
                    },
                });
                true
            }
            Err(e) => {
                // `spawn` failed before touching the slot: the old worker keeps it.
                self.slots[slot].worker = Some(old_key);
                self.reload_failed(format!(
                    "reload stopped: cannot fork a replacement for worker {old_id}: {e}"
                ));
                false
            }
        }
    }

    fn reload_failed(&mut self, msg: String) {
        log::error!("{msg}");
        if self.ops.reload.abort(msg) {
            systemd::notify("READY=1");
        }
    }

    /// When the reload next needs the loop to wake without an event.
    pub(super) fn reload_deadline(&self) -> Option<Instant> {
        match self.ops.reload.step.as_ref()?.wait {
            Wait::OldFirst { deadline, killed } => (!killed).then_some(deadline),
            Wait::Replacement { deadline } => Some(deadline),
            Wait::Exit { deadline, killed } => (!killed).then_some(deadline),
        }
    }

    /// A reaped worker was the replacement of the step under way and died before it
    /// listened: the old worker keeps its slot. True when that is the case.
    pub(super) fn reload_replacement_exited(
        &mut self,
        key: usize,
        w: &WorkerProc,
        status: ExitStatus,
    ) -> bool {
        let Some(step) = self.ops.reload.step.as_ref() else {
            return false;
        };
        if let Wait::OldFirst { .. } = step.wait {
            if step.old_key == key && step.old_id == w.id {
                return self.start_in_place(step.slot, step.old_id);
            }
            return false;
        }
        if step.new_key != key
            || step.new_id != w.id
            || !matches!(step.wait, Wait::Replacement { .. })
        {
            return false;
        }
        let (old_key, old_id, slot) = (step.old_key, step.old_id, step.slot);
        let old_alive = self
            .workers
            .get(old_key)
            .is_some_and(|o| o.id == old_id && o.state != WorkerState::Disconnected);
        if old_alive {
            self.slots[slot].worker = Some(old_key);
            self.slots[slot].respawn_at = None;
        }
        self.reload_failed(format!(
            "reload stopped: worker {} (replacing worker {old_id}) exited ({status}) before it \
             listened{}",
            w.id,
            if old_alive {
                format!("; worker {old_id} keeps serving")
            } else {
                String::new()
            }
        ));
        old_alive
    }

    /// The old worker of an in-place step is gone: start its replacement in its slot.
    /// True: the slot is taken care of (no respawn).
    fn start_in_place(&mut self, slot: usize, old_id: WorkerId) -> bool {
        self.slots[slot].worker = None;
        match self.spawn(slot) {
            Ok(new_key) => {
                let new_id = self.workers[new_key].id;
                log::info!("reload: started worker {new_id} in worker {old_id}'s place");
                if let Some(step) = self.ops.reload.step.as_mut() {
                    step.new_key = new_key;
                    step.new_id = new_id;
                    step.wait = Wait::Replacement {
                        deadline: Instant::now() + READY_TIMEOUT,
                    };
                }
                true
            }
            Err(e) => {
                self.reload_failed(format!(
                    "reload stopped: cannot start a replacement for worker {old_id}: {e}"
                ));
                false // respawned with back-off like any dead worker
            }
        }
    }

    /// Checks resident memory against `--max-worker-rss` once a second; a worker over it is
    /// queued for a one-worker reload.
    pub(super) fn rss_tick(&mut self, now: Instant) {
        let Some(limit) = self.ops.max_worker_rss else {
            return;
        };
        if self.ops.next_rss_check.is_some_and(|t| t > now) {
            return;
        }
        self.ops.next_rss_check = Some(now + RSS_CHECK_INTERVAL);
        if self.phase != Phase::Running || self.ops.upgrade.is_pending() {
            return;
        }
        let replacing = self.ops.reload.step.as_ref().map(|s| s.old_id);
        let procs = super::usage::ProcTable::read();
        let mut over = Vec::new();
        for (_, w) in &self.workers {
            if w.state != WorkerState::Online
                || replacing == Some(w.id)
                || self.ops.reload.wanted(w)
                || w.started.elapsed() < RSS_CHECK_INTERVAL
            {
                continue;
            }
            // The whole process tree: a wrapper's children, a server's own workers.
            if let Some(rss) = procs.tree_usage(w.pid.as_raw()).map(|u| u.rss_bytes) {
                if rss > limit {
                    log::warn!(
                        "worker {} (its process tree) uses {} MB, over --max-worker-rss {} MB: replacing it",
                        w.id,
                        rss >> 20,
                        limit >> 20
                    );
                    over.push(w.id);
                }
            }
        }
        self.ops.reload.targets.extend(over);
    }
}
