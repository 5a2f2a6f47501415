#!/usr/bin/env python3
"""Hostile and misbehaving clients for scripts/reliability.sh (loopback only, bounded in time).

  clients.py hold PORT N SECS      N connections send half a request head, hold SECS, finish
                                   it and read the answer; prints "served=K failed=F"
  clients.py mix PORT N            N connections, round-robin over: reset mid-request (RST),
                                   closed before sending, slow (head over 1 s, then read),
                                   half a head then FIN; prints "opened=N errors=E"
"""
import socket
import struct
import sys
import threading
import time

HEAD = b"GET / HTTP/1.1\r\nHost: t\r\n"
REST = b"Connection: close\r\n\r\n"


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def hold(port, n, secs):
    socks, failed = [], 0
    for _ in range(n):
        s = socket.socket()
        s.settimeout(60)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(HEAD)
            socks.append(s)
        except OSError:
            failed += 1
    time.sleep(secs)
    served = 0
    lock = threading.Lock()

    def finish(batch):
        nonlocal served, failed
        for s in batch:
            try:
                s.sendall(REST)
                ok = read_all(s).startswith(b"HTTP/1.1 200 ")
            except OSError:
                ok = False
            with lock:
                served += ok
                failed += not ok
            s.close()

    threads = [threading.Thread(target=finish, args=(socks[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"served={served} failed={failed}")


def mix(port, n):
    errors = 0
    lock = threading.Lock()

    def one(kind):
        nonlocal errors
        s = socket.socket()
        s.settimeout(30)
        try:
            s.connect(("127.0.0.1", port))
            if kind == 0:  # reset mid-request
                s.sendall(HEAD)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif kind == 1:  # closed before sending anything
                pass
            elif kind == 2:  # slow: the head in pieces over 0.6 s, then the answer
                for piece in (HEAD[:5], HEAD[5:], REST):
                    s.sendall(piece)
                    time.sleep(0.2)
                if not read_all(s).startswith(b"HTTP/1.1 200 "):
                    raise OSError("bad answer")
            else:  # half a head, then FIN
                s.sendall(HEAD)
                s.shutdown(socket.SHUT_WR)
                read_all(s)
        except OSError:
            with lock:
                errors += 1
        finally:
            s.close()

    # Slow clients run in a pool of threads; the quick kinds on this thread.
    slow = [i for i in range(n) if i % 4 == 2]
    quick = [i for i in range(n) if i % 4 != 2]

    def slow_worker(items):
        for _ in items:
            one(2)

    threads = [threading.Thread(target=slow_worker, args=(slow[i::128],)) for i in range(128)]
    for t in threads:
        t.start()
    for i in quick:
        one(i % 4)
    for t in threads:
        t.join()
    print(f"opened={n} errors={errors}")


if __name__ == "__main__":
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "hold":
        hold(port, int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "mix":
        mix(port, int(sys.argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")
