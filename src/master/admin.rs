//! The admin endpoint (`--admin ADDR`): per-worker metrics, served by the master itself.
//!
//! It lives in the master's mio loop like everything else there: the master must stay
//! single-threaded to fork safely, so no server thread. Its connections are served by the
//! workers' own HTTP connection code ([`HttpConnections`]: the same sans-IO session, the same
//! timeouts, backpressure and lingering close), with a handler that looks at the master only
//! when a request asks for its state. Two resources:
//!
//! * `GET /metrics`: Prometheus text format (version 0.0.4);
//! * `GET /status`: JSON: policy, uptime, and per worker its id, pid, state and counters,
//!   how long ago the master last heard from it, what its process tree uses (resident
//!   memory, CPU seconds: [`super::usage`]) and how often its slot was restarted; the
//!   watchdog's kills and the recycles.
//!
//! The counters are the master's [`super::Link`] counters: connections it handed over (or
//! that the worker reported accepting, under a worker-accept policy), requests and closes
//! the workers report in their batched acknowledgements (every ≤ 50 ms). A worker's series
//! disappears when it exits; `herd_worker_exits_total` counts exits.
//!
//! At most [`MAX_CONNECTIONS`] admin connections are open at once (more are closed on
//! arrival), and the usual [`Timeouts`] close slow or idle ones, so a misbehaving scraper
//! cannot take the master's descriptors.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use super::usage::{ProcTable, Usage};
use super::{Master, WorkerState};
use crate::http::{DateCache, Handler, Limits, Request, Response, Timeouts};
use crate::node::RawJson;
use crate::policy::Policy;
use crate::worker::WorkerId;
use crate::worker::{Context, Counters, HttpConnections};

/// The most admin connections open at once.
pub const MAX_CONNECTIONS: usize = 64;

/// What the endpoint reports: the master's state at the moment of the request.
#[derive(Debug, Clone)]
pub struct Snapshot {
    policy: Policy,
    uptime: Duration,
    queued: usize,
    exits: u64,
    workers: Vec<WorkerRow>,
    /// Reload, upgrade and restart state.
    ops: serde_json::Value,
    /// Workers killed by the watchdog: silent (`--worker-timeout`), not started
    /// (`--start-timeout`); workers recycled (`--max-requests`, `--max-worker-age`).
    kills: u64,
    start_kills: u64,
    recycled: u64,
}

/// A per-worker metric: name, type, help text, and its value for one worker.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerRow) -> f64,
);

#[derive(Debug, Clone)]
struct WorkerRow {
    id: u32,
    pid: i32,
    state: &'static str,
    connections: u64,
    requests: u64,
    open: u64,
    /// Connections the worker confirmed taking (Node workers' `accepted` replies).
    accepted: u64,
    /// Since the master last heard from it (the watchdog's measure).
    silent: Duration,
    /// What its process tree uses (`None`: already gone from `/proc`).
    usage: Option<Usage>,
    /// Workers of its slot that died before it and were respawned.
    restarts: u64,
}

impl Master {
    /// The state the admin endpoint reports.
    pub(super) fn snapshot(&self) -> Snapshot {
        let procs = ProcTable::read();
        let mut workers: Vec<WorkerRow> = self
            .workers
            .iter()
            .map(|(_, w)| WorkerRow {
                id: w.id,
                pid: w.pid.as_raw(),
                state: w.state.name(),
                connections: w.load.connections,
                requests: w.load.requests,
                open: w.load.open,
                accepted: w.load.taken,
                silent: w.health.silence(Instant::now()),
                usage: procs.tree_usage(w.pid.as_raw()),
                restarts: self.slots[w.slot].restarts,
            })
            .collect();
        workers.sort_by_key(|w| w.id);
        Snapshot {
            policy: self.config.policy,
            uptime: self.started.elapsed(),
            queued: self.queued_connections(),
            exits: self.exits,
            workers,
            ops: self.ops_status().to_json(),
            kills: self.watchdog.kills,
            start_kills: self.watchdog.start_kills,
            recycled: self.recycle.recycled,
        }
    }
}

