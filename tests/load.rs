//! `herd::load` against a tiny HTTP server started in each test (std::net, a thread per
//! connection, on 127.0.0.1:0) that counts what it did, so the load generator's report can be
//! checked against the server's own counts rather than against expectations.
//!
//! Exactness: the server counts a response once `write_all` returned for all of it; the client
//! counts a response once it read all of it. A response the client completed was fully written,
//! and a response fully written answered a request the client sent, which is either complete or
//! (in a run without errors) still in flight when the run stopped. Hence, once the server's
//! connection threads have finished,
//! `completed <= written <= completed + in_flight_at_deadline`, exactly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use herd::load::{run, Config, LoadReport};

/// How the test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Keep-alive, `Content-Length` bodies; honours `Connection: close`.
    KeepAlive,
    /// Rotates through every framing: a short `Content-Length` body, a chunked body, a body
    /// larger than the client's buffer, and a body delimited by closing the connection.
    EveryFraming,
    /// Reads the request, then resets the connection (SO_LINGER 0).
    Reset,
    /// Reads the request, then closes without answering.
    CloseWithoutResponse,
    /// Reads the request and never answers.
    Silent,
    /// Keep-alive, but the `n`th request of the whole server (from 1) waits 300 ms.
    StallNth(u64),
}

/// What the server did, counted by its connection threads.
#[derive(Default)]
struct Counts {
    /// Connections accepted.
    accepted: AtomicU64,
    /// Request heads read.
    requests: AtomicU64,
    /// Responses whose every byte was written.
    written: AtomicU64,
    /// Requests that came on a connection which had already carried one.
    reused: AtomicU64,
    /// Requests by path.
    paths: Mutex<HashMap<String, u64>>,
    /// Connection threads still running.
    active: Mutex<u64>,
    /// Signalled when a connection thread ends.
    ended: Condvar,
}

/// A running test server.
struct Server {
    addr: SocketAddr,
    counts: Arc<Counts>,
}

impl Server {
    fn start(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        // The accept loop lives as long as the test process; it holds nothing the test waits on.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                shared.accepted.fetch_add(1, SeqCst);
                *shared.active.lock().unwrap() += 1;
                let counts = shared.clone();
                std::thread::spawn(move || {
                    serve(stream, behaviour, &counts);
                    *counts.active.lock().unwrap() -= 1;
                    counts.ended.notify_all();
                });
            }
        });
        Server { addr, counts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until every connection accepted so far has been served to its end. The load run
    /// has returned, so the client has closed all its sockets and each thread sees end of file.
    fn wait_until_served(&self) {
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut active = self.counts.active.lock().unwrap();
        while *active > 0 {
            let left = give_up.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} server connections never ended",
                *active
            );
            active = self.counts.ended.wait_timeout(active, left).unwrap().0;
        }
    }

    fn written(&self) -> u64 {
        self.counts.written.load(SeqCst)
    }
}

/// Serves one connection until the client closes it or the behaviour ends it.
fn serve(stream: TcpStream, behaviour: Behaviour, counts: &Counts) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    let mut on_this_connection = 0;
    loop {
        let Some((path, wants_close)) = read_request(&mut reader) else {
            return;
        };
        let n = counts.requests.fetch_add(1, SeqCst) + 1;
        if on_this_connection > 0 {
            counts.reused.fetch_add(1, SeqCst);
        }
        on_this_connection += 1;
        *counts.paths.lock().unwrap().entry(path).or_default() += 1;
        let close_header = if wants_close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let (response, close) = match behaviour {
            Behaviour::KeepAlive => (
                format!("HTTP/1.1 200 OK\r\n{close_header}Content-Length: 5\r\n\r\nhello"),
                wants_close,
            ),
            Behaviour::StallNth(stall) => {
                if n == stall {
                    std::thread::sleep(Duration::from_millis(300));
                }
                (
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string(),
                    false,
                )
            }
            Behaviour::EveryFraming => match n % 4 {
                0 => (
                    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_string(),
                    false,
                ),
                1 => (
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\n\r\n"
                        .to_string(),
                    false,
                ),
                2 => {
                    let body = "x".repeat(40_000);
                    (
                        format!("HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n{body}"),
                        false,
                    )
                }
                _ => ("HTTP/1.1 200 OK\r\n\r\nuntil the end".to_string(), true),
            },
            Behaviour::Reset => {
                reset_on_close(&out);
                return;
            }
            Behaviour::CloseWithoutResponse => return,
            Behaviour::Silent => {
                // Hold the connection until the client gives up on it.
                while read_request(&mut reader).is_some() {}
                return;
            }
        };
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
        counts.written.fetch_add(1, SeqCst);
        if close {
            return;
        }
    }
}

/// Reads one request head: its path and whether it asked for `Connection: close`. `None` at end
/// of file or on error.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, bool)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let path = head.first()?.split(' ').nth(1)?.to_string();
    let close = head
        .iter()
        .any(|h| h.eq_ignore_ascii_case("connection: close\r\n"));
    Some((path, close))
}

