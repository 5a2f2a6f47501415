//! [`ExecLaunch`]: the [`Launch`] for workers that are programs, started with `fork` +
//! `exec` ([`Program::spawn`]) and linked to by the protocol they speak.
//!
//! * **Node.js** ([`Protocol::Node`]): as Node's own `cluster.fork()` starts a worker:
//!   `NODE_UNIQUE_ID=<worker id>`, `NODE_CHANNEL_FD=3`,
//!   `NODE_CHANNEL_SERIALIZATION_MODE=json`, fd 3 one end of a `SOCK_STREAM` socketpair
//!   whose other end the master keeps ([`crate::node`]'s link speaks Node's protocol on it).
//!
//! * **socket activation** ([`Protocol::Systemd`]), for any other program, as systemd
//!   starts a socket-activated service: the listening sockets at fds 3, 4, …
//!   (`LISTEN_FDS`, `LISTEN_PID` = the worker's own pid, written between fork and exec,
//!   `LISTEN_FDNAMES`; einhorn's `EINHORN_FD_COUNT`, `EINHORN_FD_<i>`), blocking as systemd
//!   passes them, and a `NOTIFY_SOCKET` of the worker's own for `READY=1`
//!   ([`super::activation`]); with `--worker-timeout`, `WATCHDOG_USEC` and `WATCHDOG_PID`
//!   (the worker's own pid, like `LISTEN_PID`) for systemd's watchdog protocol.
//!
//! Every worker's stdout and stderr are pipes the master reads ([`crate::output`]), so that
//! its lines reach herd's output whole and prefixed. Nothing else of the master's reaches
//! the program: every fd herd opens is close-on-exec, and the variables that belong to
//! herd's own service manager (`NOTIFY_SOCKET`, `WATCHDOG_*`, `LISTEN_*`) are removed.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use super::activation::ActivationLink;
use super::notify::NotifySocket;
use super::{ChildFds, Program};
use crate::link::{Launch, LaunchContext, Launched, Link};
use crate::node::{NodeLink, PortMap, ServerData};
use crate::output::{Stream, WorkerOutput};

/// The protocol a worker program speaks with the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Node.js's cluster IPC protocol (`herd run -- node app.js`): herd is its primary.
    Node,
    /// systemd's socket activation and `sd_notify` (`herd run --listen ADDR -- CMD`): the
    /// program accepts from the sockets it is given.
    Systemd,
}

impl Protocol {
    /// Both, for `--help`.
    pub const ALL: &'static [Protocol] = &[Protocol::Node, Protocol::Systemd];

    /// The protocol a command speaks, judged by its file name: `node` and `nodejs` speak
    /// Node's, anything else socket activation.
    pub fn of_command(command: &std::ffi::OsStr) -> Protocol {
        let name = std::path::Path::new(command).file_name();
        match name {
            Some(n) if n == "node" || n == "nodejs" => Protocol::Node,
            _ => Protocol::Systemd,
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Node => "node",
            Protocol::Systemd => "systemd",
        }
    }
}

/// A socket's name in `LISTEN_FDNAMES`: its address, with `:` (which separates names, and
/// which systemd forbids in one) written as `_`: `127.0.0.1_3000`, `[__1]_3000`.
fn fd_name(addr: std::net::SocketAddr) -> String {
    addr.to_string().replace(':', "_")
}

/// Workers that are `program`, speaking `protocol`.
#[derive(Debug)]
pub(crate) struct ExecLaunch {
    program: Program,
    protocol: Protocol,
    /// Shared by every worker's link: the first worker's `data` for each server key.
    data: ServerData,
    port_map: Rc<PortMap>,
    /// Socket activation: a worker that never says `READY=1` is ready this long after it
    /// started, if given.
    ready_after: Option<std::time::Duration>,
    /// Socket activation: what drains a worker (to its process group).
    stop_signal: nix::sys::signal::Signal,
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
            ready_after: None,
            stop_signal: nix::sys::signal::Signal::SIGTERM,
        }
    }

    /// Socket activation: a worker that never notifies is ready `after` its start.
    pub fn ready_after(mut self, after: Option<std::time::Duration>) -> ExecLaunch {
        self.ready_after = after;
        self
    }

    /// Socket activation: the signal that drains a worker (SIGTERM by default).
    pub fn stop_signal(mut self, signal: nix::sys::signal::Signal) -> ExecLaunch {
        self.stop_signal = signal;
        self
    }
}

impl Launch for ExecLaunch {
    fn activates(&self) -> bool {
        self.protocol == Protocol::Systemd
    }

    fn launch(&mut self, cx: LaunchContext<'_>) -> io::Result<Launched> {
        let (stdout, stdout_w) = WorkerOutput::pipe(cx.id, Stream::Stdout)?;
        let (stderr, stderr_w) = WorkerOutput::pipe(cx.id, Stream::Stderr)?;
        let mut program = self.program.clone();
        if let Some(credentials) = cx.credentials {
            program = program.credentials(credentials.clone());
        }
        let (pid, link): (_, Box<dyn Link>) = match self.protocol {
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
                (pid, Box::new(link))
            }
            Protocol::Systemd => {
                let mut notify = NotifySocket::bind(cx.id)?;
                let n = cx.grants.len();
                let names: Vec<String> = cx.grants.iter().map(|g| fd_name(g.local)).collect();
                let mut program = program
                    .env("LISTEN_FDS", n.to_string())
                    .env_pid("LISTEN_PID")
                    .env("LISTEN_FDNAMES", names.join(":"))
                    .env("EINHORN_FD_COUNT", n.to_string())
                    .env("NOTIFY_SOCKET", notify.address());
                if let Some(timeout) = cx.link.worker_timeout {
                    // systemd's watchdog protocol: `WATCHDOG=1` at least this often (the
                    // program's sd_notify library pings at half of it).
                    program = program
                        .env("WATCHDOG_USEC", timeout.as_micros().max(1).to_string())
                        .env_pid("WATCHDOG_PID");
                }
                let mut fds = ChildFds::new()
                    .stdout(stdout_w.as_fd())
                    .stderr(stderr_w.as_fd());
                for (i, grant) in cx.grants.iter().enumerate() {
                    let at = 3 + i as i32;
                    program = program.env(format!("EINHORN_FD_{i}"), at.to_string());
                    let socket = grant.socket.as_ref().ok_or_else(|| {
                        io::Error::other("socket activation needs a worker-accept policy")
                    })?;
                    // Blocking, as systemd passes sockets and programs expect them. (Under
                    // `shared` this is the master's listener too, which it never accepts
                    // from under that policy.)
                    nix::fcntl::fcntl(
                        socket,
                        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                    )?;
                    fds = fds.place(socket.as_fd(), at);
                }
                let pid = program.spawn(&fds)?;
                drop((stdout_w, stderr_w));
                notify.set_worker(pid);
                let listeners = cx.grants.iter().map(|g| g.listener).collect();
                // `cx.grants` drops here: the master's copies of the sockets close.
                let link = ActivationLink::new(
                    cx.id,
                    notify,
                    pid,
                    listeners,
                    self.ready_after,
                    self.stop_signal,
                );
                (pid, Box::new(link))
            }
        };
        Ok(Launched {
            pid,
            link,
            outputs: vec![stdout, stderr],
            group: true,
            listens: true,
        })
    }
}
