//! The protocol against the bytes Node v20.20.2 itself wrote (strace of its own primary and a
//! worker running the seed program, `../shared/node/cluster-ipc-capture.txt`, plus the
//! SCHED_NONE and `listen(port)` replies traced the same way), and the framing against
//! every way a stream can cut them.

use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use super::*;

/// What the worker wrote, in order (each line without its `\n`).
const WORKER_LINES: [&str; 7] = [
    r#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#,
    r#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,"address":"127.0.0.1","port":3000,"addressType":4,"flags":0,"backlog":0,"seq":1}"#,
    r#"{"cmd":"NODE_CLUSTER","act":"listening","index":0,"data":null,"address":"127.0.0.1","port":3000,"addressType":4,"flags":0,"backlog":0,"seq":2}"#,
    r#""[worker] worker1 received!""#,
    r#"{"cmd":"NODE_HANDLE_ACK"}"#,
    r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":3}"#,
    r#"{"cmd":"NODE_CLUSTER","act":"close","key":"127.0.0.1:3000:4:undefined:0","seq":4}"#,
];

/// What the primary wrote, in order.
const PRIMARY_LINES: [&str; 4] = [
    r#"{"cmd":"NODE_CLUSTER","errno":null,"key":"127.0.0.1:3000:4:undefined:0","ack":1,"data":null,"sockname":{"address":"127.0.0.1","family":"IPv4","port":3000},"seq":0}"#,
    r#""hello from primary""#,
    r#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"127.0.0.1:3000:4:undefined:0","seq":1}}"#,
    r#"{"cmd":"NODE_CLUSTER","act":"disconnect","seq":2}"#,
];

const KEY: &str = "127.0.0.1:3000:4:undefined:0";

fn seed_query(port: i32) -> ServerQuery {
    ServerQuery {
        index: 0,
        data: RawJson::null(),
        address: Some("127.0.0.1".into()),
        port: Some(port),
        address_type: AddressType::Tcp4,
        fd: None,
        flags: Some(0),
        backlog: None,
        readable_all: false,
        writable_all: false,
    }
}

