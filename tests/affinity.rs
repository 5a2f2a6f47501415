//! Sticky sessions: `--policy ip-hash` sends every connection of one client address to one
//! worker, spreads addresses over the workers, and moves only a dead worker's clients;
//! `herd proxy --balance ip-hash | cookie:NAME` keeps a client on one target. Clients come
//! from 127.0.0.2, 127.0.0.3, … (all of 127/8 reaches the loopback interface).

mod common;
mod proxy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use common::*;
use proxy_support::{closed_port, named, read_head, url};

/// Client `i`'s address: 127.0.0.(2 + i).
fn client(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))
}

fn worker_from(source: IpAddr, addr: SocketAddr) -> u32 {
    let r = get_from(source, addr, "/worker");
    assert_eq!(r.status, 200);
    r.text().parse().expect("a worker id")
}

#[test]
fn ip_hash_keeps_a_client_on_one_worker_and_a_death_moves_only_its_clients() {
    let h = Herd::serve(4, &["--app", "bench", "--policy", "ip-hash"]);
    // One client, 20 connections: one worker.
    let one: BTreeSet<u32> = (0..20).map(|_| worker_from(client(0), h.addr)).collect();
    assert_eq!(one.len(), 1, "{one:?}");
    // 32 clients spread over the 4 workers.
    let homes: BTreeMap<u8, u32> = (0..32)
        .map(|i| (i, worker_from(client(i), h.addr)))
        .collect();
    let used: BTreeSet<u32> = homes.values().copied().collect();
    assert_eq!(used.len(), 4, "{homes:?}");
    // The peer each worker sees is the client's own address.
    let peer = get_from(client(5), h.addr, "/peer").text();
    assert!(peer.starts_with("127.0.0.7:"), "{peer}");

    // Kill the worker of client 0: its clients move, nobody else's.
    let victim = homes[&0];
    let pid = h.forks()[&victim];
    // SAFETY: kill(2) on a worker of ours.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    h.log.wait_for(&format!("worker {victim} exited (signal 9"));
    h.log.wait_for("worker 5 listening on");
    for (&i, &home) in &homes {
        let now = worker_from(client(i), h.addr);
        if home == victim {
            // Back to the victim's slot, which its replacement took.
            assert_eq!(now, 5, "client {i} of the dead worker {victim}");
        } else {
            assert_eq!(now, home, "client {i} moved though worker {home} lived");
        }
    }
}

/// `herd proxy --workers 2 --balance BALANCE` over `targets`.
fn sticky_proxy(targets: &[String], balance: &str) -> Herd {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["proxy", "--listen", "127.0.0.1:0", "--workers", "2"])
        .args(["--balance", balance]);
    for t in targets {
        cmd.args(["--target", t]);
    }
    Herd::start(cmd, 2)
}

