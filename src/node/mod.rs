//! Node.js's cluster IPC protocol, sans IO: herd as the primary of real `node app.js` workers.
//!
//! herd starts each worker as Node's `cluster.fork()` does: `node [node args] app.js [args]`
//! with `NODE_UNIQUE_ID=<worker id>`, `NODE_CHANNEL_FD=3` and
//! `NODE_CHANNEL_SERIALIZATION_MODE=json`, fd 3 one end of a `socketpair(AF_UNIX,
//! SOCK_STREAM)`. In the child `cluster.isWorker` is then true, and every `server.listen()`
//! asks the primary for its socket over that channel. This module turns the bytes read from
//! a channel into typed messages ([`Inbox`], [`FromWorker`]) and typed messages into the bytes
//! to write ([`ToWorker`], [`Sequencer`]); the master owns the sockets and the fds.
//!
//! **Framing:** one message is one line of compact JSON ending in `\n` (`JSON.stringify`,
//! so a raw `\n` never occurs inside one). A line is *internal* when it is an object whose
//! `cmd` is a string starting `NODE_` (and longer than that); anything else is a user message
//! (`process.send(x)` / `process.on('message')`), which herd passes on as the exact bytes of
//! the line ([`RawJson`]). An fd travels as `SCM_RIGHTS` on the `sendmsg` carrying the first
//! byte of a `NODE_HANDLE` line, one fd per line; the receiver acknowledges it, and a Node
//! sender holds back *everything* it would send after a handle until that ack.
//!
//! ```text
//! worker → herd                                    herd → worker
//! {cmd:NODE_CLUSTER, act:online, seq}
//! {…, act:queryServer, index, data, address,       {cmd:NODE_CLUSTER, errno:null|-98, key, ack,
//!     port, addressType, [fd], [flags],              data, [sockname:{address,family,port}], seq}
//!     backlog, seq}                                 SCHED_NONE: {cmd:NODE_HANDLE, type:net.Native,
//!                                                     msg:{…, errno:0, key, ack, data, seq}}
//!                                                     + the listening socket's fd
//! {…, act:listening, <queryServer's fields,
//!     port: the bound port>, seq}
//!                                                  {cmd:NODE_HANDLE, type:net.Native,
//!                                                     msg:{cmd:NODE_CLUSTER, act:newconn, key, seq}}
//!                                                     + the connection's fd
//! {cmd:NODE_HANDLE_ACK}
//! {cmd:NODE_CLUSTER, ack, accepted:true|false, seq}
//! "any JSON value"                                 "any JSON value"
//!                                                  {cmd:NODE_CLUSTER, act:disconnect, seq}
//! {…, act:close, key, seq}   … the channel closes, the worker exits 0 once its connections end
//! {…, act:exitedAfterDisconnect, seq}              {cmd:NODE_CLUSTER, ack, seq}
//! {cmd:NODE_HANDLE, type, msg} + fd                {cmd:NODE_HANDLE_ACK}
//! {cmd:NODE_SOCKET_NOTIFY_CLOSE, key}              {cmd:NODE_SOCKET_ALL_CLOSED, key}
//! {cmd:NODE_SOCKET_GET_COUNT, key}                 {cmd:NODE_SOCKET_COUNT, key, count}
//! ```
//!
//! **Sequence numbers:** each side numbers its own `NODE_CLUSTER` messages from 0; a reply
//! carries the number it answers as `ack`. Only replies carry `ack`: a worker takes any
//! message with an `ack` matching a callback it is waiting on as that reply.
//!
//! **Keys:** a server is known by `address:port:addressType:fd:index`
//! ([`ServerQuery::key`]), e.g. `127.0.0.1:3000:4:undefined:0`; `index` counts a worker's
//! listens on the same address, so every worker's first `listen(0)` shares one socket and
//! its second `listen(0)` another.
//!
//! The protocol is Node's own (`internal/cluster/child`, `…/primary`, `internal/child_process`
//! in the `node` binary); these files follow Node v20.

mod encode;
mod error;
mod framing;
mod inbox;
mod json;
mod link;
mod outbox;
mod protocol;
#[cfg(test)]
mod tests;

pub use encode::{Sequencer, ToWorker};
pub use error::ProtocolError;
pub use framing::{Line, LineReader, MAX_LINE};
pub use inbox::{Inbound, Inbox};
pub use json::RawJson;
pub(crate) use link::{NodeLink, PortMap, ServerData};
pub use protocol::{AddressType, FromWorker, ServerQuery};
