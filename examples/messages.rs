//! The design document's message exchange: the master sends each worker a message; the
//! worker logs `[worker] <msg>` and replies `[worker] workerN received!`; the master logs
//! `[master] message <msg>`. Once every worker has replied, the master stops the cluster.
//!
//! ```text
//! cargo run --example messages [WORKERS]
//! ```

use std::collections::HashSet;

use herd::{Cluster, Event};

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let workers: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let mut replied = HashSet::new();

    Cluster::new()
        .workers(workers)
        .on_event(move |cx, event| match event {
            Event::Online { worker } => cx.send(*worker, format!("hi there worker {worker}")),
            Event::Message { worker, payload } => {
                println!("[master] message {}", String::from_utf8_lossy(payload));
                replied.insert(*worker);
                if replied.len() == workers {
                    cx.shutdown();
                }
            }
            _ => {}
        })
        .worker(|w| {
            w.on_message(|mailbox, msg| {
                println!("[worker] {}", String::from_utf8_lossy(msg));
                let reply = format!("[worker] worker{} received!", mailbox.id());
                if let Err(e) = mailbox.send(reply.as_bytes()) {
                    eprintln!("[worker] cannot reply: {e}");
                }
            });
            Ok(())
        })
        .run()?;
    Ok(())
}
