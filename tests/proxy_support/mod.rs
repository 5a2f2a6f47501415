//! What the proxy tests share: the proxy under test, test targets (a thread per connection),
//! a target that records every byte that reaches it, and HTTP read by hand on their side.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::*;

/// `herd proxy --listen 127.0.0.1:0 --workers 1 --target …` plus `args`.
pub fn proxy(targets: &[String], args: &[&str]) -> Herd {
    Herd::start(proxy_command(targets, args), 1)
}

/// The command [`proxy`] runs, for tests that change its environment.
pub fn proxy_command(targets: &[String], args: &[&str]) -> Command {
    proxy_command_on("127.0.0.1:0", targets, args)
}

/// [`proxy_command`] listening on `listen`.
pub fn proxy_command_on(listen: &str, targets: &[String], args: &[&str]) -> Command {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["proxy", "--listen", listen, "--workers", "1"]);
    for t in targets {
        cmd.args(["--target", t]);
    }
    cmd.args(args);
    cmd
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A port that refuses connections and that no other test can take while this is alive:
/// a socket bound without `SO_REUSEADDR` and never listening. (Binding and releasing a port
/// is not enough: tests run in parallel, and another test's herd may get the same port.)
pub struct ClosedPort {
    _socket: std::os::fd::OwnedFd,
    pub addr: SocketAddr,
}

pub fn closed_port() -> ClosedPort {
    use nix::sys::socket::{
        bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let socket = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .unwrap();
    let local: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&socket)).unwrap();
    ClosedPort {
        _socket: socket,
        addr: SocketAddr::from((local.ip(), local.port())),
    }
}

/// What a test server saw.
#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicUsize,
    /// Connections on which the server read EOF from the proxy.
    pub closed_by_peer: AtomicUsize,
    /// The bytes each connection received, in the order they were accepted (kept by
    /// [`recorder`] and [`scripted`]).
    pub received: Mutex<Vec<Vec<u8>>>,
}

/// A test target: a thread per connection running `serve`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

impl TestServer {
    pub fn start(
        serve: impl Fn(BufReader<TcpStream>, &Stats) + Send + Sync + 'static,
    ) -> TestServer {
        Self::bind(TcpListener::bind("127.0.0.1:0").unwrap(), serve)
    }

    pub fn bind(
        listener: TcpListener,
        serve: impl Fn(BufReader<TcpStream>, &Stats) + Send + Sync + 'static,
    ) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let (s, serve) = (s.clone(), serve.clone());
                std::thread::spawn(move || serve(BufReader::new(conn), &s));
            }
        });
        TestServer { addr, stats }
    }

    pub fn url(&self) -> String {
        url(self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }
}

/// Reads a request head (lines up to the empty one); `None` at EOF.
pub fn read_head(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

pub fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads a body framed by `head` (Content-Length or chunked), passing its bytes to `sink`.
pub fn read_body(r: &mut impl BufRead, head: &[String], mut sink: impl FnMut(&[u8])) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copy = |r: &mut dyn BufRead, mut n: usize| -> bool {
        while n > 0 {
            let want = n.min(buf.len());
            if r.read_exact(&mut buf[..want]).is_err() {
                return false;
            }
            sink(&buf[..want]);
            n -= want;
        }
        true
    };
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            let Ok(size) = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16) else {
                return false;
            };
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).unwrap_or(0) == 0 {
                        return false;
                    }
                    if t.trim_end().is_empty() {
                        return true;
                    }
                }
            }
            if !copy(r, size) {
                return false;
            }
            let mut crlf = [0u8; 2];
            if r.read_exact(&mut crlf).is_err() {
                return false;
            }
        }
    }
    match header(head, "content-length").map_or(Ok(0), str::parse) {
        Ok(len) => copy(r, len),
        Err(_) => false,
    }
}

/// A keep-alive server answering every request with its name, then the request head it
/// received (so tests can check what the proxy forwarded).
pub fn named(name: &'static str) -> TestServer {
    TestServer::start(move |mut r, _| {
        while let Some(head) = read_head(&mut r) {
            read_body(&mut r, &head, |_| {});
            let body = format!("{name}\n{}", head.join("\n"));
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if r.get_mut().write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// GET `path` on an open keep-alive connection; the response.
pub fn get_on(s: &mut TcpStream, r: &mut BufReader<TcpStream>, path: &str) -> Response {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: front.test\r\n\r\n").as_bytes())
        .unwrap();
    read_response(r, false).expect("a response")
}

/// A target-side connection whose every byte read is recorded, as it is read, in its entry
/// of [`Stats::received`].
pub struct Recording<'a> {
    stream: TcpStream,
    stats: &'a Stats,
    index: usize,
}

impl Read for Recording<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.stats.received.lock().unwrap()[self.index].extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// `r`'s connection with its reads recorded (a new entry of `stats.received`), and its write
/// side.
pub fn recording(r: BufReader<TcpStream>, stats: &Stats) -> (BufReader<Recording<'_>>, TcpStream) {
    assert!(
        r.buffer().is_empty(),
        "recording starts before the first read"
    );
    let stream = r.into_inner();
    let writer = stream.try_clone().unwrap();
    let mut received = stats.received.lock().unwrap();
    received.push(Vec::new());
    let index = received.len() - 1;
    drop(received);
    let reader = BufReader::new(Recording {
        stream,
        stats,
        index,
    });
    (reader, writer)
}

/// Reads (and so records) until the proxy closes the connection, then counts the close.
fn read_to_close(r: &mut impl Read, stats: &Stats) {
    let mut sink = [0u8; 4096];
    while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
    stats.closed_by_peer.fetch_add(1, Ordering::SeqCst);
}

/// A target that records exactly the bytes that reach it, and answers each request it can
/// read whole with `200 ok`. What the proxy forwarded is then in [`Stats::received`], one
/// entry per connection: a test can assert that nothing of a message reached it.
pub fn recorder() -> TestServer {
    TestServer::start(|r, stats| {
        let (mut r, mut w) = recording(r, stats);
        while let Some(head) = read_head(&mut r) {
            if !read_body(&mut r, &head, |_| {})
                || w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
            {
                break;
            }
        }
        read_to_close(&mut r, stats);
    })
}

/// A target that answers `GET /N` with `responses[N]`, as is, in one write (so that the proxy
/// reads it in one piece), then reads on until the proxy closes the connection. It records
/// what it receives as [`recorder`] does.
pub fn scripted(responses: Vec<Vec<u8>>) -> TestServer {
    TestServer::start(move |r, stats| {
        let (mut r, mut w) = recording(r, stats);
        while let Some(head) = read_head(&mut r) {
            let n: usize = head[0]
                .split(' ')
                .nth(1)
                .and_then(|path| path.strip_prefix('/'))
                .and_then(|n| n.parse().ok())
                .expect("GET /N");
            if !read_body(&mut r, &head, |_| {}) || w.write_all(&responses[n]).is_err() {
                break;
            }
        }
        read_to_close(&mut r, stats);
    })
}

impl TestServer {
    /// Every byte the target received, all connections in the order they were accepted.
    pub fn received(&self) -> Vec<u8> {
        self.stats.received.lock().unwrap().concat()
    }

    /// Waits until the proxy has closed every connection the target accepted.
    pub fn wait_all_closed(&self) {
        wait_until("the proxy to close every connection to the target", || {
            self.stats.closed_by_peer.load(Ordering::SeqCst) == self.accepted()
        });
    }
}

/// Everything the proxy sends on `s` until it closes the connection (by FIN or reset).
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether every LF in `bytes` ends a CRLF.
pub fn only_crlf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r'))
}
