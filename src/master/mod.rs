//! The master process: accept, dispatch, supervise.
//!
//! One thread, one mio `Poll`, three kinds of event source:
//!
//! * **listeners** ([`listeners`]): on readiness the master `accept`s (non-blocking,
//!   close-on-exec), picks a worker by the [`Policy`] and queues the connection on that
//!   worker's [`handoff::Link`]. At the end of the loop turn every link is flushed, so a burst
//!   of accepts leaves in a few packets of up to 16 fds each;
//! * **worker channels**: online and listen requests, counters, user messages;
//! * **signals** ([`signals`]): SIGCHLD reaps, recovers the connections a dead worker never
//!   read ([`handoff`]) and schedules respawns ([`supervisor`]),
//!   SIGTERM/SIGINT start a graceful stop, a second SIGINT stops at once.
//!   SIGHUP starts a rolling reload and SIGUSR2 a binary upgrade (`ops`, `reload`,
//!   `upgrade`).
//!
//! A graceful stop accepts what is already waiting in the kernel's queue, closes the
//! listeners, sends every worker `Drain` behind the connections already dispatched to it, and
//! waits; workers still alive at `shutdown_timeout` are killed.
//!
//! Under a worker-accept policy the master never accepts: it binds, passes the listening
//! socket to each worker with its listen reply, and only supervises. With `--admin`, the
//! same loop serves the metrics endpoint ([`admin`]).

mod admin;
mod dispatch;
mod handoff;
mod listeners;
mod ops;
mod reload;
mod restarts;
mod signals;
mod supervisor;
mod systemd;
mod upgrade;

pub use handoff::{Accepted, Link};
pub use ops::{OpsOptions, OpsStatus};
pub use reload::ReloadStatus;
pub use supervisor::{thread_count, BACKOFF_MAX, BACKOFF_START, STABLE_AFTER};
pub use upgrade::UpgradeStatus;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use slab::Slab;

use crate::channel::{Channel, ListenerId, Received, ToMaster, ToWorker, MAX_MESSAGE};
use crate::cluster::{Cluster, Control, Event, EventCallback, Shutdown, WorkerSetup};
use crate::policy::Policy;
use crate::worker::{self, ChildStart, WorkerId};
use listeners::Listeners;
use supervisor::Slot;

const SIGNALS: Token = Token(0);
/// The admin listener, and admin connection `k` at `ADMIN_BASE + 1 + k` (k < 64).
const ADMIN_BASE: usize = 1 << 19;
/// Listener `i` has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 1;
/// Worker key `k` has token `WORKER_BASE + k`.
const WORKER_BASE: usize = 1 << 20;
/// Accepts per listener per loop turn, so one busy listener cannot starve the rest.
const ACCEPT_BURST: usize = 128;
/// After `EMFILE`/`ENFILE`, how long accepting pauses before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How often the fd-exhaustion warning may repeat.
const WARN_INTERVAL: Duration = Duration::from_secs(5);

/// Where a worker is in its life, from the master's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Forked; has not said `Online` yet.
    Starting,
    /// Running; receives connections for the listeners it asked for.
    Online,
    /// Asked to drain: receives nothing new, exits when its connections are done.
    Stopping,
    /// Its channel closed: exiting or gone, not yet reaped.
    Disconnected,
}

/// The master's record of one worker process.
pub struct WorkerProc {
    /// The worker's id (1, 2, …; never reused).
    pub id: WorkerId,
    /// Its process id.
    pub pid: Pid,
    /// The slot it runs in.
    pub slot: usize,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it was forked.
    pub started: Instant,
    /// The channel, with the connections in flight on it.
    pub link: Link,
    /// The channel is registered for write readiness (a send found the worker's queue full).
    write_armed: bool,
}

