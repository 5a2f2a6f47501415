//! The master–worker core, end to end: real processes, real sockets, port 0.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Instant;

use common::*;

fn worker_of(h: &Herd) -> u32 {
    let r = get(h.addr, "/worker");
    assert_eq!(r.status, 200);
    r.text().parse().expect("a worker id")
}

#[test]
fn round_robin_gives_each_of_3_workers_exactly_10_of_30_connections_in_rotation() {
    let h = Herd::serve(3, &["--app", "bench"]);
    let ids: Vec<u32> = (0..30).map(|_| worker_of(&h)).collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    for w in &distinct {
        assert_eq!(ids.iter().filter(|i| *i == w).count(), 10, "{ids:?}");
    }
    // Strict rotation: the k-th connection goes to the (k mod 3)-th worker.
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(
            *id,
            ids[k % 3],
            "connection {k} broke the rotation: {ids:?}"
        );
    }
}

#[test]
fn a_killed_worker_is_respawned_under_a_new_id_and_serves() {
    let h = Herd::serve(2, &["--app", "bench"]);
    let forks = h.forks();
    let (&victim_id, &victim_pid) = forks.iter().min().unwrap();
    let killed = Instant::now();
    // SAFETY: kill(2) on a worker of ours.
    unsafe { libc::kill(victim_pid, libc::SIGKILL) };
    h.log
        .wait_for(&format!("worker {victim_id} exited (signal 9"));
    let online = h.log.wait_for("worker 3 is online");
    eprintln!("respawned in {:?}: {online}", killed.elapsed());
    h.log.wait_for("worker 3 listening on");
    // Both remaining workers serve; one of them is the new one.
    let seen: Vec<u32> = (0..4).map(|_| worker_of(&h)).collect();
    assert!(seen.contains(&3), "new worker 3 never served: {seen:?}");
    assert!(!seen.contains(&victim_id), "dead worker served: {seen:?}");
}

