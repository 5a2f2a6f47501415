//! Scheduling policies: which worker gets the next connection.
//!
//! Two families, as in the servers people run:
//!
//! * **master-accept** (the master accepts and hands the fd over, Node's way):
//!   - `round-robin` (default, Node's `SCHED_RR` without its acknowledgement): strict rotation
//!     over the listener's live workers;
//!   - `node`: Node's `SCHED_RR` exactly ([`AckGate`]): one connection at a time per worker,
//!     the next only after the worker acknowledged the previous; connections that find no
//!     free worker wait in a queue in the master;
//!   - `least-connections`: the worker with the fewest open connections, ties broken by
//!     rotation;
//!   - `p2c`: the power of two random choices (Mitzenmacher): two distinct random workers,
//!     the one with fewer open connections wins;
//!   - `ip-hash`: sticky by client: the client's IP address is hashed onto the worker
//!     *slots* ([`crate::rendezvous`]), so every connection from one address reaches the
//!     worker in one slot, a respawned or reloaded worker inherits its predecessor's
//!     clients, and a worker's death moves only its own clients. The address is the one
//!     `accept` returned or, on a PROXY protocol listener, the client the header names
//!     (the master peeks at it before dispatch: `master::peek`).
//! * **worker-accept** (the kernel decides, [`Acceptance`]): every worker accepts for itself
//!   from the inherited listening socket (`shared`, Node's `SCHED_NONE`, nginx's default),
//!   the same with `EPOLLEXCLUSIVE` (`shared-exclusive`), or from a `SO_REUSEPORT` socket of
//!   its own (`reuseport`).
//!
//! The choice is made per listener, over the workers that asked to listen on it and are not
//! stopping, so a dead, starting or draining worker is simply skipped. "Open connections"
//! are the master's count per worker: handed over (or, worker-accept, reported accepted),
//! less the closes the worker reports in its batched acknowledgements (every ≤ 50 ms), so
//! the load-aware policies see a load that is at most that old.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// How connections are spread over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The k-th connection goes to the k-th eligible worker in rotation (Node's default).
    #[default]
    RoundRobin,
    /// Node's `SCHED_RR` exactly: a FIFO of free workers, one unacknowledged connection per
    /// worker, a queue in the master for the rest (`round_robin_handle.js`).
    Node,
    /// The worker with the fewest open connections; ties go to the next in rotation.
    LeastConnections,
    /// Two distinct random workers; the one with fewer open connections.
    P2c,
    /// The worker slot the client's IP address hashes to (rendezvous hashing over the live
    /// slots): one client, one worker.
    IpHash,
    /// Workers accept from the one shared listening socket (Node's `SCHED_NONE`).
    Shared,
    /// As `Shared`, registered with `EPOLLEXCLUSIVE` so one accept wakes one worker.
    SharedExclusive,
    /// Each worker accepts from its own `SO_REUSEPORT` socket; the kernel hashes
    /// connections over them.
    ReusePort,
}

/// Who accepts a listener's connections, and from which socket. Sent to the worker in its
/// listen reply ([`crate::channel::ToWorker::ListenOk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// The master accepts and hands connections over.
    Master,
    /// The worker accepts from the shared socket attached to the reply.
    Shared,
    /// As `Shared`, with `EPOLLEXCLUSIVE`.
    SharedExclusive,
    /// The worker accepts from the `SO_REUSEPORT` socket attached to the reply, its own.
    ReusePort,
}

impl Acceptance {
    /// The one-byte wire code.
    pub fn code(self) -> u8 {
        match self {
            Acceptance::Master => 0,
            Acceptance::Shared => 1,
            Acceptance::SharedExclusive => 2,
            Acceptance::ReusePort => 3,
        }
    }

    /// The acceptance with this wire code.
    pub fn from_code(code: u8) -> Option<Acceptance> {
        Some(match code {
            0 => Acceptance::Master,
            1 => Acceptance::Shared,
            2 => Acceptance::SharedExclusive,
            3 => Acceptance::ReusePort,
            _ => return None,
        })
    }
}

