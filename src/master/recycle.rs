//! Recycling: a worker that has served `--max-requests` requests, or lived
//! `--max-worker-age`, is replaced gracefully, as gunicorn's `max_requests` does to contain
//! leaks that no one has found yet.
//!
//! The replacement is the rolling reload's one-worker step ([`super::reload`], as for
//! `--max-worker-rss`): a new worker is forked into the old one's slot, and only once it
//! listens is the old one drained, so no connection is refused and no request fails. One
//! worker at a time: a second worker over its limit waits its turn.
//!
//! **Jitter.** herd's round-robin is exactly fair, so workers started together would reach
//! the same request count together and be replaced in one burst, every time (gunicorn added
//! `max_requests_jitter` for this, PR #862). Each worker therefore gets its own limit,
//! `N + random(0..=J)`, drawn from its id and a seed of the master's: the limits differ,
//! the replacements spread out, and a respawned worker draws anew.
//!
//! What counts as a request: what the worker reports answering ([`super::Load::requests`]);
//! a Node worker reports no requests, so the connections handed to it count instead
//! ([`crate::link::Link::counts_requests`]). A socket-activated program accepts and answers
//! everything itself, so `--max-requests` is refused for it (`Cluster::run`).

use std::time::{Duration, Instant};

use super::{Master, Phase, WorkerProc, WorkerState};
use crate::config::ClusterConfig;
use crate::policy::XorShift;
use crate::worker::WorkerId;

/// How long after asking for a worker's replacement the master asks again if the worker is
/// still there (the reload gave up on its replacement: its own error is logged).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// The recycling limits and what they did.
#[derive(Debug)]
pub(super) struct Recycle {
    /// `--max-requests N`, `--max-requests-jitter J`.
    max_requests: Option<(u64, u64)>,
    /// `--max-worker-age`.
    max_age: Option<Duration>,
    /// Each worker's jitter is drawn from this and its id.
    seed: u64,
    /// Workers whose replacement was asked for, and when (pruned as they exit).
    asked: Vec<(WorkerId, Instant)>,
    /// Replacements asked for, in all.
    pub recycled: u64,
}

impl Recycle {
    /// The limits `config` sets.
    pub fn new(config: &ClusterConfig) -> Recycle {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Recycle {
            max_requests: config.max_requests,
            max_age: config.max_worker_age,
            seed: clock ^ ((std::process::id() as u64) << 32),
            asked: Vec::new(),
            recycled: 0,
        }
    }

    /// Worker `id`'s request limit: N plus its own draw from `0..=J`.
    pub fn request_limit(&self, id: WorkerId) -> Option<u64> {
        let (n, jitter) = self.max_requests?;
        let mut rng = XorShift::new(self.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Some(n + rng.below(jitter.saturating_add(1)))
    }

    /// Why worker `w` is due for replacement at `now`, if it is.
    fn due(&self, w: &WorkerProc, now: Instant) -> Option<String> {
        if let Some(limit) = self.request_limit(w.id) {
            let (served, what) = if w.link.counts_requests() {
                (w.load.requests, "requests")
            } else {
                (w.load.connections, "connections")
            };
            if served >= limit {
                return Some(format!(
                    "served {served} {what} (its --max-requests limit: {limit})"
                ));
            }
        }
        let age = now.saturating_duration_since(w.started);
        match self.max_age {
            Some(max) if age >= max => Some(format!(
                "running for {:.1}s (--max-worker-age {:.1}s)",
                age.as_secs_f64(),
                max.as_secs_f64()
            )),
            _ => None,
        }
    }

    /// Whether the replacement of worker `id` was asked for recently.
    fn asked_recently(&self, id: WorkerId, now: Instant) -> bool {
        (self.asked.iter()).any(|&(a, at)| a == id && now.duration_since(at) < ASK_AGAIN_AFTER)
    }
}

impl Master {
    /// Queues every online worker past a limit for a one-worker replacement.
    pub(super) fn recycle_tick(&mut self, now: Instant) {
        let r = &mut self.recycle;
        if r.max_requests.is_none() && r.max_age.is_none() {
            return;
        }
        if self.phase != Phase::Running || self.ops.upgrade.is_pending() {
            return;
        }
        let workers = &self.workers;
        r.asked
            .retain(|&(id, _)| workers.iter().any(|(_, w)| w.id == id));
        for (_, w) in workers {
            if w.state != WorkerState::Online || r.asked_recently(w.id, now) {
                continue;
            }
            let Some(why) = r.due(w, now) else { continue };
            r.asked.retain(|&(id, _)| id != w.id);
            r.asked.push((w.id, now));
            if self.ops.reload.replace_one(w.id) {
                r.recycled += 1;
                log::info!("worker {} {why}: recycling it", w.id);
            }
        }
    }

    /// The next time a worker reaches `--max-worker-age`.
    pub(super) fn recycle_deadline(&self) -> Option<Instant> {
        let max = self.recycle.max_age?;
        let now = Instant::now();
        (self.workers.iter())
            .filter(|(_, w)| w.state == WorkerState::Online)
            .filter(|(_, w)| !self.recycle.asked_recently(w.id, now))
            .map(|(_, w)| Master::deadline(w.started, max))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_draws_its_own_limit_within_the_jitter() {
        let config = ClusterConfig {
            max_requests: Some((200, 50)),
            ..ClusterConfig::default()
        };
        let r = Recycle::new(&config);
        let limits: Vec<u64> = (1..=40).map(|id| r.request_limit(id).unwrap()).collect();
        assert!(
            limits.iter().all(|&l| (200..=250).contains(&l)),
            "{limits:?}"
        );
        let mut distinct = limits.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 20, "{limits:?}");
        assert_eq!(
            r.request_limit(7),
            r.request_limit(7),
            "one worker, one limit"
        );
        let exact = Recycle::new(&ClusterConfig {
            max_requests: Some((10, 0)),
            ..ClusterConfig::default()
        });
        assert_eq!(exact.request_limit(3), Some(10));
        assert_eq!(
            Recycle::new(&ClusterConfig::default()).request_limit(1),
            None
        );
    }
}
