//! `herd run -- node app.js`: herd as the cluster primary of real, unmodified Node.js
//! workers (`tests/node/*.js`), end to end over TCP on port 0.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A program of `tests/node/`.
fn fixture(name: &str) -> String {
    format!("{}/tests/node/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `herd run --workers N ARGS… -- node tests/node/SCRIPT`, with `env` for the workers,
/// waiting until every worker listens.
fn run_node(workers: usize, args: &[&str], script: &str, env: &[(&str, &str)]) -> Herd {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--workers", &workers.to_string()])
        .args(args)
        .args(["--", "node", &fixture(script)])
        .envs(env.iter().copied());
    Herd::start(cmd, workers)
}

fn worker_of(addr: SocketAddr) -> u32 {
    let r = get(addr, "/");
    assert_eq!(r.status, 200);
    r.text().trim().parse().expect("a worker id")
}

#[test]
fn the_seed_program_runs_unmodified_as_herds_workers() {
    // The design document's program verbatim: it listens on 127.0.0.1:3000, which the
    // test maps to a free port (the program is told it got 3000).
    let h = run_node(
        2,
        &["--map-port", "3000=0", "--admin", "127.0.0.1:0"],
        "seed.js",
        &[],
    );
    for id in 1..=2 {
        h.log.wait_for(&format!("fork: worker {id} (pid "));
        h.log.wait_for(&format!("worker {id} is online"));
    }
    for _ in 0..4 {
        let r = get(h.addr, "/");
        assert_eq!((r.status, r.text()), (200, "hello world".to_string()));
    }
    // The worker logs cluster.worker.id per request, prefixed with its worker.
    h.log.wait_for("[worker 1] 1");
    h.log.wait_for("[worker 2] 2");
    // Messages both ways, as the seed does them.
    let admin = h.admin_addr();
    let sent = post(admin, "/workers/1/message", br#""hello from herd""#);
    assert_eq!(sent.status, 202, "{}", sent.text());
    h.log.wait_for("[worker 1] [worker] hello from herd");
    h.log
        .wait_for("[master] message [worker] worker1 received!");
    assert_eq!(post(admin, "/workers/message", b"42").status, 202);
    h.log.wait_for("[worker 2] [worker] 42");
    h.log
        .wait_for("[master] message [worker] worker2 received!");
    assert_eq!(post(admin, "/workers/9/message", b"1").status, 404);
    assert_eq!(post(admin, "/workers/1/message", b"not json").status, 400);
    let log = h.log.clone();
    h.stop();
    for id in 1..=2 {
        log.wait_for(&format!("worker {id} disconnected"));
        log.wait_for(&format!("worker {id} exited (code 0)"));
    }
}

/// `POST path` with `body`.
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    exchange(addr, &req).remove(0)
}

#[test]
fn round_robin_gives_each_of_3_node_workers_exactly_10_of_30_connections() {
    let h = run_node(3, &[], "worker_id.js", &[]);
    let ids: Vec<u32> = (0..30).map(|_| worker_of(h.addr)).collect();
    for w in 1..=3 {
        assert_eq!(ids.iter().filter(|&&i| i == w).count(), 10, "{ids:?}");
    }
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(
            *id,
            ids[k % 3],
            "connection {k} broke the rotation: {ids:?}"
        );
    }
    h.stop();
}

#[test]
fn the_node_and_shared_policies_serve_node_workers() {
    for policy in ["node", "shared"] {
        let h = run_node(2, &["--policy", policy], "worker_id.js", &[]);
        let mut seen = BTreeSet::new();
        for _ in 0..20 {
            seen.insert(worker_of(h.addr));
        }
        assert!(
            seen.iter().all(|id| *id == 1 || *id == 2),
            "{policy}: {seen:?}"
        );
        if policy == "node" {
            assert_eq!(seen.len(), 2, "{policy}: {seen:?}");
        }
        h.stop();
    }
}

/// Worker `id`'s field `name` in `/status`.
fn status_of(admin: SocketAddr, id: u32, name: &str) -> u64 {
    let status: serde_json::Value = serde_json::from_str(&get(admin, "/status").text()).unwrap();
    (status["workers"].as_array().unwrap().iter())
        .find(|w| w["id"] == id)
        .map_or(0, |w| w[name].as_u64().unwrap())
}

#[test]
fn a_node_worker_killed_with_connections_waiting_is_replaced_and_they_are_served() {
    let h = run_node(2, &["--admin", "127.0.0.1:0"], "blocking.js", &[]);
    let admin = h.admin_addr();
    let addr = h.addr;
    // One worker (the first in rotation: whichever listened first) gets stuck in a handler
    // for 30 s...
    let stuck = std::thread::spawn(move || {
        exchange(
            addr,
            b"GET /block/30000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
    });
    let blocked = worker_of_line(&h.log.wait_for("] blocking"));
    // ...so that the connections handed to it meanwhile wait in its channel, unaccepted.
    let waiting: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || worker_of(addr)))
        .collect();
    wait_until("two connections handed to the stuck worker", || {
        status_of(admin, blocked, "connections") == 3
    });
    let pid = h.forks()[&blocked];
    let killed = Instant::now();
    // SAFETY: kill(2) on a worker of ours.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for t in waiting {
        let id = t.join().unwrap();
        assert_ne!(id, blocked, "served by the dead worker");
    }
    h.log.wait_for("worker 3 listening on");
    eprintln!(
        "a new node worker listened {:?} after the kill",
        killed.elapsed()
    );
    let mut seen = BTreeSet::new();
    wait_until("worker 3 to serve", || {
        seen.insert(worker_of(addr));
        seen.contains(&3)
    });
    // The request the stuck worker had taken died with it (it was the worker's, not the
    // master's).
    assert!(stuck.join().unwrap().is_empty());
    h.stop();
}

