//! Two edge cases of the library, run by the tests (`tests/cluster.rs`):
//!
//! * `panic ADDR`: the worker setup panics after it listens. The child must not unwind into
//!   the master's stack frames it inherited with the fork: the guard `main` holds is
//!   dropped once, by the master, never by a worker (each drop prints its pid).
//! * `forever ADDR`: a shutdown timeout of `Duration::MAX` ("never kill"): a SIGTERM must
//!   stop the cluster gracefully, not overflow the clock arithmetic.
//!
//! ```text
//! cargo run --example edge_cases -- panic 127.0.0.1:0
//! ```

use std::io;
use std::time::Duration;

use herd::http::{Request, Response};
use herd::Cluster;

/// Says who dropped it.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        eprintln!("main's guard dropped in pid {}", std::process::id());
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let _guard = Guard;
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let hello = |_req: &Request<'_>, res: &mut Response| res.body("hello world");
    let cluster = Cluster::new().workers(1).listen(addr.clone());
    let cluster = match mode.as_str() {
        "panic" => cluster.worker(move |w| {
            w.listen(&addr, hello)?;
            panic!("the setup panics (on purpose)");
        }),
        "forever" => cluster
            .shutdown_timeout(Duration::MAX)
            .worker(move |w| w.listen(&addr, hello).map(|_| ())),
        other => {
            eprintln!("usage: edge_cases panic|forever ADDR (not {other:?})");
            std::process::exit(2);
        }
    };
    println!("cluster ended: {:?}", cluster.run()?);
    Ok(())
}
