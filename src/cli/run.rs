//! `herd run -- CMD [ARGS...]`: herd as the master of the user's own program. The flags
//! become a [`Cluster`](crate::Cluster) whose workers are CMD ([`Cluster::exec`]).
//!
//! For `node app.js`, herd is the cluster primary of an unmodified Node.js app: its worker
//! branch runs, its servers' `listen()` ask herd, and herd hands out the connections. Any
//! other program is socket-activated, as systemd would start it: herd binds every
//! `--listen` address and each worker gets the sockets at fds 3, 4, …
//!
//! [`Cluster::exec`]: crate::Cluster::exec

use std::ffi::OsString;
use std::path::PathBuf;

use super::cluster::{ClusterArgs, OpsArgs};
use super::{one_of, Outcome};
use crate::event::Event;
use crate::exec::Protocol;
use crate::node::RawJson;
use crate::output::LogSink;

/// Flags of `herd run`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    ops: OpsArgs,
    /// The protocol CMD speaks [default: node when CMD is node or nodejs, else systemd
    /// (socket activation)].
    #[arg(long, value_parser = one_of(Protocol::ALL, Protocol::name))]
    protocol: Option<Protocol>,
    /// Socket activation: an address to bind and pass to every worker (repeat for
    /// several; port 0 picks a free port). Node workers ask for theirs with listen().
    #[arg(long = "listen", short = 'l', value_name = "ADDR")]
    listen: Vec<String>,
    /// Socket activation: a worker that never sends READY=1 on its NOTIFY_SOCKET is taken
    /// as ready this long after it starts [default: it must notify].
    #[arg(
        long,
        value_name = "SECS",
        allow_negative_numbers = true,
        value_parser = super::duration::at_least(std::time::Duration::ZERO)
    )]
    ready_after: Option<std::time::Duration>,
    /// Socket activation: the signal that asks a worker to finish (sent to its process
    /// group); SIGKILL follows after --shutdown-timeout.
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    stop_signal: nix::sys::signal::Signal,
    /// A worker's listen on port FROM binds TO instead (0: any free port); the program is
    /// told it got FROM. Repeat for several.
    #[arg(long = "map-port", value_name = "FROM=TO", value_parser = parse_port_map)]
    port_map: Vec<(u16, u16)>,
    /// Set NAME to VALUE in every worker's environment (repeat for several).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(OsString, OsString)>,
    /// Write herd's log and the workers' output lines here instead of stdout and stderr;
    /// SIGUSR1 reopens it (for logrotate).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Start each worker output line with an RFC 3339 time.
    #[arg(long)]
    log_timestamps: bool,
    /// The program and its arguments (after `--`).
    #[arg(required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, String> {
    use nix::sys::signal::Signal;
    let name = s.trim_start_matches("SIG");
    [
        ("TERM", Signal::SIGTERM),
        ("INT", Signal::SIGINT),
        ("QUIT", Signal::SIGQUIT),
        ("HUP", Signal::SIGHUP),
        ("USR1", Signal::SIGUSR1),
        ("USR2", Signal::SIGUSR2),
    ]
    .into_iter()
    .find(|(n, _)| *n == name)
    .map(|(_, sig)| sig)
    .ok_or_else(|| format!("'{s}': expected one of TERM, INT, QUIT, HUP, USR1, USR2"))
}

fn parse_port_map(s: &str) -> Result<(u16, u16), String> {
    let (from, to) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected FROM=TO, e.g. 3000=0"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("'{p}' in '{s}' is not a port number"))
    };
    let from = port(from)?;
    if from == 0 {
        return Err(format!("'{s}': a program's port 0 is already any port"));
    }
    Ok((from, port(to)?))
}

fn parse_env(s: &str) -> Result<(OsString, OsString), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.into(), value.into())),
        _ => Err(format!(
            "'{s}': expected NAME=VALUE, e.g. NODE_ENV=production"
        )),
    }
}

/// Where herd's own log and the workers' lines go, for [`super::main`] to log through.
pub fn output(args: &RunArgs) -> std::io::Result<LogSink> {
    let sink = match &args.log_file {
        Some(path) => LogSink::file(path.clone())?,
        None => LogSink::stdio()?,
    };
    Ok(sink.with_timestamps(args.log_timestamps))
}

/// Runs `herd run` until the cluster stops; `sink` is [`output`]'s.
pub fn run(args: RunArgs, sink: LogSink) -> Outcome {
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]).envs(args.env);
    let protocol = (args.protocol).unwrap_or_else(|| Protocol::of_command(command.get_program()));
    let mut cluster = args.ops.apply(args.cluster.cluster());
    if protocol == Protocol::Systemd && args.cluster.policy.is_none() {
        // The program accepts itself: every worker from the one shared socket.
        cluster = cluster.policy(crate::policy::Policy::Shared);
    }
    for addr in &args.listen {
        cluster = cluster.listen(addr.clone());
    }
    let mut cluster = cluster
        .exec(command)
        .protocol(protocol)
        .stop_signal(args.stop_signal);
    if let Some(after) = args.ready_after {
        cluster = cluster.ready_after(after);
    }
    for (from, to) in args.port_map {
        cluster = cluster.map_port(from, to);
    }
    let cluster = cluster.output(sink).on_event(|_cx, event| {
        if let Event::Message { payload, .. } = event {
            // The seed's own line: `[master] message <x>`, a string shown as itself.
            let text = match RawJson::from_bytes(payload) {
                Ok(json) => json.as_text().into_owned(),
                Err(_) => String::from_utf8_lossy(payload).into_owned(),
            };
            log::info!("[master] message {text}");
        }
    });
    match cluster.run() {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::Usage(e.to_string()),
        result => Outcome::of_cluster(result),
    }
}
