//! The master process: accept, dispatch, hand off, supervise.
//!
//! One thread, one mio `Poll`. A connection's path through the master, file by file:
//!
//! 1. [`accept`]: a listener is readable; the master `accept`s (non-blocking,
//!    close-on-exec), as many as some worker can take, pausing on descriptor exhaustion;
//! 2. [`dispatch`]: the [`Policy`] picks a worker, and the connection is queued on that
//!    worker's [`Link`] (or waits in the master while no worker can take it);
//! 3. [`handoff`]: at the end of the loop turn every link with something queued is flushed:
//!    `sendmsg` with `SCM_RIGHTS`, a burst leaving in a few packets of up to 16 fds.
//!
//! Around that path:
//!
//! * [`messages`]: what workers say (online, listen requests, counter reports, user
//!   messages) and the user's event callback;
//! * [`listeners`]: the listening sockets, keyed as Node keys them, and the grant a listen
//!   request gets;
//! * [`supervisor`]: spawn (through a [`Launch`]), reap, disconnect, respawn with back-off,
//!   kill, and the graceful stop;
//! * [`signals`]: SIGCHLD, SIGTERM/SIGINT, SIGHUP, SIGUSR2, SIGQUIT through a self-pipe;
//! * [`watchdog`]: a worker silent while it has work, or that never starts, is killed and
//!   replaced; [`recycle`]: a worker past `--max-requests` or `--max-worker-age` is
//!   replaced gracefully;
//! * [`ops`] ([`reload`], [`upgrade`], [`systemd`], [`restarts`]): what a service
//!   manager and an operator need; [`admin`]: `/metrics` and `/status` from this same loop.
//!
//! A worker is whatever a [`Launch`] started and a [`Link`] talks to (the seam,
//! [`crate::link`]): herd's own forked worker over a seqpacket socketpair
//! ([`handoff::SeqpacketLink`], started by [`launch::ForkLaunch`]), or an exec'd program
//! (a Node.js app: [`crate::node`]'s link). Accept, dispatch and the policies never look
//! behind that seam.
//!
//! Under a worker-accept policy the master never accepts: it binds, passes the listening
//! socket to each worker with its listen grant, and only supervises.

mod accept;
mod admin;
mod dispatch;
mod handoff;
mod launch;
mod listeners;
mod messages;
pub(crate) mod ops;
mod output;
mod peek;
mod recycle;
mod reload;
mod restarts;
mod signals;
mod supervisor;
mod systemd;
mod upgrade;
mod usage;
mod watchdog;

pub(crate) use launch::ForkLaunch;

use std::io;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::unistd::Pid;
use slab::Slab;

use crate::channel::ListenerId;
use crate::config::ClusterConfig;
use crate::event::{EventCallback, Shutdown};
use crate::link::{Accepted, Launch, Link};
use crate::worker::WorkerId;
use listeners::Listeners;
use supervisor::Slot;

/// What woke the master's loop: every token range the master registers, in one place.
///
/// ```text
/// 0                     the signal pipe
/// 1 ..= 65536           listener i at 1 + i
/// WORKER_BASE - 1       the binary upgrade's ready pipe
/// WORKER_BASE ..        worker key k at WORKER_BASE + k (its link's fd)
/// OUTPUT_BASE ..        output pipe k at OUTPUT_BASE + k (an exec'd worker's stdout, stderr)
/// PEEK_BASE ..          connection k waiting for its PROXY protocol header at PEEK_BASE + k
/// ADMIN_BASE ..         the admin listener and its connections (admin's own sub-range)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Signals,
    Listener(ListenerId),
    ReadyPipe,
    Worker(usize),
    Output(usize),
    Peek(usize),
    Admin(Token),
}

const SIGNALS: Token = Token(0);
/// Listener `i` has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 1;
/// Worker key `k` has token `WORKER_BASE + k`.
const WORKER_BASE: usize = 1 << 20;
/// The binary upgrade's ready pipe.
const READY_PIPE: Token = Token(WORKER_BASE - 1);
/// Output pipe `k` has token `OUTPUT_BASE + k`.
const OUTPUT_BASE: usize = 1 << 32;
/// Connection `k` waiting for its PROXY protocol header has token `PEEK_BASE + k` ([`peek`]).
const PEEK_BASE: usize = 1 << 36;
/// The admin endpoint's tokens start here (see [`admin`]): above every other range.
const ADMIN_BASE: usize = 1 << 40;

