//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header a layer-4
//! balancer writes at the start of each TCP connection it relays, to say whose connection it
//! is. The relayed connection has the balancer's address, not the client's; without the
//! header, `X-Forwarded-For`, logs and address-based policies would all see the balancer.
//!
//! Sans IO, like the HTTP parsers: [`parse`] looks at what a connection has sent so far and
//! says *incomplete*, *a header of `len` bytes* (what follows is the application's, HTTP
//! here), or *invalid*, at the first byte that proves it; [`write`] appends the header a
//! sender writes. The caller owns the socket and the deadline.
//!
//! ```text
//! v1, one text line, at most 107 bytes:
//!   PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n
//!   PROXY TCP6 2001:db8::1 2001:db8::7 56324 443\r\n
//!   PROXY UNKNOWN\r\n                          (anything up to CRLF ignored)
//! v2, binary:
//!   \r\n\r\n\0\r\nQUIT\n    12-byte signature
//!   0x2C                    version 2 (high nibble), command C: 0 LOCAL, 1 PROXY
//!   0xFT                    family F: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX;
//!                           transport T: 0 UNSPEC, 1 STREAM, 2 DGRAM
//!   len (u16, big endian)   bytes that follow: the addresses, then TLVs
//!   INET:  src(4) dst(4) sport(2) dport(2)      INET6: src(16) dst(16) sport(2) dport(2)
//!   UNIX:  src(108) dst(108)                    TLVs: type(1) length(u16) value
//! ```
//!
//! A receiver must not guess: a connection configured for the PROXY protocol that does not
//! start with a valid header is refused, whatever it sent instead (the spec's rule, and what
//! keeps a client from claiming an address by sending a header itself where none is
//! expected, or from skipping it where one is).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses and
/// ports): a line without CRLF by then is refused.
pub const V1_MAX_LEN: usize = 107;

/// The v2 signature, chosen to be invalid in every text protocol.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most bytes a v2 header may announce after its 16 fixed ones. Addresses take 216 at
/// most (UNIX); the rest is TLVs (balancers add a few dozen bytes: a connection id, a VPC
/// endpoint), so a larger length is a broken or hostile sender, refused before its bytes are
/// waited for.
pub const V2_MAX_PAYLOAD: usize = 1024;

/// The v1 prefix, space included.
const V1_PREFIX: &[u8] = b"PROXY ";

/// A protocol version, for `--send-proxy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The text header (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary header.
    V2,
}

impl Version {
    /// Both versions, in the order `--help` lists them.
    pub const ALL: &'static [Version] = &[Version::V1, Version::V2];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// What a valid header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Which version it was.
    pub version: Version,
    /// The client's address and the address it connected to, as the sender saw them. `None`
    /// when the header carries no IP addresses: a v2 `LOCAL` (the balancer's own connection,
    /// a health check), a v1 `UNKNOWN`, a v2 `PROXY` of family UNSPEC or UNIX. The
    /// connection's own addresses then stand.
    pub addresses: Option<Addresses>,
}

/// The two ends of the client's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// Where the client connected to (the balancer's listening address).
    pub destination: SocketAddr,
}

/// Why the bytes at the start of a connection are not a PROXY protocol header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Neither `PROXY ` nor the v2 signature: no header at all (an HTTP request, say).
    Signature,
    /// A v2 signature with a version other than 2.
    Version,
    /// A v2 command other than `LOCAL` and `PROXY`.
    Command,
    /// A v1 protocol other than `TCP4`, `TCP6`, `UNKNOWN`; a v2 family or transport that does
    /// not exist.
    Family,
    /// A v1 line without CRLF within [`V1_MAX_LEN`] bytes; a v2 length over
    /// [`V2_MAX_PAYLOAD`].
    TooLong,
    /// The fields are wrong: v1 spacing, addresses or ports; a v2 length too short for its
    /// family's addresses, or TLVs that overrun it.
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Signature => "no PROXY protocol signature",
            Error::Version => "unknown PROXY protocol version",
            Error::Command => "unknown PROXY protocol v2 command",
            Error::Family => "unknown PROXY protocol address family or transport",
            Error::TooLong => "PROXY protocol header too long",
            Error::Malformed => "malformed PROXY protocol header",
        })
    }
}

