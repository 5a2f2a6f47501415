//! What herd says to a Node.js worker: a [`ToWorker`] encoded as the exact line Node's own
//! primary writes (same fields, same order), so a test can compare bytes with a capture.
//!
//! Everything is compact JSON written by serde_json and ends in one `\n`. A line a worker
//! cannot parse crashes it (`JSON.parse` throws inside the channel's read callback), so
//! nothing here is written by hand except the fixed punctuation around serde_json's strings
//! and numbers.

use std::io::Write;
use std::net::SocketAddr;

use super::json::RawJson;

/// A message from herd to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToWorker<'a> {
    /// The reply to a `queryServer` under round-robin: herd listens and will pass each
    /// connection with [`ToWorker::NewConn`]. `errno: Some(-98)` (a negative libuv errno,
    /// here `EADDRINUSE`) fails the listen: the worker's server emits `'error'` with that code.
    ServerReply {
        /// The worker's `seq` of the `queryServer`.
        ack: u64,
        /// `None` (JSON `null`) for success, else a negative errno.
        errno: Option<i32>,
        /// [`ServerQuery::key`](super::ServerQuery::key) of the query.
        key: &'a str,
        /// The `data` of the first worker to ask for this key (TLS ticket keys), echoed.
        data: &'a RawJson,
        /// The bound address, for TCP: the worker's `server.address()`, sent as Node's
        /// `getsockname` spells it (`{"address":"::","family":"IPv6","port":3000}`); `None` for
        /// a pipe or an error. Its port must be the one asked for, when that was not 0: the
        /// worker checks and fails the listen with `EADDRINUSE` otherwise.
        sockname: Option<SocketAddr>,
    },
    /// The reply to a `queryServer` under SCHED_NONE: a `NODE_HANDLE` whose fd is the bound
    /// (or listening) socket. The worker calls `listen()` on its copy and accepts itself.
    /// Failures are sent as a [`ToWorker::ServerReply`] with an errno and no fd.
    SharedServer {
        /// The worker's `seq` of the `queryServer`.
        ack: u64,
        /// The query's key.
        key: &'a str,
        /// The echoed `data`.
        data: &'a RawJson,
    },
    /// A connection for the server `key`, its fd attached. The worker acknowledges the fd
    /// (`NODE_HANDLE_ACK`), then answers `{ack: <this seq>, accepted}`.
    NewConn {
        /// The server's key.
        key: &'a str,
    },
    /// Close your servers, finish your connections, close the channel and exit.
    Disconnect,
    /// The ack of a worker's `exitedAfterDisconnect` (its `seq`): lets it close its channel.
    ExitedAfterDisconnectAck {
        /// The worker's `seq` of the `exitedAfterDisconnect`.
        ack: u64,
    },
    /// `NODE_HANDLE_ACK`: herd got (and took) the fd of the worker's `NODE_HANDLE`. Only ever
    /// in answer to one: an unexpected ack trips an assertion in the worker, which exits 1.
    HandleAck,
    /// `NODE_SOCKET_ALL_CLOSED`: the sockets the worker sent for server `key` are all closed
    /// (herd closes any it is sent at once), so its `server.close()` can finish.
    SocketAllClosed {
        /// The server's connection key, from the worker's `NODE_SOCKET_NOTIFY_CLOSE`.
        key: &'a str,
    },
    /// `NODE_SOCKET_COUNT`: the answer to `NODE_SOCKET_GET_COUNT`.
    SocketCount {
        /// The server's connection key.
        key: &'a str,
        /// How many of the sockets the worker sent are open here.
        count: u64,
    },
    /// A user message, delivered to the worker's `process.on('message')`.
    User(&'a RawJson),
}

/// herd's side of a worker link's sequence numbers.
///
/// Each side numbers its own `NODE_CLUSTER` messages from 0 (Node's primary uses one counter
/// for all its workers; one per link is as good, since a worker only ever echoes herd's
/// numbers back to herd). A reply carries the other side's number as `ack`, so the worker
/// answers `newconn` number N with `{ack: N, accepted}`, and herd's `queryServer` reply
/// carries the worker's number. Messages that are not `NODE_CLUSTER` take no number.
///
/// It also sends a worker at most one *ending*: a [`ToWorker::Disconnect`] or a
/// [`ToWorker::ExitedAfterDisconnectAck`]. Either makes the worker close its channel; a
/// second one (a disconnect after the worker's own `exitedAfterDisconnect`, or two
/// disconnects) crashes it with `ERR_IPC_DISCONNECTED` and exit code 1.
#[derive(Debug, Default)]
pub struct Sequencer {
    next: u64,
    /// An ending has been written: later endings are not.
    ended: bool,
}

impl Sequencer {
    /// A counter starting at 0.
    pub fn new() -> Sequencer {
        Sequencer::default()
    }

