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
//! The builder only collects settings ([`ClusterConfig`]) and callbacks; [`Cluster::run`]
//! hands them to the master (`master`).
//!
//! [`Cluster::run`] turns the calling process into the master: it forks the workers, each of
//! which runs the `worker` closure and then its event loop; the master supervises them until
//! SIGTERM/SIGINT (or [`Control::shutdown`]) and returns once every worker is gone.

use std::io;
use std::time::Duration;

use crate::config::{ClusterConfig, MAX_TIMEOUT};
use crate::event::{Control, Event, EventCallback, Shutdown};
use crate::exec::{ExecLaunch, InstanceLaunch, Program, Protocol};
use crate::link::Launch;
use crate::master::{ForkLaunch, Master};
use crate::output::LogSink;
use crate::policy::Policy;
use crate::worker::{Setup, Worker};

/// A cluster of worker processes behind one master. Build it, then [`run`](Cluster::run) it.
pub struct Cluster {
    config: ClusterConfig,
    on_event: Option<EventCallback>,
    setup: Option<Setup>,
    /// Workers that are a program instead of the `worker` closure.
    exec: Option<Exec>,
    /// Instances of a program on ports of their own, beside the workers.
    instances: Option<Instances>,
}

/// Instances beside the workers ([`Cluster::instances`]).
#[derive(Debug)]
struct Instances {
    program: Program,
    count: usize,
    base_port: u16,
    ready_path: Option<String>,
}

