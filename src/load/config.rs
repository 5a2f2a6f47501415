//! What a load run is asked to do: the checked [`Config`] and the parsers for its parts, the
//! target URL ([`Target`]) and the weighted path mix ([`PathMix`]). Every bad input is answered
//! here with a one-line [`ConfigError`], before any socket is opened. (The flags that build a
//! `Config` are `herd load`'s, in [`cli::load`](crate::cli::load).)

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::url::{check_path, HttpUrl};

/// A checked load run: what to request, how hard and for how long.
///
/// Built from the command line by `herd load`, or from code with [`Config::new`] and then
/// adjusting the public fields (which [`run`](super::run) checks again).
#[derive(Debug, Clone)]
pub struct Config {
    /// The server and the `Host` header to send.
    pub target: Target,
    /// The paths to request and their weights; the URL's path alone unless a mix was given.
    pub paths: PathMix,
    /// Connections in total, at least one per thread.
    pub connections: usize,
    /// Threads, each running its own event loop.
    pub threads: usize,
    /// How long requests are sent.
    pub duration: Duration,
    /// Total requests per second for an open-loop run; `None` for closed loop.
    pub rate: Option<f64>,
    /// A new connection per request, with `Connection: close`.
    pub close: bool,
    /// How long a sent request may wait for its response.
    pub timeout: Duration,
    /// The addresses connections come from, one per slot in turn (none: the kernel's pick).
    pub source_ips: super::SourceIps,
}

impl Config {
    /// A closed-loop configuration for `url` with the command line's defaults:
    /// 64 connections, 1 thread, 10 s, keep-alive, 5 s timeout.
    pub fn new(url: &str) -> Result<Config, ConfigError> {
        let target: Target = url.parse()?;
        Ok(Config {
            paths: PathMix::single(&target.path),
            target,
            connections: 64,
            threads: 1,
            duration: Duration::from_secs(10),
            rate: None,
            close: false,
            timeout: Duration::from_secs(5),
            source_ips: super::SourceIps::none(),
        })
    }

    /// Checks the numbers that the parsers cannot: counts, the rate and non-zero durations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.threads == 0 {
            return Err(ConfigError::new("--threads must be at least 1"));
        }
        if self.connections < self.threads {
            return Err(ConfigError::new(format!(
                "--connections ({}) must be at least --threads ({}): each thread needs a connection",
                self.connections, self.threads
            )));
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            return Err(ConfigError::new(
                "--duration and --timeout must be positive",
            ));
        }
        let max = crate::config::MAX_TIMEOUT;
        if self.duration > max || self.timeout > max {
            // Deadlines are `Instant + Duration`, which panics past the clock's range.
            return Err(ConfigError::new(format!(
                "--duration and --timeout must be at most {}s",
                max.as_secs()
            )));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::new(format!(
                    "bad rate {rate}: must be above 0"
                )));
            }
        }
        let target = self.target.addr;
        if let Some(ip) =
            (self.source_ips.addrs().iter()).find(|ip| ip.is_ipv4() != target.is_ipv4())
        {
            return Err(ConfigError::new(format!(
                "--source-ips {ip} cannot reach {target}: another address family"
            )));
        }
        if self.paths.entries.is_empty() {
            return Err(ConfigError::new("the path mix is empty"));
        }
        Ok(())
    }
}

/// A bad flag, URL or path mix, with a message fit for one line on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where the requests go: an `http://` URL reduced to what the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address to connect to (`localhost` is 127.0.0.1).
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority as written, e.g. `localhost:8080`.
    pub host: String,
    /// The URL's path and query, `/` when it has none.
    pub path: String,
}

impl FromStr for Target {
    type Err = ConfigError;

    /// Accepts `http://HOST[:PORT][/PATH]` as [`HttpUrl`] parses it; the port defaults to 80
    /// and the path to `/`.
    fn from_str(url: &str) -> Result<Target, ConfigError> {
        let parsed: HttpUrl = url.parse().map_err(|why| {
            ConfigError::new(format!(
                "bad URL {url:?}: {why} (expected http://HOST[:PORT]/PATH)"
            ))
        })?;
        let path = match parsed.path.as_str() {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Target {
            addr: parsed.addr,
            host: parsed.authority,
            path,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host, self.path)
    }
}

/// Paths to request with integer weights, e.g. `95:/,5:/cost/2000`: each request asks for
/// `/` with probability 95/100 and for `/cost/2000` with 5/100. The draws are seeded, so two
/// runs send the same sequence, but they have no period for a rotation to line up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMix {
    entries: Vec<(u32, String)>,
}

impl PathMix {
    /// Every request asks for `path`.
    pub fn single(path: &str) -> PathMix {
        PathMix {
            entries: vec![(1, path.to_string())],
        }
    }

    /// The weights and paths, in the order given.
    pub fn entries(&self) -> &[(u32, String)] {
        &self.entries
    }
}

impl FromStr for PathMix {
    type Err = String;

    fn from_str(spec: &str) -> Result<PathMix, String> {
        let mut entries = Vec::new();
        for item in spec.split(',') {
            let bad = |why: &str| format!("bad path mix item {item:?} in {spec:?}: {why}");
            let (weight, path) = item
                .trim()
                .split_once(':')
                .ok_or_else(|| bad("expected WEIGHT:PATH, e.g. 95:/"))?;
            let weight: u32 = match weight.trim().parse() {
                Ok(w) if w > 0 => w,
                _ => return Err(bad("the weight must be a whole number above 0")),
            };
            check_path(path).map_err(|why| bad(&why))?;
            entries.push((weight, path.to_string()));
        }
        Ok(PathMix { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t: Target = "http://127.0.0.1:8080/a/b?x=1".parse().unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/a/b?x=1")
        );
        let t: Target = "http://localhost".parse().unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(t.path, "/");
        let t: Target = "http://[::1]:9000?q".parse().unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(t.path, "/?q");
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http://example.com/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://[::1/",
            "http://u@127.0.0.1/",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn path_mixes() {
        let mix: PathMix = "95:/,5:/cost/2000".parse().unwrap();
        assert_eq!(
            mix.entries(),
            &[(95, "/".to_string()), (5, "/cost/2000".to_string())]
        );
        for bad in ["", "95", "0:/", "x:/", "1:nopath", "1:/a b", "1:/,"] {
            assert!(bad.parse::<PathMix>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn counts_are_checked() {
        let mut cfg = Config::new("http://127.0.0.1:1/").unwrap();
        cfg.threads = 4;
        cfg.connections = 2;
        assert!(cfg.validate().is_err());
        cfg.connections = 4;
        assert!(cfg.validate().is_ok());
        cfg.rate = Some(0.0);
        assert!(cfg.validate().is_err());
        cfg.rate = None;
        cfg.duration = std::time::Duration::MAX;
        assert!(cfg.validate().is_err(), "a duration the clock cannot add");
    }
}
