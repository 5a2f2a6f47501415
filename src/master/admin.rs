//! The admin endpoint (`--admin ADDR`): per-worker metrics, served by the master itself.
//!
//! It lives in the master's mio loop like everything else there: the master must stay
//! single-threaded to fork safely, so no server thread. Its sockets are non-blocking and
//! edge-triggered; requests go through the same sans-IO [`Session`] as the workers' HTTP
//! (no second parser). Two resources:
//!
//! * `GET /metrics`: Prometheus text format (version 0.0.4);
//! * `GET /status`: JSON: policy, uptime, and per worker its id, pid, state and counters.
//!
//! The counters are the master's [`super::Link`] counters: connections it handed over (or
//! that the worker reported accepting, under a worker-accept policy), requests and closes
//! the workers report in their batched acknowledgements (every ≤ 50 ms). A worker's series
//! disappears when it exits; `herd_worker_exits_total` counts exits.
//!
//! At most [`MAX_CONNECTIONS`] admin connections are open at once (more are closed on
//! arrival) and each is closed after [`IDLE_TIMEOUT`] without a complete exchange, so a
//! misbehaving scraper cannot take the master's descriptors.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::{Master, WorkerState};
use crate::http::{DateCache, Handler, Limits, Next, Request, Response, Session};
use crate::policy::Policy;

/// The most admin connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long an admin connection may stay open without finishing an exchange.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most request bytes buffered per admin connection.
const MAX_INPUT: usize = 64 * 1024;

/// What the endpoint reports: the master's state at the moment of the request.
#[derive(Debug, Clone)]
pub struct Snapshot {
    policy: Policy,
    uptime: Duration,
    queued: usize,
    exits: u64,
    workers: Vec<WorkerRow>,
    /// Reload, upgrade and restart state, already as JSON.
    ops: String,
}

/// A per-worker metric: name, type, help text, and its value for one worker.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerRow) -> u64,
);

#[derive(Debug, Clone)]
struct WorkerRow {
    id: u32,
    pid: i32,
    state: &'static str,
    connections: u64,
    requests: u64,
    open: u64,
}

impl Master {
    /// The state the admin endpoint reports.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut workers: Vec<WorkerRow> = self
            .workers
            .iter()
            .map(|(_, w)| WorkerRow {
                id: w.id,
                pid: w.pid.as_raw(),
                state: match w.state {
                    WorkerState::Starting => "starting",
                    WorkerState::Online => "online",
                    WorkerState::Stopping => "stopping",
                    WorkerState::Disconnected => "disconnected",
                },
                connections: w.link.connections,
                requests: w.link.requests,
                open: w.link.open,
            })
            .collect();
        workers.sort_by_key(|w| w.id);
        Snapshot {
            policy: self.policy,
            uptime: self.started.elapsed(),
            queued: self.queued_connections(),
            exits: self.exits,
            workers,
            ops: self.ops_status().to_json(),
        }
    }
}

impl Snapshot {
    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let per_worker: [Series; 3] = [
            (
                "herd_worker_connections_total",
                "counter",
                "Connections the worker took (handed over by the master, or accepted itself).",
                |w| w.connections,
            ),
            (
                "herd_worker_requests_total",
                "counter",
                "Requests the worker answered.",
                |w| w.requests,
            ),
            (
                "herd_worker_open_connections",
                "gauge",
                "Connections the worker holds open.",
                |w| w.open,
            ),
        ];
        for (name, kind, help, value) in per_worker {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for w in &self.workers {
                let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.id, value(w));
            }
        }
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
        let workers: Vec<String> = self
            .workers
            .iter()
            .map(|w| {
                format!(
                    "{{\"id\":{},\"pid\":{},\"state\":\"{}\",\"connections\":{},\
                     \"requests\":{},\"open_connections\":{}}}",
                    w.id, w.pid, w.state, w.connections, w.requests, w.open
                )
            })
            .collect();
        format!(
            "{{\"policy\":\"{}\",\"uptime_s\":{:.3},\"queued_connections\":{},\
             \"exits\":{},\"workers\":[{}],\"ops\":{}}}\n",
            self.policy,
            self.uptime.as_secs_f64(),
            self.queued,
            self.exits,
            workers.join(","),
            self.ops
        )
    }
}

impl Handler for Snapshot {
    fn handle(&self, req: &Request<'_>, res: &mut Response) {
        if req.method() != "GET" && req.method() != "HEAD" {
            res.status(405);
            res.header("Allow", "GET, HEAD");
            res.body("only GET and HEAD\n");
            return;
        }
        match req.path() {
            "/metrics" => {
                res.header("Content-Type", "text/plain; version=0.0.4");
                res.body(self.metrics());
            }
            "/status" => {
                res.header("Content-Type", "application/json");
                res.body(self.status());
            }
            _ => {
                res.status(404);
                res.body("not found: try /metrics or /status\n");
            }
        }
    }
}

/// One admin client.
struct Conn {
    stream: TcpStream,
    session: Session,
    input: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    /// Closed if still open then.
    deadline: Instant,
    /// The session said close: once `out` is flushed, close.
    closing: bool,
}

/// The admin listener and its connections.
pub struct Admin {
    listener: TcpListener,
    local: SocketAddr,
    base: Token,
    conns: Slab<Conn>,
    date: DateCache,
}

