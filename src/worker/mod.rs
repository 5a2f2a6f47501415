//! The worker process: what runs in a child after `fork()`.
//!
//! A worker owns one mio [`Poll`], created *after* the fork (an epoll instance inherited from
//! the master would share the master's registrations), its end of the channel to the master,
//! and every connection the master hands it. Its life:
//!
//! 1. [`run_child`]: drop what belongs to the master (signal handlers, the master's fds), ask
//!    the kernel to kill it if the master dies, say [`ToMaster::Online`].
//! 2. The user's setup closure runs with a [`Worker`]: `listen` asks the master to share a
//!    listening address (Node's `server.listen()` in a worker), `on_message` installs the
//!    message callback.
//! 3. The event loop ([`Worker::run`]): handoffs arrive on the channel, are acknowledged, and
//!    each connection goes to the [`Service`] of its listener; readiness events go to the
//!    service that registered the token. `Drain` from the master closes idle connections and
//!    exits once the last one is gone; the channel closing (the master died) exits at once.
//!
//! Under a worker-accept policy the listen reply carries a listening socket, and the worker
//! accepts from it itself ([`acceptor`]).

mod acceptor;
mod http_service;
mod privileges;
mod service;

pub use http_service::HttpService;
pub use privileges::{Credentials, EXIT_CONFIG};
pub use service::{Context, Counters, Service};

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::channel::{
    Channel, ListenerId, Received, ToMaster, ToWorker, MAX_FDS_PER_HANDOFF, MAX_MESSAGE,
};
use crate::http::{DateCache, Handler, Limits, Timeouts};
use crate::policy::Acceptance;
use acceptor::Acceptor;

/// A worker's id: 1 for the first worker forked, growing with every fork, never reused
/// (Node's `cluster.worker.id`).
pub type WorkerId = u32;

/// The token of the channel to the master; services' tokens never reach it.
const CHANNEL: Token = Token(usize::MAX);
/// How often services get `tick` (timeouts) while they hold connections.
const TICK: Duration = Duration::from_millis(250);
/// Counters are reported at least this often when nothing else carries them.
const REPORT_INTERVAL: Duration = Duration::from_millis(50);

static WORKER_ID: AtomicU32 = AtomicU32::new(0);

/// Set by the worker's SIGTERM handler; the loop polls it after every wake-up (`epoll_wait`
/// is never restarted after a signal, so the handler always wakes the loop).
static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    TERM.store(true, Ordering::Relaxed);
}

/// The id of the worker this process is, or 0 in the master (or outside a cluster).
pub fn worker_id() -> WorkerId {
    WORKER_ID.load(Ordering::Relaxed)
}

/// A message callback: gets a [`Mailbox`] to reply through, and the payload.
type MessageCallback = Box<dyn FnMut(&mut Mailbox<'_>, &[u8])>;

/// The worker as its setup closure and message callback see it.
pub struct Worker {
    id: WorkerId,
    channel: Channel,
    /// One service per `listen` call; a connection from listener `l` goes to
    /// `services[by_listener[l]]`.
    services: Vec<Box<dyn Service>>,
    by_listener: HashMap<ListenerId, usize>,
    /// Listening sockets this worker accepts from itself (worker-accept policies).
    acceptors: Vec<Acceptor>,
    on_message: Option<MessageCallback>,
    next_req: u32,
    /// Packets (with their fds) that arrived while `listen` waited for its reply.
    early: Vec<(ToWorker, Vec<OwnedFd>)>,
    /// Highest handoff sequence number received; acknowledged with the next report.
    received_seq: u64,
    acked_seq: u64,
    /// A handoff asked to be acknowledged before its connections are served.
    ack_now: bool,
    /// The master steers by open counts: report closes before sleeping in every loop turn.
    eager_reports: bool,
    /// The fds its services may hold (connections, and what they open for them) before it
    /// stops reading handoffs (they wait in its channel, where the master can still recover
    /// them): its fd limit less a reserve.
    max_open: usize,
    counters: Counters,
    /// The master sent `Drain`; the loop acts on it.
    drain_requested: bool,
    draining: bool,
}

/// Sends messages to the master from inside a message callback.
pub struct Mailbox<'a> {
    channel: &'a mut Channel,
    id: WorkerId,
}

impl Mailbox<'_> {
    /// This worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// Sends `msg` to the master (`process.send` in Node). At most 64 KiB.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        send_message(self.channel, msg)
    }
}