impl Snapshot {
    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let per_worker: [Series; 7] = [
            (
                "herd_worker_connections_total",
                "counter",
                "Connections the worker took (handed over by the master, or accepted itself).",
                |w| w.connections as f64,
            ),
            (
                "herd_worker_requests_total",
                "counter",
                "Requests the worker answered.",
                |w| w.requests as f64,
            ),
            (
                "herd_worker_accepted_connections_total",
                "counter",
                "Connections the worker confirmed taking (a Node worker's accepted replies; 0 \
                 for herd's own workers, which need not confirm).",
                |w| w.accepted as f64,
            ),
            (
                "herd_worker_open_connections",
                "gauge",
                "Connections the worker holds open.",
                |w| w.open as f64,
            ),
            (
                "herd_worker_resident_memory_bytes",
                "gauge",
                "Resident memory of the worker's process tree (itself and its descendants, \
                 summed: what --max-worker-rss limits).",
                |w| w.usage.map_or(0.0, |u| u.rss_bytes as f64),
            ),
            (
                "herd_worker_cpu_seconds_total",
                "counter",
                "CPU time (user + system) of the worker's process tree, reaped children \
                 included.",
                |w| w.usage.map_or(0.0, |u| u.cpu.as_secs_f64()),
            ),
            (
                "herd_worker_slot_restarts",
                "gauge",
                "Workers of this worker's slot that died before it and were respawned.",
                |w| w.restarts as f64,
            ),
        ];
        // Prometheus's "info" idiom: what is not a number rides on labels of a constant 1.
        let _ = writeln!(
            out,
            "# HELP herd_worker_info The worker's process id and state.\n\
             # TYPE herd_worker_info gauge"
        );
        for w in &self.workers {
            let _ = writeln!(
                out,
                "herd_worker_info{{worker=\"{}\",pid=\"{}\",state=\"{}\"}} 1",
                w.id, w.pid, w.state
            );
        }
        for (name, kind, help, value) in per_worker {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for w in &self.workers {
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.id, value(w));
            }
        }
        let name = "herd_worker_heartbeat_age_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds since the master last heard from the worker (the \
             watchdog's measure: --worker-timeout).\n# TYPE {name} gauge"
        );
        for w in &self.workers {
            let age = w.silent.as_secs_f64();
            let _ = writeln!(out, "{name}{{worker=\"{}\"}} {age:.3}", w.id);
        }
        let _ = writeln!(
            out,
            "# HELP herd_watchdog_kills_total Workers killed for silence while they had work \
             (--worker-timeout).\n# TYPE herd_watchdog_kills_total counter\n\
             herd_watchdog_kills_total {}\n\
             # HELP herd_watchdog_start_kills_total Workers killed for not starting in time \
             (--start-timeout).\n# TYPE herd_watchdog_start_kills_total counter\n\
             herd_watchdog_start_kills_total {}\n\
             # HELP herd_worker_recycles_total Workers replaced for their requests or age \
             (--max-requests, --max-worker-age).\n# TYPE herd_worker_recycles_total counter\n\
             herd_worker_recycles_total {}",
            self.kills, self.start_kills, self.recycled
        );
        let _ = writeln!(
            out,
            "# HELP herd_worker_exits_total Worker processes that exited.\n\
             # TYPE herd_worker_exits_total counter\n\
             herd_worker_exits_total {}\n\
             # HELP herd_master_queued_connections Connections accepted by the master, not yet \
             sent to a worker.\n\
             # TYPE herd_master_queued_connections gauge\n\
             herd_master_queued_connections {}\n\
             # HELP herd_uptime_seconds Seconds since the master started.\n\
             # TYPE herd_uptime_seconds gauge\n\
             herd_uptime_seconds {:.3}",
            self.exits,
            self.queued,
            self.uptime.as_secs_f64()
        );
        out
    }

    /// The `/status` JSON document.
    pub fn status(&self) -> String {
        let workers: Vec<serde_json::Value> = (self.workers.iter())
            .map(|w| {
                serde_json::json!({
                    "id": w.id,
                    "pid": w.pid,
                    "state": w.state,
                    "connections": w.connections,
                    "requests": w.requests,
                    "open_connections": w.open,
                    "accepted": w.accepted,
                    "heartbeat_age_s": (w.silent.as_secs_f64() * 1000.0).round() / 1000.0,
                    "rss_bytes": w.usage.map(|u| u.rss_bytes),
                    "cpu_seconds": w.usage.map(|u| (u.cpu.as_secs_f64() * 1000.0).round() / 1000.0),
                    "processes": w.usage.map(|u| u.processes),
                    "restarts": w.restarts,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "policy": self.policy.name(),
            "uptime_s": (self.uptime.as_secs_f64() * 1000.0).round() / 1000.0,
            "queued_connections": self.queued,
            "exits": self.exits,
            "workers": workers,
            "ops": self.ops,
            "watchdog": { "kills": self.kills, "start_kills": self.start_kills },
            "recycled": self.recycled,
        });
        format!("{doc}\n")
    }
}

/// The handler the admin connections are answered by: a view of the master, asked for its
/// state only when a request for it arrives (not on every readiness event). What a request
/// asks the master to do (send a message) is collected, and done once the call returns.
struct AdminView<'a> {
    master: &'a Master,
    /// Messages to send: to one worker, or (`None`) to every live one.
    outgoing: std::cell::RefCell<Vec<(Option<WorkerId>, Vec<u8>)>>,
}

