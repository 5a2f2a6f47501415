//! The worker's event loop: handoffs in, connections to their services, reports out.
//!
//! One turn of the loop, in order:
//!
//! 1. read the channel (edge-triggered) until it is empty, or until the next handoff would
//!    not fit the worker's fd budget: handoffs left in the channel are still the master's
//!    to recover if this worker dies, whereas fds the kernel cannot install are lost;
//! 2. a SIGTERM (through the signal self-pipe) or the master's `Drain`: every acceptor takes
//!    what is queued and closes, every service drains;
//! 3. connections that arrived go to the service of their listener, after acknowledging
//!    them at once when the handoff asked for it (the `node` policy), as Node's workers
//!    acknowledge `newconn`;
//! 4. a drain that has no connection left ends the loop;
//! 5. counters go to the master *before* the worker sleeps (see `report` below), and a
//!    heartbeat when one is due (`--worker-timeout`: only in turns the loop makes, so a
//!    worker stuck in a handler falls silent), then `epoll_wait`, then readiness events go
//!    to the service (or acceptor) whose index the token carries ([`super::tokens`]); every
//!    [`TICK`] services apply their timeouts.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Poll};

use super::service::Context;
use super::{tokens, Mailbox, Service, Worker};
use crate::channel::{ListenerId, Received, ToMaster, ToWorker, MAX_FDS_PER_HANDOFF, MAX_MESSAGE};
use crate::http::DateCache;
use crate::sys::SignalPipe;

/// How often services get `tick` (timeouts) while they hold connections.
const TICK: Duration = Duration::from_millis(250);
/// Counters are reported at least this often when nothing else carries them.
const REPORT_INTERVAL: Duration = Duration::from_millis(50);

impl Worker {
    /// The event loop. Returns when a drain completes; `Err` if the master vanished.
    pub(super) fn run(mut self, mut poll: Poll, signals: SignalPipe) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut date = DateCache::new();
        let mut buf = vec![0u8; MAX_MESSAGE + 64];
        let mut last_tick = Instant::now();
        let mut last_report = Instant::now();
        let mut last_beat: Option<Instant> = None;
        let mut channel_ready = true; // the packets kept by `listen` count as readable
        let early = std::mem::take(&mut self.early);
        let mut arrived: Vec<(ListenerId, OwnedFd)> = Vec::new();
        for (msg, fds) in early {
            self.on_packet(msg, fds, &mut arrived)?;
        }
        for a in &mut self.acceptors {
            a.register(poll.registry().as_fd())?;
        }

        loop {
            // Near the fd limit, leave handoffs queued in the channel rather than have the
            // kernel drop connections it cannot install (or take connections that could not
            // open what they need): `channel_ready` stays set and the next tick retries.
            if channel_ready {
                channel_ready = !self.read_channel(&mut buf, &mut arrived)?;
            }
            let now = Instant::now();
            if signals.take_term() && !self.draining {
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

            // The watchdog expects a sign of life while there is work: connections open,
            // or (accepting for itself) a listening socket only this worker watches.
            let watched = open > 0 || channel_ready || !self.acceptors.is_empty();
            if let Some(every) = self.heartbeat.filter(|_| watched) {
                if last_beat.is_none_or(|t| now.duration_since(t) >= every) {
                    self.beat()?;
                    last_beat = Some(now);
                }
            }
            let timeout = if open > 0
                || channel_ready
                || !self.counters.is_empty()
                || self.acceptors.iter().any(|a| a.paused())
            {
                Some(TICK.min(REPORT_INTERVAL))
            } else if !self.acceptors.is_empty() {
                self.heartbeat
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
                match event.token() {
                    tokens::CHANNEL => {
                        channel_ready = true;
                        continue;
                    }
                    // Taken at the top of the next turn (the pipe is emptied there).
                    tokens::SIGNALS => continue,
                    _ => {}
                }
                let svc = tokens::service_of(event.token());
                if svc == tokens::ACCEPTORS {
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
                    a.resume(poll.registry().as_fd(), now, room);
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
                Received::Truncated(n) => super::lost_to_truncation(self.id, &buf[..n]),
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
            ToWorker::Heartbeat { interval_ms } => {
                self.heartbeat = Some(Duration::from_millis(interval_ms.max(1) as u64));
            }
            ToWorker::ListenOk { .. } | ToWorker::ListenErr { .. } => {}
        }
        Ok(())
    }

    /// Tells the master this loop still turns. A full channel means the master has not
    /// read what came before, which tells it the same: the beat is not worth waiting for.
    fn beat(&mut self) -> io::Result<()> {
        match self.channel.send_to_master(&ToMaster::Heartbeat) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            r => r,
        }
    }

    /// Acknowledges handoffs received and reports counters, in one packet.
    fn report(&mut self, _now: Instant) -> io::Result<()> {
        let c = std::mem::take(&mut self.counters);
        if self.received_seq == self.acked_seq && c.is_empty() {
            return Ok(());
        }
        self.acked_seq = self.received_seq;
        super::send_blocking(
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