impl std::error::Error for Error {}

/// Parses the PROXY protocol header at the front of `buf`, v1 or v2.
///
/// `Ok(None)`: what is there so far is the start of a valid header (a connection that stops
/// here is truncated, which is the caller's deadline to judge). `Ok(Some((header, len)))`:
/// the application's bytes start at `buf[len]`. `Err`: not a header, decided from as few
/// bytes as prove it.
///
/// ```
/// use herd::proxy_protocol::{parse, Version};
///
/// let buf = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\nGET / HTTP/1.1\r\n";
/// let (header, len) = parse(buf).unwrap().unwrap();
/// assert_eq!(header.version, Version::V1);
/// assert_eq!(header.addresses.unwrap().source, "192.0.2.1:56324".parse().unwrap());
/// assert!(buf[len..].starts_with(b"GET"));
/// ```
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let prefix_of = |whole: &[u8]| {
        let n = buf.len().min(whole.len());
        buf[..n] == whole[..n]
    };
    if prefix_of(&V2_SIGNATURE) {
        parse_v2(buf)
    } else if prefix_of(V1_PREFIX) {
        parse_v1(buf)
    } else {
        Err(Error::Signature)
    }
}

/// The v1 line: `PROXY <TCP4|TCP6> <src> <dst> <sport> <dport>\r\n`, single spaces, or
/// `PROXY UNKNOWN` and anything up to the CRLF.
fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(Error::TooLong);
        }
        // Refuse a wrong protocol word as soon as it is complete.
        check_v1_protocol(&window[V1_PREFIX.len().min(window.len())..], false)?;
        return Ok(None);
    };
    let line = window[..lf].strip_suffix(b"\r").ok_or(Error::Malformed)?;
    let rest = &line[V1_PREFIX.len()..];
    let family = check_v1_protocol(rest, true)?;
    let done = |addresses| {
        Ok(Some((
            Header {
                version: Version::V1,
                addresses,
            },
            lf + 1,
        )))
    };
    let Some(is_v4) = family else {
        return done(None);
    };
    let fields: Vec<&[u8]> = rest[5..].split(|&b| b == b' ').collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(Error::Malformed);
    };
    let ip = |s: &[u8]| -> Result<IpAddr, Error> {
        let s = std::str::from_utf8(s).map_err(|_| Error::Malformed)?;
        let ip = if is_v4 {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        } else {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        };
        ip.map_err(|_| Error::Malformed)
    };
    done(Some(Addresses {
        source: SocketAddr::new(ip(source)?, v1_port(source_port)?),
        destination: SocketAddr::new(ip(destination)?, v1_port(destination_port)?),
    }))
}

/// Checks the protocol word at the start of `rest` (what follows `PROXY `): `Some(true)` for
/// `TCP4`, `Some(false)` for `TCP6`, `None` for `UNKNOWN`, each followed by a space (or, for
/// `UNKNOWN`, by the end of the line). With `complete` false, `rest` may stop short, and only
/// a word that cannot become a valid one is an error.
fn check_v1_protocol(rest: &[u8], complete: bool) -> Result<Option<bool>, Error> {
    for (word, family) in [
        (&b"TCP4"[..], Some(true)),
        (b"TCP6", Some(false)),
        (b"UNKNOWN", None),
    ] {
        match rest.strip_prefix(word) {
            Some([b' ', ..]) => return Ok(family),
            Some([] | [b'\r']) if !complete => return Ok(None),
            Some([]) if family.is_none() => return Ok(None),
            Some([]) => return Err(Error::Malformed),
            Some(_) => {}
            None if !complete && word.starts_with(rest) => return Ok(None),
            None => {}
        }
    }
    Err(Error::Family)
}

