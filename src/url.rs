//! [`HttpUrl`]: the one parser for the `http://` URLs herd is told to connect to, `herd proxy
//! --target` and `herd load URL`.
//!
//! `http://HOST[:PORT][/PATH][?QUERY][#FRAGMENT]`, where HOST is an IPv4 address, an IPv6
//! address in brackets, or `localhost` (127.0.0.1). Other names are refused, not resolved:
//! resolving blocks, a worker's or a load thread's event loop must not, and herd connects to
//! servers it is given the address of. Each user adds its own rules on top: the proxy wants a
//! port and no path ([`proxy::Target`](crate::proxy::Target)), the load generator defaults
//! the port to 80 and the path to `/` ([`load::Target`](crate::load::Target)).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A parsed `http://` URL whose host is an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// The address to connect to; port 80 when the URL names none.
    pub addr: SocketAddr,
    /// The authority as written, e.g. `localhost:8080` or `[::1]:80`: what a `Host` header
    /// carries.
    pub authority: String,
    /// Whether the authority names a port.
    pub explicit_port: bool,
    /// The path and query as written, without the fragment; empty when the URL has neither.
    pub path: String,
}

/// Why a URL was refused, for a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Not `http://` (herd speaks no TLS).
    NotHttp,
    /// `user@host`: herd sends no credentials.
    UserInfo,
    /// `[` without `]`.
    UnclosedBracket,
    /// The host is neither an IP address nor `localhost`.
    Host(String),
    /// The port is not a number from 1 to 65535.
    Port(String),
    /// The path holds a byte a request line cannot carry.
    Path(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotHttp => f.write_str("only plain http:// URLs are supported"),
            UrlError::UserInfo => f.write_str("user information is not supported"),
            UrlError::UnclosedBracket => f.write_str("unclosed [ in the host"),
            UrlError::Host(host) => write!(
                f,
                "host {host:?} is not an IP address or localhost: names are not resolved, \
                 and IPv6 addresses go in brackets"
            ),
            UrlError::Port(port) => write!(f, "port {port:?} is not a number from 1 to 65535"),
            UrlError::Path(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for UrlError {}

impl FromStr for HttpUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<HttpUrl, UrlError> {
        let rest = url.strip_prefix("http://").ok_or(UrlError::NotHttp)?;
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or(UrlError::UnclosedBracket)?;
                let ip = host
                    .parse::<Ipv6Addr>()
                    .map_err(|_| UrlError::Host(host.to_string()))?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').unwrap_or(after)),
                };
                (IpAddr::V6(ip), port)
            }
            None => {
                let (host, port) = match authority.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                };
                let ip = if host.eq_ignore_ascii_case("localhost") {
                    Ipv4Addr::LOCALHOST
                } else {
                    host.parse().map_err(|_| UrlError::Host(host.to_string()))?
                };
                (IpAddr::V4(ip), port)
            }
        };
        let explicit_port = port.is_some();
        let port = match port {
            None => 80,
            // Digits only: u16's parser would take "+80".
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(UrlError::Port(p.to_string())),
            },
        };
        if !path.is_empty() {
            let full = if path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_string()
            };
            check_path(&full).map_err(UrlError::Path)?;
        }
        Ok(HttpUrl {
            addr: SocketAddr::new(host, port),
            authority: authority.to_string(),
            explicit_port,
            path: path.to_string(),
        })
    }
}

/// Checks that `path` can go into a request line: it starts with `/` and holds no space or
/// control character. (The load generator's `--path-mix` paths are checked with it too.)
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("path {path:?} holds a space or control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_ports_and_paths() {
        // (url, addr, authority, explicit port, path)
        let cases = [
            (
                "http://127.0.0.1:8080/a/b?x=1",
                "127.0.0.1:8080",
                "127.0.0.1:8080",
                true,
                "/a/b?x=1",
            ),
            ("http://localhost", "127.0.0.1:80", "localhost", false, ""),
            (
                "http://LocalHost:3000/",
                "127.0.0.1:3000",
                "LocalHost:3000",
                true,
                "/",
            ),
            (
                "http://[::1]:9000?q",
                "[::1]:9000",
                "[::1]:9000",
                true,
                "?q",
            ),
            ("http://[::1]", "[::1]:80", "[::1]", false, ""),
            (
                "http://10.0.0.1/x#frag",
                "10.0.0.1:80",
                "10.0.0.1",
                false,
                "/x",
            ),
        ];
        for (url, addr, authority, explicit_port, path) in cases {
            let parsed: HttpUrl = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                parsed,
                HttpUrl {
                    addr: addr.parse().unwrap(),
                    authority: authority.to_string(),
                    explicit_port,
                    path: path.to_string(),
                },
                "{url}"
            );
        }
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("https://127.0.0.1/", "only plain http://"),
            ("127.0.0.1:80", "only plain http://"),
            (
                "http://example.com/",
                "\"example.com\" is not an IP address",
            ),
            ("http://::1/", "is not an IP address"),
            ("http://[::1/", "unclosed ["),
            (
                "http://[127.0.0.1]:80/",
                "\"127.0.0.1\" is not an IP address",
            ),
            ("http://[::1]x/", "port \"x\""),
            ("http:///", "\"\" is not an IP address"),
            ("http://127.0.0.1:0/", "port \"0\""),
            ("http://127.0.0.1:99999/", "port \"99999\""),
            ("http://127.0.0.1:/", "port \"\""),
            ("http://127.0.0.1:+80/", "port \"+80\""),
            ("http://u@127.0.0.1/", "user information"),
            ("http://127.0.0.1/a b", "space or control"),
        ];
        for (url, why) in cases {
            let err = url.parse::<HttpUrl>().unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