/// A handoff arrived without (all) its fds: the process is out of descriptors and the
/// kernel closed the connections it could not install. [`Worker::run`] stops reading
/// handoffs well before its limit, so this means something else in the process took the fds.
fn lost_to_truncation(id: WorkerId, packet: &[u8]) {
    if let Ok(ToWorker::Handoff { listeners, .. }) = ToWorker::decode(packet) {
        log::error!(
            "worker {id}: out of file descriptors; up to {} connection(s) lost",
            listeners.len()
        );
    }
}

fn send_message(channel: &mut Channel, msg: &[u8]) -> io::Result<()> {
    if msg.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes is over the {MAX_MESSAGE}-byte limit",
                msg.len()
            ),
        ));
    }
    send_blocking(channel, &ToMaster::Message(msg.to_vec()))
}

/// Sends to the master, waiting for room if its queue is full. The master never blocks on
/// a worker, so waiting here cannot deadlock.
fn send_blocking(channel: &mut Channel, msg: &ToMaster) -> io::Result<()> {
    loop {
        match channel.send_to_master(msg) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: channel.raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, count 1.
                unsafe { libc::poll(&mut pfd, 1, 1000) };
            }
            r => return r,
        }
    }
}

impl Worker {
    /// This worker's id (1, 2, 3… in fork order; a respawned worker gets a new one).
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// Serves HTTP/1.1 on `addr` with `handler`, with the default [`Limits`].
    ///
    /// As in Node, the worker does not bind: it asks the master, which binds `addr` on the
    /// first request for it and shares it with every worker that asks. Returns the bound
    /// address (the real port when `addr` asked for port 0); a bind error comes back here.
    pub fn listen(&mut self, addr: &str, handler: impl Handler) -> io::Result<SocketAddr> {
        self.serve(
            addr,
            HttpService::new(handler, Limits::default(), Timeouts::default()),
        )
    }

