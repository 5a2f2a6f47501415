//! `herd proxy`: the flags become a [`proxy::Config`] and a cluster, handed to [`proxy::run`].
//! With `--spawn N --spawn-port BASE -- CMD`, the cluster also runs N instances of CMD on
//! ports BASE.. (the design document's last program, with the instances managed), and they
//! are the targets.

use std::time::Duration;

use super::cluster::{ClusterArgs, OpsArgs, ProxyProtocolArgs, TimeoutArgs};
use super::{duration, one_of, Outcome};
use crate::proxy::{self, Balance, Target};
use crate::proxy_protocol::Version;

/// Flags of `herd proxy`.
#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ProxyArgs {
    /// Address to listen on. Port 0 picks a free port.
    #[arg(
        long,
        short = 'l',
        value_name = "ADDR",
        default_value = "127.0.0.1:9000"
    )]
    listen: String,
    /// A server to forward to, http://IP:PORT or http://localhost:PORT (repeat for several).
    #[arg(
        long = "target",
        short = 't',
        value_name = "URL",
        required_unless_present = "spawn"
    )]
    targets: Vec<Target>,
    /// Start N instances of the command after `--`, supervised by herd, and forward to them:
    /// instance i runs with PORT=BASE+i (and HERD_INSTANCE=i) and must listen there.
    #[arg(long, value_name = "N", requires = "spawn_port", value_parser = clap::value_parser!(u16).range(1..=1024))]
    spawn: Option<u16>,
    /// The first instance's port (--spawn).
    #[arg(long, value_name = "BASE", requires = "spawn", value_parser = clap::value_parser!(u16).range(1..))]
    spawn_port: Option<u16>,
    /// An instance is ready once a GET of this path answers 2xx [default: once its port
    /// accepts a connection] (--spawn).
    #[arg(long, value_name = "PATH", requires = "spawn")]
    ready_path: Option<String>,
    /// The instances' program and its arguments, after `--` (--spawn).
    #[arg(value_name = "CMD", requires = "spawn")]
    command: Vec<std::ffi::OsString>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    timeouts: TimeoutArgs,
    /// How each worker picks the target of each request: round-robin, least-connections,
    /// p2c; or sticky, by a hash of the client's IP address (ip-hash), of a request header's
    /// value (header:NAME) or of a cookie's (cookie:NAME), so that a client keeps its target
    /// (requests without the header or cookie go in rotation).
    #[arg(long, value_name = "BALANCE", default_value = "round-robin", value_parser = str::parse::<Balance>)]
    balance: Balance,
    /// Seconds a target has to start answering before the client gets 504 Gateway Timeout.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "30",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(1))
    )]
    upstream_timeout: Duration,
    /// Send the target's host:port as Host instead of the client's (changeOrigin).
    #[arg(long)]
    change_origin: bool,
    /// Seconds a tunnel (WebSocket) may carry no byte either way before both sides are closed.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "300",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::from_millis(1))
    )]
    tunnel_timeout: Duration,
    /// Discard the X-Forwarded-For and Forwarded fields clients send instead of appending to
    /// them: for a proxy at the edge, where clients connect directly and whatever they put
    /// there is forged. Leave it off behind a balancer or proxy that sets them.
    #[arg(long)]
    strip_forwarded: bool,
    #[command(flatten)]
    proxy_protocol: ProxyProtocolArgs,
    /// Start each new connection to a target with a PROXY protocol header naming the client.
    /// Such a connection is reused only by the client connection that opened it.
    #[arg(long, value_name = "VERSION", value_parser = one_of(Version::ALL, Version::name))]
    send_proxy: Option<Version>,
}

/// Runs `herd proxy` until the cluster stops.
pub fn run(args: ProxyArgs) -> Outcome {
    let mut targets = args.targets;
    let mut instances = None;
    if let (Some(n), Some(base)) = (args.spawn, args.spawn_port) {
        let Some((program, rest)) = args.command.split_first() else {
            return Outcome::Usage("--spawn needs the instances' command after --".into());
        };
        if base as usize + n as usize - 1 > u16::MAX as usize {
            return Outcome::Usage(format!("--spawn-port {base} + --spawn {n} goes past 65535"));
        }
        for i in 0..n {
            let url = format!("http://127.0.0.1:{}", base + i);
            targets.push(url.parse().expect("a valid target URL"));
        }
        let mut command = std::process::Command::new(program);
        command.args(rest);
        instances = Some((command, n as usize, base));
    }
    let mut config = proxy::Config::new(targets);
    config.balance = args.balance;
    config.upstream_timeout = args.upstream_timeout;
    config.change_origin = args.change_origin;
    config.tunnel_timeout = args.tunnel_timeout;
    config.strip_forwarded = args.strip_forwarded;
    if let Some(deadline) = args.proxy_protocol.deadline() {
        config.proxy_protocol = true;
        config.proxy_protocol_timeout = deadline;
    }
    config.send_proxy = args.send_proxy;
    config.timeouts = args.timeouts.timeouts();
    let mut cluster = args.ops.apply(args.cluster.cluster());
    cluster = args.proxy_protocol.apply(cluster);
    if let Some((command, n, base)) = instances {
        cluster = cluster.instances(command, n, base);
        if let Some(path) = args.ready_path {
            cluster = cluster.instance_ready_path(path);
        }
    }
    match proxy::run(cluster, &args.listen, config) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::Usage(e.to_string()),
        result => Outcome::of_cluster(result),
    }
}
