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
//!   (`herd proxy --spawn`), probed for readiness; `fit.rs` the checks made before any
//!   worker starts (the policies a protocol can be served by; a Node command that runs a
//!   worker at all).

mod activation;
mod environment;
mod fit;
mod instance;
mod launch;
pub mod notify;
pub mod spawn;

pub(crate) use fit::{check_node_script, check_policy};
pub(crate) use instance::InstanceLaunch;
pub(crate) use launch::ExecLaunch;
pub use launch::Protocol;
pub use spawn::{mark_inherited_fds_cloexec, ChildFds, Program};
