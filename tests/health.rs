//! Worker health: the watchdog (`--worker-timeout`) kills a worker stuck in a handler and
//! leaves an idle one alone; recycling (`--max-requests`) replaces workers one at a time
//! under load without a failed request. `herd serve --app bench`: `/worker` answers the
//! worker's id, `/sleep/N` blocks the whole worker N ms.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// GET `path` on an open keep-alive connection.
fn ask(s: &mut TcpStream, r: &mut BufReader<TcpStream>, path: &str) -> Response {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    read_response(r, false).expect("a response")
}

fn status(admin: SocketAddr) -> serde_json::Value {
    let r = get(admin, "/status");
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.text()).expect("JSON")
}

fn metric(admin: SocketAddr, name: &str) -> u64 {
    let text = get(admin, "/metrics").text();
    let line = (text.lines())
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_worker_stuck_in_a_handler_is_killed_and_replaced_while_the_other_answers() {
    no_core_dumps();
    let h = Herd::serve(
        2,
        &[
            "--app",
            "bench",
            "--worker-timeout",
            "2",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = h.admin_addr();
    // A keep-alive connection to one worker; round-robin sends the next connection to the
    // other, which then blocks for a minute.
    let mut ka = connect(h.addr);
    let mut ka_r = BufReader::new(ka.try_clone().unwrap());
    let healthy: u32 = ask(&mut ka, &mut ka_r, "/worker").text().parse().unwrap();
    let mut stuck_conn = connect(h.addr);
    stuck_conn
        .write_all(b"GET /sleep/60000 HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    h.wait_worker_asleep();
    let forks = h.forks();
    let stuck = *forks
        .iter()
        .find(|(_, &pid)| asleep_in_handler(pid))
        .map(|(id, _)| id)
        .unwrap();
    assert_ne!(
        stuck, healthy,
        "round-robin gave the sleep to the other worker"
    );

    // While it hangs: new connections (half of them dispatched to the stuck worker, whose
    // channel holds them unread) and requests on the healthy worker's connection.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = h.addr;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100 * i));
                get(addr, "/worker")
            })
        })
        .collect();
    for _ in 0..10 {
        let r = ask(&mut ka, &mut ka_r, "/worker");
        assert_eq!((r.status, r.text()), (200, healthy.to_string()));
        std::thread::sleep(Duration::from_millis(50));
    }
    h.log.wait_for(&format!("worker {stuck} unresponsive for "));
    h.log
        .wait_for(&format!("worker {stuck} exited (signal 6, SIGABRT)"));
    // Every connection it never read went to another worker and was answered.
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        let by: u32 = r.text().parse().unwrap();
        assert_ne!(by, stuck, "answered by the stuck worker");
    }
    // The request it was stuck in is lost with it: the connection closes unanswered.
    assert!(read_response(&mut BufReader::new(stuck_conn), false).is_none());
    h.log.wait_for("worker 3 listening on");
    let line = h.log.wait_for("unresponsive for ");
    assert!(line.ends_with("s: killed"), "{line}");
    assert_eq!(metric(admin, "herd_watchdog_kills_total"), 1);
    // The healthy worker was never touched.
    assert_eq!(
        ask(&mut ka, &mut ka_r, "/worker").text(),
        healthy.to_string()
    );
}

#[test]
fn an_idle_cluster_is_never_killed_for_being_quiet() {
    let h = Herd::serve(
        2,
        &[
            "--app",
            "bench",
            "--worker-timeout",
            "0.5",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = h.admin_addr();
    let pids = h.live_worker_pids();
    // Busy for a moment, then idle: the watchdog's clock must stop once the closes are in.
    for _ in 0..6 {
        assert_eq!(get(h.addr, "/worker").status, 200);
    }
    // Until the master has heard nothing from either worker for three timeout periods.
    wait_until("both workers silent for 1.5 s", || {
        let doc = status(admin);
        let workers = doc["workers"].as_array().unwrap().clone();
        workers.len() == 2
            && workers
                .iter()
                .all(|w| w["heartbeat_age_s"].as_f64().unwrap() >= 1.5)
    });
    assert_eq!(h.live_worker_pids(), pids);
    assert_eq!(metric(admin, "herd_watchdog_kills_total"), 0);
    assert!(
        !h.log.lines().iter().any(|l| l.contains("unresponsive")),
        "{}",
        h.log.lines().join("\n")
    );
    for pid in pids {
        assert!(!is_gone(pid));
    }
    assert_eq!(get(h.addr, "/worker").status, 200);
}

#[test]
fn max_requests_recycles_workers_one_at_a_time_without_a_failed_request() {
    let h = Herd::serve(
        2,
        &[
            "--max-requests",
            "200",
            "--max-requests-jitter",
            "50",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = h.admin_addr();
    let mut cfg = herd::load::Config::new(&format!("http://{}/", h.addr)).unwrap();
    cfg.connections = 8;
    cfg.duration = Duration::from_secs(3);
    let report = herd::load::run(&cfg).unwrap();
    assert!(
        report.errors.values().all(|&n| n == 0),
        "failed requests: {:?}\n{}",
        report.errors,
        h.log.lines().join("\n")
    );
    assert!(report.requests > 2000, "{} requests", report.requests);
    assert_eq!(report.status["2xx"], report.requests, "{:?}", report.status);
    let lines = h.log.lines();
    let limits: Vec<u64> = (lines.iter())
        .filter_map(|l| l.split("its --max-requests limit: ").nth(1))
        .map(|rest| rest.split(')').next().unwrap().parse().unwrap())
        .collect();
    assert!(limits.len() >= 5, "only {} recycles", limits.len());
    assert!(limits.iter().all(|l| (200..=250).contains(l)), "{limits:?}");
    let first = limits[0];
    assert!(limits.iter().any(|&l| l != first), "no jitter: {limits:?}");
    // One at a time: every replacement listens and its predecessor is drained before the
    // next replacement is forked.
    let steps: Vec<&str> = (lines.iter())
        .filter_map(|l| {
            if l.contains("reload: forked worker") {
                Some("fork")
            } else if l.contains("reload: worker ") && l.contains(" replaced by worker ") {
                Some("replaced")
            } else {
                None
            }
        })
        .collect();
    assert!(steps.len() >= 8, "{steps:?}");
    for pair in steps.chunks(2) {
        assert_eq!(pair[0], "fork", "{steps:?}");
        if pair.len() == 2 {
            assert_eq!(pair[1], "replaced", "{steps:?}");
        }
    }
    let doc = status(admin);
    assert!(doc["recycled"].as_u64().unwrap() >= 5, "{doc}");
    assert_eq!(doc["workers"].as_array().unwrap().len().min(2), 2);
}
