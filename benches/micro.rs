//! Micro-benchmarks of the hot pieces (criterion): the HTTP parse-and-respond path, one
//! policy decision, and handing off connections 1 vs 16 fds per message.
//!
//! `cargo bench --bench micro`

use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use herd::channel::{Channel, Received, ToWorker, MAX_FDS_PER_HANDOFF};
use herd::http::{Limits, Request, Response, Session};
use herd::policy::{AckGate, Picker, Policy};

fn http_parse_and_respond(c: &mut Criterion) {
    let hello = |_req: &Request<'_>, res: &mut Response| res.body("hello world");
    let request =
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let date = b"Wed, 25 Nov 2026 12:00:00 GMT";
    let mut session = Session::new(Limits::default());
    let (mut input, mut out) = (Vec::with_capacity(256), Vec::with_capacity(256));
    c.bench_function("http/session GET / keep-alive", |b| {
        b.iter(|| {
            input.extend_from_slice(request);
            out.clear();
            black_box(session.process(&mut input, &mut out, &hello, date));
        })
    });
}

fn policy_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy/pick");
    for workers in [4usize, 16] {
        let open: Vec<u64> = (0..workers as u64).map(|i| (i * 7) % 5).collect();
        for policy in [Policy::RoundRobin, Policy::LeastConnections, Policy::P2c] {
            let mut picker = Picker::with_seed(7);
            group.bench_with_input(
                BenchmarkId::new(policy.name(), workers),
                &workers,
                |b, &n| b.iter(|| black_box(picker.pick(policy, n, |_| true, |i| open[i]))),
            );
        }
        // node: a connection through the gate and its acknowledgement.
        let mut gate: AckGate<u32> = AckGate::default();
        for w in 0..workers {
            gate.add(w);
        }
        group.bench_with_input(BenchmarkId::new("node", workers), &workers, |b, _| {
            b.iter(|| {
                gate.push(1);
                let (w, conn) = gate
                    .handoff_all(|_| herd::policy::Eligibility::Now)
                    .pop()
                    .expect("a free worker");
                black_box(conn);
                gate.acknowledged(w);
            })
        });
    }
    group.finish();
}

/// Hands 16 real connections' fds over a real seqpacket socketpair, `per_message` per
/// packet, and receives them on the other end (the received copies are closed on drop).
fn handoff(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let conns: Vec<TcpStream> = (0..MAX_FDS_PER_HANDOFF)
        .map(|_| TcpStream::connect(listener.local_addr().unwrap()).unwrap())
        .collect();
    let fds: Vec<RawFd> = conns.iter().map(|s| s.as_raw_fd()).collect();
    let (mut master, worker) = Channel::pair().unwrap();
    let mut buf = vec![0u8; 1024];
    let mut group = c.benchmark_group("handoff/16 connections");
    group.throughput(Throughput::Elements(MAX_FDS_PER_HANDOFF as u64));
    for per_message in [1usize, MAX_FDS_PER_HANDOFF] {
        let msg = ToWorker::Handoff {
            seq: 1,
            ack: false,
            eager: false,
            listeners: vec![0; per_message],
        };
        group.bench_with_input(
            BenchmarkId::new("fds per message", per_message),
            &per_message,
            |b, &k| {
                b.iter(|| {
                    for batch in fds.chunks(k) {
                        master.send_with_fds(|b| msg.encode(b), batch).unwrap();
                        match worker.recv(&mut buf).unwrap() {
                            Received::Packet(_, received) => assert_eq!(received.len(), k),
                            other => panic!("expected a packet, got {other:?}"),
                        }
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, http_parse_and_respond, policy_decision, handoff);
criterion_main!(benches);
