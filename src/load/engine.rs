//! One load thread's event loop: its own mio `Poll`, its share of the connection slots, and the
//! decision of when each request is due.
//!
//! - Closed loop (wrk): a slot's next request is due the moment its previous one ends.
//! - Open loop (wrk2, `--rate`): requests are due on a fixed schedule whatever the server does.
//!   A due request that finds every slot busy waits in a queue, and its latency still counts
//!   from the time it was due. A closed-loop client facing a server that stalls for 300 ms
//!   simply stops asking for 300 ms and records one slow request; the users it stands for would
//!   have kept arriving. Measuring from the schedule ("correcting coordinated omission") puts
//!   every one of them in the histogram.
//!
//! The loop stops at the deadline wherever it is; requests in flight or queued then are counted
//! apart, not as errors.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::config::Config;
use super::conn::{Conn, InFlight, Step};
use super::report::{ErrorKind, Tally};
use super::request::Requests;
use super::ticker::Ticker;

/// How long a slot waits after a failed connect before trying again, so a server that is down
/// is not hammered in a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What one thread does: its slots and, in an open-loop run, its share of the rate.
pub(crate) struct ThreadPlan {
    /// Connection slots of this thread.
    pub(crate) connections: usize,
    /// Open loop: this thread's schedule.
    pub(crate) schedule: Option<Schedule>,
    /// Seeds this thread's path draws (see [`Requests`]).
    pub(crate) seed: u64,
    /// Slot `i` of this thread is connection `i × stride + first` of the run (its
    /// `--source-ips` address).
    first: usize,
    stride: usize,
}

impl ThreadPlan {
    /// The plan of thread `index`: an even share of the connections (the first threads take
    /// one more when they do not divide) and of the rate, with the threads' schedules staggered
    /// so that together they send at even intervals.
    pub(crate) fn new(cfg: &Config, index: usize, start: Instant) -> ThreadPlan {
        let extra = usize::from(index < cfg.connections % cfg.threads);
        let schedule = cfg.rate.map(|rate| {
            // Integer nanoseconds, so that the ticker's period is an exact multiple of it.
            // (Clamped to a day, which no run lasts, so that a tiny rate cannot overflow.)
            let interval = Duration::try_from_secs_f64(cfg.threads as f64 / rate)
                .unwrap_or(Duration::MAX)
                .clamp(Duration::from_nanos(1), Duration::from_secs(86_400));
            let offset = interval * index as u32 / cfg.threads as u32;
            Schedule {
                first: start + offset,
                interval,
                next: 0,
            }
        });
        ThreadPlan {
            connections: cfg.connections / cfg.threads + extra,
            schedule,
            seed: index as u64 + 1,
            first: index,
            stride: cfg.threads,
        }
    }
}

/// An open-loop schedule: request `k` is due at `first + k × interval`. Times are computed from
/// `k` rather than by adding intervals, so rounding never drifts the rate.
pub(crate) struct Schedule {
    /// When the first request is due.
    first: Instant,
    /// Time between requests.
    interval: Duration,
    /// The index of the next request to become due.
    next: u64,
}

impl Schedule {
    /// When the next request is due.
    fn next_due(&self) -> Instant {
        self.first + Duration::from_nanos(nanos(self.interval).saturating_mul(self.next))
    }

    /// Moves every request due by `now` into `queue`.
    fn release_due(&mut self, now: Instant, queue: &mut VecDeque<Instant>) {
        loop {
            let due = self.next_due();
            if due > now {
                return;
            }
            queue.push_back(due);
            self.next += 1;
        }
    }
}

/// A duration in whole nanoseconds (saturating; durations here are far below 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The token of the open-loop [`Ticker`]; connection slots use `Token(0..connections)`.
const TICK: Token = Token(usize::MAX);

/// Runs one thread's share of the load until `start + cfg.duration`.
pub(crate) fn run_thread(cfg: &Config, plan: ThreadPlan, start: Instant) -> io::Result<Tally> {
    // Each thread owns its Poll and sockets: nothing is shared until the tallies are merged.
    let poll = Poll::new()?;
    let ticker = match &plan.schedule {
        Some(schedule) => Some(Ticker::start(
            poll.registry(),
            TICK,
            schedule.first.saturating_duration_since(Instant::now()),
            schedule.interval,
        )?),
        None => None,
    };
    let mut engine = Engine {
        poll,
        requests: Requests::new(cfg, plan.seed),
        conns: (0..plan.connections)
            .map(|i| {
                let source = cfg.source_ips.for_slot(i * plan.stride + plan.first);
                Conn::new(Token(i), cfg.target.addr, cfg.close, source)
            })
            .collect(),
        idle: (0..plan.connections).collect(),
        backing_off: VecDeque::new(),
        schedule: plan.schedule,
        queue: VecDeque::new(),
        ticker,
        timeout: cfg.timeout,
        tally: Tally::new(cfg.paths.entries().len()),
    };
    engine.run(start + cfg.duration)?;
    Ok(engine.tally)
}