/// Which target answered GET / from `source` (with `cookie`, if given): the first line of
/// a [`named`] target's answer.
fn target_of(proxy: SocketAddr, source: IpAddr, cookie: Option<&str>) -> String {
    let mut s = connect_from(source, proxy);
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: theme=dark; {c}\r\n"));
    let req = format!("GET / HTTP/1.1\r\nHost: front\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut BufReader::new(s), false).expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().lines().next().unwrap().to_string()
}

#[test]
fn proxy_ip_hash_keeps_a_client_on_its_target_and_a_down_target_moves_only_its_own() {
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let targets = [a.url(), b.url(), c.url()];
    let p = sticky_proxy(&targets, "ip-hash");
    // Ten connections of one client, whichever of the two workers gets each: one target.
    let one: BTreeSet<String> = (0..10)
        .map(|_| target_of(p.addr, client(0), None))
        .collect();
    assert_eq!(one.len(), 1, "{one:?}");
    let homes: Vec<String> = (0..24)
        .map(|i| target_of(p.addr, client(i), None))
        .collect();
    let used: BTreeSet<&String> = homes.iter().collect();
    assert_eq!(used.len(), 3, "{homes:?}");
    drop(p);

    // The same targets with b down (a port that refuses): b's clients go elsewhere (a
    // failed attempt is retried on their second-best target), everyone else stays.
    let down = closed_port();
    let p = sticky_proxy(&[a.url(), url(down.addr), c.url()], "ip-hash");
    for (i, home) in homes.iter().enumerate() {
        let now = target_of(p.addr, client(i as u8), None);
        if home == "b" {
            assert_ne!(now, "b");
        } else {
            assert_eq!(&now, home, "client {i} moved though its target was up");
        }
    }
}

#[test]
fn proxy_cookie_balance_keeps_a_session_on_its_target_whatever_the_address() {
    let (a, b, c) = (named("a"), named("b"), named("c"));
    let p = sticky_proxy(&[a.url(), b.url(), c.url()], "cookie:sid");
    // One session from ten addresses: one target.
    let one: BTreeSet<String> = (0..10)
        .map(|i| target_of(p.addr, client(i), Some("sid=alice")))
        .collect();
    assert_eq!(one.len(), 1, "{one:?}");
    // Many sessions from one address: spread.
    let spread: BTreeSet<String> = (0..24)
        .map(|i| target_of(p.addr, client(0), Some(&format!("sid=user{i}"))))
        .collect();
    assert_eq!(spread.len(), 3, "{spread:?}");
    // On a keep-alive connection too, every request follows its own cookie.
    let mut s = connect(p.addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..5 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: front\r\nCookie: sid=alice\r\n\r\n")
            .unwrap();
        let head = read_head(&mut r).expect("a response head");
        assert!(head[0].contains(" 200 "), "{head:?}");
        let resp = read_response_body(&mut r, &head);
        assert_eq!(resp.lines().next(), one.iter().next().map(String::as_str));
    }
}

/// The body of a response whose head was read.
fn read_response_body(r: &mut BufReader<std::net::TcpStream>, head: &[String]) -> String {
    let mut body = Vec::new();
    assert!(proxy_support::read_body(r, head, |b| body.extend_from_slice(b)));
    String::from_utf8(body).unwrap()
}

#[test]
fn a_bad_balance_is_a_one_line_error() {
    assert_refused(
        Command::new(herd_bin()).args([
            "proxy",
            "--target",
            "http://127.0.0.1:1",
            "--balance",
            "cookie:",
        ]),
        "cookie:NAME",
    );
}

/// Each worker's `herd_worker_connections_total` in a `/metrics` scrape.
fn connections_per_worker(admin: SocketAddr) -> BTreeMap<String, u64> {
    let text = get(admin, "/metrics").text();
    (text.lines())
        .filter_map(|l| l.strip_prefix("herd_worker_connections_total{worker=\""))
        .filter_map(|rest| {
            let (id, value) = rest.split_once("\"} ")?;
            Some((id.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn herd_load_from_many_source_addresses_shows_ip_hash_spreading_clients() {
    let h = Herd::serve(4, &["--policy", "ip-hash", "--admin", "127.0.0.1:0"]);
    let admin = h.admin_addr();
    let url = format!("http://{}/", h.addr);
    let load = |extra: &[&str]| {
        let out = Command::new(herd_bin())
            .args(["load", &url, "-c", "32", "-d", "0.5s", "--close"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // From one address: one client, one worker.
    load(&[]);
    let one = connections_per_worker(admin);
    assert_eq!(one.values().filter(|&&n| n > 0).count(), 1, "{one:?}");
    // From 32: every worker gets some.
    load(&["--source-ips", "127.0.0.2-127.0.0.33"]);
    let many = connections_per_worker(admin);
    assert_eq!(many.values().filter(|&&n| n > 0).count(), 4, "{many:?}");
    assert_refused(
        Command::new(herd_bin()).args(["load", &url, "--source-ips", "127.0.0.9-127.0.0.2"]),
        "ends before it starts",
    );
}

#[test]
fn ip_hash_serves_node_workers_too() {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--workers", "2", "--policy", "ip-hash", "--", "node"])
        .arg(format!(
            "{}/tests/node/blocking.js",
            env!("CARGO_MANIFEST_DIR")
        ));
    let h = Herd::start(cmd, 2);
    let node_worker = |source| get_from(source, h.addr, "/").text();
    let one: BTreeSet<String> = (0..10).map(|_| node_worker(client(3))).collect();
    assert_eq!(one.len(), 1, "{one:?}");
    let all: BTreeSet<String> = (0..16).map(|i| node_worker(client(i))).collect();
    assert_eq!(all.len(), 2, "{all:?}");
}

/// The worker (`/worker` of `--app bench`) that answers a connection from this test (the
/// "balancer", 127.0.0.1) whose PROXY protocol header names `client`; the header in two
/// writes, 50 ms apart, with `split`.
fn worker_behind_balancer(addr: SocketAddr, client: &str, split: bool) -> u32 {
    let header = format!("PROXY TCP4 {client} 198.51.100.7 40000 443\r\n");
    let request = "GET /worker HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    if split {
        let (a, b) = header.split_at(12);
        s.write_all(a.as_bytes()).unwrap();
        // Whether the halves arrive apart or not, the answer must be the same: this only
        // makes the master's wait for the rest of the header likely to be exercised.
        std::thread::sleep(std::time::Duration::from_millis(50));
        s.write_all(b.as_bytes()).unwrap();
    } else {
        s.write_all(header.as_bytes()).unwrap();
    }
    s.write_all(request.as_bytes()).unwrap();
    let r = read_response(&mut BufReader::new(s), false).expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().parse().expect("a worker id")
}

#[test]
fn ip_hash_behind_a_balancer_hashes_the_client_its_proxy_header_names() {
    let h = Herd::serve(
        2,
        &["--app", "bench", "--policy", "ip-hash", "--proxy-protocol"],
    );
    // Every connection comes from 127.0.0.1; the headers name the clients.
    let one: BTreeSet<u32> = (0..10)
        .map(|_| worker_behind_balancer(h.addr, "192.0.2.1", false))
        .collect();
    assert_eq!(one.len(), 1, "one client, one worker: {one:?}");
    let homes: BTreeMap<u8, u32> = (0..16)
        .map(|i| {
            (
                i,
                worker_behind_balancer(h.addr, &format!("192.0.2.{}", 10 + i), false),
            )
        })
        .collect();
    let used: BTreeSet<u32> = homes.values().copied().collect();
    assert_eq!(
        used.len(),
        2,
        "16 clients behind one balancer, both workers: {homes:?}"
    );
    // A header that arrives in pieces is waited for, and hashed the same.
    for (&i, &home) in homes.iter().take(4) {
        let again = worker_behind_balancer(h.addr, &format!("192.0.2.{}", 10 + i), true);
        assert_eq!(again, home, "client {i}, its header split");
    }
    // The worker still reads and checks the header itself: a connection without one is
    // closed unanswered, as without ip-hash.
    let mut s = std::net::TcpStream::connect(h.addr).unwrap();
    s.write_all(b"GET /worker HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}
