//! `herd serve`: a [`Cluster`](crate::Cluster) built from the flags, serving one of the
//! built-in [`App`]s on every `--listen` address.

use super::cluster::{ClusterArgs, OpsArgs, ProxyProtocolArgs, TimeoutArgs};
use super::{one_of, Outcome};
use crate::app::App;
use crate::http::Limits;
use crate::worker::HttpService;

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
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    timeouts: TimeoutArgs,
    #[command(flatten)]
    proxy_protocol: ProxyProtocolArgs,
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
    for addr in &args.listen {
        cluster = cluster.listen(addr.clone());
    }
    cluster = args.proxy_protocol.apply(cluster);
    let cluster = args.ops.apply(cluster);
    let handler = args.app.handler();
    let timeouts = args.timeouts.timeouts();
    let proxy_protocol = args.proxy_protocol.deadline();
    let addrs = args.listen;
    let cluster = cluster.worker(move |w| {
        for addr in &addrs {
            let mut service = HttpService::new(handler, Limits::default(), timeouts);
            if let Some(deadline) = proxy_protocol {
                service = service.with_proxy_protocol(deadline);
            }
            w.serve(addr, service)?;
        }
        Ok(())
    });
    Outcome::of_cluster(cluster.run())
}