/// One thread's event loop state.
struct Engine {
    /// This thread's readiness queue; slot `i` is `Token(i)`.
    poll: Poll,
    /// The request bytes and the path choice.
    requests: Requests,
    /// The connection slots.
    conns: Vec<Conn>,
    /// Slots without a request, oldest first, so an open-loop run spreads its requests over all
    /// connections rather than reusing the last one.
    idle: VecDeque<usize>,
    /// Slots whose connect failed, with the time they may try again (in order, as the backoff
    /// is constant).
    backing_off: VecDeque<(Instant, usize)>,
    /// Open loop: when requests become due. `None` in a closed-loop run.
    schedule: Option<Schedule>,
    /// Open loop: due times of requests waiting for an idle slot.
    queue: VecDeque<Instant>,
    /// Open loop: wakes the loop when requests fall due.
    ticker: Option<Ticker>,
    /// How long a started request may take.
    timeout: Duration,
    /// What this thread counted.
    tally: Tally,
}

impl Engine {
    /// The loop: release due requests, start them on idle slots, expire the slow, wait for
    /// readiness until the next thing is due, handle it; until `deadline`.
    fn run(&mut self, deadline: Instant) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // Timeouts are found by sweeping the slots a few times per timeout period, which costs
        // nothing per request and is exact enough for a limit measured in seconds.
        let sweep_every =
            (self.timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let mut next_sweep = Instant::now() + sweep_every;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            while let Some(&(until, slot)) = self.backing_off.front() {
                if until > now {
                    break;
                }
                self.backing_off.pop_front();
                self.idle.push_back(slot);
            }
            if let Some(schedule) = &mut self.schedule {
                schedule.release_due(now, &mut self.queue);
            }
            self.start_requests(now);
            if now >= next_sweep {
                self.expire(now);
                next_sweep = now + sweep_every;
            }

            // Due requests wake the loop through the ticker; the rest is fine to the millisecond.
            let mut wake = deadline.min(next_sweep);
            if let Some(&(until, _)) = self.backing_off.front() {
                wake = wake.min(until);
            }
            match self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                if event.token() == TICK {
                    // The due requests are released at the top of the loop.
                    if let Some(ticker) = &self.ticker {
                        ticker.acknowledge();
                    }
                    continue;
                }
                let slot = event.token().0;
                let conn = &mut self.conns[slot];
                let was_busy = conn.in_flight().is_some();
                let step = conn.on_event(event, &self.requests, &mut self.tally);
                // An idle slot is already in `idle`; only a slot whose request ended moves.
                if was_busy {
                    self.settle(slot, step);
                }
            }
        }
        self.tally.stopped = Some(Instant::now());
        self.tally.in_flight_at_deadline = self
            .conns
            .iter()
            .filter(|c| c.in_flight().is_some())
            .count() as u64;
        self.tally.queued_at_deadline = self.queue.len() as u64;
        Ok(())
    }

    /// Gives idle slots their next request: in closed loop every idle slot gets one due now, in
    /// open loop as many as are queued.
    fn start_requests(&mut self, now: Instant) {
        // Slots that end at once (a refused connect) are re-queued behind; look at each once.
        for _ in 0..self.idle.len() {
            let due = match self.schedule {
                None => now,
                Some(_) => match self.queue.pop_front() {
                    Some(due) => due,
                    None => return,
                },
            };
            let Some(slot) = self.idle.pop_front() else {
                return;
            };
            let request = InFlight::new(self.requests.next(), due, now);
            let step = self.conns[slot].start(
                request,
                &self.requests,
                self.poll.registry(),
                &mut self.tally,
            );
            self.settle(slot, step);
        }
    }

    /// Fails every request that has been in flight longer than the timeout.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let conn = &mut self.conns[slot];
            if conn
                .in_flight()
                .is_some_and(|r| now.saturating_duration_since(r.sent) >= self.timeout)
            {
                let step = conn.fail(ErrorKind::Timeout, &mut self.tally);
                self.settle(slot, step);
            }
        }
    }

    /// Files a slot according to what it is free to do.
    fn settle(&mut self, slot: usize, step: Step) {
        match step {
            Step::Busy => {}
            Step::Idle => self.idle.push_back(slot),
            Step::Backoff => self
                .backing_off
                .push_back((Instant::now() + CONNECT_BACKOFF, slot)),
        }
    }
}