/// A program the workers run ([`Cluster::exec`]).
#[derive(Debug)]
struct Exec {
    program: Program,
    protocol: Protocol,
    port_map: Vec<(u16, u16)>,
    output: Option<LogSink>,
    ready_after: Option<Duration>,
    stop_signal: nix::sys::signal::Signal,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("on_event", &self.on_event.is_some())
            .field("worker", &self.setup.is_some())
            .field("exec", &self.exec)
            .field("instances", &self.instances)
            .finish()
    }
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
            config: ClusterConfig::default(),
            on_event: None,
            setup: None,
            exec: None,
            instances: None,
        }
    }

    /// A cluster with these settings (read from a file, say).
    pub fn with_config(config: ClusterConfig) -> Cluster {
        Cluster {
            config,
            ..Cluster::new()
        }
    }

    /// The settings so far.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// How many workers to keep running (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n.max(1);
        self
    }

    /// How connections are spread over the workers.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// How long a graceful stop waits for workers before killing them (at most
    /// [`MAX_TIMEOUT`]; longer is taken as that).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// The most connections one handoff packet carries (1 to 16, default 16). A burst of
    /// accepts then costs one `sendmsg` per worker instead of one per connection; 1 is there
    /// to measure what batching buys.
    pub fn handoff_batch(mut self, n: usize) -> Self {
        self.config.handoff_batch = n.clamp(1, crate::channel::MAX_FDS_PER_HANDOFF);
        self
    }

    /// The most connections one worker holds at once (at least 1; default: as many as its
    /// open-file limit allows). The master counts the connections it handed each worker and
    /// not yet heard closed, and skips a worker at its limit; when every worker is at its
    /// limit, the master stops accepting and new connections wait in the kernel's backlog
    /// until a worker reports one closed.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = Some(n.max(1));
        self
    }

    /// Says that every connection begins with a PROXY protocol header (v1 or v2), as behind
    /// an L4 balancer that sends one. The workers read and check it
    /// ([`crate::worker::HttpService::with_proxy_protocol`]); this tells the master, so that
    /// under [`Policy::IpHash`] it hashes the client address the header carries rather
    /// than the balancer's: it peeks at the header (leaving it in the socket for the
    /// worker) and waits for it at most `wait`.
    pub fn proxy_protocol(mut self, wait: Duration) -> Self {
        self.config.proxy_header_wait = Some(wait.min(MAX_TIMEOUT));
        self
    }

    /// Binds `addr` in the master before any worker starts, so a bad address or a port in use
    /// is reported by [`run`](Cluster::run) at once. Workers that `listen` on the same
    /// address share this socket. Optional: a worker's `listen` binds on demand otherwise.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.config.listen.push(addr.into());
        self
    }

    /// Serves `GET /metrics` (Prometheus text) and `GET /status` (JSON) on `addr`, from the
    /// master's own loop: per-worker connections, requests, open connections, exits. The
    /// bound address is logged as `admin listening on ADDR`. Off unless called.
    pub fn admin(mut self, addr: impl Into<String>) -> Self {
        self.config.admin = Some(addr.into());
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
        self.config.pid_file = Some(path.into());
        self
    }

    /// Gives up (the master stops and [`run`](Cluster::run) returns an error) when workers
    /// had to be restarted more than `max` times within `window`. Without it, crashing
    /// workers are respawned forever, with back-off.
    pub fn max_restarts(mut self, max: u32, window: Duration) -> Self {
        self.config.max_restarts = Some((max, window.min(MAX_TIMEOUT)));
        self
    }

    /// Replaces a worker gracefully (as a one-worker reload) when its resident memory goes
    /// over `bytes`; checked once a second.
    pub fn max_worker_rss(mut self, bytes: u64) -> Self {
        self.config.max_worker_rss = Some(bytes);
        self
    }

    /// Kills (SIGABRT, then SIGKILL) and replaces a worker that has work and has not been
    /// heard from for `timeout`: herd's own workers send a heartbeat from their event loop
    /// while they hold connections, a Node worker accepts each connection handed over, a
    /// socket-activated program sends `WATCHDOG=1` (it gets `WATCHDOG_USEC`). A worker idle
    /// with nothing to do is never killed for being quiet. Connections it never read go to
    /// the other workers. Off unless called.
    pub fn worker_timeout(mut self, timeout: Duration) -> Self {
        self.config.worker_timeout = Some(timeout.clamp(Duration::from_millis(1), MAX_TIMEOUT));
        self
    }

    /// Kills and replaces a worker that is not online and listening `timeout` after its
    /// start. Off unless called (a worker that never listens is then left alone).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.config.start_timeout = Some(timeout.min(MAX_TIMEOUT));
        self
    }

    /// Replaces a worker gracefully (as a one-worker reload, one at a time) once it has
    /// answered `n` + a random number in `0..=jitter` requests: each worker draws its own,
    /// so that workers balanced evenly do not all reach the limit at once. A Node worker's
    /// connections handed over are counted instead (it reports no requests); a
    /// socket-activated program cannot be counted and [`run`](Cluster::run) refuses it.
    pub fn max_requests(mut self, n: u64, jitter: u64) -> Self {
        self.config.max_requests = Some((n.max(1), jitter));
        self
    }

    /// Replaces a worker gracefully (as a one-worker reload) once it has run for `age`.
    pub fn max_worker_age(mut self, age: Duration) -> Self {
        self.config.max_worker_age = Some(age.min(MAX_TIMEOUT));
        self
    }

    /// Workers switch to this user (and its groups) right after the fork, before serving;
    /// the master keeps its own privileges to bind. A worker that cannot switch exits with
    /// [`crate::worker::EXIT_CONFIG`] and the master stops with an error.
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.config.user = Some(name.into());
        self
    }

    /// The group workers switch to (default: the `user`'s primary group). Needs `user`.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.config.group = Some(name.into());
        self
    }

    /// Workers that are a program rather than the [`worker`](Cluster::worker) closure:
    /// each worker is `command` (its program, arguments and environment; its current
    /// directory is herd's), started with `fork` + `exec` and supervised like any worker.
    ///
    /// A Node.js program (`node` or `nodejs`, or [`Cluster::protocol`]) is started as
    /// Node's own `cluster.fork()` starts one, and herd is its cluster primary:
    /// `cluster.isWorker` is true, its servers' `listen()` ask the master for their sockets,
    /// and the [`Event::Message`]s are its `process.send()`s.
    ///
    /// Any other program is socket-activated, as systemd starts a service: the
    /// [`listen`](Cluster::listen) addresses' sockets at fds 3, 4, … (`LISTEN_FDS`,
    /// `LISTEN_PID`), a `NOTIFY_SOCKET` of its own for `READY=1`; it accepts itself, so the
    /// policy must be `shared` or `reuseport`.
    ///
    /// ```no_run
    /// let mut app = std::process::Command::new("node");
    /// app.arg("app.js");
    /// herd::Cluster::new().workers(2).exec(app).run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn exec(mut self, command: std::process::Command) -> Self {
        let program = program_of(&command);
        let protocol = Protocol::of_command(command.get_program());
        self.exec = Some(Exec {
            program,
            protocol,
            port_map: Vec::new(),
            output: None,
            ready_after: None,
            stop_signal: nix::sys::signal::Signal::SIGTERM,
        });
        self
    }

    /// The protocol the [`exec`](Cluster::exec)'d program speaks, when its name does not
    /// say (a `node` behind another name).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        if let Some(exec) = self.exec.as_mut() {
            exec.protocol = protocol;
        }
        self
    }

    /// A socket-activated program that never sends `READY=1` counts as ready this long
    /// after it started (by default it must notify).
    pub fn ready_after(mut self, after: Duration) -> Self {
        if let Some(exec) = self.exec.as_mut() {
            exec.ready_after = Some(after.min(MAX_TIMEOUT));
        }
        self
    }

    /// The signal that asks a socket-activated program to finish (its process group gets
    /// it; SIGTERM by default; SIGKILL follows after the shutdown timeout).
    pub fn stop_signal(mut self, signal: nix::sys::signal::Signal) -> Self {
        if let Some(exec) = self.exec.as_mut() {
            exec.stop_signal = signal;
        }
        self
    }

    /// A worker program's `listen` on port `from` binds port `to` instead (0: any free
    /// port), and the program is told it got `from`: an unmodified app that listens on a
    /// fixed port can run on another, or on port 0 in a test. The master logs the real one.
    pub fn map_port(mut self, from: u16, to: u16) -> Self {
        if let Some(exec) = self.exec.as_mut() {
            exec.port_map.push((from, to));
        }
        self
    }

    /// `count` instances of `command` beside the workers, supervised as they are (respawn
    /// with back-off, restart limits, reloads one at a time): instance `i` runs with
    /// `PORT=base_port+i` and `HERD_INSTANCE=i`, binds that port itself, and is ready once
    /// the port accepts a connection (or [`instance_ready_path`](Cluster::instance_ready_path)
    /// answers 2xx). `herd proxy --spawn` balances over them.
    pub fn instances(
        mut self,
        command: std::process::Command,
        count: usize,
        base_port: u16,
    ) -> Self {
        self.instances = Some(Instances {
            program: program_of(&command),
            count: count.max(1),
            base_port,
            ready_path: None,
        });
        self
    }

    /// The path an instance is ready at: a `GET` of it must answer 2xx.
    pub fn instance_ready_path(mut self, path: impl Into<String>) -> Self {
        if let Some(i) = self.instances.as_mut() {
            i.ready_path = Some(path.into());
        }
        self
    }

    /// Where an [`exec`](Cluster::exec)'d worker's stdout and stderr lines go (default:
    /// herd's own stdout and stderr, each line prefixed with its worker).
    pub fn output(mut self, sink: LogSink) -> Self {
        if let Some(exec) = self.exec.as_mut() {
            exec.output = Some(sink);
        }
        self
    }

    /// Runs the master until the cluster stops. Must be called while the process is
    /// single-threaded (it forks); returns an error at once otherwise.
    pub fn run(self) -> io::Result<Shutdown> {
        let (launch, sink): (Box<dyn Launch>, _) = match self.exec {
            None => {
                let setup = self
                    .setup
                    .unwrap_or_else(|| Box::new(|_w: &mut Worker| Ok(())));
                (Box::new(ForkLaunch::new(setup)), None)
            }
            Some(exec) => {
                // A command that cannot run is an error now, not a crash loop of workers.
                exec.program
                    .check()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let protocol = exec.protocol;
                crate::exec::check_policy(protocol, self.config.policy)?;
                if protocol == Protocol::Node {
                    crate::exec::check_node_script(exec.program.arguments())?;
                }
                if protocol == Protocol::Systemd && self.config.max_requests.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "--max-requests cannot count the requests of a socket-activated program \
                         (it accepts and answers them itself); use --max-worker-age",
                    ));
                }
                if protocol == Protocol::Systemd && self.config.listen.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a socket-activated program needs --listen: herd binds the sockets \
                         it passes",
                    ));
                }
                let launch = ExecLaunch::new(exec.program, protocol, exec.port_map)
                    .ready_after(exec.ready_after)
                    .stop_signal(exec.stop_signal);
                (Box::new(launch), exec.output)
            }
        };
        let workers = self.config.workers;
        let mut groups: Vec<(Box<dyn Launch>, usize)> = vec![(launch, workers)];
        let mut sink = sink;
        if let Some(i) = self.instances {
            i.program
                .check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            if i.base_port as usize + i.count - 1 > u16::MAX as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--spawn-port + --spawn goes past port 65535",
                ));
            }
            sink = sink.or(Some(LogSink::stdio()?));
            let launch = InstanceLaunch::new(i.program, i.base_port, i.ready_path);
            groups.push((Box::new(launch), i.count));
        }
        Master::new(self.config, self.on_event, groups, sink)?.run()
    }
}

/// A [`Program`] from what a [`std::process::Command`] says: its program, arguments and
/// environment (its current directory is not taken: the program runs in herd's).
fn program_of(command: &std::process::Command) -> Program {
    let mut program = Program::new(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        program = match value {
            Some(value) => program.env(name, value),
            None => program.env_remove(name),
        };
    }
    program
}
