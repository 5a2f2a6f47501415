//! Launching: how the master starts one worker process and gets the [`Link`] to it.
//!
//! A [`Launch`] is what kind of worker the cluster runs: herd's own forked worker
//! (`master::launch::ForkLaunch`), or a program started with `exec` that speaks its own
//! protocol (`exec::ExecLaunch`). The supervisor calls it into a slot and registers the
//! link it returns; it does not tell the kinds apart.

use std::io;
use std::os::fd::RawFd;

use nix::unistd::Pid;

use super::Link;
use crate::worker::{Credentials, WorkerId};

/// What a link asks of its worker (set by the policy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkOptions {
    /// The most fds per packet (1 ..= [`MAX_FDS_PER_HANDOFF`]).
    pub batch: usize,
    /// Ask the worker to acknowledge each handoff at once (the `node` policy gates on it).
    pub want_acks: bool,
    /// Ask for closes in every loop turn that closed some (the load-aware policies steer by
    /// the open count: one corrected only every 50 ms makes a stalled worker, which reports
    /// nothing, look like the least loaded).
    pub eager_reports: bool,
    /// `--worker-timeout`: the worker is to show signs of life at least this often while
    /// it has work (herd's own workers heartbeat, a socket-activated program gets
    /// `WATCHDOG_USEC`).
    pub worker_timeout: Option<std::time::Duration>,
}

/// What the supervisor gives a launch.
pub(crate) struct LaunchContext<'a> {
    /// The new worker's id.
    pub id: WorkerId,
    /// Its slot's place in its group (`herd proxy --spawn`'s instance number).
    pub index: usize,
    /// Every fd of the master's (listeners, other workers' links, its poll, signal pipe,
    /// admin sockets): a forked child must close them. (All are close-on-exec, so an exec'd
    /// program never sees them.)
    pub master_fds: &'a [RawFd],
    /// Who the worker runs as (`--user`), if not the master's user.
    pub credentials: Option<&'a Credentials>,
    /// What the link should ask of the worker under the policy.
    pub link: LinkOptions,
    /// For a launch that [`Launch::activates`]: every open listener, granted as the policy
    /// says (the shared socket, or one `SO_REUSEPORT` socket of the worker's own), in
    /// listener order. The launch passes their sockets to the worker; the master's copies
    /// close when these are dropped.
    pub grants: Vec<super::Grant>,
}

/// A started worker.
pub(crate) struct Launched {
    /// Its process id.
    pub pid: Pid,
    /// The master's side of its channel.
    pub link: Box<dyn Link>,
    /// The pipes its stdout and stderr go to, for the master to read (exec'd programs;
    /// herd's own forked workers write to herd's stdout and stderr directly).
    pub outputs: Vec<crate::output::WorkerOutput>,
    /// It leads its own process group: signals go to the group (a shell wrapper's
    /// children stop too).
    pub group: bool,
    /// It serves the master's listeners (it asks for them, or was given them); false for
    /// a program on a port of its own (`herd proxy --spawn`'s instances).
    pub listens: bool,
}

/// A kind of worker: how to start one.
pub(crate) trait Launch {
    /// Starts worker `cx.id`. The master is single-threaded here (a fork is safe).
    fn launch(&mut self, cx: LaunchContext<'_>) -> io::Result<Launched>;

    /// Whether the worker gets its listening sockets at start (socket activation) rather
    /// than asking for them: [`LaunchContext::grants`] is filled in then.
    fn activates(&self) -> bool {
        false
    }

    /// Whether a worker's replacement needs what the worker holds (its own port), so that
    /// a reload stops the worker before it starts the replacement.
    fn replaces_in_place(&self) -> bool {
        false
    }
}