#[test]
fn a_connection_a_node_worker_refuses_goes_to_another() {
    // maxConnections = 1 and 300 ms per request: three at once leave one refused
    // (accepted: false) by a busy worker, and herd hands it on until a worker takes it.
    let h = run_node(
        2,
        &[],
        "max_connections.js",
        &[("RUST_LOG", "info,herd::master::messages=debug")],
    );
    let addr = h.addr;
    let clients: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || worker_of(addr)))
        .collect();
    for c in clients {
        let id = c.join().unwrap();
        assert!(id == 1 || id == 2, "{id}");
    }
    h.log
        .wait_for("gave a connection back; handing it to another");
    h.stop();
}

#[test]
fn two_listen_0_servers_in_each_node_worker_are_two_ports_each_served_by_every_worker() {
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "--workers",
        "2",
        "--",
        "node",
        &fixture("two_listens.js"),
    ]);
    let (child, log) = spawn_logged(cmd);
    let h = Herd {
        child,
        log: log.clone(),
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    let masters = log.wait_for_n(2, |l| l.contains("master listening on "));
    log.wait_for_n(4, |l| {
        l.contains("] worker ") && l.contains(" listening on ")
    });
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
    assert_ne!(ports[0], ports[1]);
    for addr in ports {
        let mut seen = BTreeSet::new();
        let mut server = BTreeSet::new();
        for _ in 0..4 {
            let text = get(addr, "/").text();
            let (name, id) = text.split_once(' ').expect("NAME ID");
            server.insert(name.to_string());
            seen.insert(id.to_string());
        }
        assert_eq!(server.len(), 1, "{addr}: one server per port: {server:?}");
        assert_eq!(seen.len(), 2, "{addr}: {seen:?}");
    }
    h.stop();
}

