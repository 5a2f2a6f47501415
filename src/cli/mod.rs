//! The `herd` command line: the only place that knows about clap, prints for the user and
//! picks exit codes. Each subcommand's flags become the library's configuration and go to
//! the library's `run`:
//!
//! | file | subcommand | calls |
//! |------|------------|-------|
//! | `serve.rs` | `herd serve` | [`Cluster::run`](crate::Cluster::run) with an [`App`](crate::app::App) handler |
//! | `proxy.rs` | `herd proxy` | [`proxy::run`](crate::proxy::run) |
//! | `load.rs` | `herd load` | [`load::run`](crate::load::run) |
//! | `bench.rs` | `herd bench` | [`bench::run`](crate::bench::run) |
//! | `run.rs` | `herd run -- CMD` | [`Cluster::run`](crate::Cluster::run) with [`Cluster::exec`](crate::Cluster::exec) |
//! | `cluster.rs` | the cluster flags `serve` and `proxy` share | |
//! | `config_file.rs` | `--config herd.toml`: a file's settings turned into flags | |
//! | `duration.rs` | the one parser of every duration flag | |
//!
//! Exit codes, decided in [`Outcome`] alone: 0 success or graceful stop, 1 a failure while
//! running, 2 bad usage (clap's own errors included), 130 a forced stop.

pub mod bench;
pub mod cluster;
pub mod config_file;
pub mod duration;
pub mod load;
pub mod proxy;
pub mod run;
pub mod serve;

use std::io;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

use crate::event::Shutdown;

/// herd: Node.js's cluster module for Linux. A master accepts every connection and hands it
/// round-robin to forked worker processes over Unix sockets (SCM_RIGHTS).
#[derive(Debug, Parser)]
#[command(name = "herd", version, after_help = SIGNALS_HELP)]
pub struct Cli {
    /// Read the settings of serve, proxy or run from this TOML file: its [serve], [proxy] or
    /// [run] table, whose keys are the flags' long names (and `command` for run). Flags on the
    /// command line replace the file's. Before or after the subcommand: herd --config
    /// herd.toml serve, or herd serve --config herd.toml.
    // Read by `config_file::expand`, which turns the file into flags before this parse.
    #[arg(long, value_name = "PATH", global = true)]
    #[allow(dead_code)]
    config: Option<std::path::PathBuf>,
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
    Serve(serve::ServeArgs),
    /// Generate HTTP/1.1 load (closed loop like wrk, or open loop with --rate like wrk2).
    Load(load::LoadArgs),
    /// Compare the scheduling policies: start herd under each, drive workloads, report.
    Bench(bench::BenchArgs),
    /// Run a reverse proxy on the cluster: each request goes to the next --target.
    Proxy(proxy::ProxyArgs),
    /// Be the master of your own program: run N copies of CMD (a Node.js app: herd is its
    /// cluster primary) with herd's supervision.
    Run(run::RunArgs),
}

/// How a subcommand ended. [`main`] turns it into the message and the exit code, so the
/// mapping lives here and nowhere else.
#[derive(Debug)]
pub enum Outcome {
    /// It did its work, or the cluster stopped gracefully: exit 0.
    Success,
    /// The cluster was stopped by force (a second SIGINT, SIGQUIT, or workers killed after
    /// the shutdown timeout): exit 130, as a shell reports a process killed by SIGINT.
    Forced,
    /// It could not run, or failed while running: the message on one line, exit 1.
    Failed(String),
    /// Input the flag parsers could not check alone (a URL, flags that contradict each other):
    /// the message on one line, exit 2 like clap's own errors.
    Usage(String),
}

impl Outcome {
    /// The outcome of running a cluster to its end.
    pub fn of_cluster(result: io::Result<Shutdown>) -> Outcome {
        match result {
            Ok(Shutdown::Graceful) => Outcome::Success,
            Ok(Shutdown::Forced) => Outcome::Forced,
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Prints the message, if any, after `who` (`herd`, `herd load`…); the exit code.
    fn exit(self, who: &str) -> ExitCode {
        match self {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Forced => ExitCode::from(130),
            Outcome::Failed(message) => {
                eprintln!("{who}: {message}");
                ExitCode::FAILURE
            }
            Outcome::Usage(message) => {
                eprintln!("{who}: {message}");
                ExitCode::from(2)
            }
        }
    }
}

/// Parses the command line and runs it; the process's exit code.
pub fn main() -> ExitCode {
    let cli = match config_file::expand(std::env::args_os().collect()) {
        Ok(args) => Cli::parse_from(args),
        Err(message) => return Outcome::Usage(message).exit("herd"),
    };
    // Fds this process inherited without close-on-exec (a shell's, say) must not reach the
    // programs it starts.
    if let Err(e) = crate::exec::mark_inherited_fds_cloexec() {
        eprintln!("herd: {e}");
        return ExitCode::FAILURE;
    }
    // Microsecond timestamps: the reliability scripts time respawns from the master's log.
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.format_timestamp_micros();
    let (who, outcome) = match cli.command {
        Command::Serve(args) => {
            logger.init();
            ("herd", serve::run(args))
        }
        Command::Load(args) => {
            logger.init();
            ("herd load", load::run(args))
        }
        Command::Bench(args) => {
            logger.init();
            ("herd bench", bench::run(args))
        }
        Command::Proxy(args) => {
            logger.init();
            ("herd", proxy::run(args))
        }
        Command::Run(args) => match run::output(&args) {
            // herd's own lines go through the same queue as the workers', so the two never
            // interleave inside a line.
            Ok(sink) => {
                let writer = sink.master_writer();
                logger
                    .target(env_logger::Target::Pipe(Box::new(writer)))
                    .init();
                ("herd", run::run(args, sink))
            }
            Err(e) => ("herd", Outcome::Usage(format!("--log-file: {e}"))),
        },
    };
    outcome.exit(who)
}

/// A value parser for one of the names in `all`: `--help` lists them, and anything else is
/// clap's usual one-line error with the same list.
fn one_of<T>(all: &'static [T], name: fn(T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: Copy + Send + Sync + 'static,
{
    PossibleValuesParser::new(all.iter().map(|&t| name(t))).map(move |s| {
        all.iter()
            .copied()
            .find(|&t| name(t) == s)
            .expect("clap let through one of the possible values only")
    })
}