impl<'a> AdminView<'a> {
    fn new(master: &'a Master) -> AdminView<'a> {
        AdminView {
            master,
            outgoing: Default::default(),
        }
    }

    /// `POST /workers/{id}/message` and `POST /workers/message`: the body, a JSON value, is
    /// delivered as the worker's message (`process.on('message')` in a Node worker).
    fn post_message(&self, req: &Request<'_>, res: &mut Response) {
        let to: Option<WorkerId> = match req.path() {
            "/workers/message" => None,
            path => {
                let id = (path.strip_prefix("/workers/"))
                    .and_then(|p| p.strip_suffix("/message"))
                    .and_then(|id| id.parse().ok());
                let live = |id: WorkerId| {
                    (self.master.workers.iter())
                        .any(|(_, w)| w.id == id && w.state != WorkerState::Disconnected)
                };
                match id {
                    Some(id) if live(id) => Some(id),
                    Some(id) => {
                        res.status(404);
                        res.body(format!("no worker {id}\n"));
                        return;
                    }
                    None => {
                        res.status(404);
                        res.body("not found: POST /workers/{id}/message or /workers/message\n");
                        return;
                    }
                }
            }
        };
        if let Err(e) = RawJson::from_bytes(req.body()) {
            res.status(400);
            res.body(format!("the body must be one JSON value: {e}\n"));
            return;
        }
        self.outgoing.borrow_mut().push((to, req.body().to_vec()));
        res.status(202);
        res.body("sent\n");
    }
}

impl Handler for AdminView<'_> {
    fn handle(&self, req: &Request<'_>, res: &mut Response) {
        if req.method() == "POST" && req.path().starts_with("/workers/") {
            return self.post_message(req, res);
        }
        if req.method() != "GET" && req.method() != "HEAD" {
            res.status(405);
            res.header("Allow", "GET, HEAD");
            res.body("only GET and HEAD (and POST /workers/{id}/message)\n");
            return;
        }
        match req.path() {
            "/metrics" => {
                res.header("Content-Type", "text/plain; version=0.0.4");
                res.body(self.master.snapshot().metrics());
            }
            "/status" => {
                res.header("Content-Type", "application/json");
                res.body(self.master.snapshot().status());
            }
            _ => {
                res.status(404);
                res.body("not found: try /metrics or /status\n");
            }
        }
    }
}

