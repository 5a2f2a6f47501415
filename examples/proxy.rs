//! herd's reverse proxy from the library: a [`ProxyService`] in a cluster of your own, with
//! your own time limits for client connections ([`Timeouts`]: here every one of them set to
//! the same number of seconds, as a test wants them short).
//!
//! ```text
//! cargo run --example proxy 127.0.0.1:9000 0.5 http://127.0.0.1:3000 http://127.0.0.1:3001
//! ```

use std::time::Duration;

use herd::http::Timeouts;
use herd::proxy::{Config, ProxyService, Target};
use herd::Cluster;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: proxy LISTEN SECONDS TARGET...";
    let listen = args.next().ok_or(usage)?;
    let seconds: f64 = args.next().ok_or(usage)?.parse()?;
    let targets = args
        .map(|t| t.parse())
        .collect::<Result<Vec<Target>, _>>()?;
    let mut config = Config::new(targets);
    config.timeouts = Timeouts::all(Duration::from_secs_f64(seconds));
    Cluster::new()
        .workers(1)
        .listen(listen.clone())
        .worker(move |w| {
            w.serve(&listen, ProxyService::new(config.clone()))?;
            Ok(())
        })
        .run()?;
    Ok(())
}
