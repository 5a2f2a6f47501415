//! What a Node.js worker says on its channel: one line, decoded into a [`FromWorker`].
//!
//! A line is *internal* when it is a JSON object whose `cmd` is a string longer than `NODE_`
//! that starts with it (Node's `isInternal`, `internal/child_process`); anything else is a user
//! message. Internal messages are typed here; an internal message herd does not know is an
//! error ([`ProtocolError`]), as is a line that is not JSON, which would crash a Node peer.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use super::error::ProtocolError;
use super::json::{replace_lone_surrogates, same_place, RawJson};

/// One decoded line from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromWorker {
    /// A user message (`process.send(value)`): the JSON exactly as the worker wrote it.
    User(RawJson),
    /// `{act: "online"}`: the worker's cluster module is set up (before any user code runs).
    Online,
    /// `{act: "queryServer"}`: a server in the worker called `listen()` and asks herd for the
    /// socket. The reply carries `ack: seq`.
    QueryServer {
        /// The worker's sequence number of this message.
        seq: u64,
        /// What to listen on.
        query: ServerQuery,
    },
    /// `{act: "listening"}`: that server now listens. The fields are the `queryServer`'s, but
    /// `port` is the port actually bound (so build the key from the `queryServer`, not this).
    Listening(ServerQuery),
    /// `{ack, accepted}`: the reply to herd's `newconn` number `ack`. `false` when the server
    /// is closing or at its `maxConnections`: the connection must go to another worker.
    Accepted {
        /// herd's `seq` of the `newconn` this answers.
        ack: u64,
        /// Whether the worker took the connection.
        accepted: bool,
    },
    /// `{act: "close", key}`: the worker closed that server (`server.close()`, or a disconnect).
    Close {
        /// The key herd gave the server in its `queryServer` reply.
        key: String,
    },
    /// `{act: "exitedAfterDisconnect"}` (Node 4–6: `"suicide"`): the worker is leaving on its
    /// own. After `cluster.worker.disconnect()` (which first closes its servers, each with a
    /// `close`) it closes its channel once herd replies `{ack: seq}` and exits 0 when nothing
    /// else keeps it alive; after `.destroy()` or `.kill()` (no `close`s) it exits 0 as soon
    /// as the channel is closed. Send the ack and no `disconnect` (see [`Sequencer`]).
    ///
    /// [`Sequencer`]: super::Sequencer
    ExitedAfterDisconnect {
        /// The worker's sequence number of this message, for the ack.
        seq: u64,
    },
    /// `NODE_HANDLE_ACK`: the worker got the fd of herd's last `NODE_HANDLE`.
    HandleAck,
    /// `NODE_HANDLE_NACK`: a `NODE_HANDLE` arrived without its fd (`MSG_CTRUNC`).
    HandleNack,
    /// `NODE_HANDLE`: the worker sent a handle (`process.send(msg, handle)`). herd must answer
    /// `NODE_HANDLE_ACK`, or the worker queues every later message forever.
    Handle {
        /// `net.Native`, `net.Server`, `net.Socket`, `dgram.Native` or `dgram.Socket`.
        handle_type: String,
        /// The message sent with the handle, as the worker wrote it.
        msg: RawJson,
        /// For a `net.Socket` of one of the worker's servers, that server's connection key
        /// (`4:127.0.0.1:3000`); the worker later asks about it with `NODE_SOCKET_*`.
        key: Option<String>,
    },
    /// `NODE_SOCKET_NOTIFY_CLOSE`: the server whose socket the worker sent is closing; it
    /// waits for `NODE_SOCKET_ALL_CLOSED` before its `close` callback runs.
    SocketNotifyClose {
        /// The server's connection key.
        key: String,
    },
    /// `NODE_SOCKET_GET_COUNT`: `server.getConnections()` asks how many of the sockets it
    /// sent are still open; it waits for `NODE_SOCKET_COUNT`.
    SocketGetCount {
        /// The server's connection key.
        key: String,
    },
}

/// The listen a worker asks for: the fields of its `queryServer` (and `listening`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerQuery {
    /// Counts the worker's listens with the same address, port, type and fd, from 0: two
    /// `listen(0)` in one worker are two servers.
    pub index: u32,
    /// Custom server data, echoed in the reply: `null` for `net`/`http`; for `tls`/`https`
    /// `{"ticketKeys":"<hex>"}`, which the worker reads back (a `null` echo crashes it).
    pub data: RawJson,
    /// The host, already resolved by the worker (`127.0.0.1`, `::1`), or an absolute socket
    /// path for a pipe; `None` (JSON `null`) for all interfaces.
    pub address: Option<String>,
    /// The port (0: any); -1 for a pipe; `None` (`null`) for a listen on an fd.
    pub port: Option<i32>,
    /// What kind of socket.
    pub address_type: AddressType,
    /// The worker's own fd number, for `listen({fd})`; `-1` for UDP; absent otherwise.
    pub fd: Option<i32>,
    /// libuv bind flags: 1 is `UV_TCP_IPV6ONLY` (`ipv6Only: true`); for UDP,
    /// `UV_UDP_REUSEADDR` (4) and friends. Absent for a `listen(port)` without a host.
    pub flags: Option<u32>,
    /// The requested backlog; `None` when the worker left it to the default (Node sends 0 or
    /// `false`, and listens with 511).
    pub backlog: Option<u32>,
    /// Pipes only: `readableAll` / `writableAll` (chmod the socket file).
    pub readable_all: bool,
    /// See [`ServerQuery::readable_all`].
    pub writable_all: bool,
}