/// Makes closing `stream` send a reset instead of a FIN.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a `linger` struct of the size passed, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// A closed-loop configuration for `url`, short and with generous timeouts.
fn config(url: &str, connections: usize, threads: usize, millis: u64) -> Config {
    let mut cfg = Config::new(url).unwrap();
    cfg.connections = connections;
    cfg.threads = threads;
    cfg.duration = Duration::from_millis(millis);
    cfg.timeout = Duration::from_secs(30);
    cfg
}

/// Runs `cfg`, checking that the run kept to its duration (the generator never hangs).
fn run_checked(cfg: &Config) -> LoadReport {
    let began = Instant::now();
    let report = run(cfg).unwrap();
    let took = began.elapsed();
    assert!(
        took >= cfg.duration && took < cfg.duration + Duration::from_secs(10),
        "a {:?} run took {took:?}",
        cfg.duration
    );
    assert!(report.elapsed >= cfg.duration, "{report}");
    report
}

/// The report's errors other than those listed, which must all be zero.
fn other_errors(report: &LoadReport, allowed: &[&str]) -> u64 {
    report
        .errors
        .iter()
        .filter(|(kind, _)| !allowed.contains(&kind.as_str()))
        .map(|(_, n)| n)
        .sum()
}

/// The exact bound between the client's and the server's counts (see the file's header).
fn assert_counts_match(report: &LoadReport, server: &Server) {
    server.wait_until_served();
    assert_eq!(report.errors_total(), 0, "{report}");
    let written = server.written();
    assert!(
        report.requests <= written && written <= report.requests + report.in_flight_at_deadline,
        "client completed {}, {} in flight at the deadline; server wrote {written}\n{report}",
        report.requests,
        report.in_flight_at_deadline,
    );
    assert_eq!(report.status["2xx"], report.requests);
    assert_eq!(report.latency_us.len(), report.requests);
    assert!(
        report.requests > 50,
        "too few requests to mean anything:\n{report}"
    );
}

#[test]
fn keep_alive_counts_match_the_server() {
    let server = Server::start(Behaviour::KeepAlive);
    let report = run_checked(&config(&server.url("/"), 8, 2, 700));
    assert_counts_match(&report, &server);
    assert_eq!(report.connections_opened, 8, "{report}");
    assert_eq!(server.counts.accepted.load(SeqCst), 8);
    let per_response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".len() as u64;
    assert_eq!(report.bytes_read, report.requests * per_response);
}

#[test]
fn every_framing_is_counted_exactly() {
    let server = Server::start(Behaviour::EveryFraming);
    let mut cfg = config(&server.url("/"), 6, 2, 700);
    cfg.paths = "3:/a,1:/b".parse().unwrap();
    let report = run_checked(&cfg);
    assert_counts_match(&report, &server);
    // A quarter of the responses end by closing the connection, which is then replaced.
    assert!(report.connections_opened > 6, "{report}");
    let paths = server.counts.paths.lock().unwrap();
    let (a, b) = (paths["/a"] as f64, paths["/b"] as f64);
    assert!((a / (a + b) - 0.75).abs() < 0.05, "/a {a}, /b {b}");
}

#[test]
fn close_mode_opens_one_connection_per_request() {
    let server = Server::start(Behaviour::KeepAlive);
    let mut cfg = config(&server.url("/"), 4, 1, 700);
    cfg.close = true;
    let report = run_checked(&cfg);
    assert_counts_match(&report, &server);
    // Every request had a connection of its own and every connection carried one request.
    assert_eq!(
        report.connections_opened,
        report.requests + report.in_flight_at_deadline,
        "{report}"
    );
    assert_eq!(server.counts.reused.load(SeqCst), 0);
    assert!(server.counts.accepted.load(SeqCst) <= report.connections_opened);
}

#[test]
fn resets_are_read_errors_and_each_gets_a_new_connection() {
    let server = Server::start(Behaviour::Reset);
    let report = run_checked(&config(&server.url("/"), 4, 1, 500));
    assert_eq!(report.requests, 0, "{report}");
    assert!(report.errors["read"] > 0, "{report}");
    assert_eq!(other_errors(&report, &["read"]), 0, "{report}");
    assert_eq!(
        report.connections_opened,
        report.errors["read"] + report.in_flight_at_deadline,
        "{report}"
    );
}

#[test]
fn a_close_before_the_response_is_a_closed_error() {
    let server = Server::start(Behaviour::CloseWithoutResponse);
    let report = run_checked(&config(&server.url("/"), 4, 1, 500));
    assert_eq!(report.requests, 0, "{report}");
    assert!(report.errors["closed"] > 0, "{report}");
    assert_eq!(other_errors(&report, &["closed"]), 0, "{report}");
    assert_eq!(
        report.connections_opened,
        report.errors["closed"] + report.in_flight_at_deadline,
        "{report}"
    );
}

