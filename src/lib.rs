//! herd: Node.js's `cluster` module for Linux.
//!
//! A **master** process owns the listening sockets and accepts every connection itself. It
//! hands each connection's fd to the next **worker** (round-robin, Node's default) over that
//! worker's Unix socket with `SCM_RIGHTS`. Workers are `fork()`ed children, each one mio event
//! loop serving HTTP/1.1.
//!
//! # Layout
//!
//! In the order a connection meets it (`master`, `link`, `sys` and `reuseport` are
//! private: read them in the source, `cargo doc --document-private-items` renders them too):
//!
//! * [`cluster`]: the public API, shaped like Node's: [`Cluster`], a builder over the plain
//!   settings of [`config`] and the callbacks of [`event`] ([`Event`], [`Control`]).
//! * `master/`: the master's loop, one step per file: `accept.rs` → `dispatch.rs` (by
//!   [`policy`]) → `handoff.rs` (flush: `sendmsg` with `SCM_RIGHTS`); `messages.rs` (what
//!   workers say), `listeners.rs` (keyed as Node keys them), `supervisor.rs` (spawn, reap,
//!   disconnect, kill, stop), `signals.rs`, `output.rs` (exec'd workers' output pipes),
//!   `launch.rs` (herd's own forked workers); `ops.rs`, `reload.rs`, `upgrade.rs`,
//!   `systemd.rs`, `restarts.rs`, `watchdog.rs` (hung workers), `recycle.rs` (`--max-requests`),
//!   `peek.rs` (a PROXY protocol header's client, for `ip-hash`), `usage.rs` (a worker's
//!   process tree: RSS, CPU, from `/proc`), `admin.rs` for operators.
//! * `link/`: the seam every kind of worker plugs into: how the master starts one
//!   (`Launch`) and talks to it (`Link`: queue connections, messages, a drain; hear what
//!   it says), below the master and every kind of worker alike.
//! * [`channel`]: the wire between the master and herd's own workers: one seqpacket message
//!   per packet, fds attached with `SCM_RIGHTS`.
//! * [`worker`]: herd's own worker process: `bootstrap.rs` (after the fork), `event_loop.rs`,
//!   `tokens.rs`, and the [`worker::Service`] each listener's connections go to
//!   ([`worker::HttpService`] in `http_service.rs`, over one `http_conn.rs` per client).
//! * [`rendezvous`]: rendezvous hashing, the stable client → worker (`--policy ip-hash`)
//!   and client → target (`herd proxy --balance ip-hash`) affinity.
//! * [`http`]: HTTP/1.1 as a sans-IO state machine (parse, frame, respond), driven by the
//!   worker's [`worker::HttpService`].
//! * [`proxy_protocol`]: HAProxy's PROXY protocol (v1, v2), sans IO: the header a balancer
//!   puts in front of a relayed connection to name the real client.
//! * [`exec`]: workers that are programs (`herd run -- CMD`): fork + exec with fds in place
//!   (`spawn.rs`, over `sys/spawn.rs`), their environment and `$PATH` lookup
//!   (`environment.rs`), a per-worker `NOTIFY_SOCKET` (`notify.rs`), the socket-activated
//!   worker's `Link` (`activation.rs`), `--spawn`'s instances on ports of their own
//!   (`instance.rs`), the checks before any starts (`fit.rs`), and their `Launch`
//!   (`launch.rs`).
//! * [`output`]: exec'd workers' stdout and stderr, to herd's own a whole line at a time,
//!   prefixed, never blocking the master: `lines.rs` (splitting), `sink.rs` and
//!   `destination.rs` (where lines go, `--log-file`), `timestamp.rs`.
//! * [`proxy`]: `herd proxy`, a reverse proxy: a [`worker::Service`] that forwards each request
//!   to the next target over pooled keep-alive connections.
//! * [`node`]: Node.js's cluster IPC protocol, sans IO, for herd as the primary of `node`
//!   workers; `link.rs` is the master's `Link` to one, writing through
//!   `outbox.rs` (one fd per `sendmsg`, handle lines pipelined safely).
//! * [`app`]: the handlers `herd serve` ships with; [`load`]: `herd load`, the load
//!   generator; [`bench`](mod@bench): `herd bench`, the policies compared; [`url`]: the
//!   `http://IP:PORT/PATH` URLs the proxy and the load generator connect to.
//! * [`cli`]: the command line, one file per subcommand: the only module that knows clap; it
//!   turns flags into each part's `Config` and calls its `run`.
//! * `sys/`: the system-call fence: every `unsafe` libc call behind a safe function
//!   (`process.rs`: fork, `_exit`, signals; `spawn.rs`: between fork and exec; `socket.rs`,
//!   `fd.rs`, `epoll.rs`).
//!
//! Public for the benchmarks (`benches/`), not as an API to build on: [`channel`]'s codec
//! and [`policy`]'s deciders.
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod app;
pub mod bench;
pub mod channel;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod event;
pub mod exec;
pub mod http;
pub(crate) mod link;
pub mod load;
pub(crate) mod master;
pub mod node;
pub mod output;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod rendezvous;
pub(crate) mod reuseport;
mod sys;
pub mod url;
pub mod worker;

pub use cluster::Cluster;
pub use config::ClusterConfig;
pub use event::{Control, Event, ExitStatus, Shutdown};
pub use policy::Policy;
pub use worker::{worker_id, Mailbox, Worker, WorkerId};
