//! Dispatch: which worker an accepted connection goes to, by the master-accept [`Policy`].
//!
//! * `round-robin`, `least-connections`, `p2c`: one decision per connection by the
//!   listener's [`crate::policy::Picker`], over its subscribers that are online; the
//!   connection is queued on that worker's link and leaves with the end-of-turn flush.
//! * `node`: the listener's [`crate::policy::AckGate`] decides. A connection joins the gate's
//!   queue; free workers take one each, with an acknowledgement requested; a worker's
//!   acknowledgement frees it for the next. The acknowledgement is cumulative over the
//!   worker's channel (every handoff it has received), so a worker listening on several
//!   addresses is freed on all of them once nothing it was sent is unacknowledged.
//!
//! * `ip-hash`: the client's IP address is hashed onto the listener's subscribers by
//!   their *slot* ([`crate::rendezvous`]), not their id: the worker in the slot with the
//!   highest score for the address gets it. A respawned or reloaded worker takes its
//!   predecessor's slot, and with it its clients; while a slot has no worker that can take
//!   a connection, its clients go to their second-best slot, and nobody else's move. The
//!   address is the one `accept` saw or, on a PROXY protocol listener, the client the
//!   header names ([`super::peek`] looks before dispatch, leaving the header for the worker).
//!
//! A connection that finds no online worker waits in `Master::waiting` until one comes
//! online (or is closed by a stop). A worker at its connection limit, or whose channel is
//! full, is passed by and not forgotten: once it reports closes or its channel drains
//! ([`Master::room_freed`]) the waiting connections and `node`'s gate get another turn.

use super::{Master, WorkerState};
use crate::channel::ListenerId;
use crate::link::Accepted;
use crate::policy::{Eligibility, Policy};
use crate::rendezvous;

impl Master {
    /// Hands `conn` to the worker the policy picks, or keeps it waiting if none can take it.
    pub(super) fn dispatch(&mut self, conn: Accepted) {
        if self.config.policy == Policy::Node {
            let id = conn.listener;
            self.listeners.get_mut(id).gate.push(conn);
            self.node_handoff(id);
            return;
        }
        let workers = &self.workers;
        let limit = self.max_connections;
        let l = self.listeners.get_mut(conn.listener);
        let subscribers = &l.subscribers;
        // Online, with room under --max-connections, and not blocked on a full channel.
        let online = |i: usize| {
            workers
                .get(subscribers[i])
                .is_some_and(|w| w.takes_connections(limit))
        };
        let open = |i: usize| workers.get(subscribers[i]).map_or(0, |w| w.load.open);
        let pick = match conn.peer.filter(|_| self.config.policy == Policy::IpHash) {
            Some(peer) => {
                let slot = |i: usize| workers.get(subscribers[i]).map_or(0, |w| w.slot as u64);
                let key = rendezvous::ip_key(peer.ip());
                rendezvous::pick(key, subscribers.len(), online, slot)
            }
            // Under ip-hash too, a connection whose peer is unknown goes in rotation.
            None => l
                .picker
                .pick(self.config.policy, subscribers.len(), online, open),
        };
        match pick.map(|i| subscribers[i]) {
            Some(key) => self.queue_on(key, conn),
            None => self.waiting.push(conn),
        }
    }

    fn queue_on(&mut self, key: usize, conn: Accepted) {
        let w = &mut self.workers[key];
        w.load.open += 1;
        w.load.connections += 1;
        w.link.queue(conn);
        self.dirty.push(key);
    }

    /// `node`: pairs listener `id`'s waiting connections with its free workers. A free
    /// worker that cannot take one now (at its limit, its channel full) stays free for
    /// later; one that is stopping or gone leaves the gate.
    fn node_handoff(&mut self, id: ListenerId) {
        let workers = &self.workers;
        let limit = self.max_connections;
        let eligible = |k: usize| match workers.get(k) {
            Some(w) if w.takes_connections(limit) => Eligibility::Now,
            Some(w) if w.state == WorkerState::Online => Eligibility::Later,
            _ => Eligibility::Never,
        };
        for (key, conn) in self.listeners.get_mut(id).gate.handoff_all(eligible) {
            self.queue_on(key, conn);
        }
    }

    /// A worker has room again (it reported closes, or its full channel drained): the
    /// connections that waited for room get another chance.
    pub(super) fn room_freed(&mut self) {
        if !self.waiting.is_empty() {
            self.hand_out_waiting();
        }
        if self.config.policy == Policy::Node {
            for id in self.listeners.ids().collect::<Vec<_>>() {
                self.node_handoff(id);
            }
        }
    }

    /// `node`: a worker joined listener `id`: it is free (and takes a waiting connection).
    pub(super) fn node_subscribed(&mut self, key: usize, id: ListenerId) {
        if self.config.policy == Policy::Node {
            self.listeners.get_mut(id).gate.add(key);
            self.node_handoff(id);
        }
    }

    /// `node`: the worker acknowledged handoffs. Once everything sent to it is acknowledged
    /// it is free again on every listener where it was busy.
    pub(super) fn node_acknowledged(&mut self, key: usize) {
        if self.config.policy != Policy::Node || self.workers[key].link.unacked() > 0 {
            return;
        }
        for id in self.listeners.ids().collect::<Vec<_>>() {
            if self.listeners.get_mut(id).gate.acknowledged(key) {
                self.node_handoff(id);
            }
        }
    }

    /// A graceful stop lifts `node`'s gate: the connections it holds were accepted, so they
    /// go out at once, in rotation, ahead of the workers' `Drain`.
    pub(super) fn release_gates(&mut self) {
        for id in self.listeners.ids().collect::<Vec<_>>() {
            // The gate is reset too: no worker is free for `node` after a stop, so a
            // connection recovered from a dying worker waits here until the master exits.
            let held = std::mem::take(&mut self.listeners.get_mut(id).gate).take_queued();
            for conn in held {
                let workers = &self.workers;
                let l = self.listeners.get_mut(id);
                let subscribers = &l.subscribers;
                let pick = l.picker.round_robin(subscribers.len(), |i| {
                    workers
                        .get(subscribers[i])
                        .is_some_and(|w| w.state == WorkerState::Online)
                });
                match pick.map(|i| subscribers[i]) {
                    Some(key) => self.queue_on(key, conn),
                    None => self.waiting.push(conn),
                }
            }
        }
    }

    /// Gives the connections that found no worker another chance.
    pub(super) fn hand_out_waiting(&mut self) {
        for conn in std::mem::take(&mut self.waiting) {
            self.dispatch(conn);
        }
    }

    /// Connections accepted by the master and not yet in any worker's channel.
    pub(super) fn queued_connections(&self) -> usize {
        self.waiting.len()
            + self.listeners.gated()
            + (self.workers.iter())
                .map(|(_, w)| w.link.queued())
                .sum::<usize>()
    }
}
