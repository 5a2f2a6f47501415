//! The system-call fence: every raw `libc` call herd makes, behind a safe function.
//!
//! Most of herd's system calls go through mio, nix or std, which are safe to call. What
//! they do not offer lives here, each `unsafe` block with the `// SAFETY:` note that names
//! the invariant making it sound, so that the rest of the crate holds no `unsafe` at all
//! (as mio keeps its platform code under `sys/`):
//!
//! * [`fd`]: descriptor flags (also on an fd known only by number), adopting inherited fds,
//!   closing the master's fds in a forked child;
//! * [`socket`]: `recvmsg` with `MSG_CMSG_CLOEXEC` (received fds are close-on-exec from
//!   birth) and the sender's credentials, `TCP_DEFER_ACCEPT`, waiting for one fd;
//! * [`epoll`]: level-triggered and `EPOLLEXCLUSIVE` registration, which mio does not offer;
//! * [`process`]: `fork` (only while single-threaded), `_exit`, a forked worker's signal
//!   dispositions and its signal self-pipe;
//! * [`spawn`]: `fork` + `execve` of a program (an exec'd worker, a binary upgrade's new
//!   master), with only async-signal-safe calls in between: fds placed at fixed numbers,
//!   process group, credentials, parent-death signal, the child's own pid in its
//!   environment, and the report of a child that could not get to `execve`.

mod epoll;
mod fd;
mod process;
mod socket;
mod spawn;

pub(crate) use epoll::{epoll_add_level, epoll_del};
pub(crate) use fd::{
    adopt_inherited, close_inherited_from_parent, set_cloexec, set_cloexec_by_number,
};
pub(crate) use process::{
    exit_now, fork_single_threaded, install_worker_signals, thread_count, SignalPipe,
};
pub(crate) use socket::{defer_accept, recv_with_fds, wait_for};
pub(crate) use spawn::{fork_exec, ExecSpec, Ids, SpawnError, Step, PID_DIGITS};
