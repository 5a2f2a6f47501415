//! The flags of the cluster underneath `herd serve` and `herd proxy`: how many workers, how
//! connections are spread over them, how long a graceful stop may take.

use std::time::Duration;

use super::duration;
use crate::cluster::Cluster;
use crate::policy::Policy;

/// The cluster flags `herd serve` and `herd proxy` share.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Number of worker processes [default: the number of CPUs].
    #[arg(long, short = 'w', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// How connections are spread over workers: round-robin, node, least-connections, p2c
    /// (the master accepts); shared, shared-exclusive, reuseport (the workers accept).
    #[arg(long, value_name = "POLICY", default_value = "round-robin")]
    policy: Policy,
    /// How long a graceful stop waits for workers before killing them, in seconds ("10",
    /// "2.5") or with a unit ("500ms"); 0 kills at once.
    #[arg(
        long,
        value_name = "SECS",
        default_value = "10",
        allow_negative_numbers = true,
        value_parser = duration::at_least(Duration::ZERO)
    )]
    shutdown_timeout: Duration,
}

impl ClusterArgs {
    /// A cluster with these settings, to add listeners and the worker's function to.
    pub fn cluster(&self) -> Cluster {
        let cluster = Cluster::new()
            .policy(self.policy)
            .shutdown_timeout(self.shutdown_timeout);
        match self.workers {
            Some(n) => cluster.workers(n as usize),
            None => cluster,
        }
    }
}