fn expected_worker_messages() -> Vec<FromWorker> {
    vec![
        FromWorker::Online,
        FromWorker::QueryServer {
            seq: 1,
            query: seed_query(3000),
        },
        FromWorker::Listening(seed_query(3000)),
        FromWorker::User(RawJson::new(r#""[worker] worker1 received!""#).unwrap()),
        FromWorker::HandleAck,
        FromWorker::Accepted {
            ack: 1,
            accepted: true,
        },
        FromWorker::Close { key: KEY.into() },
    ]
}

fn decode(line: &str) -> Result<FromWorker, ProtocolError> {
    FromWorker::decode(line.as_bytes())
}

/// Everything `inbox` yields until it has no complete message.
fn drain(inbox: &mut Inbox) -> Vec<Inbound> {
    let mut out = Vec::new();
    while let Some(m) = inbox.next_message().unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn every_worker_line_of_the_capture_decodes() {
    let got: Vec<_> = WORKER_LINES.iter().map(|l| decode(l).unwrap()).collect();
    assert_eq!(got, expected_worker_messages());
    let FromWorker::QueryServer { query, .. } = &got[1] else {
        unreachable!()
    };
    assert_eq!(query.key(), KEY);
}

#[test]
fn the_per_connection_fast_path_agrees_with_the_general_decoder() {
    // What Node writes for every connection, and spellings near it that must take the
    // general path (and still decode, or fail, as that path says).
    let lines = [
        r#"{"cmd":"NODE_HANDLE_ACK"}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":3}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":0,"accepted":false,"seq":0}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":18446744073709551615,"accepted":true,"seq":7}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":18446744073709551616,"accepted":true,"seq":7}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":01,"accepted":true,"seq":3}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":3} "#,
        r#"{"cmd":"NODE_CLUSTER", "ack":1,"accepted":true,"seq":3}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":3,"x":1}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":-3}"#,
        r#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true}"#,
        r#"{"cmd":"NODE_HANDLE_ACK","x":1}"#,
        r#"{"cmd":"NODE_HANDLE_ACK"}}"#,
    ];
    for line in lines {
        let fast = FromWorker::decode(line.as_bytes());
        let general = FromWorker::decode_any(line.as_bytes());
        match (&fast, &general) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{line}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{line}: fast {fast:?}, general {general:?}"),
        }
    }
    assert_eq!(
        decode(r#"{"cmd":"NODE_CLUSTER","ack":9,"accepted":false,"seq":4}"#).unwrap(),
        FromWorker::Accepted {
            ack: 9,
            accepted: false
        }
    );
}

#[test]
fn every_primary_line_of_the_capture_encodes_byte_for_byte() {
    let mut seq = Sequencer::new();
    let mut out = Vec::new();
    let hello = RawJson::new(r#""hello from primary""#).unwrap();
    let reply = ToWorker::ServerReply {
        ack: 1,
        errno: None,
        key: KEY,
        data: &RawJson::null(),
        sockname: Some("127.0.0.1:3000".parse().unwrap()),
    };
    assert_eq!(seq.encode(&reply, &mut out), Some(0));
    assert_eq!(seq.encode(&ToWorker::User(&hello), &mut out), None);
    let newconn = ToWorker::NewConn { key: KEY };
    assert!(newconn.carries_fd());
    assert_eq!(seq.encode(&newconn, &mut out), Some(1));
    assert_eq!(seq.encode(&ToWorker::Disconnect, &mut out), Some(2));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        PRIMARY_LINES.join("\n") + "\n"
    );
}

#[test]
fn replies_node_sends_in_other_modes_encode_byte_for_byte() {
    let mut seq = Sequencer::new();
    let cases = [
        // SCHED_NONE (NODE_CLUSTER_SCHED_POLICY=none): the reply carries the bound socket.
        (
            ToWorker::SharedServer {
                ack: 1,
                key: "127.0.0.1:0:4:undefined:0",
                data: &RawJson::null(),
            },
            r#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","errno":0,"key":"127.0.0.1:0:4:undefined:0","ack":1,"data":null,"seq":0}}"#,
        ),
        // listen(0) without a host: the primary binds `::` (dual-stack).
        (
            ToWorker::ServerReply {
                ack: 1,
                errno: None,
                key: "null:0:4:undefined:0",
                data: &RawJson::null(),
                sockname: Some("[::]:45795".parse().unwrap()),
            },
            r#"{"cmd":"NODE_CLUSTER","errno":null,"key":"null:0:4:undefined:0","ack":1,"data":null,"sockname":{"address":"::","family":"IPv6","port":45795},"seq":1}"#,
        ),
        // A bind error: no sockname (RoundRobinHandle sends `{errno, key, ack, data}`).
        (
            ToWorker::ServerReply {
                ack: 1,
                errno: Some(-98),
                key: KEY,
                data: &RawJson::new(r#"{"ticketKeys":"ab01"}"#).unwrap(),
                sockname: None,
            },
            r#"{"cmd":"NODE_CLUSTER","errno":-98,"key":"127.0.0.1:3000:4:undefined:0","ack":1,"data":{"ticketKeys":"ab01"},"seq":2}"#,
        ),
        (
            ToWorker::ExitedAfterDisconnectAck { ack: 4 },
            r#"{"cmd":"NODE_CLUSTER","ack":4,"seq":3}"#,
        ),
        (ToWorker::HandleAck, r#"{"cmd":"NODE_HANDLE_ACK"}"#),
        (
            ToWorker::SocketAllClosed {
                key: "4:127.0.0.1:0",
            },
            r#"{"cmd":"NODE_SOCKET_ALL_CLOSED","key":"4:127.0.0.1:0"}"#,
        ),
        (
            ToWorker::SocketCount {
                key: "4:127.0.0.1:0",
                count: 0,
            },
            r#"{"cmd":"NODE_SOCKET_COUNT","key":"4:127.0.0.1:0","count":0}"#,
        ),
    ];
    for (msg, line) in cases {
        let mut out = Vec::new();
        seq.encode(&msg, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
    }
}

#[test]
fn a_worker_gets_one_ending_only() {
    for first in [
        ToWorker::Disconnect,
        ToWorker::ExitedAfterDisconnectAck { ack: 4 },
    ] {
        let mut seq = Sequencer::new();
        let mut out = Vec::new();
        assert_eq!(seq.encode(&first, &mut out), Some(0));
        assert!(seq.ended());
        let len = out.len();
        assert_eq!(seq.encode(&ToWorker::Disconnect, &mut out), None);
        assert_eq!(
            seq.encode(&ToWorker::ExitedAfterDisconnectAck { ack: 5 }, &mut out),
            None
        );
        assert_eq!(out.len(), len, "nothing more written");
        // Other messages still go: connections may still be refused and re-sent.
        assert_eq!(
            seq.encode(&ToWorker::NewConn { key: KEY }, &mut out),
            Some(1)
        );
    }
}

#[test]
fn strings_herd_writes_are_escaped() {
    let mut out = Vec::new();
    let key = "/tmp/a \"b\"\n\\c.sock:-1:-1:undefined:0";
    Sequencer::new().encode(&ToWorker::NewConn { key }, &mut out);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["msg"]["key"], key);
}

#[test]
fn keys_spell_absent_values_as_javascript_does() {
    let line = |fields: &str| {
        format!(
            r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,{fields},"seq":1}}"#
        )
    };
    let cases = [
        (
            r#""address":null,"port":0,"addressType":4,"backlog":0"#,
            "null:0:4:undefined:0",
        ),
        (
            r#""address":null,"port":null,"addressType":null,"fd":0,"backlog":0"#,
            "null:null:null:0:0",
        ),
        (
            r#""address":"/tmp/x.sock","port":-1,"addressType":-1,"backlog":0,"readableAll":true"#,
            "/tmp/x.sock:-1:-1:undefined:0",
        ),
        (
            r#""address":"127.0.0.1","port":0,"addressType":"udp4","fd":-1,"flags":0"#,
            "127.0.0.1:0:udp4:-1:0",
        ),
        (
            r#""address":"::1","port":8080,"addressType":6,"flags":1,"backlog":77"#,
            "::1:8080:6:undefined:0",
        ),
    ];
    for (fields, key) in cases {
        let Ok(FromWorker::QueryServer { query, .. }) = decode(&line(fields)) else {
            panic!("{fields}")
        };
        assert_eq!(query.key(), key);
    }
}

#[test]
fn query_fields_decode_as_node_means_them() {
    let q = |fields: &str| match decode(&format!(
        r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","index":1,"data":null,"address":null,"port":0,"addressType":4{fields},"seq":5}}"#
    )) {
        Ok(FromWorker::QueryServer { seq: 5, query }) => query,
        other => panic!("{other:?}"),
    };
    // `listen(0, host, cb)` sends `backlog: false`; both it and 0 mean Node's default 511.
    assert_eq!(q(r#","backlog":false"#).backlog, None);
    assert_eq!(q(r#","backlog":0"#).backlog, None);
    assert_eq!(q(r#","backlog":77"#).backlog, Some(77));
    let plain = q("");
    assert_eq!((plain.address, plain.flags, plain.index), (None, None, 1));
    let pipe = q(r#","readableAll":true"#);
    assert!(pipe.readable_all && !pipe.writable_all);
    assert_eq!(q(r#","flags":1"#).flags, Some(1));
}

#[test]
fn tls_data_is_kept_as_written_and_echoed() {
    let line = r#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":{"ticketKeys":"da9d","x":"\ud800"},"address":"127.0.0.1","port":0,"addressType":4,"flags":0,"backlog":false,"seq":1}"#;
    let Ok(FromWorker::QueryServer { query, .. }) = decode(line) else {
        panic!()
    };
    assert_eq!(query.data.as_str(), r#"{"ticketKeys":"da9d","x":"\ud800"}"#);
    let mut out = Vec::new();
    let reply = ToWorker::ServerReply {
        ack: 1,
        errno: None,
        key: &query.key(),
        data: &query.data,
        sockname: Some("127.0.0.1:41000".parse().unwrap()),
    };
    Sequencer::new().encode(&reply, &mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(r#","data":{"ticketKeys":"da9d","x":"\ud800"},"sockname""#),
        "{out}"
    );
}

#[test]
fn user_messages_keep_their_bytes_lone_surrogates_included() {
    // As Node v20 wrote `process.send('\ud800 and \udc00 ok \u2028')`.
    let line = b"\"\\ud800 and \\udc00 ok \xe2\x80\xa8\"";
    let Ok(FromWorker::User(json)) = FromWorker::decode(line) else {
        panic!()
    };
    assert_eq!(json.as_str().as_bytes(), line);
    assert_eq!(json.as_text(), "\u{fffd} and \u{fffd} ok \u{2028}");
    for line in [
        r#"{"a":1,"cmd":"NOT_NODE","s":"\ud800"}"#,
        r#"{"\ud800":"key with a lone surrogate","cmd":"x"}"#,
        r#"{"cmd":"NODE_"}"#,  // not longer than the prefix
        r#"{"cmd":"node_x"}"#, // case matters
        r#"{"cmd":7}"#,        // not a string
        r#"["NODE_CLUSTER"]"#, // not an object
        r#" "spaced" "#,
        "1e3",
    ] {
        match decode(line) {
            Ok(FromWorker::User(json)) => assert_eq!(json.as_str(), line),
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn internal_messages_are_recognised_around_lone_surrogates() {
    // As a worker wrote `process.send({cmd: 'NODE_CLUSTER', act: 'bogus', s: '\udfff'})`.
    let line = r#"{"cmd":"NODE_CLUSTER","act":"bogus","s":"\udfff"}"#;
    assert_eq!(decode(line), Err(ProtocolError::UnknownAct("bogus".into())));
    let line = r#"{"cmd":"NODE_CLUSTER","act":"close","key":"/tmp/\ud800.sock:-1:-1:undefined:0","seq":3}"#;
    let key = "/tmp/\u{fffd}.sock:-1:-1:undefined:0".to_string();
    assert_eq!(decode(line), Ok(FromWorker::Close { key }));
    // The last duplicate wins, as in JSON.parse.
    let line = r#"{"cmd":"x","cmd":"NODE_HANDLE_ACK"}"#;
    assert_eq!(decode(line), Ok(FromWorker::HandleAck));
}

#[test]
fn handles_and_socket_lists_from_a_worker_decode() {
    let line = r#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":"conn","key":"4:127.0.0.1:0"}"#;
    let Ok(FromWorker::Handle {
        handle_type,
        msg,
        key,
    }) = decode(line)
    else {
        panic!()
    };
    assert_eq!(
        (handle_type.as_str(), msg.as_str()),
        ("net.Socket", r#""conn""#)
    );
    assert_eq!(key.as_deref(), Some("4:127.0.0.1:0"));
    let line = r#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"sock":1}}}"#;
    let Ok(FromWorker::Handle { msg, key: None, .. }) = decode(line) else {
        panic!()
    };
    assert_eq!(
        msg.as_str(),
        r#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"sock":1}}"#
    );
    let key = "4:127.0.0.1:0".to_string();
    assert_eq!(
        decode(r#"{"cmd":"NODE_SOCKET_GET_COUNT","key":"4:127.0.0.1:0"}"#),
        Ok(FromWorker::SocketGetCount { key: key.clone() })
    );
    assert_eq!(
        decode(r#"{"cmd":"NODE_SOCKET_NOTIFY_CLOSE","key":"4:127.0.0.1:0"}"#),
        Ok(FromWorker::SocketNotifyClose { key })
    );
    assert_eq!(
        decode(r#"{"cmd":"NODE_HANDLE_NACK"}"#),
        Ok(FromWorker::HandleNack)
    );
}

#[test]
fn leaving_on_its_own_decodes_under_both_names() {
    for act in ["exitedAfterDisconnect", "suicide"] {
        let line = format!(r#"{{"cmd":"NODE_CLUSTER","act":"{act}","seq":4}}"#);
        assert_eq!(
            decode(&line),
            Ok(FromWorker::ExitedAfterDisconnect { seq: 4 })
        );
    }
}

#[test]
fn broken_lines_are_typed_errors() {
    for line in [
        "not json",
        "",
        "   ",
        "{\"cmd\":\"NODE_CLUSTER\"",
        "{'a':1}",
    ] {
        assert!(
            matches!(decode(line), Err(ProtocolError::NotJson { .. })),
            "{line:?}"
        );
    }
    assert!(matches!(
        FromWorker::decode(b"\"\xc3\""),
        Err(ProtocolError::NotJson { .. })
    ));
    let bogus = r#"{"cmd":"NODE_CLUSTER","act":"bogus","seq":1000}"#;
    assert_eq!(
        decode(bogus),
        Err(ProtocolError::UnknownAct("bogus".into()))
    );
    assert_eq!(
        decode(r#"{"cmd":"NODE_X"}"#),
        Err(ProtocolError::UnknownCmd("NODE_X".into()))
    );
    let bad = |line: &str, field: &'static str| match decode(line) {
        Err(ProtocolError::BadField { field: f, .. }) => assert_eq!(f, field, "{line}"),
        other => panic!("{line}: {other:?}"),
    };
    bad(r#"{"cmd":"NODE_CLUSTER","act":"online"}"#, "seq");
    bad(
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","port":0,"addressType":4,"seq":1}"#,
        "index",
    );
    bad(
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"port":0,"addressType":"tcp","seq":1}"#,
        "addressType",
    );
    bad(
        r#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"addressType":4,"seq":1}"#,
        "port",
    );
    bad(
        r#"{"cmd":"NODE_CLUSTER","act":"close","key":3,"seq":1}"#,
        "key",
    );
    bad(r#"{"cmd":"NODE_CLUSTER","ack":1,"seq":3}"#, "accepted");
    bad(r#"{"cmd":"NODE_HANDLE","type":"net.Native"}"#, "msg");
    // One log line each, naming the problem.
    let e = decode("not json").unwrap_err().to_string();
    assert!(
        e.starts_with("a line that is not JSON (") && e.ends_with(": \"not json\""),
        "{e}"
    );
}

/// The capture's worker stream, cut into two reads at every byte, and into one byte per read.
#[test]
fn a_line_split_at_every_byte_decodes_the_same() {
    let stream = WORKER_LINES.join("\n") + "\n";
    let stream = stream.as_bytes();
    let want = expected_worker_messages();
    for cut in 0..=stream.len() {
        let mut inbox = Inbox::new();
        let mut got = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            inbox.push(part, None).unwrap();
            got.extend(drain(&mut inbox).into_iter().map(|m| m.message));
        }
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(inbox.partial(), 0);
    }
    let mut inbox = Inbox::new();
    let mut got = Vec::new();
    for byte in stream.chunks(1) {
        inbox.push(byte, None).unwrap();
        got.extend(drain(&mut inbox).into_iter().map(|m| m.message));
    }
    assert_eq!(got, want);
}

#[test]
fn two_lines_in_one_read() {
    // The primary's one recvmsg that returned both (81 bytes).
    let mut inbox = Inbox::new();
    inbox
        .push(
            format!("{}\n{}\n", WORKER_LINES[4], WORKER_LINES[5]).as_bytes(),
            None,
        )
        .unwrap();
    let got: Vec<_> = drain(&mut inbox).into_iter().map(|m| m.message).collect();
    assert_eq!(got, expected_worker_messages()[4..6]);
}

/// A socket the test can recognise once it comes back out of the inbox, and tell closed.
struct Probe {
    ours: UnixStream,
    ino: u64,
}

fn probe() -> (Probe, OwnedFd) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let ino = inode(&theirs);
    ours.set_nonblocking(true).unwrap();
    (Probe { ours, ino }, theirs.into())
}

fn inode(fd: &impl AsRawFd) -> u64 {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let link = std::fs::read_link(path)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    link.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

impl Probe {
    fn is(&self, fd: &Option<OwnedFd>) -> bool {
        fd.as_ref().is_some_and(|fd| inode(fd) == self.ino)
    }
    /// Whether the other end has been closed (a read sees end of file).
    fn closed(&self) -> bool {
        matches!(std::io::Read::read(&mut &self.ours, &mut [0u8; 1]), Ok(0))
    }
}

const HANDLE_LINE: &str =
    r#"{"cmd":"NODE_HANDLE","type":"net.Socket","msg":"conn","key":"4:127.0.0.1:0"}"#;

#[test]
fn an_fd_goes_to_the_handle_line_even_after_other_lines_in_its_read() {
    // As a worker's `process.send('conn', socket)` arrived after its ack and accepted reply:
    // one read, three lines, one fd, which belongs to the third.
    let (p, fd) = probe();
    let mut inbox = Inbox::new();
    let chunk = format!("{}\n{}\n{HANDLE_LINE}\n", WORKER_LINES[4], WORKER_LINES[5]);
    inbox.push(chunk.as_bytes(), Some(fd)).unwrap();
    let got = drain(&mut inbox);
    assert_eq!(got.len(), 3);
    assert!(got[0].fd.is_none() && got[1].fd.is_none());
    assert!(matches!(got[2].message, FromWorker::Handle { .. }));
    assert!(p.is(&got[2].fd));
}

#[test]
fn a_split_handle_line_keeps_its_fd_and_the_next_one_its_own() {
    // Read 1 ends inside handle line A and brought A's fd; read 2 holds the rest of A and all
    // of handle line B, with B's fd (Linux may join fd-less bytes before an fd's write). Node's
    // single pending slot would give B's fd to A; herd gives each line its own.
    let (pa, fa) = probe();
    let (pb, fb) = probe();
    let mut inbox = Inbox::new();
    let (head, rest) = HANDLE_LINE.split_at(20);
    inbox.push(head.as_bytes(), Some(fa)).unwrap();
    assert!(drain(&mut inbox).is_empty());
    inbox
        .push(format!("{rest}\n{HANDLE_LINE}\n").as_bytes(), Some(fb))
        .unwrap();
    let got = drain(&mut inbox);
    assert!(pa.is(&got[0].fd) && pb.is(&got[1].fd));
}

#[test]
fn an_fd_no_handle_line_claims_is_closed() {
    let mut inbox = Inbox::new();
    // With a user message only: closed once the line is read.
    let (p1, fd) = probe();
    inbox.push(b"\"hi\"\n", Some(fd)).unwrap();
    assert!(!p1.closed());
    let got = drain(&mut inbox);
    assert!(got[0].fd.is_none() && p1.closed());
    // With the middle of a line, where no line starts: closed at once.
    let (p2, fd) = probe();
    inbox.push(br#"{"cmd":"NODE_HANDLE","#, None).unwrap();
    inbox.push(br#""type":"net.Native","#, Some(fd)).unwrap();
    assert!(p2.closed());
    inbox.push(b"\"msg\":1}\n", None).unwrap();
    let got = drain(&mut inbox);
    assert!(matches!(got[0].message, FromWorker::Handle { .. }) && got[0].fd.is_none());
}

#[test]
fn an_over_long_line_is_an_error_not_a_buffer() {
    let mut inbox = Inbox::with_limit(64);
    inbox.push(&[b'x'; 40], None).unwrap();
    assert_eq!(
        inbox.push(&[b'x'; 40], None),
        Err(ProtocolError::LineTooLong { limit: 64 })
    );
    // A whole line over the limit, in one read.
    let mut inbox = Inbox::with_limit(64);
    let mut chunk = vec![b'1'; 65];
    chunk.push(b'\n');
    inbox.push(&chunk, None).unwrap();
    assert_eq!(
        inbox.next_message().unwrap_err(),
        ProtocolError::LineTooLong { limit: 64 }
    );
    // Up to the limit is fine, and lines after it still come.
    let mut inbox = Inbox::with_limit(64);
    let mut chunk = vec![b'1'; 64];
    chunk.extend_from_slice(b"\n2\n");
    inbox.push(&chunk, None).unwrap();
    assert_eq!(drain(&mut inbox).len(), 2);
}

#[test]
fn a_non_json_line_stops_the_inbox_with_an_error() {
    let mut inbox = Inbox::new();
    inbox.push(b"not json\n", None).unwrap();
    assert!(matches!(
        inbox.next_message(),
        Err(ProtocolError::NotJson { .. })
    ));
}

/// Node's own `JSON.parse` takes every line herd writes, and its `JSON.stringify` of the
/// result gives back the same bytes: herd writes what Node's primary would.
#[test]
fn node_parses_every_line_herd_writes_to_the_same_bytes() {
    let data = RawJson::new(r#"{"ticketKeys":"ab01"}"#).unwrap();
    // JSON.stringify escapes a lone surrogate but writes U+2028 as itself.
    let user = RawJson::new("[\"\\ud800\",{\"a\":\"é\u{2028}\"}]").unwrap();
    let msgs = [
        ToWorker::ServerReply {
            ack: 1,
            errno: None,
            key: "null:0:4:undefined:0",
            data: &data,
            sockname: Some("[::]:3000".parse().unwrap()),
        },
        ToWorker::ServerReply {
            ack: 2,
            errno: Some(-98),
            key: "/tmp/\"x\".sock:-1:-1:undefined:0",
            data: &RawJson::null(),
            sockname: None,
        },
        ToWorker::SharedServer {
            ack: 3,
            key: KEY,
            data: &data,
        },
        ToWorker::NewConn { key: KEY },
        ToWorker::Disconnect,
        ToWorker::ExitedAfterDisconnectAck { ack: 9 },
        ToWorker::HandleAck,
        ToWorker::SocketAllClosed {
            key: "4:127.0.0.1:0",
        },
        ToWorker::SocketCount {
            key: "4:127.0.0.1:0",
            count: 2,
        },
        ToWorker::User(&user),
    ];
    let mut seq = Sequencer::new();
    let mut lines = Vec::new();
    for m in &msgs {
        seq.encode(m, &mut lines);
    }
    let script = "require('readline').createInterface({ input: process.stdin })\
                  .on('line', (l) => console.log(JSON.stringify(JSON.parse(l))));";
    let mut node = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed (.ci/run installs it)");
    node.stdin.take().unwrap().write_all(&lines).unwrap();
    let out = node.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(lines).unwrap()
    );
}
