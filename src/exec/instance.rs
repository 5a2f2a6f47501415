//! Instances on ports of their own (`herd proxy --spawn N --spawn-port BASE -- CMD`): the
//! design document's last program, with herd starting and watching the instances that
//! program left to its user.
//!
//! Instance `i` is CMD with `PORT=BASE+i` (the 12-factor convention) and `HERD_INSTANCE=i`;
//! it binds its own port, so it needs nothing from the master but to be watched. The
//! proxy's workers balance requests over `http://127.0.0.1:BASE+i`.
//!
//! * **Ready** ([`InstanceLink`]): once its port accepts a connection, or, with
//!   `--ready-path`, once a `GET` of that path answers 2xx. The master probes without
//!   blocking its loop: a non-blocking connect, then a look at it on the next tick, every
//!   [`PROBE_INTERVAL`], until the instance is ready.
//! * **Stopped**: SIGTERM to its process group (a shell wrapper's children too), SIGKILL
//!   after the shutdown timeout.
//! * **Replaced in place**: a replacement needs the port its predecessor holds, so a reload
//!   stops an instance before it starts the next one on the same port
//!   ([`crate::link::Launch::replaces_in_place`]). Meanwhile the proxy finds the port
//!   refusing and retries its requests on the other instances: no request fails while at
//!   least two instances run.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, RawFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{ChildFds, Program};
use crate::link::{Accepted, FromWorker, Grant, Launch, LaunchContext, Launched, Link};
use crate::output::{Stream, WorkerOutput};
use crate::worker::WorkerId;

/// How often an instance that is not ready yet is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Instances of one program, each on a port of its own.
#[derive(Debug)]
pub(crate) struct InstanceLaunch {
    program: Program,
    base_port: u16,
    ready_path: Option<String>,
}

impl InstanceLaunch {
    /// Instance `i` runs `program` with `PORT=base_port+i`; it is ready when its port
    /// accepts (or `ready_path` answers 2xx).
    pub fn new(program: Program, base_port: u16, ready_path: Option<String>) -> InstanceLaunch {
        InstanceLaunch {
            program,
            base_port,
            ready_path,
        }
    }
}

impl Launch for InstanceLaunch {
    fn replaces_in_place(&self) -> bool {
        true
    }

    fn launch(&mut self, cx: LaunchContext<'_>) -> io::Result<Launched> {
        let port = u16::try_from(self.base_port as usize + cx.index)
            .map_err(|_| io::Error::other("--spawn-port + instance past port 65535"))?;
        let (stdout, stdout_w) = WorkerOutput::pipe(cx.id, Stream::Stdout)?;
        let (stderr, stderr_w) = WorkerOutput::pipe(cx.id, Stream::Stderr)?;
        let mut program = self
            .program
            .clone()
            .env("PORT", port.to_string())
            .env("HERD_INSTANCE", cx.index.to_string());
        if let Some(credentials) = cx.credentials {
            program = program.credentials(credentials.clone());
        }
        let fds = ChildFds::new()
            .stdout(stdout_w.as_fd())
            .stderr(stderr_w.as_fd());
        let pid = program.spawn(&fds)?;
        drop((stdout_w, stderr_w));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let link = InstanceLink::new(cx.id, pid, addr, self.ready_path.clone());
        Ok(Launched {
            pid,
            link: Box::new(link),
            outputs: vec![stdout, stderr],
            group: true,
            listens: false,
        })
    }
}

/// Where a readiness probe is.
#[derive(Debug)]
enum Probe {
    /// None in progress; the next one starts at the deadline.
    Idle,
    /// A connect (and, with a ready path, a request) under way.
    Connecting {
        stream: TcpStream,
        sent: bool,
        got: Vec<u8>,
    },
}

/// The master's side of one instance: a readiness probe, and its stop signal.
#[derive(Debug)]
pub(crate) struct InstanceLink {
    id: WorkerId,
    pid: Pid,
    addr: SocketAddr,
    ready_path: Option<String>,
    ready: bool,
    probe: Probe,
    next_probe: Instant,
    stopped: bool,
}

impl InstanceLink {
    fn new(id: WorkerId, pid: Pid, addr: SocketAddr, ready_path: Option<String>) -> InstanceLink {
        InstanceLink {
            id,
            pid,
            addr,
            ready_path,
            ready: false,
            probe: Probe::Idle,
            next_probe: Instant::now() + PROBE_INTERVAL,
            stopped: false,
        }
    }

    /// One step of the probe; whether the instance is ready.
    fn step(&mut self) -> bool {
        match std::mem::replace(&mut self.probe, Probe::Idle) {
            Probe::Idle => {
                if let Ok(stream) = TcpStream::connect(self.addr) {
                    self.probe = Probe::Connecting {
                        stream,
                        sent: false,
                        got: Vec::new(),
                    };
                }
                false
            }
            Probe::Connecting {
                mut stream,
                mut sent,
                mut got,
            } => {
                // Connected once it has a peer and no error (refused: try again later).
                if stream.take_error().ok().flatten().is_some() || stream.peer_addr().is_err() {
                    return false;
                }
                let Some(path) = self.ready_path.as_deref() else {
                    return true;
                };
                if !sent {
                    let request = format!(
                        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                        self.addr
                    );
                    sent = stream.write_all(request.as_bytes()).is_ok();
                }
                let mut buf = [0u8; 512];
                match stream.read(&mut buf) {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    _ => return false, // closed without a status: not ready
                }
                // `HTTP/1.1 2xx` is all it takes.
                if got.len() >= 12 {
                    return got.starts_with(b"HTTP/1.") && got[9] == b'2';
                }
                self.probe = Probe::Connecting { stream, sent, got };
                false
            }
        }
    }
}

impl Link for InstanceLink {
    fn fd(&self) -> Option<RawFd> {
        None
    }

    fn fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    fn queue(&mut self, conn: Accepted) {
        log::error!("instance {}: a connection for an instance", self.id);
        drop(conn);
    }

    fn queue_message(&mut self, _msg: &[u8]) -> Result<(), String> {
        Err("an instance has no channel for messages".into())
    }

    fn queue_drain(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let _ = killpg(self.pid, Signal::SIGTERM);
        }
    }

    fn has_unsent(&self) -> bool {
        false
    }

    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn receive(&mut self, _out: &mut Vec<FromWorker>) -> io::Result<bool> {
        Ok(true)
    }

    fn reply_listen(&mut self, _req: u64, _grant: Result<Grant, io::Error>) -> io::Result<()> {
        Ok(())
    }

    fn recover(&mut self) -> Vec<Accepted> {
        Vec::new()
    }

    fn queued(&self) -> usize {
        0
    }

    fn unacked(&self) -> u64 {
        0
    }

    fn blocked(&self) -> bool {
        false
    }

    fn next_deadline(&self) -> Option<Instant> {
        (!self.ready && !self.stopped).then_some(self.next_probe)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<FromWorker>) {
        if self.ready || self.stopped || now < self.next_probe {
            return;
        }
        self.next_probe = now + PROBE_INTERVAL;
        if self.step() {
            self.ready = true;
            self.probe = Probe::Idle;
            log::info!("instance {} ready on {}", self.id, self.addr);
            out.push(FromWorker::Online);
        }
    }
}