    /// Runs any [`Service`] (the reverse proxy, say) for the connections of `addr`.
    pub fn serve(&mut self, addr: &str, service: impl Service) -> io::Result<SocketAddr> {
        let req = self.next_req;
        self.next_req += 1;
        send_blocking(
            &mut self.channel,
            &ToMaster::Listen {
                req,
                addr: addr.to_string(),
            },
        )?;
        // Wait for the reply; anything else that arrives meanwhile is kept for the loop.
        let mut buf = vec![0u8; MAX_MESSAGE + 64];
        let reply = loop {
            match self.channel.recv(&mut buf)? {
                Received::Packet(n, fds) => match ToWorker::decode(&buf[..n])? {
                    ToWorker::ListenOk {
                        req: r,
                        listener,
                        accept,
                        addr,
                    } if r == req => break Ok((listener, accept, addr, fds)),
                    ToWorker::ListenErr { req: r, error } if r == req => break Err(error),
                    other => self.early.push((other, fds)),
                },
                Received::Truncated(n) => lost_to_truncation(self.id, &buf[..n]),
                Received::WouldBlock => {
                    self.channel.wait_readable(Duration::from_secs(1))?;
                }
                Received::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the master is gone",
                    ))
                }
            }
        };
        match reply {
            Ok((listener, accept, bound, fds)) => {
                let svc = self.services.len();
                if accept != Acceptance::Master {
                    let Some(fd) = fds.into_iter().next() else {
                        return Err(io::Error::other(format!(
                            "listen {addr}: the master's reply lacks the listening socket"
                        )));
                    };
                    let token = service::acceptor_token(self.acceptors.len());
                    let exclusive = accept == Acceptance::SharedExclusive;
                    self.acceptors
                        .push(Acceptor::new(fd, svc, token, exclusive));
                }
                self.by_listener.insert(listener, svc);
                self.services.push(Box::new(service));
                bound.parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad address {bound}"))
                })
            }
            Err(error) => Err(io::Error::other(format!("listen {addr}: {error}"))),
        }
    }

    /// Installs the callback for messages from the master (`process.on('message')`).
    pub fn on_message(&mut self, f: impl FnMut(&mut Mailbox<'_>, &[u8]) + 'static) {
        self.on_message = Some(Box::new(f));
    }

    /// Sends `msg` to the master (`process.send`). At most 64 KiB.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        send_message(&mut self.channel, msg)
    }

    /// The event loop. Returns when a drain completes; `Err` if the master vanished.
    fn run(mut self, mut poll: Poll) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut date = DateCache::new();
        let mut buf = vec![0u8; MAX_MESSAGE + 64];
        let mut last_tick = Instant::now();
        let mut last_report = Instant::now();
        let mut channel_ready = true; // the packets kept by `listen` count as readable
        let early = std::mem::take(&mut self.early);
        let mut arrived: Vec<(ListenerId, OwnedFd)> = Vec::new();
        for (msg, fds) in early {
            self.on_packet(msg, fds, &mut arrived)?;
        }
        for a in &mut self.acceptors {
            a.register(poll.as_raw_fd())?;
        }

        loop {
            // Near the fd limit, leave handoffs queued in the channel rather than have the
            // kernel drop connections it cannot install (or take connections that could not
            // open what they need): `channel_ready` stays set and the next tick retries.
            if channel_ready {
                channel_ready = !self.read_channel(&mut buf, &mut arrived)?;
            }
            let now = Instant::now();
            if TERM.swap(false, Ordering::Relaxed) && !self.draining {
                // Sent to this worker alone, or to the whole process group or cgroup (as
                // systemd stops a service): drain like the master would have asked.
                self.drain_requested = true;
            }
            if std::mem::take(&mut self.drain_requested) {
                log::debug!("worker {} draining", self.id);
                self.draining = true;
                for a in 0..self.acceptors.len() {
                    self.run_acceptor(&poll, a, now, &mut date, true);
                }
                for svc in 0..self.services.len() {
                    self.with_service(&poll, svc, now, &mut date, |s, cx| s.drain(cx));
                }
            }
            if !arrived.is_empty() {
                if std::mem::take(&mut self.ack_now) {
                    // Acknowledge before serving, as Node's workers acknowledge `newconn`.
                    self.report(now)?;
                    last_report = now;
                }
                for (listener, fd) in arrived.drain(..) {
                    let Some(&svc) = self.by_listener.get(&listener) else {
                        continue; // a listener this worker never asked for: drop (close) it
                    };
                    let stream = TcpStream::from_std(std::net::TcpStream::from(fd));
                    self.with_service(&poll, svc, now, &mut date, |s, cx| s.accept(cx, stream));
                }
            }
            let open: usize = self.services.iter().map(|s| s.open_connections()).sum();
            if self.draining && open == 0 {
                self.report(Instant::now())?;
                return Ok(());
            }

            // Report before sleeping, not after waking: under the load-aware policies,
            // closes go out before the worker blocks in `poll` (one packet per loop turn,
            // not per connection). A close reported only at the next wakeup is stale for as
            // long as the worker sleeps, and the master keeps steering away from an idle
            // worker; a count up to 50 ms stale also makes a stalled worker, which reports
            // nothing, look like the least loaded one.
            let eager = self.eager_reports && self.counters.closed > 0;
            if !self.counters.is_empty()
                && (eager || now.duration_since(last_report) >= REPORT_INTERVAL)
            {
                self.report(now)?;
                last_report = now;
            }

            let timeout = if open > 0
                || channel_ready
                || !self.counters.is_empty()
                || self.acceptors.iter().any(|a| a.paused())
            {
                Some(TICK.min(REPORT_INTERVAL))
            } else {
                None
            };
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    events.clear();
                }
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == CHANNEL {
                    channel_ready = true;
                    continue;
                }
                let svc = service::service_of(event.token());
                if svc == service::ACCEPTORS {
                    let a = Context::local(event.token());
                    if a < self.acceptors.len() {
                        self.run_acceptor(&poll, a, now, &mut date, false);
                    }
                } else if svc < self.services.len() {
                    self.with_service(&poll, svc, now, &mut date, |s, cx| {
                        s.ready(cx, event.token(), event)
                    });
                }
            }
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                for svc in 0..self.services.len() {
                    if self.services[svc].open_connections() > 0 {
                        self.with_service(&poll, svc, now, &mut date, |s, cx| s.tick(cx));
                    }
                }
            }
            if self.acceptors.iter().any(|a| a.paused()) {
                let room = self.room();
                for a in &mut self.acceptors {
                    a.resume(poll.as_raw_fd(), now, room);
                }
            }
        }
    }

    /// Connections this worker can still take under its fd limit.
    fn room(&self) -> usize {
        self.max_open.saturating_sub(self.fds_held()) / self.fds_per_connection()
    }

    /// Descriptors the services hold (connections, and a proxy's upstream sockets).
    fn fds_held(&self) -> usize {
        self.services.iter().map(|s| s.fds_held()).sum()
    }

    /// Descriptors a new connection may come to hold, at most (2 for a proxy's client).
    fn fds_per_connection(&self) -> usize {
        (self.services.iter())
            .map(|s| s.fds_per_connection())
            .max()
            .unwrap_or(1)
    }

    /// Whether another full handoff fits in the fd budget, with `arrived` connections
    /// received and not yet given to their service.
    fn has_room_for_handoff(&self, arrived: usize) -> bool {
        let cost = (arrived + MAX_FDS_PER_HANDOFF) * self.fds_per_connection();
        self.fds_held() + cost <= self.max_open
    }

    /// Acceptor `a`'s socket is readable: accept into its service. `last`: the worker is
    /// draining, so take what is queued and close the socket.
    fn run_acceptor(
        &mut self,
        poll: &Poll,
        a: usize,
        now: Instant,
        date: &mut DateCache,
        last: bool,
    ) {
        let room = self.room();
        let acceptor = &mut self.acceptors[a];
        let mut cx = Context {
            registry: poll.registry(),
            now,
            draining: self.draining,
            service: acceptor.service,
            counters: &mut self.counters,
            date,
        };
        let service = self.services[acceptor.service].as_mut();
        if last {
            acceptor.close(&mut cx, service, room);
        } else {
            acceptor.accept(&mut cx, service, room);
        }
    }

    /// Calls `f` with service `svc` and a [`Context`] for it.
    fn with_service(
        &mut self,
        poll: &Poll,
        svc: usize,
        now: Instant,
        date: &mut DateCache,
        f: impl FnOnce(&mut dyn Service, &mut Context<'_>),
    ) {
        let mut cx = Context {
            registry: poll.registry(),
            now,
            draining: self.draining,
            service: svc,
            counters: &mut self.counters,
            date,
        };
        f(self.services[svc].as_mut(), &mut cx);
    }

    /// Reads the channel (edge-triggered) until it is empty (`Ok(true)`) or the next handoff would not fit
    /// in the fd budget (`Ok(false)`: packets remain, read them once connections close).
    fn read_channel(
        &mut self,
        buf: &mut [u8],
        arrived: &mut Vec<(ListenerId, OwnedFd)>,
    ) -> io::Result<bool> {
        loop {
            if !self.has_room_for_handoff(arrived.len()) {
                return Ok(false);
            }
            match self.channel.recv(buf)? {
                Received::Packet(n, fds) => {
                    let msg = ToWorker::decode(&buf[..n])?;
                    self.on_packet(msg, fds, arrived)?;
                }
                Received::Truncated(n) => lost_to_truncation(self.id, &buf[..n]),
                Received::WouldBlock => return Ok(true),
                Received::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the master is gone",
                    ))
                }
            }
        }
    }

    fn on_packet(
        &mut self,
        msg: ToWorker,
        fds: Vec<OwnedFd>,
        arrived: &mut Vec<(ListenerId, OwnedFd)>,
    ) -> io::Result<()> {
        match msg {
            ToWorker::Handoff {
                seq,
                ack,
                eager,
                listeners,
            } => {
                self.received_seq = self.received_seq.max(seq);
                self.ack_now |= ack;
                self.eager_reports = eager;
                arrived.extend(listeners.into_iter().zip(fds));
            }
            ToWorker::Message(payload) => {
                if let Some(cb) = self.on_message.as_mut() {
                    let mut mailbox = Mailbox {
                        channel: &mut self.channel,
                        id: self.id,
                    };
                    cb(&mut mailbox, &payload);
                }
            }
            ToWorker::Drain => {
                // Acted on by the loop, which holds the poll the services need.
                self.drain_requested = !self.draining;
            }
            ToWorker::ListenOk { .. } | ToWorker::ListenErr { .. } => {}
        }
        Ok(())
    }

    /// Acknowledges handoffs received and reports counters, in one packet.
    fn report(&mut self, _now: Instant) -> io::Result<()> {
        let c = std::mem::take(&mut self.counters);
        if self.received_seq == self.acked_seq && c.is_empty() {
            return Ok(());
        }
        self.acked_seq = self.received_seq;
        send_blocking(
            &mut self.channel,
            &ToMaster::Ack {
                seq: self.received_seq,
                closed: c.closed,
                requests: c.requests,
                accepted: c.accepted,
            },
        )
    }
}

