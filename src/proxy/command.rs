//! The `herd proxy` command: its flags, and the cluster it builds from them.

use std::process::ExitCode;
use std::time::Duration;

use super::{Balance, ProxyConfig, ProxyService, Target};
use crate::cluster::Cluster;
use crate::policy::Policy;

/// Flags of `herd proxy`.
#[derive(Debug, clap::Args)]
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
    #[arg(long = "target", short = 't', value_name = "URL", required = true)]
    targets: Vec<Target>,
    /// Number of worker processes [default: the number of CPUs].
    #[arg(long, short = 'w', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// How the master spreads client connections over workers.
    #[arg(long, value_name = "POLICY", default_value = "round-robin")]
    policy: Policy,
    /// How each worker picks the target of each request.
    #[arg(long, value_enum, default_value_t = Balance::RoundRobin)]
    balance: Balance,
    /// Seconds a target has to start answering before the client gets 504 Gateway Timeout.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    upstream_timeout: f64,
    /// Send the target's host:port as Host instead of the client's (changeOrigin).
    #[arg(long)]
    change_origin: bool,
    /// Seconds a tunnel (WebSocket) may carry no byte either way before both sides are closed.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    tunnel_timeout: f64,
    /// Seconds a graceful stop waits for workers before killing them.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    shutdown_timeout: f64,
}

/// Runs `herd proxy`; the process's exit code.
pub fn main(args: ProxyArgs) -> ExitCode {
    let seconds = |flag: &str, value: f64, min: f64| {
        if value.is_finite() && value >= min && value < 1e9 {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(format!("herd: {flag} must be a number of seconds >= {min}"))
        }
    };
    let durations = (|| -> Result<_, String> {
        Ok((
            seconds("--upstream-timeout", args.upstream_timeout, 0.001)?,
            seconds("--tunnel-timeout", args.tunnel_timeout, 0.001)?,
            seconds("--shutdown-timeout", args.shutdown_timeout, 0.0)?,
        ))
    })();
    let (upstream_timeout, tunnel_timeout, shutdown_timeout) = match durations {
        Ok(d) => d,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut config = ProxyConfig::new(args.targets);
    config.balance = args.balance;
    config.upstream_timeout = upstream_timeout;
    config.change_origin = args.change_origin;
    config.tunnel_timeout = tunnel_timeout;
    for (i, t) in config.targets.iter().enumerate() {
        log::info!("proxy: target {i}: {t}");
    }
    let mut cluster = Cluster::new()
        .policy(args.policy)
        .shutdown_timeout(shutdown_timeout)
        .listen(args.listen.clone());
    if let Some(n) = args.workers {
        cluster = cluster.workers(n as usize);
    }
    let listen = args.listen;
    let cluster = cluster.worker(move |w| {
        w.serve(&listen, ProxyService::new(config.clone()))?;
        Ok(())
    });
    crate::cli::run(cluster)
}
