//! `herd load`: an HTTP/1.1 load generator, closed loop like wrk or open loop like wrk2.
//!
//! It exists to measure herd's workers (and the peers they are compared with) from the client
//! side, so it must never be the bottleneck: each thread runs its own mio event loop over its
//! share of the connections, requests are pre-built byte strings, bodies are skipped without
//! being copied, and the threads share nothing until their counts are merged at the end.
//!
//! | file | what it owns |
//! |------|--------------|
//! | `config.rs` | the checked [`Config`], the target URL and the path mix |
//! | `request.rs` | the request bytes per path and the weighted choice of path |
//! | `response.rs` | where a response ends: head, `Content-Length`, chunked, or close-delimited |
//! | `conn.rs` | one connection slot: connect, write, read, count errors, reconnect |
//! | `source.rs` | `--source-ips`: the addresses connections are bound to, as many clients |
//! | `engine.rs` | one thread's event loop: closed or open loop, timeouts, the deadline |
//! | `ticker.rs` | the open-loop clock: a timerfd, as epoll only sleeps in whole milliseconds |
//! | `report.rs` | per-thread tallies merged into the [`LoadReport`], printed as text |
//! | `json.rs` | the report as JSON (`--json`) |
//!
//! Two modes:
//! - **closed loop** (default): each connection sends its next request as soon as the previous
//!   response is complete, so the server sets the pace. Latency runs from sending to the last
//!   byte of the response.
//! - **open loop** (`--rate R`): requests are due at fixed intervals, R per second in total,
//!   whatever the server does; a due request that finds every connection busy waits, and its
//!   latency counts from when it was due. This is wrk2's correction for *coordinated omission*:
//!   a stalled server cannot slow down the clock that measures it.
//!
//! A request that fails (refused connect, reset, end of file mid-response, timeout, malformed
//! response) is counted by kind in [`LoadReport::errors`] and its connection is replaced by a
//! new one. At the deadline the run stops at once; requests in flight then are reported apart
//! ([`LoadReport::in_flight_at_deadline`]), neither completed nor failed.
//!
//! ```no_run
//! let mut cfg = herd::load::Config::new("http://127.0.0.1:8080/").unwrap();
//! cfg.duration = std::time::Duration::from_secs(2);
//! cfg.rate = Some(1000.0);
//! let report = herd::load::run(&cfg).unwrap();
//! println!("{report}");
//! ```
//!
//! Non-goals: TLS, name resolution, HTTP/2, pipelining, request bodies and methods other than
//! GET.

mod config;
mod conn;
mod engine;
mod json;
mod report;
mod request;
mod response;
mod source;
mod ticker;

use std::io;
use std::time::Instant;

pub use config::{Config, ConfigError, PathMix, Target};
pub use report::{LoadReport, PathLatency};
pub use source::SourceIps;

use engine::ThreadPlan;

/// Runs the load described by `cfg` and reports what it measured.
///
/// Blocks for `cfg.duration` (plus up to a poll interval). Failed requests are counted in the
/// report, not returned as errors; an `Err` means the run could not take place: an invalid
/// configuration (`InvalidInput`) or a thread that could not create its event loop.
pub fn run(cfg: &Config) -> io::Result<LoadReport> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let start = Instant::now();
    let tallies = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cfg.threads)
            .map(|index| {
                let plan = ThreadPlan::new(cfg, index, start);
                std::thread::Builder::new()
                    .name(format!("herd-load-{index}"))
                    .spawn_scoped(scope, move || engine::run_thread(cfg, plan, start))
            })
            .collect::<io::Result<_>>()?;
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<io::Result<Vec<_>>>()
    })?;
    Ok(LoadReport::new(cfg, start, tallies))
}
