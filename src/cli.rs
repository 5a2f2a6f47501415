//! The `herd` command line: `herd serve`, `herd proxy`, `herd load`, `herd bench`.
//!
//! The binary is a thin user of the library: `serve` builds a [`Cluster`] from the flags.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::cluster::Cluster;
use crate::event::Shutdown;
use crate::policy::Policy;

/// herd: Node.js's cluster module for Linux. A master accepts every connection and hands it
/// round-robin to forked worker processes over Unix sockets (SCM_RIGHTS).
#[derive(Debug, Parser)]
#[command(name = "herd", version, after_help = SIGNALS_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const SIGNALS_HELP: &str = "Signals to the master (serve):
  TERM, INT   graceful stop: stop accepting, finish in-flight requests, exit 0
  INT again   stop now: kill the workers
  QUIT        stop now
  HUP         rolling reload: replace the workers one at a time, dropping nothing
  USR2        binary upgrade: start the binary now on disk as a new master that inherits
              the listening sockets; once its workers listen, this master drains and exits
              (if the new one fails to come up, this one keeps serving)

Under systemd: Type=notify (READY=1, RELOADING=1, STOPPING=1, MAINPID= on upgrade) and
socket activation (LISTEN_FDS) are supported; see scripts/herd.service.

Logs go to stderr; set RUST_LOG (error, warn, info, debug) to change the level (default info).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cluster: a master and N workers serving HTTP/1.1.
    Serve(ServeArgs),
    /// Generate HTTP/1.1 load (closed loop like wrk, or open loop with --rate like wrk2).
    Load(crate::load::LoadArgs),
    /// Compare the scheduling policies: start herd under each, drive workloads, report.
    Bench(crate::bench::BenchArgs),
    /// Run a reverse proxy on the cluster: each request goes to the next --target.
    Proxy(crate::proxy::command::ProxyArgs),
}

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
    /// Number of worker processes [default: the number of CPUs].
    #[arg(long, short = 'w', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// How connections are spread over workers: round-robin, node, least-connections, p2c
    /// (the master accepts); shared, shared-exclusive, reuseport (the workers accept).
    #[arg(long, value_name = "POLICY", default_value = "round-robin")]
    policy: Policy,
    /// Serve GET /metrics (Prometheus) and GET /status (JSON) on this address, from the master.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Seconds a graceful stop waits for workers before killing them.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    shutdown_timeout: f64,
    /// The most connections per handoff packet (1-16); 1 measures what batching buys.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=16))]
    handoff_batch: u8,
    /// The most connections one worker holds at once; past it the master gives new
    /// connections to other workers, and when all are full leaves them in the kernel's
    /// backlog [default: what the open-file limit allows].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// What the workers answer.
    #[arg(long, value_enum, default_value_t = App::Hello)]
    app: App,
    /// Write the master's pid here (a binary upgrade's new master rewrites it).
    #[arg(long, value_name = "PATH")]
    pid_file: Option<std::path::PathBuf>,
    /// Give up (stop, exit 1) after more than N worker restarts within --restart-window.
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,
    /// The window --max-restarts counts restarts in, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    restart_window: f64,
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

/// Parses the command line and runs it; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Microsecond timestamps: the reliability scripts time respawns from the master's log.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_micros()
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Load(args) => crate::load::main(args),
        Command::Bench(args) => crate::bench::main(args),
        Command::Proxy(args) => crate::proxy::command::main(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if !(args.shutdown_timeout.is_finite() && args.shutdown_timeout >= 0.0) {
        eprintln!("herd: --shutdown-timeout must be a number of seconds >= 0");
        return ExitCode::from(2);
    }
    if !(args.restart_window.is_finite() && args.restart_window > 0.0) {
        eprintln!("herd: --restart-window must be a number of seconds > 0");
        return ExitCode::from(2);
    }
    let mut cluster = Cluster::new()
        .policy(args.policy)
        .shutdown_timeout(Duration::from_secs_f64(args.shutdown_timeout))
        .handoff_batch(args.handoff_batch as usize);
    if let Some(n) = args.workers {
        cluster = cluster.workers(n as usize);
    }
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
        cluster = cluster.max_restarts(n, Duration::from_secs_f64(args.restart_window));
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
    let addrs = args.listen.clone();
    let cluster = cluster.worker(move |w| {
        for addr in &addrs {
            w.listen(addr, handler)?;
        }
        Ok(())
    });
    run(cluster)
}

/// Runs a cluster to its end: exit 0 after a graceful stop, 130 after a forced one, 1 with
/// the error on one line if it could not run.
pub(crate) fn run(cluster: Cluster) -> ExitCode {
    match cluster.run() {
        Ok(Shutdown::Graceful) => ExitCode::SUCCESS,
        Ok(Shutdown::Forced) => ExitCode::from(130),
        Err(e) => {
            eprintln!("herd: {e}");
            ExitCode::FAILURE
        }
    }
}
