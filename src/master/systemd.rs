//! The service manager's two protocols: readiness notification and socket activation.
//!
//! * **`sd_notify`**: with `Type=notify`, systemd passes `$NOTIFY_SOCKET`, the path of a Unix
//!   datagram socket (a leading `@` means the abstract namespace), and waits for a datagram
//!   `READY=1` before it considers the service started. herd sends `READY=1` once every
//!   worker listens, `RELOADING=1` … `READY=1` around a rolling reload, `STOPPING=1` when a
//!   graceful stop begins, and `MAINPID=<pid>` when a binary upgrade hands over to a new
//!   master. One datagram per notification from a fresh unbound socket, as libsystemd does;
//!   no crate needed. Without `$NOTIFY_SOCKET` every call is a no-op.
//! * **socket activation**: systemd (or herd's own binary upgrade, see [`super::upgrade`])
//!   starts the process with listening sockets already open at fds 3, 4, …, `$LISTEN_FDS` of
//!   them, and `$LISTEN_PID` set to the pid they are meant for. A process whose pid differs
//!   ignores them (they were inherited by accident, say by a child of the intended process).
//!   [`inherited_listeners`] takes them over, marks them close-on-exec and removes the
//!   variables so that nothing herd starts later sees them again.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;

/// The first inherited fd, per the protocol (after stdin, stdout, stderr).
pub const LISTEN_FDS_START: RawFd = 3;
/// herd's own addition to the protocol: the addresses the fds were requested as, comma
/// separated in fd order, each with its listener index after a `#` when it is not 0 (a
/// binary upgrade passes `127.0.0.1:0` for a listener that the first master bound to an
/// ephemeral port, and `127.0.0.1:0#1` for the second one; getsockname alone could not
/// match those).
pub const REQUESTED_ENV: &str = "HERD_LISTEN_REQUESTED";

/// One entry of [`REQUESTED_ENV`]: `ADDR` or `ADDR#INDEX`.
pub fn format_requested(addr: SocketAddr, index: u32) -> String {
    if index == 0 {
        addr.to_string()
    } else {
        format!("{addr}#{index}")
    }
}

fn parse_requested(s: &str) -> Option<(SocketAddr, u32)> {
    match s.split_once('#') {
        Some((addr, index)) => Some((addr.parse().ok()?, index.parse().ok()?)),
        None => Some((s.parse().ok()?, 0)),
    }
}

/// Sends one notification (`KEY=VALUE` lines) to the service manager, if there is one.
/// Failures are logged, never fatal: a service manager that went away is not herd's problem.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let path = path.as_encoded_bytes();
        if let Some(name) = path.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
            socket.send_to(state.as_bytes(), path)?;
        }
        Ok(())
    })();
    match sent {
        Ok(()) => log::debug!("sd_notify: {}", state.replace('\n', " ")),
        Err(e) => log::warn!("sd_notify {}: {e}", state.replace('\n', " ")),
    }
}

use std::os::unix::ffi::OsStrExt;

/// `RELOADING=1` with the monotonic timestamp systemd ≥ 253 asks for (`Type=notify-reload`);
/// older versions ignore the extra field.
pub fn notify_reloading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(std::time::Duration::from)
        .unwrap_or_default();
    let usec = now.as_micros();
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// A listening socket the process inherited.
pub struct Inherited {
    /// The fd number it arrived as (for messages).
    pub fd: RawFd,
    /// The socket, now close-on-exec and non-blocking.
    pub socket: std::net::TcpListener,
    /// The address it is bound to (getsockname).
    pub local: SocketAddr,
    /// The address and listener index it was requested as, if the passer said
    /// ([`REQUESTED_ENV`]).
    pub requested: Option<(SocketAddr, u32)>,
    /// Listening; else a `reuseport` reservation passed on by a herd upgrade (bound with
    /// `SO_REUSEPORT`, never listening: see [`crate::reuseport`]).
    pub listening: bool,
}

/// Takes over the listening sockets passed by `$LISTEN_FDS` (if `$LISTEN_PID` is this
/// process). An fd that is neither a listening TCP socket nor a `reuseport` reservation is an
/// error: the unit file or the passer is wrong, and serving on something else would be worse
/// than stopping.
pub fn inherited_listeners() -> io::Result<Vec<Inherited>> {
    let (Some(pid), Some(count)) = (
        std::env::var_os("LISTEN_PID"),
        std::env::var_os("LISTEN_FDS"),
    ) else {
        return Ok(Vec::new());
    };
    let requested = std::env::var(REQUESTED_ENV).unwrap_or_default();
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        log::debug!("LISTEN_FDS is for pid {pid:?}, not this process: ignored");
        return Ok(Vec::new());
    }
    // Ours: nothing started later (a worker's child, the next upgrade) may see these.
    // The master is single-threaded here, so changing the environment is sound.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", REQUESTED_ENV] {
        std::env::remove_var(var);
    }
    let count: RawFd = count
        .to_str()
        .and_then(|c| c.parse().ok())
        .filter(|&c| (0..=1024).contains(&c))
        .ok_or_else(|| io::Error::other(format!("LISTEN_FDS={count:?} is not a count")))?;
    let mut requested = requested.split(',').map(parse_requested);
    let mut out = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        let (socket, listening) = adopt(fd)?;
        let local = socket.local_addr()?;
        out.push(Inherited {
            fd,
            socket,
            local,
            requested: requested.next().flatten(),
            listening,
        });
    }
    Ok(out)
}

/// Checks that `fd` is a listening TCP socket, or a bound `SO_REUSEPORT` one (a `reuseport`
/// reservation), and takes ownership of it; whether it listens.
fn adopt(fd: RawFd) -> io::Result<(std::net::TcpListener, bool)> {
    use nix::sys::socket::{getsockopt, sockopt};
    let not_listener = |why: String| {
        io::Error::other(format!(
            "inherited fd {fd} is not a listening TCP socket: {why}"
        ))
    };
    // The protocol hands this process fds LISTEN_FDS_START.. to own; this runs once, before
    // any listener is opened. A LISTEN_FDS that counts fds which are not open is an error.
    let owned = crate::sys::adopt_inherited(fd).map_err(|e| not_listener(e.to_string()))?;
    let kind = getsockopt(&owned, sockopt::SockType).map_err(|e| not_listener(e.to_string()))?;
    let listening =
        getsockopt(&owned, sockopt::AcceptConn).map_err(|e| not_listener(e.to_string()))?;
    let reuseport =
        getsockopt(&owned, sockopt::ReusePort).map_err(|e| not_listener(e.to_string()))?;
    if kind != nix::sys::socket::SockType::Stream || !(listening || reuseport) {
        return Err(not_listener(format!(
            "type {kind:?}, listening {listening}, SO_REUSEPORT {reuseport}"
        )));
    }
    let socket = std::net::TcpListener::from(owned);
    let local = socket
        .local_addr()
        .map_err(|e| not_listener(e.to_string()))?;
    if local.port() == 0 {
        return Err(not_listener("not bound".to_string()));
    }
    socket.set_nonblocking(true)?;
    crate::sys::set_cloexec(&socket, true)?;
    Ok((socket, listening))
}
