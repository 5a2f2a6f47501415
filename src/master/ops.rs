//! Operating the master: what a service manager and an operator need beyond accept and
//! dispatch. This module owns the state ([`Ops`]) and the hooks the master's loop calls; the
//! settings are [`crate::config::ClusterConfig`]'s, and the mechanisms live in their own
//! modules:
//!
//! * [`super::reload`]: rolling reload (SIGHUP, [`crate::Control::reload`], `--max-worker-rss`);
//! * [`super::upgrade`]: binary upgrade (SIGUSR2) and the new master's side of it;
//! * [`super::systemd`]: `sd_notify` and socket activation;
//! * [`super::restarts`]: `--max-restarts` within `--restart-window`;
//! * [`crate::worker::Credentials`]: `--user`/`--group`, applied in each worker.
//!
//! It also writes the pid file and decides when the cluster is *ready*: every slot's
//! worker is online and subscribed to every open listener. Readiness is what `READY=1`
//! tells systemd and what a new master reports to the old one during an upgrade.

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::reload::{Reload, ReloadStatus};
use super::restarts::RestartLimit;
use super::upgrade::{Upgrade, UpgradeStatus};
use super::{systemd, Master, Phase, WorkerProc, WorkerState};
use crate::config::ClusterConfig;
use crate::event::ExitStatus;
use crate::worker::{Credentials, EXIT_CONFIG};

/// Reload and upgrade as the admin `/status` endpoint (or a log line) shows them.
#[derive(Debug, Clone, Default)]
pub struct OpsStatus {
    /// The rolling reload.
    pub reload: ReloadStatus,
    /// The binary upgrade.
    pub upgrade: UpgradeStatus,
    /// Worker restarts counted within `--restart-window` (0 without `--max-restarts`).
    pub recent_restarts: usize,
}

impl OpsStatus {
    /// The status as a JSON value (part of `/status`).
    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.reload;
        let u = &self.upgrade;
        serde_json::json!({
            "reload": {
                "in_progress": r.in_progress,
                "replacing": r.replacing.map(|(old, new)| [old, new]),
                "reloads": r.reloads,
                "replaced": r.replaced,
                "last": r.last,
            },
            "upgrade": {
                "state": u.state,
                "new_pid": u.new_pid,
                "last": u.last,
            },
            "recent_restarts": self.recent_restarts,
        })
    }
}

/// The master's operational state.
pub(super) struct Ops {
    pub(super) credentials: Option<Credentials>,
    pub(super) reload: Reload,
    pub(super) upgrade: Upgrade,
    restarts: Option<RestartLimit>,
    pub(super) max_worker_rss: Option<u64>,
    pub(super) next_rss_check: Option<Instant>,
    pid_file: Option<PathBuf>,
    /// The cluster has been ready once (`READY=1` sent, or reported to the old master).
    ready: bool,
    /// Why the master gave up, if it did: [`Master::run`] returns it as an error.
    gave_up: Option<String>,
}

impl Ops {
    /// Resolves the settings (user names) and picks up what an upgrading master passed.
    pub(super) fn new(config: &ClusterConfig) -> io::Result<Ops> {
        let credentials = match (&config.user, &config.group) {
            (Some(user), group) => Some(Credentials::resolve(user, group.as_deref())?),
            (None, Some(group)) => {
                return Err(io::Error::other(format!(
                    "--group {group} needs --user (workers switch both, or neither)"
                )))
            }
            (None, None) => None,
        };
        Ok(Ops {
            credentials,
            reload: Reload::default(),
            upgrade: Upgrade::from_env()?,
            restarts: config
                .max_restarts
                .map(|(max, window)| RestartLimit::new(max, window)),
            max_worker_rss: config.max_worker_rss,
            next_rss_check: None,
            pid_file: config.pid_file.clone(),
            ready: false,
            gave_up: None,
        })
    }

    /// fds a forked worker must close.
    pub(super) fn fds(&self) -> Vec<RawFd> {
        self.upgrade.fds()
    }
}

/// Writes `pid` to `path` atomically (a reader never sees a half-written file).
fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

impl Master {
    /// After the listeners are open: inherited sockets that no `--listen` address claimed
    /// are an error when the addresses were all given up front (they would be served by
    /// no one); with on-demand listens they wait for a worker to ask.
    pub(super) fn check_inherited(&self, declared: bool) -> io::Result<()> {
        if let Some(s) = self.listeners.unclaimed().next().filter(|_| declared) {
            return Err(io::Error::other(format!(
                "inherited socket fd {} ({}) matches no --listen address",
                s.fd, s.local
            )));
        }
        Ok(())
    }

