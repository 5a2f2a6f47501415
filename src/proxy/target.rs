//! [`Target`]: one server the proxy forwards to, as given by `--target http://HOST:PORT`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A target server: where to connect, and how to name it in `Host` and in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given (for logs: `proxy error: … (target 0: http://127.0.0.1:3000)`).
    pub url: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// `host:port` from the URL: the `Host` sent with `--change-origin`.
    pub authority: String,
}

impl FromStr for Target {
    type Err = String;

    /// Accepts `http://IP:PORT` and `http://localhost:PORT` (an optional trailing `/`).
    /// Names other than `localhost` are refused rather than resolved: a worker must not block
    /// on DNS, and herd proxies to servers it is told the address of.
    fn from_str(s: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("bad target '{s}': {why} (expected http://IP:PORT)");
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// targets are supported"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(bad("a target cannot have a path"));
        }
        let addr = match authority.strip_prefix("localhost:") {
            Some(port) => {
                let port = port.parse().map_err(|_| bad("invalid port"))?;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            None => authority
                .parse()
                .map_err(|_| bad("not an IP address and port"))?,
        };
        if addr.port() == 0 {
            return Err(bad("port 0"));
        }
        Ok(Target {
            url: s.to_string(),
            addr,
            authority: authority.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t: Target = "http://localhost:3000".parse().unwrap();
        assert_eq!(t.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.authority, "localhost:3000");
        let t: Target = "http://127.0.0.1:3001/".parse().unwrap();
        assert_eq!(t.authority, "127.0.0.1:3001");
        let t: Target = "http://[::1]:80".parse().unwrap();
        assert_eq!(t.addr.port(), 80);
        for bad in [
            "127.0.0.1:3000",
            "https://127.0.0.1:3000",
            "http://example.com:80",
            "http://127.0.0.1",
            "http://127.0.0.1:0",
            "http://127.0.0.1:3000/app",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