/// The `addressType` of a [`ServerQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// `4`: TCP over IPv4, or all interfaces when the address is `null`.
    Tcp4,
    /// `6`: TCP over IPv6.
    Tcp6,
    /// `-1`: a Unix socket path.
    Pipe,
    /// `"udp4"`: a dgram socket (always shared, never round-robin, in Node's primary).
    Udp4,
    /// `"udp6"`.
    Udp6,
    /// `null`: `listen({fd})`, a listen on one of the worker's fds.
    Fd,
}

impl AddressType {
    /// As `${addressType}` prints it in JavaScript, for the key.
    pub fn as_key_part(self) -> &'static str {
        match self {
            AddressType::Tcp4 => "4",
            AddressType::Tcp6 => "6",
            AddressType::Pipe => "-1",
            AddressType::Udp4 => "udp4",
            AddressType::Udp6 => "udp6",
            AddressType::Fd => "null",
        }
    }
}

impl ServerQuery {
    /// Node's key for this listen, `address:port:addressType:fd:index`, with JavaScript's
    /// spelling of absent values (`null:3000:4:undefined:0`): the primary's handle table key,
    /// sent in the reply and in every `newconn`, and echoed by `close`.
    pub fn key(&self) -> String {
        let address = self.address.as_deref().unwrap_or("null");
        let port = self.port.map_or("null".to_string(), |p| p.to_string());
        let fd = self.fd.map_or("undefined".to_string(), |fd| fd.to_string());
        let kind = self.address_type.as_key_part();
        format!("{address}:{port}:{kind}:{fd}:{}", self.index)
    }
}

/// The top-level fields of an internal message, each as its JSON text in the copy with lone
/// surrogates replaced (so that they parse as Rust strings).
struct Fields<'a> {
    map: BTreeMap<String, &'a RawValue>,
    /// The message's name for errors: its `act`, or its `cmd`.
    name: String,
}

impl<'a> Fields<'a> {
    fn raw(&self, field: &str) -> Option<&'a RawValue> {
        self.map.get(field).copied()
    }

    /// The field converted by `conv`; `None` when absent or `null`; an error when `conv`
    /// does not take it.
    fn get<T>(
        &self,
        field: &'static str,
        conv: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, ProtocolError> {
        let Some(raw) = self.raw(field) else {
            return Ok(None);
        };
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Null) => Ok(None),
            Ok(value) => conv(&value).map(Some).ok_or_else(|| self.bad(field)),
            Err(_) => Err(self.bad(field)),
        }
    }

    /// [`Fields::get`] for a field that must be there.
    fn need<T>(
        &self,
        field: &'static str,
        conv: impl Fn(&Value) -> Option<T>,
    ) -> Result<T, ProtocolError> {
        self.get(field, conv)?.ok_or_else(|| self.bad(field))
    }

    fn bad(&self, field: &'static str) -> ProtocolError {
        ProtocolError::BadField {
            message: self.name.clone(),
            field,
        }
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(String::from)
}

fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_i64().and_then(|n| T::try_from(n).ok())
}

impl FromWorker {
    /// Decodes one line (without its `\n`).
    pub fn decode(line: &[u8]) -> Result<FromWorker, ProtocolError> {
        match decode_per_connection(line) {
            Some(message) => Ok(message),
            None => FromWorker::decode_any(line),
        }
    }

    /// [`FromWorker::decode`] without its fast path for the per-connection lines.
    pub(super) fn decode_any(line: &[u8]) -> Result<FromWorker, ProtocolError> {
        let raw = RawJson::from_bytes(line)?;
        let text = raw.as_str();
        if !text.trim_start_matches([' ', '\t', '\r']).starts_with('{') {
            return Ok(FromWorker::User(raw));
        }
        let copy = replace_lone_surrogates(text);
        let map: BTreeMap<String, &RawValue> =
            serde_json::from_str(&copy).map_err(|e| ProtocolError::not_json(text, &e))?;
        let cmd = match map
            .get("cmd")
            .map(|c| serde_json::from_str::<String>(c.get()))
        {
            Some(Ok(cmd)) if cmd.len() > "NODE_".len() && cmd.starts_with("NODE_") => cmd,
            _ => return Ok(FromWorker::User(raw)),
        };
        let mut fields = Fields {
            map,
            name: cmd.clone(),
        };
        let original =
            |part: &RawValue| RawJson::trusted(same_place(text, &copy, part.get()).into());
        Ok(match cmd.as_str() {
            "NODE_CLUSTER" => decode_cluster(&mut fields, original)?,
            "NODE_HANDLE_ACK" => FromWorker::HandleAck,
            "NODE_HANDLE_NACK" => FromWorker::HandleNack,
            "NODE_HANDLE" => FromWorker::Handle {
                handle_type: fields.need("type", string)?,
                msg: original(fields.raw("msg").ok_or_else(|| fields.bad("msg"))?),
                key: fields.get("key", string)?,
            },
            "NODE_SOCKET_NOTIFY_CLOSE" => FromWorker::SocketNotifyClose {
                key: fields.need("key", string)?,
            },
            "NODE_SOCKET_GET_COUNT" => FromWorker::SocketGetCount {
                key: fields.need("key", string)?,
            },
            _ => return Err(ProtocolError::UnknownCmd(cmd)),
        })
    }
}

