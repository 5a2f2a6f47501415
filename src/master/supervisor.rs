//! Supervision: starting workers, reaping them, pacing respawns, stopping them.
//!
//! * **spawn** ([`Master::spawn`]): the cluster's [`super::launch::Launch`] starts a worker
//!   into a slot and returns its link, which the master registers with its poll.
//! * **fork** happens only through a launch (`launch.rs`), and only while the master is
//!   single-threaded: `fork()` copies just the calling thread, so a lock held by any other
//!   thread (the allocator's, a logger's) would stay locked forever in the child. Both ways
//!   of starting a worker check the thread count before every fork and refuse when it is
//!   not 1.
//! * **reap**: SIGCHLD only says "one or more children changed state", so [`reap`] loops
//!   `waitpid(-1, WNOHANG)` until nothing is left to collect.
//! * **respawn back-off** ([`Slot`]): a worker that dies right after starting is restarted
//!   after 100 ms, then 200 ms, 400 ms… up to 15 s; a worker that stayed up 30 s resets the
//!   delay. A crash loop costs one fork per 15 s, never a fork storm.
//! * **disconnect**: a worker whose channel closed gets nothing more, and the connections it
//!   never read are dispatched to the others ([`super::handoff`] explains how they are
//!   recovered); **kill** and the graceful **stop** (drain every worker, kill what is left
//!   at the shutdown timeout) end the cluster.
//!

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{Load, Master, Phase, WorkerProc, WorkerState, WORKER_BASE};
use crate::event::{Event, ExitStatus};
use crate::link::LaunchContext;
use crate::link::LinkOptions;
use crate::policy::Policy;

/// The first respawn delay after a quick death.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest respawn delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// A worker up this long counts as healthy: its death resets the back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One of the `--workers` places a worker runs in; a respawned worker takes its dead
/// predecessor's slot (with a new id).
#[derive(Debug, Default)]
pub struct Slot {
    /// Which group of workers (which launch) the slot belongs to: 0 for the cluster's own;
    /// 1 for `herd proxy --spawn`'s instances.
    pub group: usize,
    /// The slot's place within its group (an instance's number, its port's offset).
    pub index: usize,
    /// The master's key of the worker in this slot, if one is running.
    pub worker: Option<usize>,
    /// When to fork this slot's next worker.
    pub respawn_at: Option<Instant>,
    /// The delay the next quick death will wait.
    next_delay: Duration,
    /// Workers of this slot that died unasked and were respawned (`/status`'s `restarts`).
    pub restarts: u64,
}

impl Slot {
    /// Place `index` of group `group`.
    pub fn new(group: usize, index: usize) -> Slot {
        Slot {
            group,
            index,
            ..Slot::default()
        }
    }

    /// The slot's worker exited after `uptime`; schedules the next fork and returns its delay.
    pub fn schedule_respawn(&mut self, now: Instant, uptime: Duration) -> Duration {
        if uptime >= STABLE_AFTER {
            self.next_delay = Duration::ZERO;
        }
        let delay = self.next_delay;
        self.next_delay = if delay.is_zero() {
            BACKOFF_START
        } else {
            (delay * 2).min(BACKOFF_MAX)
        };
        self.worker = None;
        self.respawn_at = Some(now + delay);
        delay
    }
}

