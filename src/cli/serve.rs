//! `herd serve`: a [`Cluster`](crate::Cluster) built from the flags, serving one of the
//! built-in [`App`]s on every `--listen` address.

use std::path::PathBuf;
use std::time::Duration;

use super::cluster::ClusterArgs;
use super::{duration, one_of, Outcome};
use crate::app::App;

/// Flags of `herd serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (repeat for several). Port 0 picks a free port.
    #[arg(
        long = "listen",
        short = 'l',
        value_name = "ADDR",
        default_value = "127.0.0.1:3000"
    )]
    listen: Vec<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Serve GET /metrics (Prometheus) and GET /status (JSON) on this address, from the master.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// The most connections per handoff packet (1-16); 1 measures what batching buys.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=16))]
    handoff_batch: u8,
    /// The most connections one worker holds at once; past it the master gives new
    /// connections to other workers, and when all are full leaves them in the kernel's
    /// backlog [default: what the open-file limit allows].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// What the workers answer.
    #[arg(long, default_value = "hello", value_parser = one_of(App::ALL, App::name))]
    app: App,
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
    /// Replace (gracefully) a worker whose resident memory goes over MB megabytes.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    max_worker_rss: Option<u64>,
    /// Run the workers as this user (the master keeps its privileges to bind).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Run the workers in this group [default: the user's primary group]. Needs --user.
    #[arg(long, value_name = "NAME", requires = "user")]
    group: Option<String>,
}

/// Runs `herd serve` until the cluster stops.
pub fn run(args: ServeArgs) -> Outcome {
    let mut cluster = args
        .cluster
        .cluster()
        .handoff_batch(args.handoff_batch as usize);
    if let Some(n) = args.max_connections {
        cluster = cluster.max_connections(n as usize);
    }
    if let Some(addr) = args.admin {
        cluster = cluster.admin(addr);
    }
    for addr in &args.listen {
        cluster = cluster.listen(addr.clone());
    }
    if let Some(path) = args.pid_file {
        cluster = cluster.pid_file(path);
    }
    if let Some(n) = args.max_restarts {
        cluster = cluster.max_restarts(n, args.restart_window);
    }
    if let Some(mb) = args.max_worker_rss {
        cluster = cluster.max_worker_rss(mb << 20);
    }
    if let Some(user) = args.user {
        cluster = cluster.user(user);
    }
    if let Some(group) = args.group {
        cluster = cluster.group(group);
    }
    let handler = args.app.handler();
    let addrs = args.listen;
    let cluster = cluster.worker(move |w| {
        for addr in &addrs {
            w.listen(addr, handler)?;
        }
        Ok(())
    });
    Outcome::of_cluster(cluster.run())
}
