//! Source addresses (`--source-ips 127.0.0.2-127.0.0.65`): connections that come from many
//! clients, as far as the server can tell.
//!
//! A server that places clients by their address (`--policy ip-hash`, a proxy's
//! `--balance ip-hash`) sees one client in a load generator on one address. Linux routes all
//! of `127.0.0.0/8` to the loopback interface, so a socket bound to `127.0.0.2` before it
//! connects to `127.0.0.1` needs no setup and arrives from `127.0.0.2`. Connection slot `i`
//! always uses address `i mod n` (round-robin over the slots, and one address per slot for
//! the whole run, reconnects included), so a run shows how clients, not connections, spread.
//!
//! The socket is bound with `IP_BIND_ADDRESS_NO_PORT`: the kernel then picks the local port
//! at `connect`, per destination, instead of reserving one at `bind` for every destination,
//! which would exhaust the ports of a source address after ~28 000 connections with
//! `--close`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::str::FromStr;

use mio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};

/// The most addresses one `--source-ips` may name (a /16).
pub const MAX_SOURCES: usize = 65_536;

/// The addresses connections are bound to, in slot order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceIps(Vec<IpAddr>);

impl SourceIps {
    /// No binding: the kernel picks the source address.
    pub fn none() -> SourceIps {
        SourceIps(Vec::new())
    }

    /// The addresses, in order.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.0
    }

    /// The address of connection slot `slot`, if any are given.
    pub fn for_slot(&self, slot: usize) -> Option<IpAddr> {
        (!self.0.is_empty()).then(|| self.0[slot % self.0.len()])
    }
}

impl FromStr for SourceIps {
    type Err = String;

    /// A comma-separated list of addresses and IPv4 ranges: `127.0.0.2-127.0.0.65`,
    /// `127.0.0.2,127.0.0.3`, `::1`.
    fn from_str(spec: &str) -> Result<SourceIps, String> {
        let mut addrs = Vec::new();
        for item in spec.split(',').map(str::trim) {
            let bad = |why: &str| format!("bad source address {item:?} in {spec:?}: {why}");
            match item.split_once('-') {
                Some((first, last)) => {
                    let parse = |s: &str| {
                        s.trim()
                            .parse::<Ipv4Addr>()
                            .map_err(|_| bad("a range is FIRST-LAST, two IPv4 addresses"))
                    };
                    let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
                    if first > last {
                        return Err(bad("the range ends before it starts"));
                    }
                    if (last - first) as usize >= MAX_SOURCES {
                        return Err(bad(&format!("more than {MAX_SOURCES} addresses")));
                    }
                    addrs.extend((first..=last).map(|a| IpAddr::V4(Ipv4Addr::from(a))));
                }
                None => addrs.push(item.parse().map_err(|_| bad("not an IP address"))?),
            }
            if addrs.len() > MAX_SOURCES {
                return Err(format!(
                    "--source-ips names more than {MAX_SOURCES} addresses"
                ));
            }
        }
        Ok(SourceIps(addrs))
    }
}

impl fmt::Display for SourceIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.first(), self.0.last()) {
            (Some(first), Some(last)) if self.0.len() > 1 => {
                write!(f, "{first} … {last} ({} addresses)", self.0.len())
            }
            (Some(only), _) => write!(f, "{only}"),
            _ => f.write_str("(any)"),
        }
    }
}

/// A non-blocking connection to `addr`, from `source` if given: `connect` has been called
/// and may still be in progress (the socket turns writable when it completes).
pub(crate) fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr);
    };
    if source.is_ipv4() != addr.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("source address {source} cannot reach {addr}: another address family"),
        ));
    }
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket(family, SockType::Stream, flags, None)?;
    if source.is_ipv4() {
        // Best effort: without it (old kernels) `bind` reserves the port itself.
        let _ = setsockopt(&fd, sockopt::IpBindAddressNoPort, &true);
    }
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(source, 0)),
    )?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(fd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists_parse_and_slots_take_them_in_turn() {
        let s: SourceIps = "127.0.0.2-127.0.0.65".parse().unwrap();
        assert_eq!(s.addrs().len(), 64);
        assert_eq!(s.for_slot(0), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.for_slot(63), Some("127.0.0.65".parse().unwrap()));
        assert_eq!(s.for_slot(64), Some("127.0.0.2".parse().unwrap()));
        let s: SourceIps = "127.0.0.9, ::1,10.0.0.255-10.0.1.0".parse().unwrap();
        let want: Vec<IpAddr> = ["127.0.0.9", "::1", "10.0.0.255", "10.0.1.0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s.addrs(), &want[..]);
        assert_eq!(SourceIps::none().for_slot(3), None);
        for bad in [
            "",
            "localhost",
            "127.0.0.9-127.0.0.2",
            "::1-::2",
            "10.0.0.0-10.2.0.0",
            "127.0.0.1,",
        ] {
            assert!(
                bad.parse::<SourceIps>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn a_bound_connection_arrives_from_its_source() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let _client = connect_from(addr, Some(source)).unwrap();
        let (_conn, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source);
        let v6: IpAddr = "::1".parse().unwrap();
        assert!(connect_from(addr, Some(v6)).is_err());
    }
}
