use super::*;

fn sample() -> Snapshot {
    Snapshot {
        policy: Policy::P2c,
        uptime: Duration::from_millis(1500),
        queued: 2,
        exits: 1,
        workers: vec![
            WorkerRow {
                id: 1,
                pid: 100,
                state: "online",
                connections: 7,
                requests: 9,
                open: 1,
                accepted: 0,
                silent: Duration::from_millis(250),
                usage: Some(Usage {
                    rss_bytes: 12 << 20,
                    cpu: Duration::from_millis(1250),
                    processes: 2,
                }),
                restarts: 3,
            },
            WorkerRow {
                id: 3,
                pid: 102,
                state: "stopping",
                connections: 0,
                requests: 0,
                open: 0,
                accepted: 0,
                silent: Duration::ZERO,
                usage: None,
                restarts: 0,
            },
        ],
        ops: crate::master::ops::OpsStatus::default().to_json(),
        kills: 2,
        start_kills: 0,
        recycled: 5,
    }
}

#[test]
fn metrics_are_prometheus_text_with_one_series_per_worker() {
    let text = sample().metrics();
    assert!(text.contains("# TYPE herd_worker_connections_total counter\n"));
    assert!(text.contains("herd_worker_connections_total{worker=\"1\"} 7\n"));
    assert!(text.contains("herd_worker_requests_total{worker=\"1\"} 9\n"));
    assert!(text.contains("herd_worker_open_connections{worker=\"3\"} 0\n"));
    assert!(text.contains("herd_worker_exits_total 1\n"));
    assert!(text.contains("herd_master_queued_connections 2\n"));
    assert!(text.contains("herd_worker_heartbeat_age_seconds{worker=\"1\"} 0.250\n"));
    assert!(text.contains("herd_watchdog_kills_total 2\n"));
    assert!(text.contains("herd_worker_recycles_total 5\n"));
    assert!(text.contains("herd_worker_resident_memory_bytes{worker=\"1\"} 12582912\n"));
    assert!(text.contains("herd_worker_cpu_seconds_total{worker=\"1\"} 1.25\n"));
    assert!(text.contains("herd_worker_slot_restarts{worker=\"1\"} 3\n"));
    assert!(text.contains("herd_worker_info{worker=\"1\",pid=\"100\",state=\"online\"} 1\n"));
    assert!(text.contains("herd_worker_info{worker=\"3\",pid=\"102\",state=\"stopping\"} 1\n"));
    assert!(text.contains("herd_worker_resident_memory_bytes{worker=\"3\"} 0\n"));
    assert!(text.ends_with('\n'));
}

#[test]
fn status_is_json_and_escapes_what_it_quotes() {
    let mut snapshot = sample();
    snapshot.ops["upgrade"]["last"] = "cannot run /tmp/a\"b\n\u{1}".into();
    let text = snapshot.status();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["policy"], "p2c");
    assert_eq!(doc["workers"][1]["state"], "stopping");
    assert_eq!(doc["workers"][1]["pid"], 102);
    assert_eq!(doc["workers"][0]["heartbeat_age_s"], 0.25);
    assert_eq!(doc["workers"][0]["rss_bytes"], 12 << 20);
    assert_eq!(doc["workers"][0]["cpu_seconds"], 1.25);
    assert_eq!(doc["workers"][0]["restarts"], 3);
    assert_eq!(doc["workers"][1]["rss_bytes"], serde_json::Value::Null);
    assert_eq!(doc["watchdog"]["kills"], 2);
    assert_eq!(doc["recycled"], 5);
    assert_eq!(doc["ops"]["upgrade"]["last"], "cannot run /tmp/a\"b\n\u{1}");
    assert!(!text.trim_end().contains('\n'), "one line: {text}");
}
