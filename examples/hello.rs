//! The design document's first program, on herd: one worker per CPU, each serving
//! `hello world`, with the master logging every life-cycle event as Node's `cluster.on` does.
//!
//! ```text
//! cargo run --example hello            # listens on 127.0.0.1:3000
//! cargo run --example hello 127.0.0.1:0
//! ```

use herd::http::{Request, Response};
use herd::{Cluster, Event};

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());

    Cluster::new() // one worker per CPU, like `os.cpus().length`
        .on_event(|_cx, event| match event {
            Event::Exit { worker, .. } => println!("worker{worker} exit"),
            Event::Fork { worker, .. } => println!("fork:worker{worker}"),
            Event::Listening { worker, addr } => {
                println!("worker{worker} listening on {}:{}", addr.ip(), addr.port())
            }
            Event::Online { worker } => println!("worker {worker} is online"),
            _ => {}
        })
        .worker(move |w| {
            w.listen(&addr, |_req: &Request<'_>, res: &mut Response| {
                res.body("hello world");
            })?;
            Ok(())
        })
        .run()?;
    Ok(())
}
