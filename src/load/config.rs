//! What a load run is asked to do: the command-line flags ([`LoadArgs`]), the checked
//! configuration they become ([`LoadConfig`]), and the parsers for the target URL, durations and
//! the weighted path mix. Every bad input is answered here with a one-line [`ConfigError`], before
//! any socket is opened.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// Sends HTTP/1.1 load to a server and reports throughput and latency: closed loop like wrk,
/// or open loop like wrk2 with `--rate` (the flags of `herd load`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target: `http://HOST[:PORT]/PATH`, where HOST is an IP address or `localhost`
    /// (herd load does not resolve names).
    pub url: String,
    /// Connections to keep open, spread evenly over the threads.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,
    /// How long to send requests: seconds ("10", "2.5") or with a unit ("10s", "500ms", "1m").
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Threads, each with its own event loop and its share of the connections.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Total requests per second. Given, the run is open loop: requests are sent on a fixed
    /// schedule and latency counts from the scheduled time (no coordinated omission).
    #[arg(short = 'R', long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Open a new connection for every request and send `Connection: close`.
    #[arg(long)]
    pub close: bool,
    /// Weighted paths instead of the URL's path, e.g. `95:/,5:/cost/2000`.
    #[arg(long, value_name = "SPEC")]
    pub path_mix: Option<PathMix>,
    /// Time a request may take once sent before it counts as a timeout error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// Checks the flags and builds the configuration [`run`](super::run) takes.
    pub fn config(&self) -> Result<LoadConfig, ConfigError> {
        let target: Target = self.url.parse()?;
        let paths = self
            .path_mix
            .clone()
            .unwrap_or_else(|| PathMix::single(&target.path));
        let cfg = LoadConfig {
            target,
            paths,
            connections: self.connections,
            threads: self.threads,
            duration: self.duration,
            rate: self.rate,
            close: self.close,
            timeout: self.timeout,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl TryFrom<&LoadArgs> for LoadConfig {
    type Error = ConfigError;

    fn try_from(args: &LoadArgs) -> Result<Self, Self::Error> {
        args.config()
    }
}

/// A checked load run: what to request, how hard and for how long.
///
/// Built from the command line with [`LoadArgs::config`], or from code with [`LoadConfig::new`]
/// and then adjusting the public fields (which [`run`](super::run) checks again).
#[derive(Debug, Clone)]
pub struct LoadConfig {
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
}

impl LoadConfig {
    /// A closed-loop configuration for `url` with the command line's defaults:
    /// 64 connections, 1 thread, 10 s, keep-alive, 5 s timeout.
    pub fn new(url: &str) -> Result<LoadConfig, ConfigError> {
        let target: Target = url.parse()?;
        Ok(LoadConfig {
            paths: PathMix::single(&target.path),
            target,
            connections: 64,
            threads: 1,
            duration: Duration::from_secs(10),
            rate: None,
            close: false,
            timeout: Duration::from_secs(5),
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
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::new(format!(
                    "bad rate {rate}: must be above 0"
                )));
            }
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

    fn from_str(url: &str) -> Result<Target, ConfigError> {
        let bad = |why: &str| ConfigError::new(format!("bad URL {url:?}: {why}"));
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            bad("expected http://HOST[:PORT]/PATH (only plain http is supported)")
        })?;
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        check_path(&path).map_err(|why| bad(&why))?;
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().map_err(|_| {
                bad(&format!(
                    "host {host:?} is not an IP address or localhost (names are not resolved)"
                ))
            })?
        };
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad(&format!("port {p:?} is not a number from 1 to 65535"))),
            },
        };
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: authority.to_string(),
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

/// A path must start with `/` and hold no byte that would break the request line.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("path {path:?} holds a space or control character"));
    }
    Ok(())
}

/// Parses a duration: plain seconds (`"10"`, `"2.5"`) or a number with `ms`, `s` or `m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let bad = || {
        format!("bad duration {text:?}: expected seconds (\"2.5\") or a number with a unit (\"10s\", \"500ms\", \"1m\") above 0")
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => {
            Duration::try_from_secs_f64(v * unit_secs).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Parses a rate in requests per second: a finite number above 0.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "bad rate {text:?}: expected requests per second, a number above 0"
        )),
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
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "0", "-1", "abc", "5h", "inf", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
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
        let mut cfg = LoadConfig::new("http://127.0.0.1:1/").unwrap();
        cfg.threads = 4;
        cfg.connections = 2;
        assert!(cfg.validate().is_err());
        cfg.connections = 4;
        assert!(cfg.validate().is_ok());
        cfg.rate = Some(0.0);
        assert!(cfg.validate().is_err());
    }
}
