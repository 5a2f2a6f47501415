//! herd's Node protocol layer (`herd::node`) against real `node` workers: the test is the
//! primary. It starts `node tests/node/<program>.js` as `cluster.fork()` would (fd 3 one end
//! of a socketpair, `NODE_UNIQUE_ID`, `NODE_CHANNEL_FD=3`), answers with `ToWorker` lines,
//! reads the worker with an `Inbox`, and passes real TCP connections and listening sockets.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};

use common::{connect, spawn_logged, wait_exit, Log, DEADLINE};
use herd::node::{
    AddressType, FromWorker, Inbox, ProtocolError, RawJson, Sequencer, ServerQuery, ToWorker,
};
use sendfd::{RecvWithFd, SendWithFd};

/// One Node worker and herd's end of its channel.
struct NodeWorker {
    child: Child,
    log: Log,
    channel: UnixStream,
    inbox: Inbox,
    seq: Sequencer,
}

impl NodeWorker {
    fn spawn(program: &str, id: u32, env: &[(&str, &str)]) -> NodeWorker {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(DEADLINE)).unwrap();
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Command::new("node");
        cmd.arg(format!(
            "{}/tests/node/{program}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .env("NODE_UNIQUE_ID", id.to_string())
        .env("NODE_CHANNEL_FD", "3")
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json")
        .envs(env.iter().copied());
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) run, on an
        // fd that stays open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 clears close-on-exec on fd 3; when the fd already is 3, clear it by hand.
                let ok = if theirs_fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(theirs_fd, 3)
                };
                if ok < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (child, log) = spawn_logged(cmd);
        drop(theirs);
        NodeWorker {
            child,
            log,
            channel: ours,
            inbox: Inbox::new(),
            seq: Sequencer::new(),
        }
    }

    /// The next message; `None` once the worker closed its channel.
    fn recv(&mut self) -> Option<Result<FromWorker, ProtocolError>> {
        self.recv_with_fd().map(|r| r.map(|(m, _)| m))
    }

    fn recv_with_fd(&mut self) -> Option<Result<(FromWorker, Option<OwnedFd>), ProtocolError>> {
        loop {
            match self.inbox.next_message() {
                Ok(Some(m)) => return Some(Ok((m.message, m.fd))),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            let mut buf = [0u8; 65536];
            let mut fds = [-1; 1];
            let (n, nfds) = self
                .channel
                .recv_with_fd(&mut buf, &mut fds)
                .unwrap_or_else(|e| {
                    panic!("reading the channel: {e}; log: {:?}", self.log.lines())
                });
            // SAFETY: the kernel just installed this fd in this process; nothing else owns it.
            // (These workers send none; a race with another test's fork would only leak it.)
            let fd = (nfds == 1).then(|| unsafe { OwnedFd::from_raw_fd(fds[0]) });
            if n == 0 {
                return None;
            }
            if let Err(e) = self.inbox.push(&buf[..n], fd) {
                return Some(Err(e));
            }
        }
    }

    fn expect(&mut self) -> FromWorker {
        match self.recv() {
            Some(Ok(m)) => m,
            other => panic!(
                "expected a message, got {other:?}; log: {:?}",
                self.log.lines()
            ),
        }
    }

    /// Sends one message, with `fd` on the same `sendmsg` as its first byte.
    fn send(&mut self, msg: &ToWorker<'_>, fd: Option<RawFd>) -> Option<u64> {
        let mut line = Vec::new();
        let seq = self.seq.encode(msg, &mut line);
        assert_eq!(msg.carries_fd(), fd.is_some());
        let mut sent = match fd {
            Some(fd) => self.channel.send_with_fd(&line, &[fd]).unwrap(),
            None => 0,
        };
        // The rest, if any, without the fd: it must not be sent twice.
        while sent < line.len() {
            sent += self.channel.write(&line[sent..]).unwrap();
        }
        seq
    }

    /// Online, then the first queryServer: its seq and query.
    fn until_query(&mut self) -> (u64, ServerQuery) {
        assert_eq!(self.expect(), FromWorker::Online);
        match self.expect() {
            FromWorker::QueryServer { seq, query } => (seq, query),
            other => panic!("expected queryServer, got {other:?}"),
        }
    }

    /// Answers a queryServer the round-robin way: herd listens, the reply says where.
    /// `shown_port` is the port the reply reports (the asked one, for a remapped fixed port).
    fn listen_rr(&mut self, seq: u64, query: &ServerQuery, shown_port: u16) -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sockname = listener.local_addr().unwrap();
        sockname.set_port(shown_port);
        let key = query.key();
        let reply = ToWorker::ServerReply {
            ack: seq,
            errno: None,
            key: &key,
            data: &query.data,
            sockname: Some(sockname),
        };
        self.send(&reply, None);
        listener
    }

    /// Passes one connection of `listener` to the worker; returns the client end and the
    /// worker's `accepted`. herd's copy of the connection stays open until that answer.
    fn pass(&mut self, listener: &TcpListener, key: &str, request: &[u8]) -> (TcpStream, bool) {
        let mut client = connect(listener.local_addr().unwrap());
        client.write_all(request).unwrap();
        let (conn, _) = listener.accept().unwrap();
        (client, self.pass_conn(&conn, key))
    }

    fn pass_conn(&mut self, conn: &TcpStream, key: &str) -> bool {
        let seq = self.send(&ToWorker::NewConn { key }, Some(conn.as_raw_fd()));
        assert_eq!(self.expect(), FromWorker::HandleAck);
        match self.expect() {
            FromWorker::Accepted { ack, accepted } if Some(ack) == seq => accepted,
            other => panic!("expected the reply to newconn {seq:?}, got {other:?}"),
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }
}