#[test]
fn a_silent_server_times_out() {
    let server = Server::start(Behaviour::Silent);
    let mut cfg = config(&server.url("/"), 2, 1, 1000);
    cfg.timeout = Duration::from_millis(200);
    let report = run_checked(&cfg);
    assert_eq!(report.requests, 0, "{report}");
    assert!(report.errors["timeout"] >= 2, "{report}");
    assert_eq!(other_errors(&report, &["timeout"]), 0, "{report}");
}

#[test]
fn refused_connections_are_connect_errors() {
    // A port that is bound but not listening refuses connections, and stays ours meanwhile.
    // SAFETY: plain socket calls on an fd this test owns and closes.
    let (fd, port) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = (&mut addr as *mut libc::sockaddr_in).cast();
        assert_eq!(libc::bind(fd, p, len), 0);
        assert_eq!(libc::getsockname(fd, p, &mut len), 0);
        (fd, u16::from_be(addr.sin_port))
    };
    let report = run_checked(&config(&format!("http://127.0.0.1:{port}/"), 2, 1, 300));
    // SAFETY: `fd` is the socket opened above, closed once.
    unsafe { libc::close(fd) };
    assert_eq!(report.requests, 0, "{report}");
    assert!(report.errors["connect"] > 0, "{report}");
    assert_eq!(other_errors(&report, &["connect"]), 0, "{report}");
}

#[test]
fn open_loop_keeps_to_the_rate() {
    let server = Server::start(Behaviour::KeepAlive);
    let mut cfg = config(&server.url("/"), 4, 2, 2000);
    cfg.rate = Some(200.0);
    let report = run_checked(&cfg);
    assert_eq!(report.errors_total(), 0, "{report}");
    // 200/s for 2 s: each thread's schedule holds at most one request more than its share.
    let scheduled = report.requests + report.in_flight_at_deadline + report.queued_at_deadline;
    assert!(
        scheduled <= 400 + 2,
        "{scheduled} requests for 400 due\n{report}"
    );
    assert!(report.requests >= 300, "{report}");
    assert_counts_match(&report, &server);
}

/// The share of samples of at least 100 ms.
fn slow_samples(report: &LoadReport) -> u64 {
    report.latency_us.len() - report.latency_us.count_between(0, 99_999)
}

#[test]
fn a_stall_shows_in_open_loop_latency() {
    // One connection, one request stalled 300 ms at about 200 ms into the run.
    let open = Server::start(Behaviour::StallNth(20));
    let mut cfg = config(&open.url("/"), 1, 1, 1500);
    cfg.rate = Some(100.0);
    let report = run_checked(&cfg);
    assert_eq!(report.errors_total(), 0, "{report}");
    assert!(report.latency_us.max() >= 300_000, "{report}");
    // The ~30 requests due during the stall waited for it, and their latency counts from when
    // they were due: about 20 of them waited 100 ms or more.
    let open_slow = slow_samples(&report);
    assert!(open_slow >= 10, "{open_slow} slow samples\n{report}");

    // The same stall measured in closed loop: the client stops sending while it waits, so only
    // the stalled request itself is slow (coordinated omission).
    let closed = Server::start(Behaviour::StallNth(20));
    let report = run_checked(&config(&closed.url("/"), 1, 1, 1500));
    assert!(report.latency_us.max() >= 300_000, "{report}");
    let closed_slow = slow_samples(&report);
    assert!(
        closed_slow < open_slow,
        "closed {closed_slow}, open {open_slow}"
    );
}

#[test]
fn command_line_errors_are_one_line() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: herd::cli::load::LoadArgs,
    }
    let args = |line: &[&str]| Cli::try_parse_from([&["herd-load"], line].concat());
    let cli = args(&[
        "http://localhost:8080/x",
        "-d",
        "500ms",
        "-R",
        "10",
        "-t",
        "2",
    ])
    .unwrap();
    let cfg = cli.load.config().unwrap();
    assert_eq!(cfg.duration, Duration::from_millis(500));
    assert_eq!(cfg.rate, Some(10.0));
    assert_eq!(cfg.paths.entries(), &[(1, "/x".to_string())]);
    assert_eq!(cfg.connections, 64);

    let bad = args(&["http://example.com/"])
        .unwrap()
        .load
        .config()
        .unwrap_err();
    assert!(bad.to_string().contains("not an IP address"), "{bad}");
    let bad = args(&["http://127.0.0.1/", "-c", "1", "-t", "2"]).unwrap();
    assert!(bad.load.config().is_err());
    for flags in [&["-d", "soon"][..], &["--path-mix", "x"], &["-R", "0"]] {
        let err = args(&[&["http://127.0.0.1/"], flags].concat())
            .err()
            .unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
    }
}
