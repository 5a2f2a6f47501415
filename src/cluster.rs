//! The public face of herd, shaped like Node's `cluster` module.
//!
//! ```no_run
//! use herd::{Cluster, Event};
//!
//! fn main() -> std::io::Result<()> {
//!     Cluster::new()
//!         .workers(4)
//!         .on_event(|_cx, event| {
//!             if let Event::Exit { worker, .. } = event {
//!                 println!("worker{worker} exit");
//!             }
//!         })
//!         .worker(|w| {
//!             w.listen("127.0.0.1:3000", |_req: &herd::http::Request<'_>, res: &mut herd::http::Response| {
//!                 res.body("hello world");
//!             })?;
//!             Ok(())
//!         })
//!         .run()
//!         .map(|_| ())
//! }
//! ```
//!
//! [`Cluster::run`] turns the calling process into the master: it forks the workers, each of
//! which runs the `worker` closure and then its event loop; the master supervises them until
//! SIGTERM/SIGINT (or [`Control::shutdown`]) and returns once every worker is gone.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::master::Master;
use crate::policy::Policy;
use crate::worker::{Worker, WorkerId};

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it (the signal number).
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "code {c}"),
            ExitStatus::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("?");
                write!(f, "signal {s}, {name}")
            }
        }
    }
}

/// A worker life-cycle event, as Node's `cluster.on(...)` reports them.
#[derive(Debug)]
pub enum Event<'a> {
    /// `fork`: a worker process was created.
    Fork {
        /// The new worker's id.
        worker: WorkerId,
        /// Its process id.
        pid: i32,
    },
    /// `online`: the worker is running.
    Online {
        /// The worker.
        worker: WorkerId,
    },
    /// `listening`: the worker now receives connections for `addr`.
    Listening {
        /// The worker.
        worker: WorkerId,
        /// The shared listening address.
        addr: SocketAddr,
    },
    /// `message`: the worker sent a message (`Worker::send`).
    Message {
        /// The sender.
        worker: WorkerId,
        /// The bytes it sent.
        payload: &'a [u8],
    },
    /// `disconnect`: the worker's channel closed (it is exiting or has exited).
    Disconnect {
        /// The worker.
        worker: WorkerId,
    },
    /// `exit`: the worker process is gone (and reaped).
    Exit {
        /// The worker.
        worker: WorkerId,
        /// How it ended.
        status: ExitStatus,
    },
}

/// What an event callback can ask of the master. The requests are carried out as soon as the
/// callback returns.
#[derive(Debug, Default)]
pub struct Control {
    pub(crate) workers: Vec<WorkerId>,
    pub(crate) outgoing: Vec<(Option<WorkerId>, Vec<u8>)>,
    pub(crate) shutdown: bool,
    pub(crate) reload: bool,
}

impl Control {
    /// The workers currently alive, in fork order.
    pub fn workers(&self) -> &[WorkerId] {
        &self.workers
    }

    /// Sends `msg` to one worker (`cluster.workers[id].send`). At most 64 KiB.
    pub fn send(&mut self, worker: WorkerId, msg: impl Into<Vec<u8>>) {
        self.outgoing.push((Some(worker), msg.into()));
    }

    /// Sends `msg` to every live worker.
    pub fn broadcast(&mut self, msg: impl Into<Vec<u8>>) {
        self.outgoing.push((None, msg.into()));
    }

    /// Starts a graceful stop, as SIGTERM would.
    pub fn shutdown(&mut self) {
        self.shutdown = true;
    }

    /// Starts a rolling reload, as SIGHUP would: each worker in turn is replaced by a fresh
    /// one, which takes connections before the old one drains and exits.
    pub fn reload(&mut self) {
        self.reload = true;
    }
}

/// How [`Cluster::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every worker finished its in-flight requests and exited.
    Graceful,
    /// Some workers had to be killed: the shutdown timeout ran out, or a second SIGINT came.
    Forced,
}

