//! Whether a worker program fits what the cluster asks of it, checked before anything
//! starts: a command that cannot work is a one-line error and exit 2, never a crash loop
//! of workers. The policy its protocol can be served by, and for Node, a command that
//! runs a cluster worker at all.

use std::io;

use super::Protocol;
use crate::policy::Policy;

/// Node runs a cluster worker only from a script file (`internal/main/run_main_module`
/// sets `cluster.isWorker` up): `node -e`, `-p` and `-i` evaluate or prompt, a bare `node`
/// or `node -` reads stdin, and each would exit at once, to be respawned forever. The
/// options before the script are scanned for those cases only; the first argument that is
/// not an option is taken as the script, and what follows it is the script's own.
pub(crate) fn check_node_script(args: &[std::ffi::OsString]) -> io::Result<()> {
    let refuse = |how: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "node needs a script file to run as a cluster worker ({how} runs none): \
                 herd run -- node [options] app.js [args]"
            ),
        ))
    };
    for arg in args {
        let arg = arg.to_string_lossy();
        match arg.as_ref() {
            "-e" | "--eval" | "-p" | "--print" | "-pe" | "-i" | "--interactive" => {
                return refuse(&format!("`node {arg}`"))
            }
            a if a.starts_with("--eval=") || a.starts_with("--print=") => {
                return refuse("`node --eval` / `--print`")
            }
            "-" => return refuse("a script read from stdin"),
            a if !a.starts_with('-') => return Ok(()),
            _ => {}
        }
    }
    refuse("`node` without a script, the REPL,")
}

/// The policies a kind of exec'd worker can be served by: an error naming the ones that
/// fit, otherwise.
pub(crate) fn check_policy(protocol: Protocol, policy: Policy) -> io::Result<()> {
    let why = match (protocol, policy) {
        (Protocol::Node, Policy::RoundRobin | Policy::Node | Policy::IpHash | Policy::Shared) => {
            return Ok(())
        }
        (Protocol::Node, Policy::LeastConnections | Policy::P2c) => {
            "it steers by open connections, which Node workers do not report"
        }
        (Protocol::Node, Policy::SharedExclusive) => {
            "it needs EPOLLEXCLUSIVE in the worker's own event loop, which Node's lacks"
        }
        (Protocol::Node, Policy::ReusePort) => {
            "a Node server cannot take a SO_REUSEPORT socket of its own from the primary"
        }
        (Protocol::Systemd, Policy::Shared | Policy::ReusePort) => return Ok(()),
        (Protocol::Systemd, _) => {
            "the master would accept, and a socket-activated program cannot receive \
             connections: it accepts from the sockets it was given"
        }
    };
    let fits = match protocol {
        Protocol::Node => "round-robin, node, ip-hash or shared",
        Protocol::Systemd => "shared or reuseport",
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "--policy {policy} cannot serve {} workers: {why} (use {fits})",
            protocol.name()
        ),
    ))
}
