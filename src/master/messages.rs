//! What workers tell the master, and what the master tells the user's code.
//!
//! Each worker's link turns its wire format into [`FromWorker`] messages; this file acts on
//! them, whatever the kind of worker:
//!
//! * `Online`: the worker is up (during a stop it goes straight to draining);
//! * `Listen`: Node's `server.listen()` in a worker: the master binds the address on the
//!   first request for it (or finds the listener it already has, [`super::listeners`]),
//!   grants it and subscribes the worker, which from then on gets connections for it;
//! * `Report`: connections closed, requests answered, connections accepted by the worker
//!   itself: the load the policies steer by, the metrics, and room under the connection
//!   limit for connections that waited;
//! * `Rejected`: a connection the worker gave back unserved goes to another worker;
//! * `Message`: a user message, handed to the event callback.
//!
//! [`Master::emit`] runs the user's event callback ([`crate::Cluster::on_event`]) and
//! carries out what it asked through its [`Control`]: messages to workers, a reload, a stop.

use nix::sys::signal::Signal;

use super::{Master, Phase, WorkerState};
use crate::event::{Control, Event};
use crate::link::FromWorker;

impl Master {
    /// Reads and acts on everything worker `key` sent.
    pub(super) fn read_worker(&mut self, key: usize) {
        let mut messages = Vec::new();
        let Some(w) = self.workers.get_mut(key) else {
            return;
        };
        if w.state == WorkerState::Disconnected {
            return;
        }
        let open = w.link.receive(&mut messages);
        if !messages.is_empty() {
            w.health.heard = std::time::Instant::now();
        }
        for msg in messages {
            self.on_message(key, msg);
        }
        // What the worker said may let the link send more (a Node worker's handle ack).
        if self.workers.get(key).is_some_and(|w| w.link.has_unsent()) {
            self.dirty.push(key);
        }
        match open {
            Ok(true) => {}
            Ok(false) => self.disconnect(key),
            Err(e) => {
                let Some(w) = self.workers.get(key) else {
                    return;
                };
                if e.kind() == std::io::ErrorKind::InvalidData {
                    log::error!("worker {}: {e}; killing it", w.id);
                    w.signal(Signal::SIGKILL);
                } else {
                    log::debug!("worker {}: channel: {e}", w.id);
                }
                self.disconnect(key);
            }
        }
    }

    pub(super) fn on_message(&mut self, key: usize, msg: FromWorker) {
        let Some(w) = self.workers.get_mut(key) else {
            return;
        };
        if w.state == WorkerState::Disconnected {
            return; // gone while this batch was handled (a connection it rejected, say)
        }
        let id = w.id;
        match msg {
            FromWorker::Online => {
                if w.state == WorkerState::Starting {
                    w.state = if self.phase == Phase::Running {
                        WorkerState::Online
                    } else {
                        WorkerState::Stopping
                    };
                }
                log::info!("worker {id} is online");
                self.emit(&Event::Online { worker: id });
            }
            FromWorker::Listen { req, addr, index } => self.on_listen(key, req, addr, index),
            FromWorker::Report {
                closed,
                requests,
                accepted,
            } => {
                let load = &mut w.load;
                load.connections += accepted as u64;
                load.open = (load.open + accepted as u64).saturating_sub(closed as u64);
                load.requests += requests as u64;
                self.node_acknowledged(key);
                if closed > 0 {
                    self.room_freed();
                }
            }
            FromWorker::Taken => {
                w.load.open = w.load.open.saturating_sub(1);
                w.load.taken += 1;
                self.node_acknowledged(key);
                self.room_freed();
            }
            FromWorker::Rejected(conn) => {
                w.load.open = w.load.open.saturating_sub(1);
                log::debug!("worker {id} gave a connection back; handing it to another");
                self.node_acknowledged(key);
                self.dispatch(conn);
            }
            FromWorker::Unlisten { listener } => {
                log::info!(
                    "worker {id} stopped listening on {}",
                    self.listeners.get(listener).local
                );
                self.listeners.unsubscribe_from(listener, key);
            }
            FromWorker::Listening { listeners } => {
                for l in listeners {
                    if self.listeners.get(l).socket.is_none() {
                        continue; // closed since (a stop)
                    }
                    let local = self.listeners.subscribe(l, key);
                    log::info!("worker {id} listening on {local}");
                    self.emit(&Event::Listening {
                        worker: id,
                        addr: local,
                    });
                }
            }
            FromWorker::Leaving => {
                log::info!("worker {id} is leaving (it disconnected itself)");
                if w.state == WorkerState::Online || w.state == WorkerState::Starting {
                    w.state = WorkerState::Stopping;
                }
            }
            FromWorker::Message(payload) => self.emit(&Event::Message {
                worker: id,
                payload: &payload,
            }),
            // Noted by `read_worker`, as every message is (the watchdog's sign of life).
            FromWorker::Heartbeat => {}
            FromWorker::Hung => self.watchdog_triggered(key),
        }
    }

    /// A listen request: bind or find the listener, grant it, subscribe the worker.
    fn on_listen(&mut self, key: usize, req: u64, addr: std::net::SocketAddr, index: u32) {
        let accept = self.config.policy.acceptance();
        let id = self.workers[key].id;
        let granted = self
            .listen(addr, index)
            .and_then(|l| self.listeners.grant(l, accept));
        let (reply, listener) = match granted {
            Ok(grant) => {
                let l = grant.listener;
                (Ok(grant), Some(l))
            }
            Err(e) => {
                log::warn!("worker {id}: listen {addr}: {e}");
                (Err(e), None)
            }
        };
        let w = &mut self.workers[key];
        // The link closes the master's copy of a granted socket once the reply holds one,
        // before the log line below, which tests take as the moment the master's fds are
        // settled.
        if let Err(e) = w.link.reply_listen(req, reply) {
            log::warn!("worker {id}: cannot send the listen reply: {e}");
        } else if let Some(l) = listener {
            let local = self.listeners.subscribe(l, key);
            // Connections may be waiting in the kernel's queue for a first worker (when the
            // master accepts; else `ready` would spin the loop for nothing).
            self.listeners.get_mut(l).ready = !self.config.policy.worker_accepts();
            log::info!("worker {id} listening on {local}");
            self.emit(&Event::Listening {
                worker: id,
                addr: local,
            });
            self.node_subscribed(key, l);
        }
        self.hand_out_waiting();
    }

    /// Queues a user message for worker `to` (or every live worker).
    pub(super) fn send_message(&mut self, to: Option<crate::worker::WorkerId>, msg: &[u8]) {
        for (key, w) in self.workers.iter_mut() {
            if w.state != WorkerState::Disconnected && to.is_none_or(|id| id == w.id) {
                match w.link.queue_message(msg) {
                    Ok(()) => self.dirty.push(key),
                    Err(why) => log::error!("worker {}: {why}", w.id),
                }
            }
        }
    }

    /// Runs the user's event callback, then carries out what it asked for.
    pub(super) fn emit(&mut self, event: &Event<'_>) {
        let Some(cb) = self.on_event.as_mut() else {
            return;
        };
        let mut control = Control {
            workers: self
                .workers
                .iter()
                .filter(|(_, w)| w.state != WorkerState::Disconnected)
                .map(|(_, w)| w.id)
                .collect(),
            ..Control::default()
        };
        cb(&mut control, event);
        for (to, msg) in control.outgoing {
            self.send_message(to, &msg);
        }
        if control.reload {
            self.request_reload("Control::reload");
        }
        if control.shutdown && self.phase == Phase::Running {
            self.stop();
        }
    }
}
