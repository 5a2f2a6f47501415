//! herd: Node.js's `cluster` module for Linux.
//!
//! A **master** process owns the listening sockets and accepts every connection itself. It
//! hands each connection's fd to the next **worker** (round-robin, Node's default) over that
//! worker's Unix socket with `SCM_RIGHTS`. Workers are `fork()`ed children, each one mio event
//! loop serving HTTP/1.1.
//!
//! The crate in the order a connection meets it:
//!
//! * [`cluster`]: the public API, shaped like Node's: [`Cluster`], life-cycle [`Event`]s,
//!   messages both ways.
//! * [`master`]: the master's loop: accept, dispatch by [`policy`], hand off, supervise
//!   (fork, reap, respawn with back-off), graceful stop.
//! * [`channel`]: the wire between master and worker: one seqpacket message per packet,
//!   fds attached with `SCM_RIGHTS`.
//! * [`worker`]: the worker process: its own `Poll`, the handoffs it acknowledges, and the
//!   [`worker::Service`] each listener's connections go to.
//! * [`http`]: HTTP/1.1 as a sans-IO state machine (parse, frame, respond), driven by the
//!   worker's [`worker::HttpService`].
//! * [`app`]: the handlers `herd serve` ships with; [`cli`]: the command line;
//!   [`load`]: `herd load`, the load generator; [`bench`]: `herd bench`, the policies
//!   compared.
//! * [`exec`]: workers that are programs (`herd run -- CMD`): spawn, output, readiness.
//! * [`proxy`]: `herd proxy`, a reverse proxy: a [`worker::Service`] that forwards each request
//!   to the next target over pooled keep-alive connections.
#![deny(missing_docs)]

pub mod app;
pub mod bench;
pub mod channel;
pub mod cli;
pub mod cluster;
pub mod exec;
pub mod http;
pub mod load;
pub mod master;
pub mod policy;
pub mod proxy;
pub mod reuseport;
pub mod worker;

pub use cluster::{Cluster, Control, Event, ExitStatus, Shutdown};
pub use policy::Policy;
pub use worker::{worker_id, Mailbox, Worker, WorkerId};