impl WorkerProc {
    /// Whether this worker is online with room for another connection under `limit`.
    fn takes_connections(&self, limit: u64) -> bool {
        self.state == WorkerState::Online && self.link.has_room(limit)
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

/// The master process's state. Built by [`Cluster::run`].
pub struct Master {
    poll: Poll,
    signals: signals::Signals,
    listeners: Listeners,
    workers: Slab<WorkerProc>,
    slots: Vec<Slot>,
    next_id: WorkerId,
    policy: Policy,
    shutdown_timeout: Duration,
    handoff_batch: usize,
    /// The most connections a worker holds: `--max-connections`, and never more than fit
    /// under a worker's open-file limit.
    max_connections: u64,
    on_event: Option<EventCallback>,
    setup: WorkerSetup,
    phase: Phase,
    forced: bool,
    /// Accepted connections that found no eligible worker (all dead or starting). They are
    /// handed out as soon as a worker can take them.
    waiting: Vec<Accepted>,
    /// Accepting is paused until then (descriptor exhaustion).
    accept_paused_until: Option<Instant>,
    last_fd_warning: Option<Instant>,
    last_full_warning: Option<Instant>,
    /// Workers with something to send; flushed at the end of the loop turn.
    dirty: Vec<usize>,
    /// The metrics endpoint (`--admin`), if asked for.
    admin: Option<admin::Admin>,
    /// When the master started (for `/status`).
    started: Instant,
    /// Worker processes reaped, in all.
    exits: u64,
    /// Receive buffer for worker packets (the largest is a 64 KiB user message).
    recv_buf: Vec<u8>,
    /// Reload, upgrade, restart limit, systemd, privileges ([`ops`]).
    ops: ops::Ops,
}

impl Master {
    /// Sets up the master: the poll, the signal pipe, the pre-bound listeners.
    pub fn new(cluster: Cluster) -> io::Result<Master> {
        raise_fd_limit();
        let ops = ops::Ops::new(cluster.ops)?;
        let inherited = systemd::inherited_listeners()?;
        // Workers inherit the (raised) limit, so the master can compute theirs.
        let fd_capacity = worker::connection_capacity();
        let max_connections = cluster
            .max_connections
            .unwrap_or(usize::MAX)
            .min(fd_capacity);
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
            slots: (0..cluster.workers).map(|_| Slot::default()).collect(),
            next_id: 1,
            policy: cluster.policy,
            shutdown_timeout: cluster.shutdown_timeout,
            handoff_batch: cluster.handoff_batch,
            max_connections: max_connections as u64,
            on_event: cluster.on_event,
            setup: cluster
                .setup
                .unwrap_or_else(|| Box::new(|_w: &mut worker::Worker| Ok(()))),
            phase: Phase::Running,
            forced: false,
            waiting: Vec::new(),
            accept_paused_until: None,
            last_fd_warning: None,
            last_full_warning: None,
            dirty: Vec::new(),
            admin: None,
            started: Instant::now(),
            exits: 0,
            recv_buf: vec![0; MAX_MESSAGE + 64],
            ops,
        };
        if let Some(first) = master.ops.upgrade.first_id {
            master.next_id = first;
        }
        master.listeners.set_inherited(inherited);
        for addr in &cluster.listen {
            master.listen(addr)?;
        }
        if let Some(addr) = &cluster.admin {
            let admin = admin::Admin::bind(addr, master.poll.registry(), Token(ADMIN_BASE))?;
            log::info!("admin listening on {}", admin.local_addr());
            master.admin = Some(admin);
        }
        master.check_inherited(!cluster.listen.is_empty())?;
        Ok(master)
    }

    /// Binds (or finds) the listener for `addr` and registers it with the poll.
    fn listen(&mut self, addr: &str) -> io::Result<ListenerId> {
        let (id, new) = self.listeners.get_or_bind(addr, self.policy.acceptance())?;
        if new {
            let l = self.listeners.get_mut(id);
            let socket = l.socket.as_mut().expect("a new listener is open");
            // Under a worker-accept policy the workers accept; the master must not even
            // watch the socket.
            if !self.policy.worker_accepts() {
                self.poll.registry().register(
                    socket,
                    Token(LISTENER_BASE + id as usize),
                    Interest::READABLE,
                )?;
            }
            log::info!("master listening on {}", l.local);
        }
        Ok(id)
    }

    /// The master's loop; returns once every worker is gone after a stop.
    pub fn run(mut self) -> io::Result<Shutdown> {
        log::info!(
            "master pid {} starting {} workers, policy {}",
            std::process::id(),
            self.slots.len(),
            self.policy
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
                match event.token() {
                    SIGNALS => self.on_signals()?,
                    upgrade::READY_PIPE => self.on_ready_pipe(),
                    Token(t) if (ADMIN_BASE..=ADMIN_BASE + admin::MAX_CONNECTIONS).contains(&t) => {
                        let snapshot = self.snapshot();
                        if let Some(admin) = self.admin.as_mut() {
                            admin.ready(self.poll.registry(), Token(t), &snapshot);
                        }
                    }
                    Token(t) if t >= WORKER_BASE => {
                        let key = t - WORKER_BASE;
                        if self.workers.contains(key) {
                            if event.is_writable() {
                                self.dirty.push(key);
                            }
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                self.read_worker(key);
                            }
                        }
                    }
                    Token(t) => {
                        let id = (t - LISTENER_BASE) as ListenerId;
                        self.listeners.get_mut(id).ready = true;
                    }
                }
            }
            self.accept_ready();
            self.flush();
            self.timers()?;
            self.ops_tick();
            self.flush();
            if let Phase::Stopping { .. } = self.phase {
                if self.workers.is_empty() {
                    log::info!("master: all workers gone, exiting");
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

    fn next_timeout(&self) -> Option<Duration> {
        // Accept again at once only where a burst stopped short and a worker can take more;
        // a listener nobody can take from waits for its next readiness edge.
        let more = |id| self.listeners.get(id).ready && self.has_taker(id);
        if self.listeners.ids().any(more) && self.accept_paused_until.is_none() {
            return Some(Duration::ZERO);
        }
        let mut deadlines: Vec<Instant> = self.slots.iter().filter_map(|s| s.respawn_at).collect();
        deadlines.extend(self.accept_paused_until);
        deadlines.extend(self.admin.as_ref().and_then(|a| a.next_deadline()));
        deadlines.extend(self.ops_deadline());
        if let Phase::Stopping { deadline } = self.phase {
            deadlines.push(deadline);
        }
        let now = Instant::now();
        deadlines
            .into_iter()
            .min()
            .map(|d| d.saturating_duration_since(now))
    }

    /// Respawns due, accept pause over, shutdown deadline.
    fn timers(&mut self) -> io::Result<()> {
        let now = Instant::now();
        if matches!(self.accept_paused_until, Some(t) if t <= now) {
            self.accept_paused_until = None;
        }
        if let Some(admin) = self.admin.as_mut() {
            admin.expire(self.poll.registry(), now);
        }
        if self.phase == Phase::Running {
            for slot in 0..self.slots.len() {
                if matches!(self.slots[slot].respawn_at, Some(t) if t <= now) {
                    self.slots[slot].respawn_at = None;
                    if let Err(e) = self.spawn(slot) {
                        log::error!("cannot fork a worker: {e}");
                        self.slots[slot].schedule_respawn(now, Duration::ZERO);
                    }
                }
            }
        }
        if let Phase::Stopping { deadline } = self.phase {
            if now >= deadline && !self.forced {
                log::warn!(
                    "shutdown timeout ({:?}) reached: killing {} worker(s)",
                    self.shutdown_timeout,
                    self.workers.len()
                );
                self.kill_all();
            }
        }
        Ok(())
    }

    // ---- supervision -------------------------------------------------------------------

    /// Forks a worker into `slot`; returns its key.
    fn spawn(&mut self, slot: usize) -> io::Result<usize> {
        let id = self.next_id;
        self.next_id += 1;
        let (master_end, worker_end) = Channel::pair()?;
        // Everything of the master's that the child must not keep.
        // The child gets a dup of its end; the original stays with the master (see
        // `handoff`: it is how a dead worker's unread connections are recovered).
        let child_end = worker_end.try_clone()?;
        let mut close: Vec<RawFd> = vec![
            self.poll.as_raw_fd(),
            master_end.raw_fd(),
            worker_end.raw_fd(),
        ];
        close.extend(self.signals.fds());
        close.extend(self.listeners.fds());
        close.extend(self.workers.iter().flat_map(|(_, w)| w.link.fds()));
        close.extend(self.admin.iter().flat_map(|a| a.fds()));
        close.extend(self.ops.fds());
        let credentials = self.ops.credentials.as_ref();
        let master_pid = nix::unistd::getpid();
        let setup = &mut self.setup;
        // INVARIANT: the master is single-threaded here (fork_worker checks it). The child
        // closes the master's fds, builds its own Poll and never returns.
        let pid = supervisor::fork_worker(move || {
            worker::run_child(ChildStart {
                id,
                channel: child_end,
                master_pid,
                close: &close,
                setup: &mut **setup,
                credentials,
            })
        })?;
        // `child_end` moved into the closure and was dropped (closed) here in the parent.
        let key = self.workers.vacant_key();
        let fd = master_end.raw_fd();
        self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(WORKER_BASE + key),
            Interest::READABLE,
        )?;
        let mut link = Link::new(master_end, worker_end, self.handoff_batch);
        // Node's SCHED_RR: a worker is free again only once it acknowledged its connection.
        link.set_want_acks(self.policy == Policy::Node);
        // least-connections and p2c steer by open counts: a count corrected only every
        // 50 ms makes a stalled worker (which reports nothing) look like the least loaded.
        link.set_eager_reports(matches!(
            self.policy,
            Policy::LeastConnections | Policy::P2c
        ));
        self.workers.insert(WorkerProc {
            id,
            pid,
            slot,
            state: WorkerState::Starting,
            started: Instant::now(),
            link,
            write_armed: false,
        });
        self.slots[slot].worker = Some(key);
        log::info!("fork: worker {id} (pid {pid})");
        self.emit(&Event::Fork {
            worker: id,
            pid: pid.as_raw(),
        });
        Ok(key)
    }

    fn on_signals(&mut self) -> io::Result<()> {
        for sig in self.signals.take() {
            match sig {
                Signal::SIGCHLD => self.reap(),
                Signal::SIGTERM | Signal::SIGINT => {
                    if self.phase == Phase::Running {
                        log::info!("master: {sig} received, stopping gracefully");
                        self.stop();
                    } else if sig == Signal::SIGINT {
                        log::warn!("master: second SIGINT, stopping now");
                        self.kill_all();
                    }
                }
                Signal::SIGQUIT => {
                    log::warn!("master: SIGQUIT, stopping now");
                    self.stop();
                    self.kill_all();
                }
                Signal::SIGHUP => self.request_reload("SIGHUP"),
                Signal::SIGUSR2 => self.start_upgrade(),
                other => log::info!("master: {other} ignored"),
            }
        }
        Ok(())
    }

    /// Collects exited workers, hands back their unacknowledged connections, schedules
    /// respawns.
    fn reap(&mut self) {
        for (pid, status) in supervisor::reap() {
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

    /// The worker is gone: stop dispatching to it and give the connections it never read
    /// to the others.
    fn disconnect(&mut self, key: usize) {
        let w = &mut self.workers[key];
        if w.state == WorkerState::Disconnected {
            return;
        }
        w.state = WorkerState::Disconnected;
        let id = w.id;
        let fd = w.link.channel.raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        let back = w.link.recover();
        self.listeners.unsubscribe(key);
        if !back.is_empty() {
            log::info!(
                "worker {id}: {} connection(s) it never read handed to other workers",
                back.len()
            );
        }
        self.emit(&Event::Disconnect { worker: id });
        for conn in back {
            self.dispatch(conn);
        }
    }

    fn kill_all(&mut self) {
        self.forced = true;
        for (_, w) in &self.workers {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
    }

    /// Graceful stop: take what the kernel has queued, close the listeners, drain workers.
    fn stop(&mut self) {
        self.phase = Phase::Stopping {
            deadline: Instant::now() + self.shutdown_timeout,
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

    // ---- worker channels ----------------------------------------------------------------

    /// Reads every packet the worker sent.
    fn read_worker(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.recv_buf);
        self.read_worker_into(key, &mut buf);
        self.recv_buf = buf;
    }

    fn read_worker_into(&mut self, key: usize, buf: &mut [u8]) {
        loop {
            let Some(w) = self.workers.get_mut(key) else {
                return;
            };
            if w.state == WorkerState::Disconnected {
                return;
            }
            let msg = match w.link.channel.recv(buf) {
                // Workers send no fds; any that came would be closed by dropping them here.
                Ok(Received::Packet(n, _)) | Ok(Received::Truncated(n)) => {
                    ToMaster::decode(&buf[..n])
                }
                Ok(Received::WouldBlock) => return,
                Ok(Received::Closed) | Err(_) => {
                    self.disconnect(key);
                    return;
                }
            };
            match msg {
                Ok(msg) => self.on_message(key, msg),
                Err(e) => {
                    log::error!("worker {}: {e}; disconnecting it", w.id);
                    let _ = kill(w.pid, Signal::SIGKILL);
                    self.disconnect(key);
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, key: usize, msg: ToMaster) {
        let w = &mut self.workers[key];
        let id = w.id;
        match msg {
            ToMaster::Online => {
                if w.state == WorkerState::Starting {
                    w.state = if self.phase == Phase::Running {
                        WorkerState::Online
                    } else {
                        WorkerState::Stopping
                    };
                }
                log::info!("worker {id} is online");
                self.emit(&Event::Online { worker: id });
            }
            ToMaster::Listen { req, addr } => {
                let accept = self.policy.acceptance();
                // The socket the worker will accept from, when it accepts for itself.
                let granted = self
                    .listen(&addr)
                    .and_then(|l| Ok((l, self.listeners.worker_socket(l, accept)?)));
                let (reply, socket) = match granted {
                    Ok((l, socket)) => {
                        let local = self.listeners.get(l).local;
                        (
                            ToWorker::ListenOk {
                                req,
                                listener: l,
                                accept,
                                addr: local.to_string(),
                            },
                            Some((l, local, socket)),
                        )
                    }
                    Err(e) => {
                        log::warn!("worker {id}: listen {addr}: {e}");
                        let error = e.to_string();
                        (ToWorker::ListenErr { req, error }, None)
                    }
                };
                let fds: Vec<RawFd> = socket
                    .iter()
                    .filter_map(|(_, _, s)| s.as_ref().map(|s| s.as_raw_fd()))
                    .collect();
                let w = &mut self.workers[key];
                // The master closes its copy of the socket it grants once the packet holds one.
                if let Err(e) = w.link.channel.send_with_fds(|b| reply.encode(b), &fds) {
                    log::warn!("worker {id}: cannot send the listen reply: {e}");
                } else if let Some((l, local, own)) = socket {
                    // Closed before the log line below, which tests take as the moment the
                    // master's fds are settled.
                    drop(own);
                    let listener = self.listeners.get_mut(l);
                    if !listener.subscribers.contains(&key) {
                        listener.subscribers.push(key);
                    }
                    // Connections may be waiting in the kernel's queue for a first worker
                    // (when the master accepts; else `ready` would spin the loop for nothing).
                    listener.ready = !self.policy.worker_accepts();
                    log::info!("worker {id} listening on {local}");
                    self.emit(&Event::Listening {
                        worker: id,
                        addr: local,
                    });
                    self.node_subscribed(key, l);
                }
                self.hand_out_waiting();
            }
            ToMaster::Ack {
                seq,
                closed,
                requests,
                accepted,
            } => {
                w.link.on_ack(seq, closed, requests, accepted);
                self.node_acknowledged(key);
                // Room freed: connections held for want of a worker go first.
                if closed > 0 && !self.waiting.is_empty() {
                    self.hand_out_waiting();
                }
            }
            ToMaster::Message(payload) => self.emit(&Event::Message {
                worker: id,
                payload: &payload,
            }),
        }
    }

    // ---- accept and dispatch ----------------------------------------------------------

    fn accept_ready(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        if !self.waiting.is_empty() {
            self.hand_out_waiting();
        }
        for id in self.listeners.ids().collect::<Vec<_>>() {
            if self.listeners.get(id).ready {
                self.accept(id, ACCEPT_BURST);
            }
        }
    }

    /// Accepts up to `max` connections from listener `id` and dispatches them.
    fn accept(&mut self, id: ListenerId, max: usize) {
        if self.policy.worker_accepts() {
            return;
        }
        // With no worker to take them, connections wait in the kernel's accept queue (its
        // backlog) rather than in the master: accepting them would only hold their fds.
        for _ in 0..max {
            // Checked for every connection: workers fill up during a burst.
            if !self.has_taker(id) {
                self.warn_all_full(id);
                return;
            }
            let l = self.listeners.get_mut(id);
            let Some(socket) = l.socket.as_ref() else {
                return;
            };
            match socket.accept() {
                Ok((stream, _peer)) => {
                    // mio's accept uses accept4(SOCK_NONBLOCK | SOCK_CLOEXEC).
                    // SAFETY: into_raw_fd transfers sole ownership of a fresh, valid socket fd.
                    let stream = unsafe {
                        use std::os::fd::{FromRawFd, IntoRawFd};
                        std::net::TcpStream::from_raw_fd(stream.into_raw_fd())
                    };
                    self.dispatch(Accepted {
                        stream,
                        listener: id,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.ready = false;
                    return;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                    | Some(libc::ENOMEM) => {
                        // Out of descriptors: the connection stays in the kernel's queue.
                        // Spinning on accept would burn a CPU; pause, warn once in a while.
                        let now = Instant::now();
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                        if due(&mut self.last_fd_warning, now) {
                            log::warn!("master: accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                        }
                        return;
                    }
                    // The client gave up between the kernel's accept and ours, or a transient
                    // network error: not the listener's fault, carry on.
                    _ => continue,
                },
            }
        }
    }

    /// Whether any worker could take a connection from listener `id` now.
    fn has_taker(&self, id: ListenerId) -> bool {
        self.listeners
            .get(id)
            .subscribers
            .iter()
            .any(|&k| self.takes_connections(k))
    }

    /// Whether worker `key` is online with room for another connection.
    fn takes_connections(&self, key: usize) -> bool {
        self.workers
            .get(key)
            .is_some_and(|w| w.takes_connections(self.max_connections))
    }

    /// Every worker of a listener is full (or none is online): says so once per interval
    /// when it is because of the connection limit.
    fn warn_all_full(&mut self, id: ListenerId) {
        let subscribers = &self.listeners.get(id).subscribers;
        let online = subscribers.iter().any(|&k| {
            self.workers
                .get(k)
                .is_some_and(|w| w.state == WorkerState::Online)
        });
        let now = Instant::now();
        if online && due(&mut self.last_full_warning, now) {
            log::warn!(
                "master: every worker is at its limit of {} connections or not keeping up; \
                 new connections wait in the backlog",
                self.max_connections
            );
        }
    }

    /// Sends what every dirty link has queued.
    fn flush(&mut self) {
        while let Some(key) = self.dirty.pop() {
            let Some(w) = self.workers.get_mut(key) else {
                continue;
            };
            if w.state == WorkerState::Disconnected || !w.link.has_unsent() {
                continue;
            }
            match w.link.flush() {
                Ok(all_sent) => {
                    // Write interest only while something waits: registered permanently, the
                    // channel would wake the master each time the worker reads a packet
                    // (the kernel signals write space on every read of a unix socket).
                    if all_sent == w.write_armed {
                        w.write_armed = !all_sent;
                        let interest = if all_sent {
                            Interest::READABLE
                        } else {
                            Interest::READABLE | Interest::WRITABLE
                        };
                        let fd = w.link.channel.raw_fd();
                        if let Err(e) = self.poll.registry().reregister(
                            &mut SourceFd(&fd),
                            Token(WORKER_BASE + key),
                            interest,
                        ) {
                            log::error!("worker {}: reregister: {e}", w.id);
                        }
                    }
                }
                Err(e) => {
                    log::debug!("worker {}: channel: {e}", w.id);
                    self.disconnect(key);
                }
            }
        }
    }

    // ---- callbacks --------------------------------------------------------------------

    /// Runs the user's event callback, then carries out what it asked for.
    fn emit(&mut self, event: &Event<'_>) {
        let Some(cb) = self.on_event.as_mut() else {
            return;
        };
        let mut control = Control {
            workers: self
                .workers
                .iter()
                .filter(|(_, w)| w.state != WorkerState::Disconnected)
                .map(|(_, w)| w.id)
                .collect(),
            ..Control::default()
        };
        cb(&mut control, event);
        for (to, msg) in control.outgoing {
            if msg.len() > MAX_MESSAGE {
                log::error!(
                    "message of {} bytes not sent: over the {MAX_MESSAGE}-byte limit",
                    msg.len()
                );
                continue;
            }
            for (key, w) in self.workers.iter_mut() {
                if w.state != WorkerState::Disconnected && to.map_or(true, |id| id == w.id) {
                    w.link.queue_message(msg.clone());
                    self.dirty.push(key);
                }
            }
        }
        if control.reload {
            self.request_reload("Control::reload");
        }
        if control.shutdown && self.phase == Phase::Running {
            self.stop();
        }
    }
}

/// Whether a rate-limited warning last given at `last` may be given again at `now`; if so,
/// records `now`.
fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|t| now.duration_since(t) < WARN_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime does): every
/// connection in flight costs the master one fd and a worker one, and the usual soft default
/// of 1024 is far below what a server needs. Workers inherit the raised limit.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                Ok(()) => log::debug!("open-file limit raised from {soft} to {hard}"),
                Err(e) => log::debug!("cannot raise the open-file limit: {e}"),
            }
        }
    }
}