/// Collects every child that has exited, without blocking.
fn reap_exited() -> Vec<(Pid, ExitStatus)> {
    let mut gone = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => gone.push((pid, ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                gone.push((pid, ExitStatus::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return gone,
            Ok(_) => continue, // stopped/continued: not an exit
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("waitpid: {e}");
                return gone;
            }
        }
    }
}

impl Master {
    /// Starts a worker into `slot` and registers its link; returns its key.
    pub(super) fn spawn(&mut self, slot: usize) -> io::Result<usize> {
        let id = self.next_id;
        self.next_id += 1;
        // Everything of the master's that a forked child must not keep.
        let mut master_fds: Vec<RawFd> = vec![self.poll.as_raw_fd()];
        master_fds.extend(self.signals.fds());
        master_fds.extend(self.listeners.fds());
        master_fds.extend(self.workers.iter().flat_map(|(_, w)| w.link.fds()));
        master_fds.extend(self.admin.iter().flat_map(|a| a.fds()));
        master_fds.extend(self.ops.fds());
        master_fds.extend(self.output_fds());
        let policy = self.config.policy;
        let (group, index) = (self.slots[slot].group, self.slots[slot].index);
        let grants = if self.launches[group].activates() {
            let accept = policy.acceptance();
            (self.listeners.ids())
                .filter(|&l| self.listeners.get(l).socket.is_some())
                .map(|l| self.listeners.grant(l, accept))
                .collect::<io::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let launched = self.launches[group].launch(LaunchContext {
            id,
            index,
            master_fds: &master_fds,
            credentials: self.ops.credentials.as_ref(),
            link: LinkOptions {
                batch: self.config.handoff_batch,
                // Node's SCHED_RR: a worker is free again only once it acknowledged its
                // connection.
                want_acks: policy == Policy::Node,
                eager_reports: matches!(policy, Policy::LeastConnections | Policy::P2c),
                worker_timeout: self.config.worker_timeout,
            },
            grants,
        })?;
        let key = self.workers.vacant_key();
        if let Some(fd) = launched.link.fd() {
            self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(WORKER_BASE + key),
                Interest::READABLE,
            )?;
        }
        let pid = launched.pid;
        self.workers.insert(WorkerProc {
            id,
            pid,
            slot,
            state: WorkerState::Starting,
            started: Instant::now(),
            link: launched.link,
            load: Load::default(),
            health: super::watchdog::Health::new(Instant::now()),
            write_armed: false,
            group: launched.group,
            listens: launched.listens,
        });
        self.watch_outputs(launched.outputs);
        self.slots[slot].worker = Some(key);
        log::info!("fork: worker {id} (pid {pid})");
        self.emit(&Event::Fork {
            worker: id,
            pid: pid.as_raw(),
        });
        Ok(key)
    }

    /// Forks the workers whose respawn is due.
    pub(super) fn respawn_due(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        for slot in 0..self.slots.len() {
            if matches!(self.slots[slot].respawn_at, Some(t) if t <= now) {
                self.slots[slot].respawn_at = None;
                if let Err(e) = self.spawn(slot) {
                    log::error!("cannot start a worker: {e}");
                    self.slots[slot].schedule_respawn(now, Duration::ZERO);
                }
            }
        }
    }

    /// Collects exited workers, hands back their unread connections, schedules respawns.
    pub(super) fn reap(&mut self) {
        for (pid, status) in reap_exited() {
            let Some(key) = self
                .workers
                .iter()
                .find(|(_, w)| w.pid == pid)
                .map(|(k, _)| k)
            else {
                self.upgrade_child_exited(pid, status);
                continue;
            };
            // Read what the worker said before it died, then take back what it never read.
            self.read_worker(key);
            self.disconnect(key);
            let w = self.workers.remove(key);
            self.drain_outputs_of(w.id);
            self.exits += 1;
            log::info!("worker {} exited ({status})", w.id);
            self.emit(&Event::Exit {
                worker: w.id,
                status,
            });
            if self.ops_worker_exited(key, &w, status) {
                continue;
            }
            let slot = &mut self.slots[w.slot];
            if slot.worker == Some(key) {
                slot.worker = None;
                if self.phase == Phase::Running {
                    slot.restarts += 1;
                    let delay = slot.schedule_respawn(Instant::now(), w.started.elapsed());
                    if !delay.is_zero() {
                        log::warn!(
                            "worker {} died after {:?}: respawning in {delay:?}",
                            w.id,
                            w.started.elapsed()
                        );
                    }
                    self.ops_restart_scheduled(&w);
                }
            }
        }
    }

    /// The worker's channel closed (or it broke the protocol): stop dispatching to it and
    /// give the connections it never took to the others.
    pub(super) fn disconnect(&mut self, key: usize) {
        let w = &mut self.workers[key];
        if w.state == WorkerState::Disconnected {
            return;
        }
        w.state = WorkerState::Disconnected;
        let id = w.id;
        if let Some(fd) = w.link.fd() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        let back = w.link.recover();
        w.load.open = 0;
        self.listeners.unsubscribe(key);
        if !back.is_empty() {
            log::info!(
                "worker {id}: {} connection(s) it never read handed to other workers",
                back.len()
            );
        }
        log::info!("worker {id} disconnected");
        self.emit(&Event::Disconnect { worker: id });
        for conn in back {
            self.dispatch(conn);
        }
    }

    /// SIGKILL to every worker (a forced stop).
    pub(super) fn kill_all(&mut self) {
        self.forced = true;
        for (_, w) in &self.workers {
            w.signal(Signal::SIGKILL);
        }
    }

    /// Graceful stop: take what the kernel has queued, close the listeners, drain workers.
    pub(super) fn stop(&mut self) {
        self.phase = Phase::Stopping {
            deadline: Master::deadline(Instant::now(), self.config.shutdown_timeout),
        };
        self.ops_stopping();
        for slot in &mut self.slots {
            slot.respawn_at = None;
        }
        // Connections already in the accept queue were accepted by the kernel on our behalf:
        // serve them rather than reset them. (Under a worker-accept policy the workers do
        // this final accept themselves when they drain.)
        for id in self.listeners.ids().collect::<Vec<_>>() {
            self.accept(id, usize::MAX);
        }
        self.release_gates();
        for id in self.listeners.ids().collect::<Vec<_>>() {
            let l = self.listeners.get_mut(id);
            if let Some(mut socket) = l.socket.take() {
                let _ = self.poll.registry().deregister(&mut socket);
            }
        }
        for (key, w) in self.workers.iter_mut() {
            if w.state != WorkerState::Disconnected {
                w.state = WorkerState::Stopping;
                w.link.queue_drain();
                self.dirty.push(key);
            }
        }
        // Connections nobody can take any more are closed (their clients see a clean close).
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let now = Instant::now();
        let mut slot = Slot::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..10)
            .map(|_| slot.schedule_respawn(now, quick).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000]
        );
        assert_eq!(slot.schedule_respawn(now, quick), BACKOFF_MAX);
        assert_eq!(slot.schedule_respawn(now, STABLE_AFTER), Duration::ZERO);
        assert_eq!(slot.schedule_respawn(now, quick), BACKOFF_START);
    }
}