#[test]
fn an_https_node_worker_serves_tls_through_herd() {
    let dir = std::env::temp_dir().join(format!("herd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let h = run_node(
        2,
        &[],
        "https_server.js",
        &[
            ("TLS_KEY", key.to_str().unwrap()),
            ("TLS_CERT", cert.to_str().unwrap()),
        ],
    );
    // A TLS client: python3's ssl, not verifying the self-signed certificate.
    let script = format!(
        "import socket, ssl\n\
         c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE\n\
         for _ in range(4):\n\
         \x20   s = c.wrap_socket(socket.create_connection(('127.0.0.1', {port})))\n\
         \x20   s.sendall(b'GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n')\n\
         \x20   data = b''\n\
         \x20   while True:\n\
         \x20       chunk = s.recv(4096)\n\
         \x20       if not chunk: break\n\
         \x20       data += chunk\n\
         \x20   print(data.split(b'\\r\\n\\r\\n', 1)[1].decode())\n",
        port = h.addr.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids, BTreeSet::from(["1".to_string(), "2".to_string()]));
    h.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_under_load_answers_every_request_and_replaces_every_node_worker() {
    let h = run_node(2, &[], "worker_id.js", &[]);
    let url = format!("http://{}/", h.addr);
    let load = Command::new(herd_bin())
        .args(["load", &url, "-c", "8", "-d", "4s", "--close", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    h.signal(libc::SIGHUP);
    h.log.wait_for("reload done");
    let out = load.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(report["requests"].as_u64().unwrap() > 100, "{report}");
    let errors: u64 = (report["errors"].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 0, "{report}");
    for old in 1..=2 {
        h.log.wait_for(&format!("worker {old} exited (code 0)"));
    }
    assert!(worker_of(h.addr) >= 3);
    h.stop();
}

#[test]
fn a_sigkilled_master_leaves_no_node_worker_running() {
    let mut h = run_node(2, &[], "worker_id.js", &[]);
    let pids = h.live_worker_pids();
    h.signal(libc::SIGKILL);
    h.wait_exit();
    for pid in pids {
        wait_until("the node worker gone after its master", || is_gone(pid));
    }
}

#[test]
fn a_node_worker_that_breaks_the_protocol_is_killed_and_replaced() {
    for script in ["bad_line.js", "unknown_act.js"] {
        let h = run_node(2, &[], script, &[]);
        h.log.wait_for("worker 1: ");
        h.log.wait_for("; killing it");
        h.log.wait_for("worker 3 listening on");
        let mut seen = BTreeSet::new();
        wait_until("workers 2 and 3 serving", || {
            seen.insert(worker_of(h.addr));
            seen.contains(&2) && seen.contains(&3)
        });
        h.stop();
    }
}

#[test]
fn a_bind_error_reaches_the_node_worker_as_its_errno() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "--workers",
        "1",
        "--",
        "node",
        &fixture("worker_id.js"),
    ])
    .env("PORT", &port);
    let (mut child, log) = spawn_logged(cmd);
    // The server emits 'error' with EADDRINUSE; unhandled, it ends the worker.
    log.wait_for("EADDRINUSE");
    log.wait_for("worker 1 exited (code 1)");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut child).success());
}

#[test]
fn bad_commands_and_policies_are_one_line_errors_with_exit_2() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["--", "herd-no-such-command"],
            "cannot run herd-no-such-command",
        ),
        // Node runs a cluster worker only from a script file: these would exit at once,
        // and be respawned forever.
        (
            &["--", "node", "-e", "console.log(1)"],
            "needs a script file",
        ),
        (&["--", "node", "--print=1"], "needs a script file"),
        (&["--", "node"], "needs a script file"),
        (&["--", "node", "--no-warnings", "-"], "needs a script file"),
        (
            &["--policy", "least-connections", "--", "node", "x.js"],
            "cannot serve node workers",
        ),
        (
            &["--policy", "reuseport", "--", "node", "x.js"],
            "cannot serve node workers",
        ),
    ];
    for (args, says) in cases {
        assert_refused(Command::new(herd_bin()).arg("run").args(args), says);
    }
}

#[test]
fn connections_right_behind_a_large_message_reach_the_right_node_worker_sockets() {
    // A Node worker has one slot for a received fd: if one of its reads ended inside a
    // handle line while another handle followed, a connection would get another's fd. herd
    // never pipelines a handle behind more than 32 KiB the worker may not have read.
    let h = run_node(1, &["--admin", "127.0.0.1:0"], "worker_id.js", &[]);
    let admin = h.admin_addr();
    let addr = h.addr;
    for _ in 0..3 {
        let big = format!("\"{}\"", "x".repeat(60_000));
        assert_eq!(
            post(admin, "/workers/1/message", big.as_bytes()).status,
            202
        );
        let clients: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(move || worker_of(addr)))
            .collect();
        for c in clients {
            assert_eq!(c.join().unwrap(), 1);
        }
    }
    h.stop();
}
