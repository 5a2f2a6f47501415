"""A socket-activated server, as systemd (or herd run) starts one: its listening socket is
fd 3 (LISTEN_FDS=1), LISTEN_PID must be its own pid, and it says READY=1 on NOTIFY_SOCKET
once it serves (unless NO_READY is set). Every response is its pid; Connection: close.
SIGTERM: finish the request in hand, then exit 0. DELAY_READY=SECS waits before READY=1.
"""
import os
import signal
import socket
import sys
import time

if os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit(f"LISTEN_PID={os.environ.get('LISTEN_PID')} is not my pid {os.getpid()}")
count = int(os.environ["LISTEN_FDS"])
listeners = [socket.socket(fileno=3 + i) for i in range(count)]
stopping = False


def stop(signum, frame):
    global stopping
    stopping = True
    for s in listeners:
        s.close()


signal.signal(signal.SIGTERM, stop)

time.sleep(float(os.environ.get("DELAY_READY", "0")))
if "NO_READY" not in os.environ:
    path = os.environ["NOTIFY_SOCKET"]
    address = "\0" + path[1:] if path.startswith("@") else path
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.sendto(b"READY=1\nSTATUS=serving", address)
    n.close()
print(f"serving on {[s.getsockname() for s in listeners]}", flush=True)

body = str(os.getpid()).encode()
while not stopping:
    try:
        conn, _ = listeners[0].accept()
    except OSError:
        break
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(body), body)
        )
sys.exit(0)
