//! `herd proxy`: a round-robin HTTP/1.1 reverse proxy running on the master-accept cluster.
//!
//! The seed program spread requests over three instances with node-http-proxy:
//! `proxies[i].web(req, res); i = (i + 1) % proxies.length`. herd does the same with the
//! cluster underneath: the master accepts every client connection and hands it to a worker
//! (by `--policy`, as for `herd serve`); the worker parses each request, picks a target for
//! it (by `--balance`, per request, counted per worker), and forwards it over a keep-alive
//! connection from its own pool. The pieces, in the order a request meets them:
//!
//! * [`service`]: [`ProxyService`], the worker [`Service`](crate::worker::Service): owns the
//!   client and upstream connections and drives each one in passes (`drive`, `pass`).
//! * [`client`]: a client connection, its buffers and its phase (pipelined requests wait).
//! * [`request`]: the request side: the next head parsed, its target picked, a connection
//!   attached, the request sent.
//! * [`exchange`]: one request and its response in progress, and the per-target count of
//!   them that the balancer reads (a target and its count always move together).
//! * [`balance`]: round-robin, least-connections or power-of-two-choices per request.
//! * [`upstream`]: connections to targets, and the per-worker pool of idle ones.
//! * [`headers`]: hop-by-hop fields removed, `X-Forwarded-*` added, `Host` kept or changed.
//! * [`response`]: the response side: the head rewritten (`1xx`, `101`), the body framed
//!   back, the exchange completed.
//! * [`body`]: where a streamed body ends (length, chunked, until close) as it passes.
//! * [`buffer`]: the bounded queues every byte goes through: memory per connection is bounded
//!   whatever the body size.
//! * [`failure`]: a target failed: logged, counted, retried once when safe, or `502`/`504`.
//! * [`health`]: passive health: a failing target is skipped for a back-off interval, but
//!   never the only reason for a `502`.
//! * [`proxy_header`]: the PROXY protocol in front of client connections
//!   (`--proxy-protocol`) and of upstream ones (`--send-proxy`).
//! * [`tunnel`]: after `101`, bytes copied both ways until a side closes.
//! * [`timeouts`]: which time limit a connection is under, drain included.
//! * [`target`]: `--target http://IP:PORT`.
//!
//! [`run`] puts it together: a [`Cluster`] whose workers each serve one listener with a
//! [`ProxyService`] (the `herd proxy` flags are in [`cli::proxy`](crate::cli::proxy)).
//!
//! Tokens: a worker gives each service a token range ([`Context::token`](crate::worker::Context::token));
//! within it, a client connection's id is its slab key, an upstream connection's its slab key
//! with bit 39 set.

mod balance;
mod body;
mod buffer;
mod client;
mod exchange;
mod failure;
mod headers;
mod health;
mod proxy_header;
mod request;
mod response;
mod service;
mod target;
mod timeouts;
mod tunnel;
mod upstream;

use std::io;
use std::time::Duration;

pub use balance::Balance;
pub use service::ProxyService;
pub use target::Target;

use crate::cluster::Cluster;
use crate::event::Shutdown;
use crate::http::{Limits, Timeouts};
use crate::proxy_protocol;

/// What every worker's [`ProxyService`] is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers requests are spread over, in order (target `i` in the logs).
    pub targets: Vec<Target>,
    /// How each request's target is picked.
    pub balance: Balance,
    /// How long a target has to send a response head before the client gets `504`.
    pub upstream_timeout: Duration,
    /// Send the target's `host:port` as `Host` instead of the client's (node-http-proxy's
    /// `changeOrigin`).
    pub change_origin: bool,
    /// How long a tunnel (WebSocket, after `101`) may carry no byte either way before the
    /// proxy closes both sides: a peer that vanished without a FIN would otherwise hold two
    /// fds forever.
    pub tunnel_timeout: Duration,
    /// The client connections' time limits (request, keep-alive, write, linger, drain).
    pub timeouts: Timeouts,
    /// Head limits for requests and responses; bodies are streamed, so unlimited.
    pub(crate) limits: Limits,
    /// Discard the client's `X-Forwarded-For` and `Forwarded` fields instead of appending to
    /// them. For a proxy at the edge, where clients connect directly and whatever they put
    /// there is forged; leave it off behind another proxy or balancer that sets them.
    pub strip_forwarded: bool,
    /// Every client connection must start with a PROXY protocol header (v1 or v2), which
    /// names the client: behind an L4 balancer, the connection's own peer is the balancer.
    /// A connection without a valid one is closed, and nothing from it forwarded.
    pub proxy_protocol: bool,
    /// How long a client connection has, with [`Config::proxy_protocol`], to send its whole
    /// header.
    pub proxy_protocol_timeout: Duration,
    /// Start each new connection to a target with a PROXY protocol header of this version,
    /// naming the client (see [`proxy_header`] for what it means for pooling).
    pub send_proxy: Option<proxy_protocol::Version>,
}

impl Config {
    /// Round-robin over `targets`, 30 s upstream timeout, `Host` kept.
    pub fn new(targets: Vec<Target>) -> Config {
        Config {
            targets,
            balance: Balance::RoundRobin,
            upstream_timeout: Duration::from_secs(30),
            change_origin: false,
            tunnel_timeout: Duration::from_secs(300),
            timeouts: Timeouts::default(),
            limits: Limits {
                max_body_bytes: usize::MAX,
                ..Limits::default()
            },
            strip_forwarded: false,
            proxy_protocol: false,
            proxy_protocol_timeout: Duration::from_secs(3),
            send_proxy: None,
        }
    }
}

/// Runs `cluster` as a reverse proxy: the master listens on `listen`, and every worker serves
/// that listener with a [`ProxyService`] configured by `config`. Any worker function `cluster`
/// had is replaced. Blocks until the cluster stops; see [`Cluster::run`].
pub fn run(cluster: Cluster, listen: &str, config: Config) -> io::Result<Shutdown> {
    for (i, t) in config.targets.iter().enumerate() {
        log::info!("proxy: target {i}: {t}");
    }
    let addr = listen.to_string();
    cluster
        .listen(listen)
        .worker(move |w| {
            w.serve(&addr, ProxyService::new(config.clone()))?;
            Ok(())
        })
        .run()
}
