//! The request handlers `herd serve` ships with (`--app`).
//!
//! * `hello`: every request gets `200 OK` and `hello world` (the design document's server).
//! * `bench`: the handler the policy benchmarks and the tests drive:
//!   `/worker` answers the worker's id, `/peer` the client's address, `/echo…` answers
//!   `METHOD PATH BODY`, `/cost/N` burns N µs of CPU before answering,
//!   `/sleep/N` blocks the whole worker for N ms (a stall), anything else is `hello world`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::http::{Request, Response};
use crate::worker::worker_id;

/// The built-in applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum App {
    /// `hello world` for every request.
    #[default]
    Hello,
    /// `/worker`, `/echo…`, `/cost/N` (µs of CPU), `/sleep/N` (ms blocking); else `hello world`.
    Bench,
}

impl App {
    /// Every app, in the order `--help` lists them.
    pub const ALL: &'static [App] = &[App::Hello, App::Bench];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            App::Hello => "hello",
            App::Bench => "bench",
        }
    }

    /// The handler function for this app.
    pub fn handler(self) -> fn(&Request<'_>, &mut Response) {
        match self {
            App::Hello => hello,
            App::Bench => bench,
        }
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for App {
    type Err = String;

    fn from_str(s: &str) -> Result<App, String> {
        crate::policy::parse_name(s, App::ALL, |a| a.name(), "app")
    }
}

/// `200 OK`, `hello world`.
pub fn hello(_req: &Request<'_>, res: &mut Response) {
    res.body(b"hello world");
}

/// The benchmark handler (see the module docs).
pub fn bench(req: &Request<'_>, res: &mut Response) {
    let path = req.path();
    if path == "/worker" {
        res.body(worker_id().to_string());
    } else if path == "/peer" {
        res.body(req.peer_addr().map_or("unknown".into(), |a| a.to_string()));
    } else if path.starts_with("/echo") {
        res.write(req.method().as_bytes());
        res.write(b" ");
        res.write(path.as_bytes());
        res.write(b" ");
        res.write(req.body());
    } else if let Some(n) = number_after(path, "/cost/") {
        burn_cpu(Duration::from_micros(n));
        res.body(b"hello world");
    } else if let Some(n) = number_after(path, "/sleep/") {
        std::thread::sleep(Duration::from_millis(n));
        res.body(b"hello world");
    } else {
        res.body(b"hello world");
    }
}

/// Spins until this thread has used `cpu` of CPU time: work that takes longer than `cpu` on
/// the wall clock when the worker has to share a core, as real computation does. (Spinning
/// on the wall clock instead would finish on time however little CPU it got, hiding the
/// contention that makes a busy worker a bad place to send the next connection.)
fn burn_cpu(cpu: Duration) {
    use nix::time::{clock_gettime, ClockId};
    let used = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(Duration::from)
            .unwrap_or_default()
    };
    let until = used() + cpu;
    let started = Instant::now();
    let mut spins = 0u64;
    // The wall-clock bound only guards against a clock that cannot be read.
    while used() < until && started.elapsed() < cpu * 1000 {
        spins = std::hint::black_box(spins + 1);
    }
}

fn number_after(path: &str, prefix: &str) -> Option<u64> {
    path.strip_prefix(prefix)?
        .parse()
        .ok()
        .map(|n: u64| n.min(60_000_000))
}