impl Wake {
    fn of(token: Token) -> Wake {
        match token.0 {
            0 => Wake::Signals,
            t if t == READY_PIPE.0 => Wake::ReadyPipe,
            t if t >= ADMIN_BASE => Wake::Admin(token),
            t if t >= PEEK_BASE => Wake::Peek(t - PEEK_BASE),
            t if t >= OUTPUT_BASE => Wake::Output(t - OUTPUT_BASE),
            t if t >= WORKER_BASE => Wake::Worker(t - WORKER_BASE),
            t => Wake::Listener((t - LISTENER_BASE) as ListenerId),
        }
    }
}

/// Where a worker is in its life, from the master's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Started; has not said `Online` yet.
    Starting,
    /// Running; receives connections for the listeners it asked for.
    Online,
    /// Asked to drain: receives nothing new, exits when its connections are done.
    Stopping,
    /// Its channel closed: exiting or gone, not yet reaped.
    Disconnected,
}

impl WorkerState {
    /// The name `/status` shows.
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Online => "online",
            WorkerState::Stopping => "stopping",
            WorkerState::Disconnected => "disconnected",
        }
    }
}

/// What the master counts of one worker's connections.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Load {
    /// Connections dispatched to (or accepted by) this worker, not yet reported closed.
    pub open: u64,
    /// Connections dispatched to this worker, or that it reported accepting itself, in all.
    pub connections: u64,
    /// Requests this worker has reported answering, in all.
    pub requests: u64,
    /// Connections the worker confirmed taking (a Node worker's `accepted` replies).
    pub taken: u64,
}

/// The master's record of one worker process.
pub(crate) struct WorkerProc {
    /// The worker's id (1, 2, …; never reused).
    pub id: WorkerId,
    /// Its process id.
    pub pid: Pid,
    /// The slot it runs in.
    pub slot: usize,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it was started.
    pub started: Instant,
    /// The channel to it, with the connections in flight on it.
    pub link: Box<dyn Link>,
    /// Its connections, as the master counts them.
    pub load: Load,
    /// When it was last heard from, for the watchdog ([`watchdog`]).
    pub health: watchdog::Health,
    /// The channel is registered for write readiness (a send found the worker's queue full).
    write_armed: bool,
    /// It leads its own process group (an exec'd program): signal the group.
    group: bool,
    /// It serves the master's listeners (false for `--spawn`'s instances, which bind their
    /// own port: they are ready once online).
    pub listens: bool,
}

impl WorkerProc {
    /// Sends `sig` to the worker (to its process group, if it leads one, so that a shell
    /// wrapper's children get it too).
    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = if self.group {
            nix::sys::signal::killpg(self.pid, sig)
        } else {
            nix::sys::signal::kill(self.pid, sig)
        };
    }

    /// Whether this worker is online with room for another connection under `limit`.
    fn takes_connections(&self, limit: u64) -> bool {
        self.state == WorkerState::Online && self.load.open < limit && !self.link.blocked()
    }
}

/// What the master is doing overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Graceful stop: workers are draining; kill the rest at the deadline.
    Stopping {
        deadline: Instant,
    },
}