/// The admin listener and its connections.
pub(super) struct Admin {
    listener: TcpListener,
    local: SocketAddr,
    /// The listener's token; connections have tokens of service index `CONNECTIONS`.
    base: Token,
    conns: HttpConnections,
    date: DateCache,
    /// The workers' report counters; the admin's own are not reported anywhere.
    counters: Counters,
    /// When the connections' timeouts are next checked.
    next_tick: Option<Instant>,
}

/// The admin connections' service index in [`Context`] tokens: `2 << 40 | key`, above the
/// listener's `1 << 40` (the master's `ADMIN_BASE`).
const CONNECTIONS: usize = 2;

impl Admin {
    /// Binds `addr`; the listener's token is `base` (`1 << 40`), connection `k`'s
    /// `2 << 40 | k`.
    pub fn bind(addr: &str, registry: &Registry, base: usize) -> io::Result<Admin> {
        let parsed = super::listeners::resolve(addr)?;
        let mut listener = TcpListener::bind(parsed).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {parsed} (--admin): {e}"),
            )
        })?;
        registry.register(&mut listener, Token(base), Interest::READABLE)?;
        Ok(Admin {
            local: listener.local_addr()?,
            listener,
            base: Token(base),
            conns: HttpConnections::new(Limits::default(), Timeouts::default()),
            date: DateCache::new(),
            counters: Counters::default(),
            next_tick: None,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Every fd the admin holds, for a forked child to close.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(self.conns.fds());
        fds
    }

    /// When the connections' timeouts are next due, while there are connections.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_tick.filter(|_| !self.conns.is_empty())
    }

    /// Calls `f` with the connections and a [`Context`] for them.
    fn with_conns(
        &mut self,
        registry: &Registry,
        now: Instant,
        f: impl FnOnce(&mut HttpConnections, &mut Context<'_>),
    ) {
        let mut cx = Context {
            registry,
            now,
            draining: false,
            service: CONNECTIONS,
            counters: &mut self.counters,
            date: &mut self.date,
        };
        f(&mut self.conns, &mut cx);
    }

    fn accept(&mut self, registry: &Registry, view: &AdminView<'_>) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        log::warn!("admin: {MAX_CONNECTIONS} connections open; closing a new one");
                        continue; // dropped: closed
                    }
                    let now = Instant::now();
                    self.next_tick.get_or_insert(now + TICK);
                    self.with_conns(registry, now, |conns, cx| conns.accept(cx, stream, view));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EMFILE and friends: the listener stays readable and is retried on the
                // next event; the workers' traffic does not depend on this endpoint.
                Err(e) => {
                    log::debug!("admin: accept: {e}");
                    return;
                }
            }
        }
    }
}

/// How often the admin connections' timeouts are checked.
const TICK: Duration = Duration::from_millis(250);

impl Master {
    /// A readiness event for the admin listener or one of its connections.
    pub(super) fn on_admin(&mut self, token: Token, event: &mio::event::Event) {
        // Taken out for the call, so that the handler can look at the rest of the master.
        let Some(mut admin) = self.admin.take() else {
            return;
        };
        let view = AdminView::new(self);
        let registry = self.poll.registry();
        if token == admin.base {
            admin.accept(registry, &view);
        } else {
            admin.with_conns(registry, Instant::now(), |conns, cx| {
                conns.ready(cx, token, event, &view)
            });
        }
        let outgoing = view.outgoing.into_inner();
        self.admin = Some(admin);
        for (to, msg) in outgoing {
            self.send_message(to, &msg);
        }
    }

    /// Applies the admin connections' timeouts when due.
    pub(super) fn admin_tick(&mut self, now: Instant) {
        let Some(mut admin) = self.admin.take() else {
            return;
        };
        if admin.next_tick.is_some_and(|t| t <= now) {
            admin.next_tick = (!admin.conns.is_empty()).then_some(now + TICK);
            let view = AdminView::new(self);
            admin.with_conns(self.poll.registry(), now, |conns, cx| conns.tick(cx, &view));
        }
        self.admin = Some(admin);
    }
}

#[cfg(test)]
mod tests;
