//! The flags of the cluster underneath `herd serve`, `herd proxy` and `herd run`: how many
//! workers, how connections are spread over them, how long a graceful stop may take
//! ([`ClusterArgs`]); and how the master is operated: metrics, pid file, restart and memory
//! limits, the watchdog, recycling, the workers' user ([`OpsArgs`]).

use std::path::PathBuf;
use std::time::Duration;

use super::duration;
use crate::cluster::Cluster;
use crate::policy::Policy;

/// The cluster flags `herd serve` and `herd proxy` share.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Number of worker processes [default: the number of CPUs].
    #[arg(long, short = 'w', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// How connections are spread over workers: round-robin, node, least-connections, p2c,
    /// ip-hash (the master accepts); shared, shared-exclusive, reuseport (the workers accept)
    /// [default: round-robin; shared for a socket-activated `herd run`].
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<Policy>,
    /// How long a graceful stop waits for workers before killing them, in seconds ("10",
    /// "2.5") or with a unit ("500ms"); 0 kills at once.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "10",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::ZERO)
    )]
    shutdown_timeout: Duration,
}

impl ClusterArgs {
    /// A cluster with these settings, to add listeners and the worker's function to.
    pub fn cluster(&self) -> Cluster {
        let cluster = Cluster::new()
            .policy(self.policy.unwrap_or_default())
            .shutdown_timeout(self.shutdown_timeout);
        match self.workers {
            Some(n) => cluster.workers(n as usize),
            None => cluster,
        }
    }
}

/// The operational flags `herd serve`, `herd proxy` and `herd run` share.
#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    /// Serve GET /metrics (Prometheus) and GET /status (JSON) on this address, from the master.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Write the master's pid here (a binary upgrade's new master rewrites it).
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Give up (stop, exit 1) after more than N worker restarts within --restart-window.
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,
    /// The window --max-restarts counts restarts in, in seconds (or with a unit: "90s", "2m").
    #[arg(
        long,
        value_name = "SECS",
        default_value = "60",
        allow_negative_numbers = true,
        value_parser = duration::positive()
    )]
    restart_window: Duration,
    /// Replace (gracefully) a worker whose resident memory goes over MB megabytes (its
    /// process tree's: the worker and every descendant, summed).
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    max_worker_rss: Option<u64>,
    /// Kill (SIGABRT, then SIGKILL) and replace a worker that has work and has not been
    /// heard from for SECS: herd's workers heartbeat from their event loop, Node workers
    /// accept each connection handed over, socket-activated programs get WATCHDOG_USEC and
    /// must send WATCHDOG=1. An idle worker is never killed for being quiet.
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(10))
    )]
    worker_timeout: Option<Duration>,
    /// Kill and replace a worker that is not online and listening SECS after its start.
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(10))
    )]
    start_timeout: Option<Duration>,
    /// Replace (gracefully, one at a time) a worker once it has answered N requests (plus
    /// its own random share of --max-requests-jitter); a Node worker's connections count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: Option<u64>,
    /// Each worker's --max-requests limit is N plus a random number in 0..=J, so that
    /// workers balanced evenly are not all replaced at once.
    #[arg(long, value_name = "J", default_value_t = 0, requires = "max_requests")]
    max_requests_jitter: u64,
    /// Replace (gracefully, one at a time) a worker once it has run for SECS.
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(10))
    )]
    max_worker_age: Option<Duration>,
    /// Run the workers as this user (the master keeps its privileges to bind).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Run the workers in this group [default: the user's primary group]. Needs --user.
    #[arg(long, value_name = "NAME", requires = "user")]
    group: Option<String>,
}

impl OpsArgs {
    /// `cluster` with these settings.
    pub fn apply(self, mut cluster: Cluster) -> Cluster {
        if let Some(addr) = self.admin {
            cluster = cluster.admin(addr);
        }
        if let Some(path) = self.pid_file {
            cluster = cluster.pid_file(path);
        }
        if let Some(n) = self.max_restarts {
            cluster = cluster.max_restarts(n, self.restart_window);
        }
        if let Some(mb) = self.max_worker_rss {
            cluster = cluster.max_worker_rss(mb << 20);
        }
        if let Some(timeout) = self.worker_timeout {
            cluster = cluster.worker_timeout(timeout);
        }
        if let Some(timeout) = self.start_timeout {
            cluster = cluster.start_timeout(timeout);
        }
        if let Some(n) = self.max_requests {
            cluster = cluster.max_requests(n, self.max_requests_jitter);
        }
        if let Some(age) = self.max_worker_age {
            cluster = cluster.max_worker_age(age);
        }
        if let Some(user) = self.user {
            cluster = cluster.user(user);
        }
        if let Some(group) = self.group {
            cluster = cluster.group(group);
        }
        cluster
    }
}

/// The HTTP connection time limits `herd serve` and `herd proxy` take (the other limits of
/// [`Timeouts`](crate::http::Timeouts) keep their defaults).
#[derive(Debug, clap::Args)]
pub struct TimeoutArgs {
    /// How long a client has to send a whole request (else 408), and its first one after it
    /// connects, in seconds (or with a unit: "500ms").
    #[arg(
        long,
        value_name = "SECS",
        default_value = "10",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(1))
    )]
    request_timeout: Duration,
    /// How long an idle keep-alive connection stays open between requests.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "5",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(1))
    )]
    keep_alive_timeout: Duration,
}

/// `--proxy-protocol` and its timeout, for the listeners of `herd serve` and `herd proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyProtocolArgs {
    /// Every connection must start with a PROXY protocol header (v1 or v2), as an L4
    /// balancer in front writes it; the client address it names is the one herd uses (the
    /// requests' peer address, X-Forwarded-For, the logs, --policy ip-hash). Connections
    /// without one are closed.
    #[arg(long)]
    proxy_protocol: bool,
    /// Seconds a connection has to send its whole PROXY protocol header.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "3",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(1))
    )]
    proxy_protocol_timeout: Duration,
}

impl ProxyProtocolArgs {
    /// How long a connection has to send its header, if one is required.
    pub fn deadline(&self) -> Option<Duration> {
        self.proxy_protocol.then_some(self.proxy_protocol_timeout)
    }

    /// Tells the cluster's master (`ip-hash` hashes the client the header names).
    pub fn apply(&self, cluster: Cluster) -> Cluster {
        match self.deadline() {
            Some(wait) => cluster.proxy_protocol(wait),
            None => cluster,
        }
    }
}

impl TimeoutArgs {
    /// The time limits these flags give.
    pub fn timeouts(&self) -> crate::http::Timeouts {
        crate::http::Timeouts {
            request: self.request_timeout,
            keep_alive: self.keep_alive_timeout,
            ..crate::http::Timeouts::default()
        }
    }
}
