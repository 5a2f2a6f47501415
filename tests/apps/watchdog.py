"""A socket-activated server under systemd's watchdog protocol (herd run --worker-timeout):
it checks WATCHDOG_PID is its own pid, says READY=1, then sends WATCHDOG=1 every quarter
of WATCHDOG_USEC (libraries ping at half; a quarter leaves room on a busy machine) for
PINGS times (default 6), serving meanwhile,
and then stops pinging while it goes on serving: to its supervisor it is hung. Every
response is its pid; Connection: close.
"""
import os
import socket
import sys
import threading
import time

if os.environ.get("WATCHDOG_PID") != str(os.getpid()):
    sys.exit(f"WATCHDOG_PID={os.environ.get('WATCHDOG_PID')} is not my pid {os.getpid()}")
period = int(os.environ["WATCHDOG_USEC"]) / 1e6
listener = socket.socket(fileno=3)
path = os.environ["NOTIFY_SOCKET"]
address = "\0" + path[1:] if path.startswith("@") else path
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"READY=1", address)
print(f"watchdog period {period}s", flush=True)


def ping():
    for _ in range(int(os.environ.get("PINGS", "6"))):
        time.sleep(period / 4)
        notify.sendto(b"WATCHDOG=1", address)
    print("stopped pinging", flush=True)


threading.Thread(target=ping, daemon=True).start()
body = str(os.getpid()).encode()
while True:
    conn, _ = listener.accept()
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