/// The two lines a round-robin worker sends for every connection, recognised in the exact
/// bytes Node's `JSON.stringify` gives them: `{"cmd":"NODE_HANDLE_ACK"}` and
/// `{"cmd":"NODE_CLUSTER","ack":N,"accepted":true|false,"seq":M}`. They are most of what
/// the master reads from a Node worker, and the general path (a map of the object's fields,
/// a copy of each key) costs allocations per line; any other spelling, however valid, goes
/// that general way and decodes to the same message (a test checks both agree).
fn decode_per_connection(line: &[u8]) -> Option<FromWorker> {
    if line == br#"{"cmd":"NODE_HANDLE_ACK"}"# {
        return Some(FromWorker::HandleAck);
    }
    let rest = line.strip_prefix(br#"{"cmd":"NODE_CLUSTER","ack":"#)?;
    let (ack, rest) = json_u64(rest)?;
    let (accepted, rest) = match rest.strip_prefix(br#","accepted":true,"seq":"#) {
        Some(rest) => (true, rest),
        None => (false, rest.strip_prefix(br#","accepted":false,"seq":"#)?),
    };
    let (_seq, rest) = json_u64(rest)?;
    (rest == b"}").then_some(FromWorker::Accepted { ack, accepted })
}

/// A JSON non-negative integer at the front of `s` (`0`, or digits without a leading zero)
/// that fits a `u64`, and what follows it.
fn json_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, rest) = s.split_at(len);
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, rest))
}

/// A `NODE_CLUSTER` message: `{cmd, act, …, seq}`, or a reply `{cmd, ack, …, seq}`.
fn decode_cluster(
    fields: &mut Fields<'_>,
    original: impl Fn(&RawValue) -> RawJson,
) -> Result<FromWorker, ProtocolError> {
    let Some(act) = fields.get("act", string)? else {
        // The one reply a worker sends: to newconn.
        fields.name = "newconn reply".into();
        fields.need("seq", Value::as_u64)?;
        return Ok(FromWorker::Accepted {
            ack: fields.need("ack", Value::as_u64)?,
            accepted: fields.need("accepted", Value::as_bool)?,
        });
    };
    fields.name.clone_from(&act);
    let fields = &*fields;
    // Every message Node's cluster module sends is numbered (`sendHelper`).
    let seq = || fields.need("seq", Value::as_u64);
    Ok(match act.as_str() {
        "online" => {
            seq()?;
            FromWorker::Online
        }
        "queryServer" => FromWorker::QueryServer {
            seq: seq()?,
            query: decode_query(fields, original)?,
        },
        "listening" => {
            seq()?;
            FromWorker::Listening(decode_query(fields, original)?)
        }
        "close" => {
            seq()?;
            FromWorker::Close {
                key: fields.need("key", string)?,
            }
        }
        "exitedAfterDisconnect" | "suicide" => FromWorker::ExitedAfterDisconnect { seq: seq()? },
        _ => return Err(ProtocolError::UnknownAct(act)),
    })
}

fn decode_query(
    fields: &Fields<'_>,
    original: impl Fn(&RawValue) -> RawJson,
) -> Result<ServerQuery, ProtocolError> {
    let address_type = match fields.raw("addressType").map(RawValue::get) {
        Some("4") => AddressType::Tcp4,
        Some("6") => AddressType::Tcp6,
        Some("-1") => AddressType::Pipe,
        Some("\"udp4\"") => AddressType::Udp4,
        Some("\"udp6\"") => AddressType::Udp6,
        Some("null") => AddressType::Fd,
        _ => return Err(fields.bad("addressType")),
    };
    if fields.raw("port").is_none() {
        return Err(fields.bad("port"));
    }
    // `backlog || 511` in Node: 0, false and absent all mean the default.
    let backlog = match fields.raw("backlog").map(RawValue::get) {
        None | Some("false") => None,
        Some(_) => Some(fields.need("backlog", int::<u32>)?).filter(|&b| b > 0),
    };
    Ok(ServerQuery {
        index: fields.need("index", int::<u32>)?,
        data: fields.raw("data").map_or_else(RawJson::null, &original),
        address: fields.get("address", string)?,
        port: fields.get("port", int::<i32>)?,
        address_type,
        fd: fields.get("fd", int::<i32>)?,
        flags: fields.get("flags", int::<u32>)?,
        backlog,
        readable_all: fields.get("readableAll", Value::as_bool)?.unwrap_or(false),
        writable_all: fields.get("writableAll", Value::as_bool)?.unwrap_or(false),
    })
}