    /// The master runs: write the pid file (an upgrading master writes it when ready).
    pub(super) fn ops_started(&mut self) -> io::Result<()> {
        if !self.ops.upgrade.is_new_master() {
            if let Some(path) = &self.ops.pid_file {
                write_pid_file(path, std::process::id()).map_err(|e| {
                    io::Error::new(e.kind(), format!("pid file {}: {e}", path.display()))
                })?;
            }
        }
        Ok(())
    }

    /// Called after every loop turn.
    pub(super) fn ops_tick(&mut self) {
        let now = Instant::now();
        if !self.ops.ready && self.phase == Phase::Running && self.all_listening() {
            self.ops.ready = true;
            log::info!("master ready: {} worker(s) listening", self.slots.len());
            if self.ops.upgrade.is_new_master() {
                if let Some(path) = &self.ops.pid_file {
                    if let Err(e) = write_pid_file(path, std::process::id()) {
                        log::error!("pid file {}: {e}", path.display());
                    }
                }
                self.report_ready_to_old_master();
            } else {
                systemd::notify("READY=1");
            }
        }
        self.reload_tick(now);
        self.rss_tick(now);
        self.upgrade_tick(now);
    }

    /// The next time [`Master::ops_tick`] has something to do without an event.
    pub(super) fn ops_deadline(&self) -> Option<Instant> {
        [
            self.reload_deadline(),
            self.ops.upgrade.deadline(),
            self.ops.next_rss_check,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Every slot's worker is online and takes connections from every open listener (and
    /// there is one: workers that listen on demand, as Node's do, are not ready before).
    pub(super) fn all_listening(&self) -> bool {
        let any_open = (self.listeners.ids()).any(|id| self.listeners.get(id).socket.is_some());
        any_open
            && self.slots.iter().all(|slot| {
                slot.worker.is_some_and(|key| {
                    self.workers.get(key).is_some_and(|w| {
                        w.state == WorkerState::Online
                            && (!w.listens
                                || self.listeners.ids().all(|id| {
                                    let l = self.listeners.get(id);
                                    l.socket.is_none() || l.subscribers.contains(&key)
                                }))
                    })
                })
            })
    }

    /// A worker was reaped. Returns true when its slot must not be respawned: it was a
    /// replacement that failed (its predecessor keeps the slot), or it cannot run at all.
    pub(super) fn ops_worker_exited(
        &mut self,
        key: usize,
        w: &WorkerProc,
        status: ExitStatus,
    ) -> bool {
        if self.reload_replacement_exited(key, w, status) {
            return true;
        }
        if status == ExitStatus::Code(EXIT_CONFIG) && self.phase == Phase::Running {
            self.give_up(format!(
                "worker {} exited with code {EXIT_CONFIG} (EX_CONFIG): it cannot run with this \
                 configuration (its error is logged above); not respawning",
                w.id
            ));
            return true;
        }
        false
    }

    /// A worker's death scheduled a respawn: count it against `--max-restarts`.
    pub(super) fn ops_restart_scheduled(&mut self, w: &WorkerProc) {
        let Some(limit) = self.ops.restarts.as_mut() else {
            return;
        };
        if limit.record(Instant::now()) {
            let msg = format!(
                "worker {} died: more than {} restarts within {:?} (--max-restarts, \
                 --restart-window); giving up",
                w.id,
                limit.max(),
                limit.window()
            );
            self.give_up(msg);
        }
    }

    /// Stops the cluster for good; [`Master::run`] will return `msg` as its error.
    fn give_up(&mut self, msg: String) {
        log::error!("master: {msg}");
        self.ops.gave_up = Some(msg);
        self.stop();
    }

    /// A graceful stop begins.
    pub(super) fn ops_stopping(&mut self) {
        self.abandon_upgrade("the master is stopping");
        if !self.ops.upgrade.handed_over() {
            systemd::notify("STOPPING=1");
        }
    }

    /// The master is about to return from [`Master::run`] with `result`.
    pub(super) fn ops_exit(
        &mut self,
        result: crate::event::Shutdown,
    ) -> io::Result<crate::event::Shutdown> {
        if let Some(path) = &self.ops.pid_file {
            // Only our own: after an upgrade the file names the new master.
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|s| s.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
        match self.ops.gave_up.take() {
            Some(msg) => Err(io::Error::other(msg)),
            None => Ok(result),
        }
    }

    /// Reload and upgrade state, for `/status`.
    pub fn ops_status(&self) -> OpsStatus {
        OpsStatus {
            reload: self.ops.reload.status(),
            upgrade: self.ops.upgrade.status(),
            recent_restarts: self
                .ops
                .restarts
                .as_ref()
                .map_or(0, |l| l.recent(Instant::now())),
        }
    }
}
