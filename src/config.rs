//! [`ClusterConfig`]: everything a cluster is configured with, as plain data.
//!
//! The public builder ([`crate::Cluster`]) fills one in; the master (`master`)
//! reads it. Both import this module and neither imports the other's internals, so the
//! settings have one definition and one set of defaults. What the settings *do* is
//! documented on the builder's methods, which are the way users set them.

use std::path::PathBuf;
use std::time::Duration;

use crate::channel::MAX_FDS_PER_HANDOFF;
use crate::policy::Policy;

/// The longest timeout herd takes (a year). A larger one is clamped to it: it would never
/// fire anyway, and `Instant + Duration` panics on overflow, so an "infinite" timeout such as
/// `Duration::MAX` must not reach the clock arithmetic.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A cluster's settings. See [`crate::Cluster`]'s methods for what each one does.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Workers to keep running (at least 1).
    pub workers: usize,
    /// How connections are spread over the workers.
    pub policy: Policy,
    /// How long a graceful stop (or a reload's old worker) may drain before it is killed.
    pub shutdown_timeout: Duration,
    /// Addresses bound before any worker starts, in order.
    pub listen: Vec<String>,
    /// The most fds per handoff packet (1 to [`MAX_FDS_PER_HANDOFF`]).
    pub handoff_batch: usize,
    /// The most connections one worker holds (`None`: what its fd limit allows).
    pub max_connections: Option<usize>,
    /// Where the metrics endpoint listens, if anywhere.
    pub admin: Option<String>,
    /// Where to write the master's pid.
    pub pid_file: Option<PathBuf>,
    /// At most this many restarts within this window, else the master gives up.
    pub max_restarts: Option<(u32, Duration)>,
    /// Replace a worker whose resident memory goes over this many bytes.
    pub max_worker_rss: Option<u64>,
    /// Kill and replace a worker silent this long while it has work.
    pub worker_timeout: Option<Duration>,
    /// Kill and replace a worker not online and listening this long after its start.
    pub start_timeout: Option<Duration>,
    /// Replace a worker once it has served N + random(0..=J) requests: `(N, J)`.
    pub max_requests: Option<(u64, u64)>,
    /// Replace a worker once it has run this long.
    pub max_worker_age: Option<Duration>,
    /// The user workers run as.
    pub user: Option<String>,
    /// The group workers run as (default: the user's primary group).
    pub group: Option<String>,
    /// Connections begin with a PROXY protocol header (the workers read it); under
    /// `ip-hash` the master peeks at it for at most this long, to hash the client it names.
    pub proxy_header_wait: Option<Duration>,
}

impl Default for ClusterConfig {
    /// One worker per CPU, round-robin, a 10 s shutdown timeout, 16 fds per handoff.
    fn default() -> ClusterConfig {
        ClusterConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            policy: Policy::RoundRobin,
            shutdown_timeout: Duration::from_secs(10),
            listen: Vec::new(),
            handoff_batch: MAX_FDS_PER_HANDOFF,
            max_connections: None,
            admin: None,
            pid_file: None,
            max_restarts: None,
            max_worker_rss: None,
            worker_timeout: None,
            start_timeout: None,
            max_requests: None,
            max_worker_age: None,
            user: None,
            group: None,
            proxy_header_wait: None,
        }
    }
}