#[test]
fn connections_queued_for_a_worker_that_dies_are_served_by_another() {
    let h = Herd::serve(2, &["--app", "bench"]);
    // Rotation: this connection goes to worker A, the next to worker B.
    let a = worker_of(&h);
    let mut stalled = connect(h.addr);
    stalled
        .write_all(b"GET /sleep/60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let forks = h.forks();
    let (b, b_pid) = forks
        .iter()
        .map(|(&id, &pid)| (id, pid))
        .find(|&(id, _)| id != a)
        .unwrap();
    // Wait until B is asleep in its handler: from now on it reads nothing from its channel.
    wait_until("worker B asleep in its handler", || {
        asleep_in_handler(b_pid)
    });
    // Ten more connections: five go to A, five queue in B's channel, unread.
    let mut conns: Vec<TcpStream> = (0..10).map(|_| connect(h.addr)).collect();
    for c in &mut conns {
        c.write_all(b"GET /worker HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    // Kill B: the master takes back what B never read and hands it to A.
    // SAFETY: kill(2) on a worker of ours.
    unsafe { libc::kill(b_pid, libc::SIGKILL) };
    for c in conns {
        let resp = read_response(&mut BufReader::new(c), false)
            .expect("every queued connection is answered");
        assert_eq!(resp.status, 200);
        assert_ne!(resp.text(), b.to_string());
    }
    h.log
        .wait_for("connection(s) it never read handed to other workers");
}

#[test]
fn a_worker_that_crashes_at_start_is_respawned_with_growing_delays() {
    let mut cmd = Command::new(example_bin("crashing_worker"));
    cmd.args(["127.0.0.1:0", "1"]);
    let (mut child, log) = spawn_logged(cmd);
    log.wait_for("respawning in 800ms");
    let started = log.wait_for_n(1, |l| l.contains("fork: worker 1 ")).len();
    assert_eq!(started, 1);
    let delays: Vec<String> = log
        .lines()
        .iter()
        .filter_map(|l| l.split("respawning in ").nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        delays[..4],
        ["100ms", "200ms", "400ms", "800ms"],
        "{delays:?}"
    );
    // 1 + 1 immediate respawn + 4 delayed ones: no fork storm.
    let forks = log
        .lines()
        .iter()
        .filter(|l| l.contains("fork: worker"))
        .count();
    assert!(forks <= 7, "{forks} forks: {:#?}", log.lines());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn two_thousand_concurrent_connections_are_answered_and_no_fd_leaks() {
    raise_fd_limit();
    let h = Herd::serve(2, &[]);
    let mut pids = vec![h.pid()];
    pids.extend(h.live_worker_pids());
    // Warm up each worker (first requests allocate), then take the baseline.
    for _ in 0..4 {
        assert_eq!(get(h.addr, "/").status, 200);
    }
    wait_until("idle baseline", || pids.iter().all(|&p| fd_count(p) > 0));
    let baseline: Vec<usize> = pids.iter().map(|&p| fd_count(p)).collect();

    let mut conns: Vec<TcpStream> = (0..2000).map(|_| connect(h.addr)).collect();
    for c in &mut conns {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for c in conns {
        let mut r = BufReader::new(c);
        let resp = read_response(&mut r, false).expect("a response");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"hello world");
    }
    wait_until("fd counts back at baseline", || {
        pids.iter().zip(&baseline).all(|(&p, &b)| fd_count(p) == b)
    });
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let mut h = Herd::serve(1, &["--app", "bench"]);
    let mut slow = connect(h.addr);
    slow.write_all(b"GET /sleep/1000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    h.signal(libc::SIGTERM);
    let mut reader = BufReader::new(slow);
    let resp = read_response(&mut reader, false).expect("the in-flight request is answered");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello world");
    // Then the draining worker closes the connection.
    assert!(read_response(&mut reader, false).is_none());
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "graceful stop exits 0");
    h.log.wait_for("worker 1 exited (code 0)");
}

#[test]
fn after_the_master_is_sigkilled_no_worker_is_left_and_the_port_is_free() {
    let mut h = Herd::serve(2, &[]);
    let workers = h.live_worker_pids();
    assert_eq!(workers.len(), 2);
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    wait_until("workers gone", || workers.iter().all(|&p| is_gone(p)));
    wait_until("port free", || TcpListener::bind(h.addr).is_ok());
}

#[test]
fn a_second_sigint_stops_at_once() {
    let mut h = Herd::serve(1, &["--app", "bench", "--shutdown-timeout", "60"]);
    let mut slow = connect(h.addr);
    slow.write_all(b"GET /sleep/30000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Wait until the worker holds the request (the master logs nothing per request, so poll
    // the worker's socket count: listener-less worker = channel + poll + stdio + 1 conn).
    h.signal(libc::SIGINT);
    h.log.wait_for("stopping gracefully");
    h.signal(libc::SIGINT);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(130));
    h.log.wait_for("second SIGINT");
}

#[test]
fn every_listen_address_is_served() {
    // Two ephemeral ports on two loopback addresses (127.0.0.0/8 is all loopback on Linux).
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "serve",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.2:0",
    ]);
    let h = Herd::start(cmd, 4);
    let second_addr = h.log.wait_for_addr("master listening on 127.0.0.2:");
    assert_eq!(get(h.addr, "/").status, 200);
    assert_eq!(get(second_addr, "/").text(), "hello world");
}

#[test]
fn messages_go_both_ways() {
    let mut cmd = Command::new(example_bin("messages"));
    cmd.arg("2");
    let (mut child, log) = spawn_logged(cmd);
    for id in 1..=2 {
        log.wait_for(&format!("[worker] hi there worker {id}"));
        log.wait_for(&format!("[master] message [worker] worker{id} received!"));
    }
    let status = wait_exit(&mut child);
    assert!(status.success(), "{:#?}", log.lines());
}

#[test]
fn the_library_hello_example_serves_hello_world() {
    let mut cmd = Command::new(example_bin("hello"));
    cmd.arg("127.0.0.1:0");
    let h = Herd::start(cmd, 1);
    let r = get(h.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    h.log.wait_for("fork:worker1");
    h.log.wait_for("worker 1 is online");
}

#[test]
fn a_listen_error_goes_back_to_the_worker_that_asked() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(example_bin("two_servers"));
    cmd.arg("127.0.0.1:0")
        .arg(taken.local_addr().unwrap().to_string());
    let h = Herd::start(cmd, 1);
    h.log.wait_for("admin server not started: listen");
    // The first server keeps serving: the error did not take the master down.
    assert_eq!(get(h.addr, "/").status, 200);
    drop(taken);
}

#[test]
fn workers_hold_nothing_of_the_master() {
    let h = Herd::serve(2, &[]);
    let targets = |pid: i32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    };
    // The listening socket's inode, from the kernel's table of TCP sockets.
    let port = format!(":{:04X} ", h.addr.port());
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listener = tcp
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(port.trim()))
                && l.split_whitespace().nth(3) == Some("0A")
        })
        .and_then(|l| l.split_whitespace().nth(9))
        .map(|inode| format!("socket:[{inode}]"))
        .expect("the listener in /proc/net/tcp");
    let master = targets(h.pid());
    assert!(master.contains(&listener));
    let mut channels = Vec::new();
    for pid in h.live_worker_pids() {
        let fds = targets(pid);
        // One socket, its channel: not the listener, not another worker's channel, not the
        // master's signal pipe. (The master keeps the worker's end of each channel too.)
        let sockets: Vec<&String> = fds.iter().filter(|f| f.starts_with("socket:")).collect();
        assert_eq!(sockets.len(), 1, "worker {pid}: {fds:?}");
        assert_ne!(sockets[0], &listener);
        channels.push(sockets[0].clone());
        // One epoll, its own: the master's watches several fds, the idle worker's only its
        // channel and its signal pipe (epoll fds all read as anon_inode:[eventpoll]; fdinfo
        // tells them apart).
        let epolls: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|t| t.to_string_lossy().contains("eventpoll"))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(epolls.len(), 1, "worker {pid}: {fds:?}");
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", epolls[0])).unwrap();
        assert_eq!(
            info.matches("tfd:").count(),
            2,
            "worker {pid} epoll: {info}"
        );
    }
}