/// The master process's state. Built by [`crate::Cluster::run`].
pub struct Master {
    poll: Poll,
    signals: signals::Signals,
    listeners: Listeners,
    workers: Slab<WorkerProc>,
    /// One per `--workers` place; a respawned worker takes its predecessor's slot.
    slots: Vec<Slot>,
    next_id: WorkerId,
    config: ClusterConfig,
    /// How workers are started (forked closure, exec'd program) and linked to: one launch
    /// per group of slots (the cluster's workers; `herd proxy --spawn`'s instances).
    launches: Vec<Box<dyn Launch>>,
    /// The most connections a worker holds: `--max-connections`, and never more than fit
    /// under a worker's open-file limit.
    max_connections: u64,
    on_event: Option<EventCallback>,
    phase: Phase,
    /// Workers were killed rather than drained (the stop is `Forced`).
    forced: bool,
    /// Accepted connections that found no eligible worker (all dead or starting). They are
    /// handed out as soon as a worker can take them.
    waiting: Vec<Accepted>,
    /// Connections peeked at for their PROXY protocol header before dispatch (`ip-hash`
    /// behind a balancer: [`peek`]).
    peeks: Option<peek::Peeks>,
    /// Accepting pauses, warnings ([`accept`]).
    accept: accept::AcceptState,
    /// Workers with something to send; flushed at the end of the loop turn.
    dirty: Vec<usize>,
    /// The metrics endpoint (`--admin`), if asked for.
    admin: Option<admin::Admin>,
    /// When the master started (for `/status`).
    started: Instant,
    /// Worker processes reaped, in all.
    exits: u64,
    /// Reload, upgrade, restart limit, systemd, privileges ([`ops`]).
    ops: ops::Ops,
    /// `--worker-timeout`, `--start-timeout` ([`watchdog`]).
    watchdog: watchdog::Watchdog,
    /// `--max-requests`, `--max-worker-age` ([`recycle`]).
    recycle: recycle::Recycle,
    /// Exec'd workers' output pipes ([`output`]).
    outputs: Slab<crate::output::WorkerOutput>,
    /// Output pipes to read again this turn (they had bytes left after their budget).
    outputs_pending: Vec<usize>,
    /// Where worker output goes (herd's stdout and stderr, or `--log-file`).
    sink: Option<crate::output::LogSink>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("config", &self.config)
            .field("workers", &self.workers.len())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Master {
    /// Sets up the master: the poll, the signal pipe, the pre-bound listeners, the admin
    /// endpoint. Nothing is forked yet.
    pub(crate) fn new(
        config: ClusterConfig,
        on_event: Option<EventCallback>,
        groups: Vec<(Box<dyn Launch>, usize)>,
        sink: Option<crate::output::LogSink>,
    ) -> io::Result<Master> {
        let max_connections = accept::connection_limit(config.max_connections);
        let ops = ops::Ops::new(&config)?;
        let inherited = systemd::inherited_listeners()?;
        let poll = Poll::new()?;
        let signals = signals::Signals::install()?;
        let sfd = signals.fd();
        poll.registry()
            .register(&mut SourceFd(&sfd), SIGNALS, Interest::READABLE)?;
        let mut master = Master {
            poll,
            signals,
            listeners: Listeners::default(),
            workers: Slab::new(),
            slots: (groups.iter().enumerate())
                .flat_map(|(g, (_, n))| (0..(*n).max(1)).map(move |i| Slot::new(g, i)))
                .collect(),
            next_id: 1,
            launches: groups.into_iter().map(|(launch, _)| launch).collect(),
            max_connections,
            on_event,
            phase: Phase::Running,
            forced: false,
            waiting: Vec::new(),
            // Only ip-hash needs the client before dispatch; other policies leave the
            // header to the worker alone.
            peeks: (config.proxy_header_wait)
                .filter(|_| config.policy == crate::policy::Policy::IpHash)
                .map(|wait| peek::Peeks::new(wait, PEEK_BASE)),
            accept: accept::AcceptState::default(),
            dirty: Vec::new(),
            admin: None,
            started: Instant::now(),
            exits: 0,
            ops,
            watchdog: watchdog::Watchdog::new(&config),
            recycle: recycle::Recycle::new(&config),
            config,
            outputs: Slab::new(),
            outputs_pending: Vec::new(),
            sink,
        };
        if let Some(first) = master.ops.upgrade.first_id {
            master.next_id = first;
        }
        master.listeners.set_inherited(inherited);
        // `--listen A --listen A` is two listeners, as two `listen` calls of one worker
        // would be (Node's index rule, see `listeners`).
        let addrs = master.config.listen.clone();
        for (i, addr) in addrs.iter().enumerate() {
            let index = addrs[..i].iter().filter(|a| *a == addr).count() as u32;
            let requested = listeners::resolve(addr)?;
            master.listen(requested, index)?;
        }
        if let Some(addr) = master.config.admin.clone() {
            let admin = admin::Admin::bind(&addr, master.poll.registry(), ADMIN_BASE)?;
            log::info!("admin listening on {}", admin.local_addr());
            master.admin = Some(admin);
        }
        master.check_inherited(!master.config.listen.is_empty())?;
        Ok(master)
    }

    /// The master's loop; returns once every worker is gone after a stop.
    pub fn run(mut self) -> io::Result<Shutdown> {
        log::info!(
            "master pid {} starting {} workers, policy {}",
            std::process::id(),
            self.slots.len(),
            self.config.policy
        );
        self.ops_started()?;
        for slot in 0..self.slots.len() {
            self.spawn(slot)?;
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for event in events.iter() {
                match Wake::of(event.token()) {
                    Wake::Signals => self.on_signals(),
                    Wake::ReadyPipe => self.on_ready_pipe(),
                    Wake::Admin(token) => self.on_admin(token, event),
                    Wake::Worker(key) => {
                        if self.workers.contains(key) {
                            if event.is_writable() {
                                self.dirty.push(key);
                            }
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                self.read_worker(key);
                            }
                        }
                    }
                    Wake::Output(key) => self.read_output(key),
                    Wake::Peek(key) => self.on_peek_ready(key),
                    Wake::Listener(id) => self.listeners.get_mut(id).ready = true,
                }
            }
            self.read_pending_outputs();
            self.accept_ready();
            self.flush();
            self.timers();
            self.ops_tick();
            self.flush();
            if let Phase::Stopping { .. } = self.phase {
                if self.workers.is_empty() {
                    log::info!("master: all workers gone, exiting");
                    self.flush_output();
                    let how = if self.forced {
                        Shutdown::Forced
                    } else {
                        Shutdown::Graceful
                    };
                    return self.ops_exit(how);
                }
            }
        }
    }

