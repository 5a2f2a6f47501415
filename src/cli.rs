//! The `herd` command line: `herd serve`, `herd load`, `herd proxy`.
//!
//! The binary is a thin user of the library: `serve` builds a [`Cluster`] from the flags.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::cluster::{Cluster, Shutdown};
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

Logs go to stderr; set RUST_LOG (error, warn, info, debug) to change the level (default info).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cluster: a master and N workers serving HTTP/1.1.
    Serve(ServeArgs),
    /// Generate HTTP/1.1 load (closed loop like wrk, or open loop with --rate like wrk2).
    Load(crate::load::LoadArgs),
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
    /// How the master spreads connections over workers.
    #[arg(long, value_name = "POLICY", default_value = "round-robin")]
    policy: Policy,
    /// Seconds a graceful stop waits for workers before killing them.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    shutdown_timeout: f64,
    /// The most connections per handoff packet (1-16); 1 measures what batching buys.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=16))]
    handoff_batch: u8,
    /// What the workers answer.
    #[arg(long, value_enum, default_value_t = App::Hello)]
    app: App,
}

/// Parses the command line and runs it; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Load(args) => crate::load::main(args),
        Command::Proxy(args) => crate::proxy::command::main(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if !(args.shutdown_timeout.is_finite() && args.shutdown_timeout >= 0.0) {
        eprintln!("herd: --shutdown-timeout must be a number of seconds >= 0");
        return ExitCode::from(2);
    }
    let mut cluster = Cluster::new()
        .policy(args.policy)
        .shutdown_timeout(Duration::from_secs_f64(args.shutdown_timeout))
        .handoff_batch(args.handoff_batch as usize);
    if let Some(n) = args.workers {
        cluster = cluster.workers(n as usize);
    }
    for addr in &args.listen {
        cluster = cluster.listen(addr.clone());
    }
    let handler = args.app.handler();
    let addrs = args.listen.clone();
    let cluster = cluster.worker(move |w| {
        for addr in &addrs {
            w.listen(addr, handler)?;
        }
        Ok(())
    });
    match cluster.run() {
        Ok(Shutdown::Graceful) => ExitCode::SUCCESS,
        Ok(Shutdown::Forced) => ExitCode::from(130),
        Err(e) => {
            eprintln!("herd: {e}");
            ExitCode::FAILURE
        }
    }
}
