//! `herd run -- CMD [ARGS...]`: herd as the master of the user's own program. The flags
//! become a [`Cluster`](crate::Cluster) whose workers are CMD ([`Cluster::exec`]).
//!
//! For `node app.js`, herd is the cluster primary of an unmodified Node.js app: its worker
//! branch runs, its servers' `listen()` ask herd, and herd hands out the connections.
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
    /// The protocol CMD speaks [default: node when CMD is node or nodejs].
    #[arg(long, value_parser = one_of(&[Protocol::Node], Protocol::name))]
    protocol: Option<Protocol>,
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
    let mut cluster = args.ops.apply(args.cluster.cluster()).exec(command);
    if let Some(protocol) = args.protocol {
        cluster = cluster.protocol(protocol);
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
