//! A worker that fails as it starts, every time: watch the master back off (100 ms, 200 ms,
//! 400 ms… up to 15 s) instead of forking in a tight loop. With MAX_RESTARTS, the master
//! gives up after that many restarts within a minute and exits 1 with the reason.
//!
//! ```text
//! cargo run --example crashing_worker [ADDR] [WORKERS] [MAX_RESTARTS]
//! ```

use std::io;
use std::time::Duration;

use herd::Cluster;

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let workers = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let mut cluster = Cluster::new().workers(workers).listen(addr);
    if let Some(max) = args.next() {
        let max = max
            .parse()
            .map_err(|_| io::Error::other(format!("MAX_RESTARTS {max:?} is not a number")))?;
        cluster = cluster.max_restarts(max, Duration::from_secs(60));
    }
    cluster
        .worker(|_w| Err(io::Error::other("configuration file missing (on purpose)")))
        .run()?;
    Ok(())
}