#[test]
fn a_setup_that_panics_never_runs_the_masters_destructors_in_the_child() {
    let mut cmd = Command::new(example_bin("edge_cases"));
    cmd.args(["panic", "127.0.0.1:0"]);
    let (mut child, log) = spawn_logged(cmd);
    log.wait_for("master listening on ");
    // The worker panics after it listens; it exits, and is respawned with back-off.
    log.wait_for_n(2, |l| l.contains("panicked; exiting"));
    let exits = log.wait_for_n(1, |l| l.contains("worker 1 exited"));
    assert!(exits[0].contains("code 101"), "{exits:?}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
    let master = child.id();
    let drops: Vec<String> = (log.lines().into_iter())
        .filter(|l| l.contains("main's guard dropped in pid"))
        .collect();
    assert_eq!(
        drops,
        [format!("main's guard dropped in pid {master}")],
        "only the master drops what main holds; log:\n{}",
        log.lines().join("\n")
    );
}

#[test]
fn an_unbounded_shutdown_timeout_stops_gracefully() {
    let mut cmd = Command::new(example_bin("edge_cases"));
    cmd.args(["forever", "127.0.0.1:0"]);
    let (mut child, log) = spawn_logged(cmd);
    let addr = log.wait_for_addr("master listening on ");
    log.wait_for("worker 1 listening on");
    assert_eq!(get(addr, "/").text(), "hello world");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut child);
    let text = log.lines().join("\n");
    assert!(status.success(), "{status:?}\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains("cluster ended: Graceful"), "{text}");
}

#[test]
fn two_listens_on_one_port_0_are_two_ports_each_served_by_every_worker() {
    // Node's rule: a worker's n-th listen on an address is listener n of that address.
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "serve",
        "--app",
        "bench",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    let (mut child, log) = spawn_logged(cmd);
    let masters = log.wait_for_n(2, |l| l.contains("master listening on "));
    let ports: Vec<SocketAddr> = masters
        .iter()
        .map(|l| {
            l.rsplit("listening on ")
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_ne!(ports[0], ports[1], "{masters:?}");
    log.wait_for_n(4, |l| {
        l.contains("] worker ") && l.contains(" listening on ")
    });
    for addr in ports {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            seen.insert(get(addr, "/worker").text());
        }
        assert_eq!(seen.len(), 2, "{addr}: {seen:?}");
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
}

#[test]
fn sigterm_to_one_worker_drains_that_worker_and_its_slot_is_refilled() {
    // As systemd's KillMode=control-group (or a person) would: the worker itself gets
    // SIGTERM. It reaches the worker's loop through its signal pipe whenever it arrives.
    let h = Herd::serve(2, &["--app", "bench"]);
    let forks = h.forks();
    let pid = forks[&1];
    // SAFETY: kill(2) on a worker of ours.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    h.log.wait_for("worker 1 exited (code 0)");
    h.log.wait_for("worker 3 listening on");
    let mut seen = std::collections::BTreeSet::new();
    wait_until("workers 2 and 3 to serve", || {
        seen.insert(worker_of(&h));
        seen.len() == 2
    });
    assert!(!seen.contains(&1), "{seen:?}");
}
