//! `herd load`: the flags become a [`load::Config`]; the report of [`load::run`] goes to
//! stdout, as text or as JSON.

use std::time::Duration;

use super::{duration, Outcome};
use crate::load::{self, ConfigError, PathMix, SourceIps, Target};

/// Sends HTTP/1.1 load to a server and reports throughput and latency: closed loop like wrk,
/// or open loop like wrk2 with `--rate` (the flags of `herd load`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target: `http://HOST[:PORT]/PATH`, where HOST is an IP address or `localhost`
    /// (herd load does not resolve names).
    pub url: String,
    /// Connections to keep open, spread evenly over the threads.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// How long to send requests: seconds ("10", "2.5") or with a unit ("10s", "500ms", "1m").
    #[arg(
        short = 'd',
        long,
        default_value = "10s",
        allow_negative_numbers = true,
        value_parser = duration::positive()
    )]
    pub duration: Duration,
    /// Threads, each with its own event loop and its share of the connections.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Total requests per second. Given, the run is open loop: requests are sent on a fixed
    /// schedule and latency counts from the scheduled time (no coordinated omission).
    #[arg(short = 'R', long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open a new connection for every request and send `Connection: close`.
    #[arg(long)]
    pub close: bool,
    /// Weighted paths instead of the URL's path, e.g. `95:/,5:/cost/2000`.
    #[arg(long, value_name = "SPEC")]
    pub path_mix: Option<PathMix>,
    /// Time a request may take once sent before it counts as a timeout error.
    #[arg(
        long,
        default_value = "5s",
        allow_negative_numbers = true,
        value_parser = duration::positive()
    )]
    pub timeout: Duration,
    /// Bind the connections to these source addresses, one per connection in turn
    /// (`127.0.0.2-127.0.0.65`, or a comma-separated list), so that the server sees many
    /// clients: all of 127.0.0.0/8 reaches the loopback interface.
    #[arg(long, value_name = "IPS")]
    pub source_ips: Option<SourceIps>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// Checks the flags and builds the configuration [`load::run`] takes.
    pub fn config(&self) -> Result<load::Config, ConfigError> {
        let target: Target = self.url.parse()?;
        let paths = self
            .path_mix
            .clone()
            .unwrap_or_else(|| PathMix::single(&target.path));
        let cfg = load::Config {
            target,
            paths,
            connections: self.connections,
            threads: self.threads,
            duration: self.duration,
            rate: self.rate,
            close: self.close,
            timeout: self.timeout,
            source_ips: self.source_ips.clone().unwrap_or_default(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs the load and prints the report (text, or JSON with `--json`) on stdout.
pub fn run(args: LoadArgs) -> Outcome {
    let cfg = match args.config() {
        Ok(cfg) => cfg,
        Err(e) => return Outcome::Usage(e.to_string()),
    };
    match load::run(&cfg) {
        Ok(report) if args.json => println!("{}", report.to_json()),
        Ok(report) => print!("{report}"),
        Err(e) => return Outcome::Failed(e.to_string()),
    }
    Outcome::Success
}

/// Parses a rate in requests per second: a finite number above 0.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "bad rate {text:?}: expected requests per second, a number above 0"
        )),
    }
}