/// How many connections fit under this process's open-file limit, keeping a reserve for
/// the worker's own fds (stdio, poll, channel, a handler's files; a proxy's upstream sockets
/// count against the budget itself, see [`Service::fds_held`]).
pub(crate) fn connection_capacity() -> usize {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    // Half for connections when the limit is tiny, else all but a fixed reserve of 64.
    soft.saturating_sub(64).max(soft / 2)
}

/// What the master passes to a freshly forked child.
pub(crate) struct ChildStart<'a> {
    pub id: WorkerId,
    pub channel: Channel,
    /// The master's pid, to detect a master that died before `PR_SET_PDEATHSIG` was set.
    pub master_pid: nix::unistd::Pid,
    /// fds that belong to the master (listeners, other workers' channels, its poll and signal
    /// pipe): the child closes them so it holds nothing that is not its own.
    pub close: &'a [RawFd],
    /// The user's worker setup.
    pub setup: &'a mut dyn FnMut(&mut Worker) -> io::Result<()>,
    /// Who to become before serving (`--user`), if anyone.
    pub credentials: Option<&'a Credentials>,
}

/// Runs a worker in a freshly forked child; never returns.
pub(crate) fn run_child(start: ChildStart<'_>) -> ! {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    WORKER_ID.store(start.id, Ordering::Relaxed);
    // The master's signal handlers were inherited with its memory; replace every one. A
    // worker takes its orders from the master: Ctrl-C and a terminal hangup reach the whole
    // process group, and only the master acts on them (it drains the workers). SIGTERM to a
    // worker drains that worker.
    let term = SigHandler::Handler(on_sigterm);
    for (sig, handler) in [
        (Signal::SIGINT, SigHandler::SigIgn),
        (Signal::SIGHUP, SigHandler::SigIgn),
        (Signal::SIGQUIT, SigHandler::SigIgn),
        (Signal::SIGUSR2, SigHandler::SigIgn),
        (Signal::SIGCHLD, SigHandler::SigDfl),
        (Signal::SIGTERM, term),
    ] {
        let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
        // SAFETY: SIG_IGN/SIG_DFL run no code; `on_sigterm` only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
    for &fd in start.close {
        // SAFETY: these fds are the master's; this process never uses them again and no
        // Rust object in this process will touch them (the master's state is never dropped
        // here: the child leaves through `process::exit`).
        unsafe { libc::close(fd) };
    }
    // Before anything runs that a client can reach; and before PDEATHSIG, which the kernel
    // clears whenever the credentials change.
    if let Some(credentials) = start.credentials {
        if let Err(e) = credentials.apply() {
            log::error!("worker {}: {e}; refusing to serve as root", start.id);
            std::process::exit(EXIT_CONFIG);
        }
    }
    // The backstop for a master that dies without closing the channel cleanly (it always
    // closes, even on SIGKILL, but a worker stuck in a handler would not notice).
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != start.master_pid {
        std::process::exit(0); // the master died before the line above
    }

    let mut worker = Worker {
        id: start.id,
        channel: start.channel,
        services: Vec::new(),
        by_listener: HashMap::new(),
        acceptors: Vec::new(),
        on_message: None,
        next_req: 1,
        early: Vec::new(),
        received_seq: 0,
        acked_seq: 0,
        ack_now: false,
        eager_reports: false,
        max_open: connection_capacity(),
        counters: Counters::default(),
        drain_requested: false,
        draining: false,
    };
    // The worker's own epoll instance, created after the fork: one inherited from the
    // master would be the master's instance, with the master's registrations.
    let poll = Poll::new().and_then(|poll| {
        let fd = worker.channel.raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), CHANNEL, Interest::READABLE)?;
        Ok(poll)
    });
    let poll = match poll {
        Ok(poll) => poll,
        Err(e) => {
            log::error!("worker {}: cannot create its poll: {e}", start.id);
            std::process::exit(1);
        }
    };
    if let Err(e) = send_blocking(&mut worker.channel, &ToMaster::Online) {
        log::error!("worker {}: cannot reach the master: {e}", start.id);
        std::process::exit(1);
    }
    if let Err(e) = (start.setup)(&mut worker) {
        log::error!("worker {}: {e}", start.id);
        std::process::exit(1);
    }
    match worker.run(poll) {
        Ok(()) => std::process::exit(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            log::warn!("worker {}: master gone, exiting", start.id);
            std::process::exit(0)
        }
        Err(e) => {
            log::error!("worker {}: {e}", start.id);
            std::process::exit(1)
        }
    }
}