/// A v1 port: decimal, 0 to 65535, no sign and no leading zero (the spec forbids them, so
/// that no reader takes `010` for octal).
fn v1_port(s: &[u8]) -> Result<u16, Error> {
    let digits = !s.is_empty() && s.len() <= 5 && s.iter().all(u8::is_ascii_digit);
    if !digits || (s.len() > 1 && s[0] == b'0') {
        return Err(Error::Malformed);
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::Malformed)
}

/// The v2 header: 16 fixed bytes, then `len` bytes of addresses and TLVs.
fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    // Each fixed byte is checked as soon as it arrives.
    let local = match buf.get(12).copied() {
        None => return Ok(None),
        Some(b) if b >> 4 != 2 => return Err(Error::Version),
        Some(0x20) => true,
        Some(0x21) => false,
        Some(_) => return Err(Error::Command),
    };
    let Some(&family) = buf.get(13) else {
        return Ok(None);
    };
    if family >> 4 > 3 || family & 0x0f > 2 {
        return Err(Error::Family);
    }
    let Some(len) = buf.get(14..16) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > V2_MAX_PAYLOAD {
        return Err(Error::TooLong);
    }
    let Some(payload) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let (addresses, address_len) = match family >> 4 {
        // The spec has a receiver ignore everything a LOCAL header carries but its length.
        _ if local => (None, len),
        1 => {
            let a = payload.get(..12).ok_or(Error::Malformed)?;
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&a[at..at + 4]).unwrap());
            (Some(v2_addresses(ip(0), ip(4), &a[8..12])), 12)
        }
        2 => {
            let a = payload.get(..36).ok_or(Error::Malformed)?;
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&a[at..at + 16]).unwrap());
            (Some(v2_addresses(ip(0), ip(16), &a[32..36])), 36)
        }
        // UNIX: two socket paths, which are no client address to forward.
        3 if len < 216 => return Err(Error::Malformed),
        3 => (None, 216),
        // UNSPEC: the spec lets a receiver accept it with the connection's own addresses.
        _ => (None, 0),
    };
    check_tlvs(&payload[address_len..])?;
    let header = Header {
        version: Version::V2,
        addresses,
    };
    Ok(Some((header, 16 + len)))
}

/// The addresses of a v2 INET or INET6 block; `ports` is the source then destination port.
fn v2_addresses(source: IpAddr, destination: IpAddr, ports: &[u8]) -> Addresses {
    Addresses {
        source: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
    }
}

/// TLVs (type, big-endian length, value) must fill what follows the addresses exactly: one
/// that overruns the header means its length fields cannot be trusted.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), Error> {
    while !tlvs.is_empty() {
        let [_, hi, lo, ..] = *tlvs else {
            return Err(Error::Malformed);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(Error::Malformed)?;
    }
    Ok(())
}

/// Appends the header saying that the connection that follows is `source`'s, made to
/// `destination` (TCP over IPv4 or IPv6, the `PROXY` command).
///
/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of an IPv4 client) are written as
/// the IPv4 addresses they are; if the two ends still differ in family (the header has one
/// family for both), the IPv4 one is written IPv4-mapped.
pub fn write(out: &mut Vec<u8>, version: Version, source: SocketAddr, destination: SocketAddr) {
    let unmapped = |a: SocketAddr| match a.ip() {
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    };
    let (mut source, mut destination) = (unmapped(source), unmapped(destination));
    if source.is_ipv4() != destination.is_ipv4() {
        let mapped = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        };
        (source, destination) = (mapped(source), mapped(destination));
    }
    match version {
        Version::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            let line = format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            );
            out.extend_from_slice(line.as_bytes());
        }
        Version::V2 => {
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.extend_from_slice(&[0x11, 0, 12]); // INET, STREAM; 12 bytes
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    out.extend_from_slice(&[0x21, 0, 36]); // INET6, STREAM; 36 bytes
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                _ => unreachable!("both ends have one family by now"),
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
