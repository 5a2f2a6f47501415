use super::*;
use std::net::{TcpListener, TcpStream};

#[test]
fn messages_round_trip() {
    let to_worker = [
        ToWorker::Handoff {
            seq: 7,
            ack: true,
            eager: true,
            listeners: vec![0, 3],
        },
        ToWorker::ListenOk {
            req: 1,
            listener: 2,
            accept: Acceptance::SharedExclusive,
            addr: "127.0.0.1:3000".into(),
        },
        ToWorker::ListenErr {
            req: 9,
            error: "address in use".into(),
        },
        ToWorker::Message(b"hi".to_vec()),
        ToWorker::Drain,
        ToWorker::Heartbeat { interval_ms: 500 },
    ];
    for m in to_worker {
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(ToWorker::decode(&b).unwrap(), m);
    }
    let to_master = [
        ToMaster::Online,
        ToMaster::Listen {
            req: 4,
            index: 1,
            addr: "[::1]:0".into(),
        },
        ToMaster::Ack {
            seq: u64::MAX,
            closed: 3,
            requests: 99,
            accepted: 5,
        },
        ToMaster::Message(vec![0, 1, 2]),
        ToMaster::Heartbeat,
    ];
    for m in to_master {
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(ToMaster::decode(&b).unwrap(), m);
    }
    assert!(ToWorker::decode(&[1, 0]).is_err());
    assert!(ToMaster::decode(&[]).is_err());
    assert!(ToMaster::decode(&[42]).is_err());
}

#[test]
fn a_packet_longer_than_the_buffer_is_an_error_not_a_short_message() {
    let (mut master, worker) = Channel::pair().unwrap();
    master
        .send_to_worker(&ToWorker::Message(vec![7; 300]))
        .unwrap();
    let mut small = [0u8; 100];
    let err = worker.recv(&mut small).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // The channel goes on: the next packet arrives whole.
    master.send_to_worker(&ToWorker::Drain).unwrap();
    let mut buf = [0u8; 100];
    match worker.recv(&mut buf).unwrap() {
        Received::Packet(n, _) => {
            assert_eq!(ToWorker::decode(&buf[..n]).unwrap(), ToWorker::Drain)
        }
        other => panic!("expected a packet, got {other:?}"),
    }
}

#[test]
fn fds_cross_with_their_packet_and_arrive_close_on_exec() {
    let (mut master, worker) = Channel::pair().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let b = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let msg = ToWorker::Handoff {
        seq: 1,
        ack: false,
        eager: false,
        listeners: vec![0, 0],
    };
    master
        .send_with_fds(|buf| msg.encode(buf), &[a.as_raw_fd(), b.as_raw_fd()])
        .unwrap();
    let mut buf = [0u8; 512];
    match worker.recv(&mut buf).unwrap() {
        Received::Packet(n, fds) => {
            assert_eq!(ToWorker::decode(&buf[..n]).unwrap(), msg);
            assert_eq!(fds.len(), 2);
            for fd in &fds {
                let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
                assert_ne!(
                    flags & libc::FD_CLOEXEC,
                    0,
                    "received fd must be close-on-exec"
                );
            }
        }
        other => panic!("expected a packet, got {other:?}"),
    }
    assert!(matches!(
        worker.recv(&mut buf).unwrap(),
        Received::WouldBlock
    ));
    drop(master);
    assert!(matches!(worker.recv(&mut buf).unwrap(), Received::Closed));
}
