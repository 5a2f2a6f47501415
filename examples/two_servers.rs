//! A worker may listen on several addresses: the app on one, an admin page on another. Each
//! `listen` asks the master, which binds the address once and shares it. A bind error comes
//! back to the worker that asked (Node's `listen` error event), not as a crash of the master.
//!
//! ```text
//! cargo run --example two_servers 127.0.0.1:3000 127.0.0.1:3001
//! ```

use herd::http::{Request, Response};
use herd::Cluster;

fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let app = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let admin = args.next().unwrap_or_else(|| "127.0.0.1:3001".into());

    Cluster::new()
        .workers(2)
        .worker(move |w| {
            w.listen(&app, |_req: &Request<'_>, res: &mut Response| {
                res.body("hello world")
            })?;
            let id = w.id();
            let admin_handler = move |_req: &Request<'_>, res: &mut Response| {
                res.body(format!("admin page of worker {id}"));
            };
            if let Err(e) = w.listen(&admin, admin_handler) {
                // The app still runs; only the admin page is missing.
                log::error!("worker {id}: admin server not started: {e}");
            }
            Ok(())
        })
        .run()?;
    Ok(())
}
