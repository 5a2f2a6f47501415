//! [`Target`]: one server the proxy forwards to, as given by `--target http://IP:PORT`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::url::HttpUrl;

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

    /// Accepts `http://IP:PORT` and `http://localhost:PORT` (an optional trailing `/`), as
    /// [`HttpUrl`] parses them: names other than `localhost` are refused rather than resolved.
    /// A target is a server, not a resource on one: it has a port and no path.
    fn from_str(s: &str) -> Result<Target, String> {
        let bad =
            |why: &dyn fmt::Display| format!("bad target '{s}': {why} (expected http://IP:PORT)");
        let url: HttpUrl = s.parse().map_err(|e| bad(&e))?;
        if !matches!(url.path.as_str(), "" | "/") {
            return Err(bad(&"a target cannot have a path"));
        }
        if !url.explicit_port {
            return Err(bad(&"a target needs a port"));
        }
        Ok(Target {
            url: s.to_string(),
            addr: url.addr,
            authority: url.authority,
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
            "http://127.0.0.1:3000?x",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        let err = "http://127.0.0.1".parse::<Target>().unwrap_err();
        assert_eq!(
            err,
            "bad target 'http://127.0.0.1': a target needs a port (expected http://IP:PORT)"
        );
        let err = "http://example.com:80".parse::<Target>().unwrap_err();
        assert!(
            err.contains("\"example.com\" is not an IP address"),
            "{err}"
        );
    }
}
