//! Workers that are programs: `fork` + `exec` of a command (a Node.js app speaking Node's
//! IPC protocol, or any server speaking systemd's socket activation), rather than a forked
//! Rust closure.
//!
//! * [`spawn`]: starts the program with fds at chosen numbers and nothing else inherited,
//!   its own pid in `LISTEN_PID`, its own process group, the master's death as its own.
//! * what the program writes to stdout and stderr is forwarded to herd's own output (or
//!   `--log-file`) a whole line at a time by [`crate::output`].
//! * [`notify`]: a `NOTIFY_SOCKET` per worker, and the `sd_notify` messages
//!   (`READY=1`, `STATUS=…`) it receives from that worker alone.
//! * `launch.rs`: the master's `Launch` for such workers: spawn with the protocol's
//!   environment and fds, and return the link that speaks it; `activation.rs` the link of
//!   a socket-activated program; `instance.rs` instances on ports of their own
//!   (`herd proxy --spawn`), probed for readiness.

mod activation;
mod environment;
mod instance;
mod launch;
pub mod notify;
pub mod spawn;

pub(crate) use instance::InstanceLaunch;
pub(crate) use launch::ExecLaunch;
pub use launch::Protocol;
pub use spawn::{mark_inherited_fds_cloexec, ChildFds, Program};