    /// How long the loop may sleep: until the earliest timer, or not at all when an accept
    /// burst stopped short.
    fn next_timeout(&self) -> Option<Duration> {
        if self.accept_again_now() || !self.outputs_pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut deadlines: Vec<Instant> = self.slots.iter().filter_map(|s| s.respawn_at).collect();
        deadlines.extend(self.accept.paused_until);
        deadlines.extend(
            self.workers
                .iter()
                .filter_map(|(_, w)| w.link.next_deadline()),
        );
        deadlines.extend(self.admin.as_ref().and_then(|a| a.next_deadline()));
        deadlines.extend(self.peeks.as_ref().and_then(|p| p.next_deadline()));
        deadlines.extend(self.ops_deadline());
        deadlines.extend(self.watchdog_deadline());
        deadlines.extend(self.recycle_deadline());
        if self.sink.as_ref().is_some_and(|s| s.pending()) {
            // Lines wait for herd's own output: try again soon.
            deadlines.push(Instant::now() + Duration::from_millis(50));
        }
        if let Phase::Stopping { deadline } = self.phase {
            deadlines.push(deadline);
        }
        let now = Instant::now();
        deadlines
            .into_iter()
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Respawns due, accept pause over, admin timeouts, the watchdog, recycling, shutdown
    /// deadline.
    fn timers(&mut self) {
        let now = Instant::now();
        self.accept.unpause(now);
        // A link that was passed by for a moment (a worker that gave a connection back)
        // may take connections again.
        let mut due = Vec::new();
        for (key, w) in self.workers.iter_mut() {
            if w.link.next_deadline().is_some_and(|t| t <= now) {
                let mut said = Vec::new();
                w.link.on_deadline(now, &mut said);
                due.push((key, said));
            }
        }
        if !due.is_empty() {
            for (key, said) in due {
                for msg in said {
                    self.on_message(key, msg);
                }
            }
            self.room_freed();
        }
        self.admin_tick(now);
        self.peek_tick(now);
        self.output_tick(now);
        self.watchdog_tick(now);
        self.recycle_tick(now);
        self.respawn_due(now);
        if let Phase::Stopping { deadline } = self.phase {
            if now >= deadline && !self.forced {
                log::warn!(
                    "shutdown timeout ({:?}) reached: killing {} worker(s)",
                    self.config.shutdown_timeout,
                    self.workers.len()
                );
                self.kill_all();
            }
        }
    }

    /// `now + d`, for deadlines: durations are clamped to [`crate::config::MAX_TIMEOUT`]
    /// where they are set, so this cannot overflow; saturate anyway rather than panic.
    fn deadline(now: Instant, d: Duration) -> Instant {
        now.checked_add(d)
            .unwrap_or_else(|| now + crate::config::MAX_TIMEOUT)
    }
}

/// Whether a rate-limited warning last given at `last` may be given again at `now`; if so,
/// records `now`.
fn due(last: &mut Option<Instant>, now: Instant, interval: Duration) -> bool {
    if last.is_some_and(|t| now.duration_since(t) < interval) {
        return false;
    }
    *last = Some(now);
    true
}