impl Policy {
    /// Every policy, for help texts and benchmarks.
    pub const ALL: &'static [Policy] = &[
        Policy::RoundRobin,
        Policy::Node,
        Policy::LeastConnections,
        Policy::P2c,
        Policy::IpHash,
        Policy::Shared,
        Policy::SharedExclusive,
        Policy::ReusePort,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Node => "node",
            Policy::LeastConnections => "least-connections",
            Policy::P2c => "p2c",
            Policy::IpHash => "ip-hash",
            Policy::Shared => "shared",
            Policy::SharedExclusive => "shared-exclusive",
            Policy::ReusePort => "reuseport",
        }
    }

    /// Who accepts under this policy.
    pub fn acceptance(self) -> Acceptance {
        match self {
            Policy::Shared => Acceptance::Shared,
            Policy::SharedExclusive => Acceptance::SharedExclusive,
            Policy::ReusePort => Acceptance::ReusePort,
            _ => Acceptance::Master,
        }
    }

    /// Whether the workers accept for themselves (the master then never accepts).
    pub fn worker_accepts(self) -> bool {
        self.acceptance() != Acceptance::Master
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        parse_name(s, Policy::ALL, |p| p.name(), "policy")
    }
}

/// Finds the member of `all` whose `name` is `s`, or explains what was expected: how the
/// command line's lists of names (policies, bench workloads) are parsed.
pub(crate) fn parse_name<T: Copy>(
    s: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter().copied().find(|&t| name(t) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
        format!(
            "unknown {what} '{s}' (expected one of: {})",
            names.join(", ")
        )
    })
}

/// The decision state of one listener for the stateless-queue policies (`round-robin`,
/// `least-connections`, `p2c`): a rotation position and a random number generator.
///
/// Candidates are indices `0..len` into the listener's subscriber list; `eligible(i)` says
/// whether candidate `i` may take a connection now and `load(i)` is its open connections.
#[derive(Debug)]
pub struct Picker {
    next: usize,
    rng: XorShift,
}

impl Default for Picker {
    fn default() -> Picker {
        Picker::with_seed(seed_from_clock())
    }
}

impl Picker {
    /// A picker whose random choices follow `seed` (tests and benchmarks repeat them).
    pub fn with_seed(seed: u64) -> Picker {
        Picker {
            next: 0,
            rng: XorShift::new(seed),
        }
    }

    /// One decision under `policy` (which must be `round-robin`, `least-connections` or
    /// `p2c`; `node` decides through its [`AckGate`], and the worker-accept policies never
    /// ask). `None` if no candidate is eligible.
    pub fn pick(
        &mut self,
        policy: Policy,
        len: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        match policy {
            Policy::LeastConnections => self.least_loaded(len, eligible, load),
            Policy::P2c => self.two_choices(len, eligible, load),
            _ => self.round_robin(len, eligible),
        }
    }

    /// The next eligible candidate in rotation, starting where the previous pick left off.
    pub fn round_robin(&mut self, len: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        for step in 0..len {
            let i = (self.next + step) % len;
            if eligible(i) {
                self.next = (i + 1) % len;
                return Some(i);
            }
        }
        None
    }

    /// The eligible candidate with the lowest load; among equals, the first in rotation
    /// order from where the previous pick left off (so an idle cluster still rotates).
    pub fn least_loaded(
        &mut self,
        len: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for step in 0..len {
            let i = (self.next + step) % len;
            if eligible(i) {
                let l = load(i);
                if best.is_none_or(|(b, _)| l < b) {
                    best = Some((l, i));
                }
            }
        }
        let (_, i) = best?;
        self.next = (i + 1) % len;
        Some(i)
    }

    /// Two distinct eligible candidates drawn at random; the one with the lower load (the
    /// first drawn on a tie). With a single eligible candidate, that one.
    pub fn two_choices(
        &mut self,
        len: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let n = (0..len).filter(|&i| eligible(i)).count();
        let nth = |k: usize| (0..len).filter(|&i| eligible(i)).nth(k);
        match n {
            0 => None,
            1 => nth(0),
            _ => {
                let a = self.rng.below(n as u64) as usize;
                // A second draw over the other n-1, shifted past `a`: distinct by construction.
                let mut b = self.rng.below(n as u64 - 1) as usize;
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(a)?, nth(b)?);
                Some(if load(b) < load(a) { b } else { a })
            }
        }
    }
}