impl Admin {
    /// Binds `addr` and registers the listener at `base`; connection `k` gets `base + 1 + k`.
    pub fn bind(addr: &str, registry: &Registry, base: Token) -> io::Result<Admin> {
        let parsed = super::listeners::resolve(addr)?;
        let mut listener = TcpListener::bind(parsed).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {parsed} (--admin): {e}"),
            )
        })?;
        registry.register(&mut listener, base, Interest::READABLE)?;
        Ok(Admin {
            local: listener.local_addr()?,
            listener,
            base,
            conns: Slab::new(),
            date: DateCache::new(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Every fd the admin holds, for a forked child to close.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(self.conns.iter().map(|(_, c)| c.stream.as_raw_fd()));
        fds
    }

    /// The earliest idle deadline, for the master's poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|(_, c)| c.deadline).min()
    }

    /// Closes connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in late {
            self.close(registry, key);
        }
    }

    /// A readiness event for the listener or a connection, answered from `snapshot`.
    pub fn ready(&mut self, registry: &Registry, token: Token, snapshot: &Snapshot) {
        if token == self.base {
            self.accept(registry, snapshot);
        } else {
            let key = token.0 - self.base.0 - 1;
            if self.conns.contains(key) {
                self.drive(registry, key, snapshot);
            }
        }
    }

    fn accept(&mut self, registry: &Registry, snapshot: &Snapshot) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        log::warn!("admin: {MAX_CONNECTIONS} connections open; closing a new one");
                        continue; // dropped: closed
                    }
                    let entry = self.conns.vacant_entry();
                    let token = Token(self.base.0 + 1 + entry.key());
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let key = entry.key();
                    entry.insert(Conn {
                        stream,
                        session: Session::new(Limits::default()),
                        input: Vec::new(),
                        out: Vec::new(),
                        written: 0,
                        deadline: Instant::now() + IDLE_TIMEOUT,
                        closing: false,
                    });
                    // The request has usually arrived with the connection.
                    self.drive(registry, key, snapshot);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // EMFILE and friends: the listener stays readable and is retried on the
                // next event; the workers' traffic does not depend on this endpoint.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("admin: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what arrived, answers complete requests, writes what it can.
    fn drive(&mut self, registry: &Registry, key: usize, snapshot: &Snapshot) {
        let conn = &mut self.conns[key];
        let mut eof = false;
        let mut chunk = [0u8; 4096];
        while !conn.closing {
            match conn.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    conn.input.extend_from_slice(&chunk[..n]);
                    if conn.input.len() > MAX_INPUT {
                        break; // the session answers 431 for an over-long head
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(registry, key);
                    return;
                }
            }
        }
        if !conn.input.is_empty() || conn.closing {
            let date = self.date.get();
            let next = conn
                .session
                .process(&mut conn.input, &mut conn.out, snapshot, date);
            conn.closing |= next == Next::Close;
        }
        while conn.written < conn.out.len() {
            match conn.stream.write(&conn.out[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(registry, key);
                    return;
                }
            }
        }
        conn.out.clear();
        conn.written = 0;
        if conn.closing || eof || conn.input.len() > MAX_INPUT {
            self.close(registry, key);
        } else if !conn.session.in_request() {
            // A complete exchange: the keep-alive connection gets a fresh idle allowance.
            conn.deadline = Instant::now() + IDLE_TIMEOUT;
        }
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        let mut conn = self.conns.remove(key);
        let _ = registry.deregister(&mut conn.stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            policy: Policy::P2c,
            uptime: Duration::from_millis(1500),
            queued: 2,
            exits: 1,
            workers: vec![
                WorkerRow {
                    id: 1,
                    pid: 100,
                    state: "online",
                    connections: 7,
                    requests: 9,
                    open: 1,
                },
                WorkerRow {
                    id: 3,
                    pid: 102,
                    state: "stopping",
                    connections: 0,
                    requests: 0,
                    open: 0,
                },
            ],
            ops: super::super::OpsStatus::default().to_json(),
        }
    }

    #[test]
    fn metrics_are_prometheus_text_with_one_series_per_worker() {
        let text = sample().metrics();
        assert!(text.contains("# TYPE herd_worker_connections_total counter\n"));
        assert!(text.contains("herd_worker_connections_total{worker=\"1\"} 7\n"));
        assert!(text.contains("herd_worker_requests_total{worker=\"1\"} 9\n"));
        assert!(text.contains("herd_worker_open_connections{worker=\"3\"} 0\n"));
        assert!(text.contains("herd_worker_exits_total 1\n"));
        assert!(text.contains("herd_master_queued_connections 2\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn requests_are_answered_through_the_http_session() {
        let snapshot = sample();
        let mut session = Session::new(Limits::default());
        let mut input = b"GET /status HTTP/1.1\r\nHost: a\r\n\r\nPOST /metrics HTTP/1.1\r\n\
            Host: a\r\nContent-Length: 0\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
            .to_vec();
        let mut out = Vec::new();
        session.process(&mut input, &mut out, &snapshot, b"now");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\"policy\":\"p2c\""));
        assert!(text.contains("{\"id\":3,\"pid\":102,\"state\":\"stopping\""));
        assert!(text.contains("HTTP/1.1 405 "));
        assert!(text.contains("HTTP/1.1 404 "));
    }
}
