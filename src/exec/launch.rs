//! [`ExecLaunch`]: the [`Launch`] for workers that are programs, started with `fork` +
//! `exec` ([`Program::spawn`]) and linked to by the protocol they speak.
//!
//! * **Node.js** ([`Protocol::Node`]): as Node's own `cluster.fork()` starts a worker:
//!   `NODE_UNIQUE_ID=<worker id>`, `NODE_CHANNEL_FD=3`,
//!   `NODE_CHANNEL_SERIALIZATION_MODE=json`, fd 3 one end of a `SOCK_STREAM` socketpair
//!   whose other end the master keeps ([`crate::node`]'s link speaks Node's protocol on it).
//!
//! Every worker's stdout and stderr are pipes the master reads ([`super::output`]), so that
//! its lines reach herd's output whole and prefixed. Nothing else of the master's reaches
//! the program: every fd herd opens is close-on-exec, and the variables that belong to
//! herd's own service manager (`NOTIFY_SOCKET`, `WATCHDOG_*`, `LISTEN_*`) are removed.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use super::{ChildFds, Program};
use crate::link::{Launch, LaunchContext, Launched};
use crate::node::{NodeLink, PortMap, ServerData};
use crate::output::{Stream, WorkerOutput};

/// The protocol a worker program speaks on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Node.js's cluster IPC protocol (`herd run -- node app.js`).
    Node,
}

impl Protocol {
    /// The protocol a command speaks, judged by its file name: `node` and `nodejs` speak
    /// Node's.
    pub fn of_command(command: &std::ffi::OsStr) -> Option<Protocol> {
        let name = std::path::Path::new(command).file_name()?;
        (name == "node" || name == "nodejs").then_some(Protocol::Node)
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Node => "node",
        }
    }
}

/// Workers that are `program`, speaking `protocol`.
#[derive(Debug)]
pub(crate) struct ExecLaunch {
    program: Program,
    protocol: Protocol,
    /// Shared by every worker's link: the first worker's `data` for each server key.
    data: ServerData,
    port_map: Rc<PortMap>,
}

impl ExecLaunch {
    /// Workers running `program`, which speaks `protocol`; a worker's listen on port FROM
    /// binds TO for each `(FROM, TO)` of `port_map`.
    pub fn new(program: Program, protocol: Protocol, port_map: PortMap) -> ExecLaunch {
        let program = [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_FDS",
        ]
        .into_iter()
        .chain(["LISTEN_PID", "LISTEN_FDNAMES"])
        .fold(program, |p, var| p.env_remove(var));
        ExecLaunch {
            program,
            protocol,
            data: ServerData::default(),
            port_map: Rc::new(port_map),
        }
    }
}

impl Launch for ExecLaunch {
    fn launch(&mut self, cx: LaunchContext<'_>) -> io::Result<Launched> {
        let (stdout, stdout_w) = WorkerOutput::pipe(cx.id, Stream::Stdout)?;
        let (stderr, stderr_w) = WorkerOutput::pipe(cx.id, Stream::Stderr)?;
        let mut program = self.program.clone();
        if let Some(credentials) = cx.credentials {
            program = program.credentials(credentials.clone());
        }
        match self.protocol {
            Protocol::Node => {
                // std's socketpair is close-on-exec; `place` gives the child its end at fd 3
                // without the flag. The master's end stays with the master alone.
                let (master_end, child_end) = UnixStream::pair()?;
                let program = program
                    .env("NODE_UNIQUE_ID", cx.id.to_string())
                    .env("NODE_CHANNEL_FD", "3")
                    .env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
                let fds = ChildFds::new()
                    .place(child_end.as_fd(), 3)
                    .stdout(stdout_w.as_fd())
                    .stderr(stderr_w.as_fd());
                let pid = program.spawn(&fds)?;
                // The child holds its copies; the pipes reach EOF when it (and its
                // children) are gone.
                drop((child_end, stdout_w, stderr_w));
                let link = NodeLink::new(master_end, self.data.clone(), self.port_map.clone())?;
                Ok(Launched {
                    pid,
                    link: Box::new(link),
                    outputs: vec![stdout, stderr],
                    group: true,
                })
            }
        }
    }
}