    /// Whether an ending has been written: the worker is on its way out.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Appends `msg` as one line to `out`. Returns the `seq` it took, if it is a
    /// `NODE_CLUSTER` message (for a `NewConn`, the `ack` its `accepted` reply will carry).
    /// A second ending writes nothing and returns `None`.
    pub fn encode(&mut self, msg: &ToWorker<'_>, out: &mut Vec<u8>) -> Option<u64> {
        if msg.is_ending() {
            if self.ended {
                return None;
            }
            self.ended = true;
        }
        let seq = msg.is_cluster().then(|| {
            let seq = self.next;
            self.next += 1;
            seq
        });
        msg.write(seq.unwrap_or(0), out);
        out.push(b'\n');
        seq
    }
}

impl ToWorker<'_> {
    /// Whether the line must travel with exactly one fd (`SCM_RIGHTS` on the `sendmsg` that
    /// carries its first byte, and on no other): a connection or a listening socket.
    pub fn carries_fd(&self) -> bool {
        matches!(
            self,
            ToWorker::NewConn { .. } | ToWorker::SharedServer { .. }
        )
    }

    fn is_ending(&self) -> bool {
        matches!(
            self,
            ToWorker::Disconnect | ToWorker::ExitedAfterDisconnectAck { .. }
        )
    }

    fn is_cluster(&self) -> bool {
        !matches!(
            self,
            ToWorker::HandleAck
                | ToWorker::SocketAllClosed { .. }
                | ToWorker::SocketCount { .. }
                | ToWorker::User(_)
        )
    }

    /// The JSON text, `seq` where the message has one. Key order is Node's: `cmd` first,
    /// then the fields in the order the primary spreads them, `seq` last.
    fn write(&self, seq: u64, out: &mut Vec<u8>) {
        const HANDLE: &[u8] = br#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":"#;
        const CLUSTER: &[u8] = br#"{"cmd":"NODE_CLUSTER","#;
        match *self {
            ToWorker::ServerReply {
                ack,
                errno,
                key,
                data,
                sockname,
            } => {
                out.extend_from_slice(CLUSTER);
                match errno {
                    Some(errno) => write!(out, r#""errno":{errno}"#),
                    None => write!(out, r#""errno":null"#),
                }
                .unwrap();
                write_reply_tail(out, key, ack, data);
                if let Some(addr) = sockname {
                    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                    // IpAddr's Display is RFC 5952, as libuv's `uv_ip6_name` (`::`, `::1`).
                    let (ip, port) = (addr.ip(), addr.port());
                    write!(
                        out,
                        r#","sockname":{{"address":"{ip}","family":"{family}","port":{port}}}"#
                    )
                    .unwrap();
                }
                write!(out, r#","seq":{seq}}}"#).unwrap();
            }
            ToWorker::SharedServer { ack, key, data } => {
                out.extend_from_slice(HANDLE);
                out.extend_from_slice(CLUSTER);
                out.extend_from_slice(br#""errno":0"#);
                write_reply_tail(out, key, ack, data);
                write!(out, r#","seq":{seq}}}}}"#).unwrap();
            }
            ToWorker::NewConn { key } => {
                out.extend_from_slice(HANDLE);
                out.extend_from_slice(CLUSTER);
                out.extend_from_slice(br#""act":"newconn","key":"#);
                string(out, key);
                write!(out, r#","seq":{seq}}}}}"#).unwrap();
            }
            ToWorker::Disconnect => {
                out.extend_from_slice(CLUSTER);
                write!(out, r#""act":"disconnect","seq":{seq}}}"#).unwrap();
            }
            ToWorker::ExitedAfterDisconnectAck { ack } => {
                out.extend_from_slice(CLUSTER);
                write!(out, r#""ack":{ack},"seq":{seq}}}"#).unwrap();
            }
            ToWorker::HandleAck => out.extend_from_slice(br#"{"cmd":"NODE_HANDLE_ACK"}"#),
            ToWorker::SocketAllClosed { key } => {
                out.extend_from_slice(br#"{"cmd":"NODE_SOCKET_ALL_CLOSED","key":"#);
                string(out, key);
                out.push(b'}');
            }
            ToWorker::SocketCount { key, count } => {
                out.extend_from_slice(br#"{"cmd":"NODE_SOCKET_COUNT","key":"#);
                string(out, key);
                write!(out, r#","count":{count}}}"#).unwrap();
            }
            ToWorker::User(json) => out.extend_from_slice(json.as_str().as_bytes()),
        }
    }
}

/// `,"key":K,"ack":N,"data":D` of a `queryServer` reply.
fn write_reply_tail(out: &mut Vec<u8>, key: &str, ack: u64, data: &RawJson) {
    out.extend_from_slice(br#","key":"#);
    string(out, key);
    write!(out, r#","ack":{ack},"data":"#).unwrap();
    out.extend_from_slice(data.as_str().as_bytes());
}

/// `s` as a JSON string: serde_json escapes quotes, backslashes and control characters, so the
/// line stays one line and parses.
fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("a Vec takes every write");
}