impl Drop for NodeWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// The body of the one response on `client`, read until the worker closes it.
fn body(mut client: TcpStream) -> String {
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    let (head, mut rest) = response.split_once("\r\n\r\n").expect("a response");
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return rest.to_string();
    }
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap();
        body.push_str(&tail[..size]);
        rest = tail[size..].strip_prefix("\r\n").unwrap_or(&tail[size..]);
        if size == 0 {
            break;
        }
    }
    body
}

#[test]
fn the_seed_program_runs_with_herd_as_its_primary() {
    let mut w = NodeWorker::spawn("seed.js", 7, &[]);
    let (seq, query) = w.until_query();
    assert_eq!(query.key(), "127.0.0.1:3000:4:undefined:0");
    assert_eq!(
        (query.address_type, query.port, query.flags),
        (AddressType::Tcp4, Some(3000), Some(0))
    );
    // herd listens on a free port but reports the asked-for 3000: the worker checks that the
    // reply's port is the one it asked for (EADDRINUSE otherwise).
    let listener = w.listen_rr(seq, &query, 3000);
    match w.expect() {
        FromWorker::Listening(l) => assert_eq!((l.port, l.index), (Some(3000), 0)),
        other => panic!("expected listening, got {other:?}"),
    }
    let hello = RawJson::new(r#""hello from primary""#).unwrap();
    w.send(&ToWorker::User(&hello), None);
    let reply = RawJson::new(r#""[worker] worker7 received!""#).unwrap();
    assert_eq!(w.expect(), FromWorker::User(reply));
    w.log.wait_for("[worker] hello from primary");

    let (client, accepted) = w.pass(&listener, &query.key(), GET);
    assert!(accepted);
    assert_eq!(body(client), "hello world");
    w.log.wait_for_n(1, |l| l == "7");

    w.send(&ToWorker::Disconnect, None);
    assert_eq!(w.expect(), FromWorker::Close { key: query.key() });
    assert!(w.recv().is_none(), "the channel closes after close");
    assert_eq!(w.wait_exit().code(), Some(0));
}

#[test]
fn a_bind_errno_fails_the_workers_listen() {
    let mut w = NodeWorker::spawn("worker_id.js", 1, &[]);
    let (seq, query) = w.until_query();
    let key = query.key();
    let reply = ToWorker::ServerReply {
        ack: seq,
        errno: Some(-98),
        key: &key,
        data: &query.data,
        sockname: None,
    };
    w.send(&reply, None);
    // worker_id.js has no 'error' handler: the server's error is fatal.
    assert_eq!(w.wait_exit().code(), Some(1));
    w.log.wait_for("Error: bind EADDRINUSE 127.0.0.1");
}

#[test]
fn under_sched_none_the_worker_accepts_from_the_socket_it_is_sent() {
    let mut w = NodeWorker::spawn("worker_id.js", 3, &[]);
    let (seq, query) = w.until_query();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let key = query.key();
    let reply = ToWorker::SharedServer {
        ack: seq,
        key: &key,
        data: &query.data,
    };
    w.send(&reply, Some(listener.as_raw_fd()));
    assert_eq!(w.expect(), FromWorker::HandleAck);
    match w.expect() {
        FromWorker::Listening(l) => assert_eq!(l.port, Some(i32::from(addr.port()))),
        other => panic!("expected listening, got {other:?}"),
    }
    drop(listener); // the worker has its own copy and accepts itself
    for _ in 0..3 {
        let mut client = connect(addr);
        client.write_all(GET).unwrap();
        assert_eq!(body(client), "3");
    }
    w.send(&ToWorker::Disconnect, None);
    assert_eq!(w.expect(), FromWorker::Close { key });
    assert_eq!(w.wait_exit().code(), Some(0));
}

#[test]
fn a_busy_worker_refuses_a_connection_and_takes_it_when_free() {
    let mut w = NodeWorker::spawn("max_connections.js", 2, &[("DELAY_MS", "300")]);
    let (seq, query) = w.until_query();
    let listener = w.listen_rr(seq, &query, 0);
    assert!(matches!(w.expect(), FromWorker::Listening(_)));
    let key = query.key();
    let (first, accepted) = w.pass(&listener, &key, GET);
    assert!(accepted);
    // At maxConnections = 1 the worker says no; herd still holds the connection…
    let mut second = connect(listener.local_addr().unwrap());
    second.write_all(GET).unwrap();
    let (conn, _) = listener.accept().unwrap();
    assert!(!w.pass_conn(&conn, &key));
    assert_eq!(body(first), "2");
    // …and hands it again once the first is done.
    common::wait_until("the worker to take the second connection", || {
        w.pass_conn(&conn, &key)
    });
    drop(conn);
    assert_eq!(body(second), "2");
}

#[test]
fn two_listens_in_one_worker_are_two_servers() {
    let mut w = NodeWorker::spawn("two_listens.js", 4, &[]);
    let (seq_a, query_a) = w.until_query();
    let FromWorker::QueryServer {
        seq: seq_b,
        query: query_b,
    } = w.expect()
    else {
        panic!()
    };
    assert_eq!((query_a.index, query_b.index), (0, 1));
    assert_ne!(query_a.key(), query_b.key());
    let a = w.listen_rr(seq_a, &query_a, 0);
    let b = w.listen_rr(seq_b, &query_b, 0);
    for _ in 0..2 {
        assert!(matches!(w.expect(), FromWorker::Listening(_)));
    }
    for (listener, query, name) in [(&a, &query_a, "a"), (&b, &query_b, "b")] {
        let (client, accepted) = w.pass(listener, &query.key(), GET);
        assert!(accepted);
        assert_eq!(body(client), format!("{name} 4"));
    }
}

#[test]
fn a_listen_without_a_host_asks_for_all_interfaces() {
    let mut w = NodeWorker::spawn("worker_id.js", 5, &[("HOST", "")]);
    let (seq, query) = w.until_query();
    assert_eq!((query.address.as_deref(), query.flags), (None, None));
    assert_eq!(query.key(), "null:0:4:undefined:0");
    // Node's primary binds `::` (dual-stack) and reports it; a v4 listener works the same.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let key = query.key();
    let sockname: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let reply = ToWorker::ServerReply {
        ack: seq,
        errno: None,
        key: &key,
        data: &query.data,
        sockname: Some(sockname),
    };
    w.send(&reply, None);
    assert!(matches!(w.expect(), FromWorker::Listening(l) if l.address.is_none()));
    let (client, accepted) = w.pass(&listener, &key, GET);
    assert!(accepted);
    assert_eq!(body(client), "5");
}

#[test]
fn a_worker_that_writes_a_line_that_is_not_json_is_caught() {
    let mut w = NodeWorker::spawn("bad_line.js", 1, &[]);
    let (seq, query) = w.until_query();
    let _listener = w.listen_rr(seq, &query, 0);
    assert!(matches!(w.expect(), FromWorker::Listening(_)));
    assert!(matches!(w.recv(), Some(Err(ProtocolError::NotJson { .. }))));
}

#[test]
fn a_worker_that_sends_an_unknown_act_is_caught() {
    let mut w = NodeWorker::spawn("unknown_act.js", 1, &[]);
    let (seq, query) = w.until_query();
    let _listener = w.listen_rr(seq, &query, 0);
    assert!(matches!(w.expect(), FromWorker::Listening(_)));
    assert_eq!(
        w.recv(),
        Some(Err(ProtocolError::UnknownAct("bogus".into())))
    );
}

#[test]
fn a_worker_whose_channel_closes_exits_at_once() {
    let mut w = NodeWorker::spawn("worker_id.js", 1, &[]);
    let (seq, query) = w.until_query();
    let _listener = w.listen_rr(seq, &query, 0);
    assert!(matches!(w.expect(), FromWorker::Listening(_)));
    w.channel.shutdown(std::net::Shutdown::Both).unwrap();
    let status = w.wait_exit();
    assert_eq!((status.code(), status.signal()), (Some(0), None));
}