/// The event callback type.
pub(crate) type EventCallback = Box<dyn FnMut(&mut Control, &Event<'_>)>;
/// The worker setup type.
pub(crate) type WorkerSetup = Box<dyn FnMut(&mut Worker) -> io::Result<()>>;

/// A cluster of worker processes behind one master. Build it, then [`run`](Cluster::run) it.
pub struct Cluster {
    pub(crate) workers: usize,
    pub(crate) policy: Policy,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) listen: Vec<String>,
    pub(crate) handoff_batch: usize,
    pub(crate) on_event: Option<EventCallback>,
    pub(crate) setup: Option<WorkerSetup>,
    pub(crate) ops: crate::master::OpsOptions,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    /// A cluster with one worker per CPU, round-robin, a 10 s shutdown timeout.
    pub fn new() -> Cluster {
        Cluster {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            policy: Policy::RoundRobin,
            shutdown_timeout: Duration::from_secs(10),
            listen: Vec::new(),
            handoff_batch: crate::channel::MAX_FDS_PER_HANDOFF,
            on_event: None,
            setup: None,
            ops: crate::master::OpsOptions::default(),
        }
    }

    /// How many workers to keep running (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// How connections are spread over the workers.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long a graceful stop waits for workers before killing them.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The most connections one handoff packet carries (1 to 16, default 16). A burst of
    /// accepts then costs one `sendmsg` per worker instead of one per connection; 1 is there
    /// to measure what batching buys.
    pub fn handoff_batch(mut self, n: usize) -> Self {
        self.handoff_batch = n.clamp(1, crate::channel::MAX_FDS_PER_HANDOFF);
        self
    }

    /// Binds `addr` in the master before any worker starts, so a bad address or a port in use
    /// is reported by [`run`](Cluster::run) at once. Workers that `listen` on the same
    /// address share this socket. Optional: a worker's `listen` binds on demand otherwise.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen.push(addr.into());
        self
    }

    /// Called in the master for every [`Event`].
    pub fn on_event(mut self, f: impl FnMut(&mut Control, &Event<'_>) + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// What each worker runs after the fork: typically `listen` calls and `on_message`.
    /// An error ends that worker (exit code 1); the master respawns it with back-off.
    pub fn worker(mut self, f: impl FnMut(&mut Worker) -> io::Result<()> + 'static) -> Self {
        self.setup = Some(Box::new(f));
        self
    }

    /// Writes the master's pid to `path` once it runs (a binary upgrade's new master
    /// rewrites it when it takes over); removed at exit if it still names this master.
    pub fn pid_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ops.pid_file = Some(path.into());
        self
    }

    /// Gives up (the master stops and [`run`](Cluster::run) returns an error) when workers
    /// had to be restarted more than `max` times within `window`. Without it, crashing
    /// workers are respawned forever, with back-off.
    pub fn max_restarts(mut self, max: u32, window: Duration) -> Self {
        self.ops.max_restarts = Some((max, window));
        self
    }

    /// Replaces a worker gracefully (as a one-worker reload) when its resident memory goes
    /// over `bytes`; checked once a second.
    pub fn max_worker_rss(mut self, bytes: u64) -> Self {
        self.ops.max_worker_rss = Some(bytes);
        self
    }

    /// Workers switch to this user (and its groups) right after the fork, before serving;
    /// the master keeps its own privileges to bind. A worker that cannot switch exits with
    /// [`crate::worker::EXIT_CONFIG`] and the master stops with an error.
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.ops.user = Some(name.into());
        self
    }

    /// The group workers switch to (default: the `user`'s primary group). Needs `user`.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.ops.group = Some(name.into());
        self
    }

    /// Runs the master until the cluster stops. Must be called while the process is
    /// single-threaded (it forks); returns an error at once otherwise.
    pub fn run(self) -> io::Result<Shutdown> {
        Master::new(self)?.run()
    }
}