/// xorshift64*: a few instructions per number, plenty for spreading load; not for secrets.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced: xorshift would stay at 0 forever).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift (Lemire), without a division.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

fn seed_from_clock() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 32)
}

/// Whether a worker on [`AckGate`]'s free list can take a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    /// Now.
    Now,
    /// Not now (at its connection limit, its channel full): it stays free, in its place.
    Later,
    /// Never again (stopping, gone): it leaves the gate.
    Never,
}

/// Node's `SCHED_RR` for one listener (`lib/internal/cluster/round_robin_handle.js`):
///
/// * `free`: the workers that may take a connection now, first in, first out;
/// * `handles`: accepted connections waiting for a free worker, in the master;
/// * `distribute(conn)` queues the connection and, if a worker is free, hands it off;
/// * `handoff(worker)` gives the worker the oldest waiting connection, or puts the worker
///   back on the free list when nothing waits. A worker with a connection out is *busy*
///   until it acknowledges it ([`AckGate::acknowledged`]); then it hands off again.
///
/// Workers are the master's keys; `T` is the connection. The gate decides; the master sends
/// (with an acknowledgement requested) what [`AckGate::handoff_all`] returns.
#[derive(Debug)]
pub struct AckGate<T> {
    free: VecDeque<usize>,
    busy: Vec<usize>,
    handles: VecDeque<T>,
}

impl<T> Default for AckGate<T> {
    fn default() -> Self {
        AckGate {
            free: VecDeque::new(),
            busy: Vec::new(),
            handles: VecDeque::new(),
        }
    }
}

impl<T> AckGate<T> {
    /// A worker starts listening: it is free (Node's `add`).
    pub fn add(&mut self, worker: usize) {
        if !self.free.contains(&worker) && !self.busy.contains(&worker) {
            self.free.push_back(worker);
        }
    }

    /// A worker is gone or stopping: it gets nothing more (Node's `remove`).
    pub fn remove(&mut self, worker: usize) {
        self.free.retain(|&w| w != worker);
        self.busy.retain(|&w| w != worker);
    }

    /// An accepted connection joins the queue (the first half of Node's `distribute`).
    pub fn push(&mut self, conn: T) {
        self.handles.push_back(conn);
    }

    /// The worker acknowledged its connection: it is free again. Returns false if it was
    /// not busy here.
    pub fn acknowledged(&mut self, worker: usize) -> bool {
        let Some(at) = self.busy.iter().position(|&w| w == worker) else {
            return false;
        };
        self.busy.remove(at);
        self.free.push_back(worker);
        true
    }

    /// Pairs waiting connections with free workers, oldest with first-freed, until one side
    /// runs out; each worker paired is busy until [`AckGate::acknowledged`]. A free worker
    /// that cannot take one now ([`Eligibility::Later`]) keeps its place on the free list;
    /// one that never will again ([`Eligibility::Never`]: stopping, as a reload replaces
    /// it) leaves the gate.
    pub fn handoff_all(&mut self, eligible: impl Fn(usize) -> Eligibility) -> Vec<(usize, T)> {
        let mut out = Vec::new();
        let mut later = Vec::new();
        while !self.handles.is_empty() {
            let Some(worker) = self.free.pop_front() else {
                break;
            };
            match eligible(worker) {
                Eligibility::Now => {
                    let conn = self.handles.pop_front().expect("checked non-empty");
                    self.busy.push(worker);
                    out.push((worker, conn));
                }
                Eligibility::Later => later.push(worker),
                Eligibility::Never => {}
            }
        }
        // Back at the front, in their order: they were first in line.
        for worker in later.into_iter().rev() {
            self.free.push_front(worker);
        }
        out
    }

    /// Connections waiting in the master.
    pub fn queued(&self) -> usize {
        self.handles.len()
    }

    /// Whether the worker has a connection out, unacknowledged.
    pub fn is_busy(&self, worker: usize) -> bool {
        self.busy.contains(&worker)
    }

    /// Takes every waiting connection (a graceful stop lifts the gate).
    pub fn take_queued(&mut self) -> Vec<T> {
        self.handles.drain(..).collect()
    }
}

#[cfg(test)]
mod tests;
